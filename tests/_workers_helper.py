"""Worker processes for tests/test_workers.py: real storages, a synthetic "training".

Run as a script (``python tests/_workers_helper.py greedy --storage URL --study NAME ...``). The
greedy worker uses the real :class:`TinyTNASObjective` (hardware gate, reuse of identical networks,
waiting for a network in training elsewhere) with two seams replaced: ``profile`` returns figures
from the synthetic landscape of tests/test_greedy.py, and ``_train`` sleeps instead of training
and returns the landscape's accuracy (a re-ranking level adds a small deterministic wobble). Every
synthetic training marks its trial with the user attr ``trained_by`` (set when the training
starts), so tests count evaluations per candidate and level. The sampler is the paper's greedy
alone unless ``--refine N`` asks for N refinement trials after it. ``--input`` searches the
input too (decimation 1 and 2: :data:`INPUT_SPACE`); a setting's landscape is the first one minus
:data:`SETTING_COST` per setting index.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_greedy import landscape

from tinytnas_optuna._budget import HardwareBudget
from tinytnas_optuna._input import InputSpace
from tinytnas_optuna._objective import TinyTNASObjective
from tinytnas_optuna._sampler import TinyTNASSampler

# Input length: no two (k, c) build the same network (the cell loop never stops early).
LENGTH = 128
BUDGET = HardwareBudget(ram="20KB", flash="64KB", macs="60K")
#: The input space of ``--input``: the recorded rate and half of it (lengths 128 and 64).
INPUT_SPACE = InputSpace(decimate=(1, 2))
SETTING_COST = 0.01


def make_storage(spec: str, *, heartbeat: bool = False) -> optuna.storages.BaseStorage:
    """``journal:PATH`` for a JournalStorage file, else an RDB URL (heartbeat 1 s, grace 3 s)."""
    if spec.startswith("journal:"):
        backend = optuna.storages.journal.JournalFileBackend(spec.removeprefix("journal:"))
        return optuna.storages.JournalStorage(backend)
    if heartbeat:
        return optuna.storages.RDBStorage(spec, heartbeat_interval=1, grace_period=3)
    return optuna.storages.RDBStorage(spec)


def synthetic_value(acc_of, k: int, c: int, level: int) -> float:
    """What :class:`SyntheticObjective` returns for a training of ``(k, c)`` at ``level``: the
    landscape's accuracy, plus at a re-ranking level (>= 1) a small deterministic wobble (another
    seed, another value). Tests compute expected answers with it; the contract tests check that
    every recorded value equals it."""
    wobble = (zlib.crc32(f"{k}:{c}:{level}".encode()) / 2**32 - 0.5) * 0.02
    return acc_of(k, c) + (wobble if level else 0.0)


@dataclass(frozen=True)
class SyntheticProfile:
    """Stands in for HardwareProfile: feasibility from the landscape."""

    ram: int
    flash: int
    macs: int
    method: str = "synthetic"
    source: str = "tests/_workers_helper.py"


class SyntheticObjective(TinyTNASObjective):
    """TinyTNASObjective whose profiling and training follow a synthetic landscape."""

    def __init__(self, seed: int, worker: str, sleep: float, slow: dict,
                 input_space: InputSpace | None = None) -> None:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(40, LENGTH, 1)).astype(np.float32)
        y = np.arange(40) % 2
        super().__init__((x, y), budget=BUDGET, epochs=1, seed=0, input_space=input_space)
        self.acc_of, self.feasible_of = landscape(seed, length=LENGTH)
        self.worker, self.sleep, self.slow = worker, sleep, slow

    def profile(self, arch):
        k, c = arch.widths[0], arch.cells
        macs = 0 if self.feasible_of(k, c) else self.budget.macs + 1
        return SyntheticProfile(ram=0, flash=0, macs=macs)

    def _train(self, trial, arch, k, c, level, setting=0):
        trial.set_user_attr("trained_by", self.worker)
        trial.set_user_attr("epochs_trained", 0)
        time.sleep(self.slow.get((k, c, level, setting), self.sleep))
        trial.set_user_attr("epochs_trained", 1)
        wobble = (zlib.crc32(f"{k}:{c}:{level}".encode()) / 2**32 - 0.5) * 0.02
        return self.acc_of(k, c) + (wobble if level else 0.0) - SETTING_COST * setting


def run_greedy(args: argparse.Namespace) -> None:
    storage = make_storage(args.storage, heartbeat=args.heartbeat)
    sampler = (TinyTNASSampler(refine=False) if args.refine is None
               else TinyTNASSampler(refine_trials=args.refine))
    study = optuna.load_study(study_name=args.study, storage=storage, sampler=sampler)
    if args.recover:
        from tinytnas_optuna._recovery import recover_stale_trials

        failed = recover_stale_trials(study)
        print(f"recovered trials: {failed}", flush=True)
    slow = {}
    if args.slow:
        cand, seconds = args.slow.split(":")
        k, c, *rest = (int(v) for v in cand.split(","))
        level, setting = (*rest, 0, 0)[:2]
        slow[(k, c, level, setting)] = float(seconds)
    objective = SyntheticObjective(args.seed, args.worker, args.sleep, slow,
                                   INPUT_SPACE if args.input else None)
    study.optimize(objective, n_trials=args.max_trials, catch=())
    print("done", flush=True)


def run_random(args: argparse.Namespace) -> None:
    storage = make_storage(args.storage)
    study = optuna.load_study(study_name=args.study, storage=storage,
                              sampler=optuna.samplers.RandomSampler(seed=zlib.crc32(args.worker.encode())))
    acc_of, feasible_of = landscape(args.seed, length=LENGTH)

    def objective(trial: optuna.Trial) -> float:
        k = trial.suggest_int("k", 2, 1024, log=True)
        c = trial.suggest_int("c", 0, 4)
        lr = trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
        trial.set_user_attr("worker", args.worker)
        trial.set_user_attr("feasible", feasible_of(k, c))
        time.sleep(random.uniform(0, args.sleep))
        return acc_of(k, c) - 0.01 * lr

    study.optimize(objective, n_trials=args.max_trials, catch=())
    print("done", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["greedy", "random"])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--seed", type=int, default=0, help="landscape seed")
    parser.add_argument("--worker", default=f"pid{os.getpid()}")
    parser.add_argument("--sleep", type=float, default=0.2, help="seconds per training")
    parser.add_argument("--slow", default="",
                        help="K,C[,LEVEL[,SETTING]]:SECONDS: train this candidate slowly "
                             "(default level 0, input setting 0)")
    parser.add_argument("--refine", type=int, help="refinement trials after the greedy")
    parser.add_argument("--heartbeat", action="store_true")
    parser.add_argument("--input", action="store_true", help="search the input too")
    parser.add_argument("--recover", action="store_true", help="recover_stale_trials first")
    parser.add_argument("--max-trials", type=int, default=500)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    {"greedy": run_greedy, "random": run_random}[args.mode](args)


if __name__ == "__main__":
    main()
