"""The one exception type the dataset code raises for bad input."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file or array is unusable; the message is one line naming problem and place."""

    def __init__(self, message: str) -> None:
        # The CLI prints the message as a single line, so fold any newline a wrapped
        # library error (numpy, zipfile) brought in.
        super().__init__(" ".join(str(message).split()))
