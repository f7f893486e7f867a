"""Published Bake off redux accuracies, for comparison with the accuracy suite's results.

Middlehurst, Schäfer and Bagnall, "Bake off redux: a review and experimental evaluation of recent
time series classification algorithms", Data Mining and Knowledge Discovery 38, 2024. Its
results ship in the PyPI package tsml-eval 0.6.0, one CSV per classifier and metric::

    tsml_eval/publications/2023/tsc_bakeoff/results/deeplearning/CNN_accuracy.csv
    tsml_eval/publications/2023/tsc_bakeoff/results/deeplearning/InceptionTime_accuracy.csv

Each has a header row ``Resamples:,0,1,...,29`` and one row per UCR dataset with the test
accuracy (a fraction) of each of 30 resamples; resample 0 is the official train/test split, the
one the suite evaluates on. ``results/bakeoff_redux.csv`` keeps resample 0 of the datasets the
suite runs, in percent. Regenerate it (nothing is installed; the wheel is only read)::

    pip download --no-deps tsml-eval==0.6.0 -d /tmp/tsml
    python benchmarks/bakeoff.py /tmp/tsml/tsml_eval-0.6.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import sys
import zipfile
from pathlib import Path

CSV_PATH = Path(__file__).resolve().parent / "results" / "bakeoff_redux.csv"
WHEEL = "tsml-eval 0.6.0"
FOLDER = "tsml_eval/publications/2023/tsc_bakeoff/results/deeplearning"
CLASSIFIERS = ("CNN", "InceptionTime")
#: UCR 2018 names (the Bake-off's spelling) of the suite's datasets, plus GunPoint as a check.
DATASETS = ("ECG5000", "Coffee", "CBF", "Car", "ECGFiveDays", "Ham", "GunPointAgeSpan",
            "Chinatown", "Fish", "Earthquakes", "Computers", "Crop", "ElectricDevices",
            "GunPoint")
RESAMPLE = "0"


def member(classifier: str) -> str:
    """The path of a classifier's accuracy CSV inside the wheel."""
    return f"{FOLDER}/{classifier}_accuracy.csv"


def ucr_name(dataset_name: str) -> str:
    """The UCR spelling to look up: ``ucr:Coffee`` -> ``Coffee``, ``ecg5000`` -> ``ecg5000``
    (matched case-insensitively)."""
    return dataset_name[4:] if dataset_name.lower().startswith("ucr:") else dataset_name


@functools.lru_cache(maxsize=4)
def load(path: Path = CSV_PATH) -> dict[str, dict[str, float]]:
    """The stored figures by UCR name: ``{"ECG5000": {"CNN": 92.6, "InceptionTime": 94.16}}``."""
    text = path.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return {row["dataset"]: {c: float(row[c]) for c in CLASSIFIERS}
            for row in csv.DictReader(lines)}


def published(dataset_name: str) -> dict[str, float] | None:
    """The Bake-off's official-split test accuracies (%) of CNN and InceptionTime.

    Args:
        dataset_name: A suite name: ``ecg5000``, ``gunpoint``, ``ucr:<UCR name>``, ``har``...

    Returns:
        ``{"CNN": ..., "InceptionTime": ...}`` in percent, or None when the Bake-off has no
        figure for it (``har``, ``basicmotions``: not in the univariate UCR archive).
    """
    wanted = ucr_name(dataset_name).lower()
    return next((dict(v) for k, v in load().items() if k.lower() == wanted), None)


def read_wheel(wheel: Path, classifier: str) -> dict[str, float]:
    """Resample 0 of every dataset in a classifier's accuracy CSV, in percent."""
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(member(classifier)).decode()
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    if header[0] != "Resamples:" or header[1] != RESAMPLE:
        raise SystemExit(f"{member(classifier)}: unexpected header {header[:3]}")
    figures = {}
    for row in body:
        value = float(row[1])
        if not 0.0 <= value <= 1.0:
            raise SystemExit(f"{member(classifier)}: {row[0]} resample 0 = {value}, "
                             "not a fraction")
        figures[row[0]] = 100.0 * value
    return figures


def write_csv(wheel: Path, out: Path = CSV_PATH) -> list[list[str]]:
    """Write the suite's rows of the wheel's CSVs to ``out``; return them."""
    by_classifier = {c: read_wheel(wheel, c) for c in CLASSIFIERS}
    missing = [(c, d) for c in CLASSIFIERS for d in DATASETS if d not in by_classifier[c]]
    if missing:
        raise SystemExit(f"not in {wheel.name}: {missing}")
    rows = [[d, *(f"{by_classifier[c][d]:.2f}" for c in CLASSIFIERS)] for d in DATASETS]
    header = [
        "# Bake off redux (Middlehurst, Schäfer, Bagnall, DMKD 2024): test accuracy (%) on the",
        "# official UCR train/test split (resample 0), from PyPI " + WHEEL + ":",
        *(f"#   {member(c)}" for c in CLASSIFIERS),
        "# Regenerate: python benchmarks/bakeoff.py <tsml_eval-0.6.0-py3-none-any.whl>",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["dataset", *CLASSIFIERS])
    writer.writerows(rows)
    out.write_text("\n".join(header) + "\n" + buf.getvalue(), encoding="utf-8")
    load.cache_clear()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, nargs="?",
                        help="tsml_eval-0.6.0-py3-none-any.whl: regenerate the CSV from it "
                             "(without it, print the stored figures)")
    parser.add_argument("--out", type=Path, default=CSV_PATH, help=f"default {CSV_PATH}")
    args = parser.parse_args(argv)
    if args.wheel is not None:
        write_csv(args.wheel, args.out)
        print(f"wrote {args.out}")
    for name, figures in load(args.out).items():
        print(f"{name:>16}  " + "  ".join(f"{c} {v:6.2f}" for c, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
