"""Build the Cortex-M runner (TFLM + CMSIS-NN + ``fw/runner.cc``) into the user cache.

The third-party sources (TFLM, CMSIS-NN, CMSIS_6, flatbuffers, gemmlowp, ruy) are build inputs
referred to by path: ``TINYTNAS_TFLM_SRC`` names a folder holding them or the
``tflm-sources.tar.xz`` that contains them (unpacked into the cache once). The toolchain is
Debian's ``gcc-arm-none-eabi`` + ``libnewlib-arm-none-eabi`` (``make`` drives it).

One ELF per core serves every model: the model and its input are written into the emulated RAM
at run time (:mod:`._qemu`). A build folder is keyed by a hash of every firmware file, the
source location and the compiler version, so a changed source rebuilds into a new folder; a
first build costs about 1.5-2 minutes of CPU per core, a changed runner a few seconds, a cached
one nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from tinytnas_optuna._errors import MeasurementError

#: Cores the runner is built for, and their name in ``fw/Makefile`` (which holds the flags).
CORES: dict[str, str] = {
    "cortex-m4": "m4",
    "cortex-m7": "m7",
    "cortex-m33": "m33",
}

#: The firmware sources shipped with the package (package data).
FW_DIR = Path(__file__).resolve().parent / "fw"

#: Environment variable naming the third-party sources (folder or ``.tar.xz``).
SOURCES_ENV = "TINYTNAS_TFLM_SRC"

#: Folders the build needs inside the sources.
_NEEDED = ("tflite-micro", "CMSIS-NN", "CMSIS_6", "flatbuffers", "gemmlowp", "ruy")

#: Programs a build needs on ``PATH``.
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "make")


class TargetUnavailable(MeasurementError):
    """The toolchain, the emulator or the third-party sources are missing: no target figure."""


def cache_dir() -> Path:
    """The user cache of tinytnas (``$XDG_CACHE_HOME/tinytnas``, else ``~/.cache/tinytnas``).

    Returns:
        The folder (not created).
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "tinytnas"


def check_core(core: str) -> str:
    """The Makefile's name of a core.

    Args:
        core: ``"cortex-m4"``, ``"cortex-m7"`` or ``"cortex-m33"``.

    Returns:
        ``"m4"``, ``"m7"`` or ``"m33"``.

    Raises:
        ValueError: For another core.

    Examples:
        >>> check_core("cortex-m7")
        'm7'
    """
    if core not in CORES:
        raise ValueError(f"target must be one of {', '.join(CORES)}, got {core!r}")
    return CORES[core]


def _file_hash(path: Path) -> str:
    """SHA-256 of a file, first 16 hex digits.

    Args:
        path: The file.

    Returns:
        The digest prefix.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def resolve_sources(spec: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the third-party trees; a ``.tar.xz`` is unpacked into the cache once.

    Args:
        spec: A folder or a ``.tar.xz``; default ``$TINYTNAS_TFLM_SRC``.

    Returns:
        The folder holding ``tflite-micro/``, ``CMSIS-NN/`` etc.

    Raises:
        TargetUnavailable: When no sources are given, or they lack a needed tree.
    """
    spec = spec or os.environ.get(SOURCES_ENV)
    if not spec:
        raise TargetUnavailable(
            f"set {SOURCES_ENV} to the folder or .tar.xz of the TFLM sources "
            "(tflite-micro, CMSIS-NN, CMSIS_6, flatbuffers, gemmlowp, ruy)"
        )
    path = Path(spec).expanduser().resolve()
    if not path.exists():
        raise TargetUnavailable(f"{SOURCES_ENV}={spec}: no such file or folder")
    root = path
    if not path.is_dir():
        root = cache_dir() / "tflm-src" / _file_hash(path)
        if not (root / ".complete").exists():
            root.parent.mkdir(parents=True, exist_ok=True)
            # Unpack beside the target and rename: concurrent first uses never see half a tree.
            tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".unpack-"))
            try:
                with tarfile.open(path) as tar:
                    tar.extractall(tmp, filter="data")
                (tmp / ".complete").write_text(str(path))
                tmp.rename(root)
            except OSError:
                if not (root / ".complete").exists():  # not just another process winning
                    raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    missing = [name for name in _NEEDED if not (root / name).is_dir()]
    if missing:
        raise TargetUnavailable(f"{root} lacks {', '.join(missing)}")
    return root


def _missing_tools() -> list[str]:
    """Programs of :data:`TOOLS` not found on ``PATH``.

    Returns:
        Their names.
    """
    return [tool for tool in TOOLS if shutil.which(tool) is None]


#: The Arm libraries a build needs: (name, compiler, language, a header of it, Debian package).
LIBRARIES = (
    ("Arm C library", "arm-none-eabi-gcc", "c", "stdio.h", "libnewlib-arm-none-eabi"),
    ("Arm C++ library", "arm-none-eabi-g++", "c++", "algorithm",
     "libstdc++-arm-none-eabi-newlib"),
)
# The flags of the Cortex-M4 build: a header that preprocesses with them is found by the build.
_CPU_FLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")


