"""The OptunaHub package ``package/samplers/tinytnas``: loads, searches, documents itself."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import types
from pathlib import Path

import optuna
import optunahub
import pytest
import yaml

import tinytnas_optuna

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "package" / "samplers" / "tinytnas"
MAC_BUDGET = 2_000_000
#: What OptunaHub's registry checks in every package README (optunahub-registry/header_confirm.py).
FRONT_MATTER_KEYS = ("author", "title", "description", "tags", "optuna_versions", "license")


def _macs(k: int, c: int) -> int:
    return 60 * k * k * (c + 1) + 500 * k


def _accuracy(k: int, c: int) -> float:
    return round(0.55 + 0.4 * (1 - math.exp(-k / 40)) + 0.02 * min(c, 2) - 0.01 * max(c - 2, 0), 4)


def _objective(trial: optuna.Trial) -> float:
    """Synthetic TinyTNAS objective: over-budget candidates are pruned untrained."""
    k = trial.suggest_int("k", 2, 1024, log=True)
    c = trial.suggest_int("c", 0, 4)
    if _macs(k, c) > MAC_BUDGET:
        trial.set_user_attr("feasible", False)
        raise optuna.TrialPruned()
    trial.set_user_attr("feasible", True)
    trial.set_user_attr("trained", True)
    return _accuracy(k, c)


@pytest.fixture(scope="module")
def hub_module() -> types.ModuleType:
    """The package as OptunaHub loads it, from this repository's ``package/`` folder."""
    return optunahub.load_local_module(package="samplers/tinytnas",
                                       registry_root=str(ROOT / "package"))


def _candidates(study: optuna.Study) -> list[tuple[int, int]]:
    return [(t.params["k"], t.params["c"]) for t in study.trials]


def test_module_reexports_the_sampler(hub_module: types.ModuleType) -> None:
    """The hub package hands out tinytnas_optuna's own class, nothing else."""
    assert hub_module.TinyTNASSampler is tinytnas_optuna.TinyTNASSampler
    assert hub_module.__all__ == ["TinyTNASSampler"]


def test_search_with_hub_sampler(hub_module: types.ModuleType) -> None:
    """The paper's start, no infeasible training, a strictly improving greedy path."""
    sampler = hub_module.TinyTNASSampler(seed=0, refine_trials=4)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=200)

    candidates = _candidates(study)
    assert candidates[0] == (4, 3)
    assert len(study.trials) < 200  # the sampler stopped the study when nothing was left

    infeasible = [t for t in study.trials if _macs(t.params["k"], t.params["c"]) > MAC_BUDGET]
    assert infeasible, "the budget should exclude some candidates, else this test proves little"
    for t in study.trials:
        over = _macs(t.params["k"], t.params["c"]) > MAC_BUDGET
        assert ("trained" in t.user_attrs) is (not over), t.number
        assert (t.state == optuna.trial.TrialState.PRUNED) is over, t.number
    # An infeasible candidate is handed out once: the sampler remembers it from the storage.
    over_cands = [(t.params["k"], t.params["c"]) for t in infeasible]
    assert len(over_cands) == len(set(over_cands))

    replay = sampler.replay(study)
    assert replay.finished
    values = {v.candidate: v.result for v in replay.path}
    path = replay.accepted
    assert path[0] == (4, 3) and len(path) >= 3
    accepted_values = [values[cand] for cand in path]
    assert all(a < b for a, b in itertools.pairwise(accepted_values)), accepted_values
    assert all(_macs(*cand) <= MAC_BUDGET for cand in path)
    assert study.best_value >= replay.best_accuracy == max(accepted_values)


def test_sampler_resumes_from_storage(hub_module: types.ModuleType) -> None:
    """A new sampler on the same storage continues the search where another one stopped."""
    def run(n_trials: int | None, storage: optuna.storages.BaseStorage) -> optuna.Study:
        study = optuna.create_study(direction="maximize", storage=storage, study_name="s",
                                    load_if_exists=True,
                                    sampler=hub_module.TinyTNASSampler(seed=0, refine=False))
        study.optimize(_objective, n_trials=n_trials or 200)
        return study

    whole = run(None, optuna.storages.InMemoryStorage())
    storage = optuna.storages.InMemoryStorage()
    run(5, storage)
    resumed = run(None, storage)
    assert _candidates(resumed) == _candidates(whole)


def test_example_runs() -> None:
    """``example.py`` runs on its own and prints the greedy's path and the best trial."""
    done = subprocess.run([sys.executable, str(PACKAGE_DIR / "example.py")], check=False,
                          capture_output=True, text=True, timeout=120, cwd=PACKAGE_DIR)
    assert done.returncode == 0, done.stderr
    assert "greedy path (accepted): (4, 3)" in done.stdout, done.stdout
    assert "best trial:" in done.stdout, done.stdout


def _front_matter(text: str) -> dict[str, object]:
    lines = text.splitlines()
    assert lines[0] == "---", "the README must open with YAML front matter"
    end = lines.index("---", 1)
    return yaml.safe_load("\n".join(lines[1:end]))


def test_readme_front_matter() -> None:
    """The fields OptunaHub checks are present, the tags place it among samplers."""
    meta = _front_matter((PACKAGE_DIR / "README.md").read_text(encoding="utf-8"))
    for key in FRONT_MATTER_KEYS:
        assert meta.get(key) not in (None, ""), key
    tags = meta["tags"]
    assert isinstance(tags, list) and all(isinstance(t, str) for t in tags)
    assert "sampler" in tags
    assert str(meta["license"]).split()[0] == "MIT"
    versions = meta["optuna_versions"]
    assert isinstance(versions, list) and all(isinstance(v, str) for v in versions)
    assert optuna.__version__ in versions


def test_package_files() -> None:
    """LICENSE is MIT with the project's holder; requirements name the package re-exported."""
    license_text = (PACKAGE_DIR / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License")
    assert "Copyright (c) 2026 tinytnas-optuna contributors" in license_text
    requirements = (PACKAGE_DIR / "requirements.txt").read_text(encoding="utf-8").split()
    assert "tinytnas-optuna" in requirements
