"""``tinytnas doctor``'s checks and the one Debian package list they share with .ci/run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from tinytnas_optuna import _doctor
from tinytnas_optuna._doctor import Check, check_environment, debian_packages, format_checks
from tinytnas_optuna._target._build import _NEEDED, SOURCES_ENV

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "tinytnas_optuna" / "debian-packages.txt"
CI_RUN = ROOT / ".ci" / "run"
M4 = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


def _by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def _ci_literal_packages() -> set[str]:
    """Package names written out in .ci/run's ``wanted=(...)`` / ``wanted+=(...)`` arrays."""
    text = CI_RUN.read_text()
    names: set[str] = set()
    for body in re.findall(r"\bwanted\+?=\(([^)]*)\)", text):
        names.update(word for word in body.split() if re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", word))
    return names


# --- the package list -------------------------------------------------------------------------


def test_package_list_parses_into_groups():
    everything = debian_packages()
    assert len(everything) == len(set(everything)), "a package is listed twice"
    groups = [debian_packages(group) for group in ("python", "target", "tests")]
    assert [name for group in groups for name in group] == everything, "one group each"
    target = debian_packages("target")
    for package in ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi",
                    "libstdc++-arm-none-eabi-newlib", "qemu-system-arm", "make"):
        assert package in target
    with pytest.raises(ValueError, match="no group"):
        debian_packages("nonsense")


def test_every_package_line_says_what_needs_it():
    for line in LIST.read_text().splitlines():
        if line and not line.startswith("#"):
            assert "#" in line and line.split("#", 1)[1].strip(), f"no comment: {line!r}"


def test_package_list_rejects_a_line_that_is_not_one_name():
    with pytest.raises(ValueError, match="line 2"):
        _doctor.parse_package_list("make\ngcc-arm-none-eabi qemu-system-arm\n")
    with pytest.raises(ValueError, match="line 1"):
        _doctor.parse_package_list("  make  # indented\n")


def test_shell_one_liners_of_the_list_agree_with_the_parser():
    # The header's commands are what .ci/run and the README may use instead of Python.
    everything = subprocess.run(["grep", "-oE", "^[^#[:space:]]+", str(LIST)],
                                capture_output=True, text=True, check=True).stdout.split()
    assert everything == debian_packages()
    group = f"sed -n '/^# \\[target\\]/,/^# \\[/p' {LIST} | grep -oE '^[^#[:space:]]+'"
    target = subprocess.run(["bash", "-c", group], capture_output=True, text=True,
                            check=True).stdout.split()
    assert target == debian_packages("target")


def test_package_list_holds_every_package_ci_installs():
    literal = _ci_literal_packages()
    missing = literal - set(debian_packages())
    assert not missing, f".ci/run installs packages the list lacks: {sorted(missing)}"