def header_error(compiler: str, language: str, header: str) -> str | None:
    """Why a header of the Arm toolchain's libraries does not preprocess for a Cortex-M4.

    Args:
        compiler: ``"arm-none-eabi-gcc"`` or ``"arm-none-eabi-g++"`` (on ``PATH``).
        language: ``"c"`` or ``"c++"``.
        header: The header, e.g. ``"stdio.h"``.

    Returns:
        The compiler's line saying what failed, or None when the header was found.
    """
    try:
        proc = subprocess.run([compiler, "-E", "-x", language, "-", *_CPU_FLAGS, "-o",
                               os.devnull], input=f"#include <{header}>\n", capture_output=True,
                              text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    line = next((line for line in lines if "error" in line), lines[0] if lines else "failed")
    return re.sub(r"^<stdin>:[\d:]*\s*", "", line)


def _check_libraries() -> None:
    """Refuse to build without the Arm C and C++ libraries (a build would fail minutes in).

    Raises:
        TargetUnavailable: Naming the missing library and the package that holds it.
    """
    for name, compiler, language, header, package in LIBRARIES:
        error = header_error(compiler, language, header)
        if error is not None:
            raise TargetUnavailable(f"{name}: <{header}> not found by {compiler}: {error} "
                                    f"(apt-get install {package}; see tinytnas doctor)")


#: Firmware files the library depends on; the others (runner, start-up, linker scripts) only
#: make the ELF, which relinks in seconds against the built library.
_LIB_FILES = ("Makefile", "nn_sources.mk", "tflm_pch.h", "stubs")


def _hash_files(paths: list[Path], *extra: str) -> str:
    """Hash of files (by path relative to ``fw/`` and content) and extra strings.

    Args:
        paths: Files under :data:`FW_DIR`.
        *extra: More strings to hash.

    Returns:
        12 hex digits.
    """
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(FW_DIR)).encode())
        digest.update(path.read_bytes())
    for text in extra:
        digest.update(text.encode())
    return digest.hexdigest()[:12]


def build_keys(sources: Path) -> tuple[str, str]:
    """Cache keys of the library and of the ELF: a changed input gives a new key.

    Args:
        sources: The resolved sources folder.

    Returns:
        ``(library key, ELF key)``: the library's hashes the library's firmware files, the
        sources location and the compiler version; the ELF's adds every other firmware file.
    """
    files = [p for p in FW_DIR.rglob("*") if p.is_file()]
    lib_files = [p for p in files if p.relative_to(FW_DIR).parts[0] in _LIB_FILES]
    version = subprocess.run(
        ["arm-none-eabi-gcc", "--version"], capture_output=True, text=True, check=False
    ).stdout
    lib_key = _hash_files(lib_files, str(sources), version)
    return lib_key, _hash_files(files, lib_key)


def _make(core: str, sources: Path, out: Path, *args: str) -> None:
    """Run ``make`` on the firmware into ``out``, or raise with the end of its log.

    Args:
        core: Makefile core name (``m4``...).
        sources: The sources folder.
        out: Output folder.
        *args: More make arguments (variables, goal).

    Raises:
        RuntimeError: When make fails.
    """
    jobs = str(min(os.cpu_count() or 1, 8))
    proc = subprocess.run(
        ["make", "-C", str(FW_DIR), f"CORE={core}", f"SRC={sources}", f"OUT={out}",
         f"-j{jobs}", *args],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode:
        raise RuntimeError(
            f"building the Cortex-{core.upper()} runner failed:\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )


def _build_into(final: Path, build: Callable[[Path], None]) -> None:
    """Build into a private folder beside ``final`` and rename it (a concurrent build never
    sees half a result; the loser of a race drops its copy).

    Args:
        final: The folder to create.
        build: Fills the folder it is given.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
    try:
        build(tmp)
        try:
            tmp.rename(final)
        except OSError:
            if not final.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_runner(core: str = "cortex-m4", sources: str | os.PathLike[str] | None = None) -> Path:
    """The runner ELF for a core, built into the user cache unless already there.

    The TFLM + CMSIS-NN library goes to ``<cache>/tflm-build/<core>-<library key>/`` (the
    first build, about 1.5-2 minutes of CPU); the ELF to ``app-<ELF key>/`` inside it.

    Args:
        core: ``"cortex-m4"``, ``"cortex-m7"`` or ``"cortex-m33"``.
        sources: Third-party sources (see :func:`resolve_sources`); default the environment.

    Returns:
        Path of ``runner.elf``.

    Raises:
        ValueError: For an unknown core.
        TargetUnavailable: When the toolchain or the sources are missing.
        RuntimeError: When the build fails (with the end of its log).
    """
    short = check_core(core)
    missing = _missing_tools()
    if missing:
        raise TargetUnavailable(
            f"{', '.join(missing)} not found (apt-get install gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib make; see tinytnas doctor)"
        )
    root = resolve_sources(sources)
    lib_key, elf_key = build_keys(root)
    lib_dir = cache_dir() / "tflm-build" / f"{short}-{lib_key}"
    app_dir = lib_dir / f"app-{elf_key}"
    if (app_dir / "runner.elf").exists():
        return app_dir / "runner.elf"
    _check_libraries()

    def build_lib(out: Path) -> None:
        _make(short, root, out, "lib")
        for obj in out.rglob("*.o"):  # the archive is all the ELF step needs
            obj.unlink()

    def build_app(out: Path) -> None:
        _make(short, root, out, f"LIBA={lib_dir / 'libtflm.a'}", "PCH=0", "app")

    if not (lib_dir / "libtflm.a").exists():
        _build_into(lib_dir, build_lib)
    _build_into(app_dir, build_app)
    return app_dir / "runner.elf"
