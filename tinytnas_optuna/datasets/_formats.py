"""Parsers for the UCR ``.tsv`` and the UEA/sktime ``.ts`` time-series file formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinytnas_optuna.datasets._errors import DataError


def read_ucr_tsv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads a UCR 2018 archive ``.tsv`` file: one series a line, the label first.

    Args:
        path: The file.

    Returns:
        (series (N, L) float64, labels (N,) float64 as written). Variable-length sets are
        NaN-padded in the archive; the NaNs are kept for ``validate_arrays`` to reject.

    Raises:
        DataError: The file cannot be read or parsed.
    """
    try:
        table = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as UCR .tsv ({exc})") from exc
    if table.shape[1] < 2:
        raise DataError(f"{path}: expected a label and at least one value per line")
    return table[:, 1:], table[:, 0]


def read_ts(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Reads an equal-length ``.ts`` file (UEA/UCR archive, sktime and aeon format).

    Header lines start with ``@`` (``@classLabel true A B ...`` lists the classes), comments
    with ``#``; after ``@data`` each line holds the channels separated by ``:``, values by
    ``,``, and the class label last. ``?`` marks a missing value.

    Args:
        path: The file.

    Returns:
        (series (N, L, C) float64, labels (N,) str, class names in the order the header
        declares them, or sorted when it declares none).

    Raises:
        DataError: The file cannot be read, uses timestamps, or has unequal lengths.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    declared: tuple[str, ...] = ()
    series: list[list[list[float]]] = []
    labels: list[str] = []
    in_data = False
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            words = line.split()
            key = words[0].lower()
            if key == "@timestamps" and len(words) > 1 and words[1].lower() == "true":
                raise DataError(f"{path}: timestamped .ts files are not supported")
            if key == "@classlabel" and len(words) > 2 and words[1].lower() == "true":
                declared = tuple(words[2:])
            in_data = key == "@data"
            continue
        *channels, label = line.split(":")
        if not channels:
            raise DataError(f"{path}:{number}: no values before the class label")
        try:
            series.append(
                [
                    [np.nan if v.strip() == "?" else float(v) for v in channel.split(",")]
                    for channel in channels
                ]
            )
        except ValueError as exc:
            raise DataError(f"{path}:{number}: {exc}") from exc
        labels.append(label.strip())
    if not series:
        raise DataError(f"{path}: no series after @data")
    shapes = {(len(s), len(s[0])) for s in series} | {(len(s), len(c)) for s in series for c in s}
    if len(shapes) != 1:
        raise DataError(f"{path}: series of unequal length or channel count {sorted(shapes)}")
    # The file stores (N, C, L); the search wants channels last.
    values = np.asarray(series, np.float64).transpose(0, 2, 1)
    names = declared or tuple(sorted(set(labels)))
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise DataError(f"{path}: labels {unknown} not declared in @classLabel")
    return values, np.asarray(labels), names
