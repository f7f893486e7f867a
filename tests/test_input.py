"""Input settings as a search dimension: what a device at a lower rate or a shorter window holds,
and the sampler's search over (input, k, c) on a synthetic landscape (no TensorFlow here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from test_greedy import C_RANGE, K_RANGE, landscape

from tinytnas_optuna import _greedy
from tinytnas_optuna._input import InputSetting, InputSpace
from tinytnas_optuna._results import summarize
from tinytnas_optuna._sampler import TinyTNASSampler
from tinytnas_optuna._trial import FINISHED, INPUT_SETTINGS, SETTING, trial_level

SETTINGS = [[1, 128], [2, 128], [1, 64]]  # (decimate, window): lengths 128, 64, 64


def _tone(hz: float, rate: float = 50.0, n: int = 512) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(n) / rate)[None, :]


def amplitude(x: np.ndarray) -> float:
    core = x[0, 20:-20, 0]  # away from the reflected edges
    return float(np.sqrt(2 * np.mean(core ** 2)))


def test_decimation_keeps_the_band_and_removes_what_would_alias() -> None:
    # 50 Hz recorded, 1/4 rate: 12.5 Hz, Nyquist 6.25 Hz, cut-off 5 Hz.
    setting = InputSetting(4)
    assert amplitude(setting.apply(_tone(1.0))) == pytest.approx(1.0, abs=0.02)
    for hz in (10.0, 20.0):  # would fold back to 2.5 Hz and 7.5 Hz without the filter
        assert amplitude(setting.apply(_tone(hz))) < 0.01


def test_the_window_is_the_newest_samples_and_decimation_keeps_the_last_one() -> None:
    x = np.arange(100, dtype="float32")[None, :, None] * np.ones((1, 1, 2), "float32")
    assert np.array_equal(InputSetting(1, 60).apply(x)[0, :, 0], np.arange(40, 100))
    # A ramp passes a linear-phase low-pass unchanged away from the edges: the kept samples
    # are 41, 43, ..., 99 (the newest one, then every other one before it).
    y = InputSetting(2, 60).apply(x)
    assert y.shape == (1, 30, 2) and y[0, 10, 0] == pytest.approx(61.0, abs=1e-3)


@pytest.mark.parametrize(("window", "words"), [(200, "between half"), (40, "between half")])
def test_unsound_windows_are_refused(window: int, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        InputSpace(window=(window,)).settings(100)


def test_a_setting_that_leaves_too_few_samples_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        InputSpace(decimate=(1, 8)).settings(40)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"rates": "50,20", "rate_hz": "50"}, "divided by a whole number"),
    ({"rates": "25"}, "needs --rate-hz"),
    ({"windows": "2.5s"}, "give --rate-hz"),
    ({"decimate": "1,x"}, "not a number"),
    ({"decimate": "0"}, "whole number >= 1"),
])
def test_bad_input_lists_are_refused_in_one_line(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words) as err:
        InputSpace.parse(**kwargs)
    assert "\n" not in str(err.value)


def input_landscapes(seed: int):
    """One accuracy and feasibility per setting: a shorter input costs fewer MACs (wider
    networks fit) and scores a little less."""
    out = []
    for i, (decimate, window) in enumerate(SETTINGS):
        length = window // decimate
        acc, feasible = landscape(seed + 7 * i, length=length, mac_budget=60_000)
        out.append((acc, feasible))
    return out


def input_objective(landscapes, calls):
    def objective(trial):
        k = trial.suggest_int("k", *K_RANGE, log=True)
        c = trial.suggest_int("c", *C_RANGE)
        decimate = trial.suggest_categorical("decimate", [1, 2])
        window = trial.suggest_categorical("window", [128, 64])
        setting = SETTINGS.index([decimate, window])
        frozen = trial.storage.get_trial(trial._trial_id)
        acc, feasible = landscapes[setting]
        if frozen.system_attrs.get(FINISHED):
            # A thread that found the search finished revisits the best: TinyTNASObjective
            # reuses its result (no training); this plain objective returns it.
            return acc(k, c)
        calls.append((setting, (k, c), trial_level(frozen)))
        trial.set_user_attr("feasible", feasible(k, c))
        trial.set_user_attr("input", {"decimate": decimate, "window": window,
                                      "length": window // decimate})
        if not feasible(k, c):
            raise optuna.TrialPruned()
        return acc(k, c)

    return objective


def greedy_order(acc, feasible, start):
    """The candidates the paper's greedy evaluates from ``start``, in order, and its best."""
    results: dict = {}
    order = []
    while True:
        state = _greedy.replay(results, start=start)
        if state.needed is None:
            return order, state.best
        order.append(state.needed)
        results[state.needed] = acc(*state.needed) if feasible(*state.needed) \
            else _greedy.INFEASIBLE


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_greedy_runs_on_the_first_input_then_on_each_other_from_its_best(seed):
    landscapes = input_landscapes(seed)
    calls: list = []
    study = optuna.create_study(direction="maximize",
                                sampler=TinyTNASSampler(seed=0, refine=False))
    study.set_user_attr(INPUT_SETTINGS, SETTINGS)
    study.optimize(input_objective(landscapes, calls), n_trials=400)
    first, best0 = greedy_order(*landscapes[0], _greedy.START)
    expected = [(0, cand) for cand in first]
    for i in (1, 2):
        order, _ = greedy_order(*landscapes[i], best0 or _greedy.START)
        expected += [(i, cand) for cand in order]
    assert [(s, cand) for s, cand, _ in calls] == expected
    # The params are the assigned setting's, and nothing is evaluated twice.
    for t in study.trials:
        assert [t.params["decimate"], t.params["window"]] == SETTINGS[t.system_attrs[SETTING]]
    assert len(set(calls)) == len(calls)
    # The answer is the best of the three greedies.
    summary = summarize(study)
    best = max(((acc(*cand), -n, i, cand) for n, (i, cand, _) in enumerate(calls)
                for acc, feasible in [landscapes[i]] if feasible(*cand)))
    assert summary.finished
    assert (summary.best.input, summary.best.candidate) == (tuple(SETTINGS[best[2]]), best[3])


