"""Capturing what C and C++ code writes to file descriptor 2 (TensorFlow, absl, TFLM).

``sys.stderr`` never sees those writes, so :func:`capture_fd2` points descriptor 2 itself at a
temporary file for the length of a ``with`` block and always points it back. Redirecting fd 2
is process-wide, so every capture holds :data:`FD2_LOCK`. :func:`reemit` writes captured text
back without the lines a caller knows to be noise; :func:`import_keras_quietly` uses both to
import Keras without TensorFlow's start-up log lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator

#: Serialises everything that redirects fd 2: two threads redirecting at once would lose each
#: other's output. Re-entrant, so a caller may hold it around a larger step that captures.
FD2_LOCK = threading.RLock()

# TensorFlow's start-up lines (CPU feature notice, absl's pre-init warning) on importing Keras.
_IMPORT_NOISE = re.compile(r"^(I\d{4} .*port\.cc|WARNING: All log messages before absl)")


@contextlib.contextmanager
def capture_fd2() -> Iterator[Callable[[], str]]:
    """Redirect file descriptor 2 into a temporary file; always restore it, even on errors.

    Holds :data:`FD2_LOCK` throughout.

    Returns:
        A context manager yielding a callable that returns what was captured so far.

    Examples:
        >>> import os
        >>> with capture_fd2() as read:
        ...     _ = os.write(2, b"written by C\\n")
        ...     captured = read()
        >>> captured
        'written by C\\n'
    """
    with FD2_LOCK:
        sys.stderr.flush()
        with tempfile.TemporaryFile(mode="w+b") as tmp:
            saved = os.dup(2)
            try:
                os.dup2(tmp.fileno(), 2)

                def read() -> str:
                    sys.stderr.flush()
                    tmp.flush()
                    tmp.seek(0)
                    return tmp.read().decode("utf-8", errors="replace")

                yield read
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)


def reemit(text: str, noise: re.Pattern[str]) -> None:
    """Write captured text to ``sys.stderr``, minus blank lines and lines ``noise`` finds.

    Args:
        text: What :func:`capture_fd2` captured.
        noise: Lines in which ``noise.search`` finds a match are dropped.

    Examples:
        >>> import io, re
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     reemit("I0101 chatter\\n\\nreal warning\\n", re.compile(r"^I\\d{4} "))
        >>> err.getvalue()
        'real warning\\n'
    """
    kept = [line for line in text.splitlines() if line.strip() and not noise.search(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")


def tail(text: str, lines: int = 8) -> str:
    """The last lines of captured text, for an error message.

    Args:
        text: Captured text.
        lines: How many lines to keep.

    Returns:
        Those lines, without surrounding whitespace.

    Examples:
        >>> tail("one\\ntwo\\nthree\\n", lines=2)
        'two\\nthree'
    """
    return "\n".join(text.strip().splitlines()[-lines:])


def import_keras_quietly() -> None:
    """Import Keras (and so TensorFlow) with their start-up log lines on fd 2 dropped.

    Anything else written to fd 2 during the import is written back to ``sys.stderr``.
    """
    with capture_fd2() as read:
        import keras  # noqa: F401

        text = read()
    reemit(text, _IMPORT_NOISE)