def test_ci_run_reads_the_package_list():
    code = "\n".join(line for line in CI_RUN.read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    assert "tinytnas_optuna/debian-packages.txt" in code, (
        "AWAITING the .ci/run change: .ci/run must read its apt packages from "
        "tinytnas_optuna/debian-packages.txt instead of its own list"
    )


def test_pyproject_ships_the_package_list():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = data["tool"]["setuptools"].get("package-data", {})
    assert "debian-packages.txt" in package_data.get("tinytnas_optuna", []), (
        "AWAITING the pyproject change: [tool.setuptools.package-data] needs "
        '"tinytnas_optuna" = ["debian-packages.txt"]'
    )


def test_every_package_a_fix_names_is_in_the_list():
    named = {value for name, value in vars(_doctor).items() if name.startswith("PKG_")}
    named |= set(_doctor.TOOL_PACKAGES.values())
    assert named and named <= set(debian_packages())


# --- the checks on this machine ---------------------------------------------------------------


def test_cxx_library_check_matches_the_compiler():
    compiler = shutil.which("arm-none-eabi-g++")
    really_there = compiler is not None and subprocess.run(
        [compiler, "-E", "-x", "c++", "-", *M4, "-o", os.devnull], input="#include <algorithm>\n",
        capture_output=True, text=True, check=False).returncode == 0
    check = _by_name(check_environment())["Arm C++ library"]
    assert check.required
    assert check.ok == really_there
    if really_there:
        assert check.fix is None
    else:
        assert check.fix is not None and "apt-get install" in check.fix
        assert "libstdc++-arm-none-eabi-newlib" in check.fix.split()
        assert "Not all there" in format_checks(check_environment())


def test_without_the_toolchain_on_path_the_doctor_says_so(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    checks = check_environment()
    by_name = _by_name(checks)

    toolchain = by_name["Arm toolchain"]
    assert not toolchain.ok and toolchain.required
    assert "arm-none-eabi-gcc" in toolchain.detail
    assert toolchain.fix is not None
    assert toolchain.fix.split()[-3:] == ["install", "gcc-arm-none-eabi", "make"]
    for name, package in (("Arm C library", "libnewlib-arm-none-eabi"),
                          ("Arm C++ library", "libstdc++-arm-none-eabi-newlib")):
        assert not by_name[name].ok
        assert package in by_name[name].fix.split()
    assert not by_name["QEMU"].ok
    assert by_name["TFLM interpreter"].ok  # sys.executable, not PATH

    assert _doctor.exit_status(checks) == 1
    report = format_checks(checks)
    assert "MISSING  Arm toolchain" in report
    assert "Not all there" in report
    # One command names exactly the missing Debian packages of every failed check.
    line = next(line for line in report.splitlines() if line.startswith("Debian packages"))
    assert line.split("install ", 1)[1].split() == [
        "gcc-arm-none-eabi", "make", "libnewlib-arm-none-eabi",
        "libstdc++-arm-none-eabi-newlib", "qemu-system-arm"]


def test_a_wrong_pinned_version_is_reported_with_its_pin(monkeypatch):
    real = _doctor.importlib.metadata.version

    def fake(name: str) -> str:
        return "2.20.0" if name == "tensorflow-cpu" else real(name)

    monkeypatch.setattr(_doctor.importlib.metadata, "version", fake)
    check = _doctor.check_python_packages()
    assert not check.ok
    assert "tensorflow-cpu 2.20.0 (needs ==2.21.0)" in check.detail
    assert check.fix is not None
    assert check.fix.endswith("-m pip install tensorflow-cpu==2.21.0")


def test_sources_check_reads_but_never_unpacks(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    monkeypatch.delenv(SOURCES_ENV, raising=False)
    unset = _doctor.check_sources()
    assert not unset.ok and unset.fix.startswith(f"export {SOURCES_ENV}=")

    monkeypatch.setenv(SOURCES_ENV, str(tmp_path / "nowhere"))
    assert "no such file" in _doctor.check_sources().detail

    folder = tmp_path / "src"
    (folder / "tflite-micro").mkdir(parents=True)
    monkeypatch.setenv(SOURCES_ENV, str(folder))
    partial = _doctor.check_sources()
    assert not partial.ok and "CMSIS-NN" in partial.detail
    for name in _NEEDED:
        (folder / name).mkdir(exist_ok=True)
    assert _doctor.check_sources().ok

    archive = tmp_path / "tflm-sources.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(folder, arcname=".")
    monkeypatch.setenv(SOURCES_ENV, str(archive))
    packed = _doctor.check_sources()
    assert packed.ok and "on the first build" in packed.detail
    assert not (tmp_path / "cache").exists(), "the doctor unpacked the archive"

    not_tar = tmp_path / "notes.txt"
    not_tar.write_text("hello")
    monkeypatch.setenv(SOURCES_ENV, str(not_tar))
    assert not _doctor.check_sources().ok


def test_optional_checks_never_fail_the_doctor():
    checks = [Check("Python", True, "3.11"),
              Check("Chromium", False, "missing: chromium", "apt-get install chromium",
                    required=False, packages=("chromium",))]
    assert _doctor.exit_status(checks) == 0
    report = format_checks(checks)
    assert report.splitlines()[-1] == "All required pieces are there (1 optional absent)."
    assert "absent   Chromium" in report
    assert _doctor.missing_packages(checks) == []
    assert _doctor.missing_packages(checks, required_only=False) == ["chromium"]


def test_doctor_is_fast_and_leaves_tensorflow_alone():
    code = ("import sys, time; t = time.perf_counter(); "
            "from tinytnas_optuna._doctor import check_environment; check_environment(); "
            "print(time.perf_counter() - t, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out[1] == "False"
    assert float(out[0]) < 5
