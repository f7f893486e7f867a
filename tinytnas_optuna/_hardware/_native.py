"""Native code behind a process boundary: TFLM and TensorFlow's converter in child processes.

TFLM's C++ does not check every allocation: some arena sizes make ``Interpreter.from_bytes``
write through a null pointer (a (4, 3) network on 96-sample series crashes at 4,000 bytes and
fails cleanly at 3,000 and 5,000). Run in the search's process, that SIGSEGV ended the search.
So every call into TFLM, and every conversion, runs in a long-lived child process, like a
database behind its client: a crash there raises :class:`NativeCrash` (a
:class:`MeasurementError`) for that one call, and the next call starts a new child.

Two children per process, each started on first use (or :meth:`NativeProcess.start`):

- ``tflm``: ``tflite_micro`` only (no TensorFlow; starts in about 0.3 s, so a crash is cheap);
- ``convert``: TensorFlow's converter (starts in a few seconds, once).

Requests and replies are pickled frames over the child's stdin and stdout. The child answers
one request at a time; a lock per child serialises callers of this process. The child's stderr
goes to a file whose tail (with Python's faulthandler traceback) is the crash's message. The
child ignores Ctrl-C (the search decides how to stop) and exits when this process goes away
(its stdin closes).

A failpoint shows containment without waiting for TFLM to crash by itself:
``TINYTNAS_NATIVE_FAILPOINT=convert:3`` makes the first converting child of a process kill
itself with SIGSEGV on its third request (``tflm:N`` likewise); the tests use it, nothing else
should.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from tinytnas_optuna._errors import MeasurementError

#: ``KIND:N``: the first child of KIND dies of SIGSEGV at its N-th request (for tests).
FAILPOINT_ENV = "TINYTNAS_NATIVE_FAILPOINT"
#: Seconds a child may take to start (import TensorFlow on a loaded machine included).
START_SECONDS = 300.0
_HEADER = struct.Struct("<Q")


class NativeCrash(MeasurementError):
    """The child process died while running native code (a crash is an error for one call)."""


class NativeProcess:
    """A long-lived child that runs the handlers of one kind (``"tflm"`` or ``"convert"``).

    Args:
        kind: Which handlers the child serves (see :data:`_HANDLERS`).

    Attributes:
        crashes: Children of this object that died during a call (since this process started).
        starts: Children started.

    Examples:
        >>> child = NativeProcess("tflm")
        >>> child.call("echo", 21, timeout=60)
        21
        >>> child.close()
    """

    def __init__(self, kind: str) -> None:
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind = kind
        self.crashes = 0
        self.starts = 0
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._ready = False
        self._owner = os.getpid()

    @property
    def pid(self) -> int | None:
        """The running child's process id, or None."""
        proc = self._proc
        return None if proc is None or proc.poll() is not None else proc.pid

    def start(self) -> None:
        """Start the child now, without waiting for it (its imports overlap other work)."""
        with self._lock:
            self._spawn()

    def call(self, method: str, *args: Any, timeout: float, what: str = "") -> Any:
        """Run ``method(*args)`` in the child and return its result.

        Args:
            method: A handler name of this kind.
            *args: Its arguments (picklable).
            timeout: Seconds the call may take once the child is ready; after that the child
                is killed and the call fails.
            what: What is being done, for the error message (e.g. ``"allocating 4000 B"``).

        Returns:
            The handler's return value.

        Raises:
            NativeCrash: The child died (a signal, e.g. SIGSEGV) or hung past ``timeout``.
            MeasurementError: The handler raised (the child lives on).
        """
        with self._lock:
            self._spawn()
            proc = self._proc
            assert proc is not None
            try:
                if not self._ready:
                    self._expect_ready(proc)
                _write_frame(proc.stdin, pickle.dumps((method, args), protocol=5))
                status, value = pickle.loads(_read_frame(proc.stdout, timeout))
            except (OSError, EOFError, TimeoutError) as error:
                raise self._died(error, method, what) from None
        if status == "error":
            raise MeasurementError(value)
        return value

    def close(self) -> None:
        """Stop the child at once (it holds no state: killing it loses nothing)."""
        with self._lock:
            proc, self._proc, self._ready = self._proc, None, False
            if proc is not None and self._owner == os.getpid():
                proc.kill()
                proc.wait()
                for stream in (proc.stdin, proc.stdout):
                    if stream is not None:
                        stream.close()
            if self._log is not None:
                self._log.close()
                self._log = None

    def _spawn(self) -> None:
        if self._owner != os.getpid():  # a forked copy of this object: its child is not ours
            self._proc, self._log, self._ready, self._owner = None, None, False, os.getpid()
        if self._proc is not None and self._proc.poll() is None:
            return
        self.close()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
               "PYTHONPATH": os.pathsep.join(
                   p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
        if self.starts:  # the failpoint crashes the first child only
            env.pop(FAILPOINT_ENV, None)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tinytnas_optuna._hardware._native", self.kind],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
            start_new_session=True,  # a terminal's Ctrl-C goes to the search, not here
        )
        self.starts += 1
        self._ready = False

    def _expect_ready(self, proc: subprocess.Popen[bytes]) -> None:
        status, _ = pickle.loads(_read_frame(proc.stdout, START_SECONDS))
        if status != "ready":
            raise EOFError(f"unexpected first frame {status!r}")
        self._ready = True

    def _died(self, error: Exception, method: str, what: str) -> NativeCrash:
        """Kill what is left of the child, count the crash, and describe it."""
        proc = self._proc
        assert proc is not None
        hung = isinstance(error, TimeoutError)
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        log = self._log_tail()
        self._proc, self._ready = None, False
        self.crashes += 1
        self._spawn()  # the next call finds its imports done
        how = (f"did not answer within the time allowed ({error})" if hung else
               f"died with {_signal_name(code)}")
        doing = what or method
        return NativeCrash(f"{_LABELS[self.kind]} {how} while {doing}"
                           + (f": {log}" if log else ""))

    def _log_tail(self) -> str:
        """The crash as the child's faulthandler wrote it: the error and the innermost frame."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        lines = [line.strip() for line in
                 self._log.read().decode("utf-8", errors="replace").splitlines() if line.strip()]
        fatal = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error")]
        if not fatal:
            return " | ".join(lines[-3:])
        frames = [line for line in lines[fatal[-1]:] if line.startswith("File ")]
        return " | ".join([lines[fatal[-1]], *frames[:1]])


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _write_frame(stream: IO[bytes] | None, payload: bytes) -> None:
    assert stream is not None
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("no reply")
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("the child closed its output")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: IO[bytes] | None, timeout: float | None) -> bytes:
    assert stream is not None
    deadline = None if timeout is None else time.monotonic() + timeout
    fd = stream.fileno()
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size, deadline))
    return _read_exactly(fd, size, deadline)


# -- the child's side ----------------------------------------------------------------------------


def _echo(value: Any) -> Any:
    return value


# What each kind of child runs, by dotted name: the child imports the module when it starts
# serving (TFLM's and the converter's own modules call this one to reach their child, so this
# module names them instead of importing them).
_HANDLERS = {
    "tflm": {"echo": f"{__name__}:_echo",
             "report": "tinytnas_optuna._hardware._tflm:_report_in_process",
             "allocates": "tinytnas_optuna._hardware._tflm:_allocates_in_process",
             "predict": "tinytnas_optuna._hardware._tflm:_predict_in_process"},
    "convert": {"echo": f"{__name__}:_echo",
                "convert": "tinytnas_optuna._hardware._convert:_convert_in_child"},
}


def handler(kind: str, method: str) -> Any:
    """The function a child of ``kind`` runs for ``method``.

    Examples:
        >>> handler("tflm", "echo")(7)
        7
    """
    import importlib

    module, name = _HANDLERS[kind][method].split(":")
    return getattr(importlib.import_module(module), name)


_KINDS = tuple(_HANDLERS)
_LABELS = {"tflm": "TFLM (measuring process)", "convert": "TF converter (converting process)"}


def _serve(kind: str) -> None:
    """The child's loop: read a request, run it, reply; exit when stdin closes."""
    import faulthandler

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    # Stray writes to stdout (C++ logging, print) must not corrupt the replies.
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    # Handlers redirect fd 2 to capture TFLM's report; a crash's traceback goes to the log.
    crash_log = os.fdopen(os.dup(2), "w")
    faulthandler.enable(file=crash_log)
    handlers = {method: handler(kind, method) for method in _HANDLERS[kind]}
    if kind == "convert":
        from tinytnas_optuna._quiet import import_keras_quietly

        import_keras_quietly()
    else:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    _write_frame(replies, pickle.dumps(("ready", None), protocol=5))
    crash_at = _failpoint(kind)
    served = 0
    while True:
        try:
            method, args = pickle.loads(_read_frame(requests, None))
        except EOFError:
            return
        served += method != "echo"
        if served == crash_at:
            os.kill(os.getpid(), signal.SIGSEGV)
        try:
            reply = ("ok", handlers[method](*args))
        except MeasurementError as error:
            reply = ("error", str(error))
        except Exception as error:  # noqa: BLE001 - any failure is this call's, not the child's
            reply = ("error", f"{type(error).__name__}: {error}")
        try:
            _write_frame(replies, pickle.dumps(reply, protocol=5))
        except BrokenPipeError:
            return


def _failpoint(kind: str) -> int | None:
    """The request at which :data:`FAILPOINT_ENV` makes a child of ``kind`` crash, if any.

    Examples:
        >>> os.environ[FAILPOINT_ENV] = "convert:3"
        >>> _failpoint("convert"), _failpoint("tflm")
        (3, None)
        >>> del os.environ[FAILPOINT_ENV]
    """
    name, _, count = os.environ.get(FAILPOINT_ENV, "").partition(":")
    return int(count) if name == kind and count.isdigit() else None


#: The children of this process.
TFLM = NativeProcess("tflm")
CONVERTER = NativeProcess("convert")


@atexit.register
def close_all() -> None:
    """Stop this process's children (at exit; they also exit when this process is gone)."""
    TFLM.close()
    CONVERTER.close()


if __name__ == "__main__":
    _serve(sys.argv[1])
