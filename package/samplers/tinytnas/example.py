"""TinyTNASSampler on a synthetic objective: runs in about a second, without TensorFlow.

The real objective, ``tinytnas_optuna.TinyTNASObjective``, measures each candidate's RAM, flash
and MACs with TensorFlow Lite Micro and trains the candidates that fit the budget. Here two
formulas stand in for the measurement and the training, so that the search itself can be seen.
"""

from __future__ import annotations

import math
import types
from pathlib import Path

import optuna
import optunahub

PACKAGE = "samplers/tinytnas"
#: Synthetic compute budget: candidates above it are infeasible and never "trained".
MAC_BUDGET = 2_000_000


def synthetic_macs(k: int, c: int) -> int:
    """A stand-in for the MACs of the network ``(k, c)``: grows with width and depth."""
    return 60 * k * k * (c + 1) + 500 * k


def synthetic_accuracy(k: int, c: int) -> float:
    """A stand-in for the validation accuracy of ``(k, c)``: wider is better, saturating."""
    return round(0.55 + 0.4 * (1 - math.exp(-k / 40)) + 0.02 * min(c, 2) - 0.01 * max(c - 2, 0), 4)


def objective(trial: optuna.Trial) -> float:
    """Suggest ``k`` and ``c`` as TinyTNASSampler requires; refuse over-budget candidates."""
    k = trial.suggest_int("k", 2, 1024, log=True)
    c = trial.suggest_int("c", 0, 4)
    macs = synthetic_macs(k, c)
    trial.set_user_attr("macs", macs)
    if macs > MAC_BUDGET:
        # How TinyTNASSampler recognises an infeasible candidate (as TinyTNASObjective does):
        # the user attr "feasible" is False, and the trial is pruned without training.
        trial.set_user_attr("feasible", False)
        raise optuna.TrialPruned()
    trial.set_user_attr("feasible", True)
    return synthetic_accuracy(k, c)


def load_package() -> types.ModuleType:
    """This OptunaHub package: from the registry folder around this file, else from OptunaHub."""
    here = Path(__file__).resolve().parent
    if here.name == "tinytnas" and here.parent.name == "samplers":
        # A checkout of the registry (or of tinytnas-optuna's package/ folder).
        return optunahub.load_local_module(package=PACKAGE, registry_root=str(here.parent.parent))
    # Users of the published registry call this.
    return optunahub.load_module(PACKAGE)


def main() -> None:
    """Run the greedy and a short refinement, then print the greedy's path and the best trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = load_package().TinyTNASSampler(seed=0, refine_trials=6)
    # TinyTNASSampler needs a maximized study; it stops the study when nothing is left.
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=100)

    replay = sampler.replay(study)
    values = {visit.candidate: visit.result for visit in replay.path}
    infeasible = sum(1 for visit in replay.path if visit.result == "infeasible")
    print(f"{len(study.trials)} trials; the greedy visited {len(replay.path)} candidates, "
          f"{infeasible} of them over the budget of {MAC_BUDGET:,} MACs")
    print("greedy path (accepted):", " -> ".join(f"{cand} {values[cand]}"
                                                 for cand in replay.accepted))
    best = study.best_trial
    print(f"best trial: #{best.number} k={best.params['k']} c={best.params['c']} "
          f"accuracy={best.value} MACs={best.user_attrs['macs']:,}")


if __name__ == "__main__":
    main()