def test_refinement_works_on_the_best_input_and_threads_never_repeat_a_training():
    landscapes = input_landscapes(5)
    calls: list = []
    study = optuna.create_study(direction="maximize",
                                sampler=TinyTNASSampler(seed=0, refine_trials=12))
    study.set_user_attr(INPUT_SETTINGS, SETTINGS)
    study.optimize(input_objective(landscapes, calls), n_trials=400, n_jobs=2)
    assert len(set(calls)) == len(calls), "a (setting, candidate, level) trained twice"
    phases = [t.system_attrs.get("tinytnas:phase") for t in study.trials]
    assert "refine" in phases and "rerank" in phases
    greedy = [s for s, _, level in calls if level == 0]
    assert set(greedy) == {0, 1, 2} and greedy[0] == 0


# Full tier (real trainings, about 25 s): the default tier checks the input search's contract on
# the synthetic landscape above.
@pytest.mark.full
def test_a_decimated_candidate_is_measured_on_its_own_model_and_exported_with_its_input(
    tmp_path: Path,
) -> None:
    import tinytnas_optuna as tt
    from tinytnas_optuna.datasets import load_dataset

    ds = load_dataset("gunpoint")  # 150 samples per series
    budget = tt.HardwareBudget(ram="20KB", flash="64KB", macs="60K")
    objective = tt.TinyTNASObjective(
        (ds.x_train, ds.y_train), budget=budget, seed=0, steps=150,
        input_space=tt.InputSpace(decimate=(1, 2), window=(150, 100)))
    study = optuna.create_study(direction="maximize", sampler=TinyTNASSampler(seed=0),
                                pruner=optuna.pruners.NopPruner())
    for k in (4, 8):  # only the 1/2-rate, 100-sample input: the answer must be on it
        study.enqueue_trial({"k": k, "c": 1, "decimate": 2, "window": 100})
    study.optimize(objective, n_trials=2)
    assert study.user_attrs[INPUT_SETTINGS] == [[1, 150], [1, 100], [2, 150], [2, 100]]
    for t in study.trials:
        assert t.user_attrs["input"] == {"decimate": 2, "window": 100, "length": 50}
        own = tt.profile_architecture(tt.architecture(t.params["k"], 1, (50, 1), 2))
        assert (t.user_attrs["ram"], t.user_attrs["macs"]) == (own.ram, own.macs)
        full = tt.profile_architecture(tt.architecture(t.params["k"], 1, (150, 1), 2))
        assert own.macs < full.macs and own.ram <= full.ram
    report = objective.retrain_best(study, out_dir=tmp_path, test=(ds.x_test, ds.y_test),
                                    epochs=3)
    assert report.input == {"decimate": 2, "window": 100, "length": 50, "searched": True}
    best = summarize(study).best
    assert (report.macs, report.ram) == (best.macs, best.ram)
    header = (tmp_path / "tinytnas_model.h").read_text()
    for line in ("DECIMATION 2", "WINDOW_SAMPLES 100", "INPUT_LENGTH 50"):
        assert f"#define TINYTNAS_MODEL_{line}" in header
    assert json.loads((tmp_path / "report.json").read_text())["input"]["decimate"] == 2


def test_stopped_and_resumed_the_search_is_the_same_and_trains_nothing_twice(tmp_path):
    # The sampler keeps no state: a search stopped after any trial and resumed by a new process
    # (a new sampler on the same storage) continues exactly where the uninterrupted one goes.
    landscapes = input_landscapes(3)
    whole: list = []
    study = optuna.create_study(direction="maximize",
                                sampler=TinyTNASSampler(seed=0, refine=False))
    study.set_user_attr(INPUT_SETTINGS, SETTINGS)
    study.optimize(input_objective(landscapes, whole), n_trials=400)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    parts: list = []
    for n_trials in (7, 11, 400):  # three runs, each a new sampler
        resumed = optuna.create_study(direction="maximize", storage=storage, study_name="s",
                                      load_if_exists=True,
                                      sampler=TinyTNASSampler(seed=0, refine=False))
        resumed.set_user_attr(INPUT_SETTINGS, SETTINGS)
        resumed.optimize(input_objective(landscapes, parts), n_trials=n_trials)
    assert parts == whole and len(set(parts)) == len(parts)


def test_the_command_line_refuses_unsound_input_lists_in_one_line(capsys, tmp_path):
    from tinytnas_optuna.cli import main

    code = main(["search", "--dataset", "gunpoint", "--ram", "20KB", "--flash", "64KB",
                 "--macs", "60K", "--rates", "50,20", "--rate-hz", "50", "--trials", "1",
                 "--storage", f"sqlite:///{tmp_path / 's.db'}", "--study", "s", "--no-model"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "divided by a whole number" in err[0]
