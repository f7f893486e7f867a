"""The search on real data: TinyTNASObjective + TinyTNASSampler, real TensorFlow and TFLM."""

from __future__ import annotations

import time

import numpy as np
import optuna
import pytest
from test_greedy import reference_search

import tinytnas_optuna as tt
from tinytnas_optuna import _training
from tinytnas_optuna.datasets import load_dataset

PAPER_BUDGET = tt.HardwareBudget(ram="20KB", flash="64KB", macs="60K")


@pytest.fixture(scope="module")
def motions():
    return load_dataset("basicmotions")


@pytest.fixture(scope="module")
def searched(motions, tmp_path_factory):
    """One full greedy search on BasicMotions (1 epoch per candidate), with fit calls recorded."""
    fitted: list = []
    real_train = _training.train

    def recording_train(model, data, schedule, **kwargs):
        fitted.append(model.name)
        return real_train(model, data, schedule, **kwargs)

    _training.train = recording_train
    try:
        objective = tt.TinyTNASObjective(
            (motions.x_train, motions.y_train), val=(motions.x_test, motions.y_test),
            budget=PAPER_BUDGET, epochs=1, seed=0,
        )
        storage = f"sqlite:///{tmp_path_factory.mktemp('search') / 'search.db'}"
        # No pruner: every candidate's value is its whole training (the paper's rule).
        # The paper's greedy alone: the trajectory is checked against the specification.
        study = optuna.create_study(direction="maximize",
                                    sampler=tt.TinyTNASSampler(seed=0, refine=False),
                                    pruner=optuna.pruners.NopPruner(), storage=storage,
                                    study_name="motions")
        study.optimize(objective, n_trials=200)
    finally:
        _training.train = real_train
    return study, objective, fitted


def test_no_infeasible_candidate_is_trained(searched):
    study, _, fitted = searched
    infeasible = [t for t in study.trials if t.user_attrs.get("feasible") is False]
    assert infeasible, "the paper budget should reject some candidates on BasicMotions"
    for t in infeasible:
        assert t.state == optuna.trial.TrialState.PRUNED
        assert t.user_attrs["epochs_trained"] == 0
        assert f"tinytnas_k{t.params['k']}_c{t.params['c']}" not in fitted
        assert max(t.constraints.values()) > 0
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
               and "reused_from" not in t.user_attrs]
    assert len(fitted) == len(trained)  # trained for trained candidates only
    for t in trained:
        assert PAPER_BUDGET.fits(tt.HardwareProfile(
            ram=t.user_attrs["ram"], flash=t.user_attrs["flash"], macs=t.user_attrs["macs"],
            method="recorded", source="trial"))
        assert all(v <= 0 for v in t.constraints.values())
        assert set(t.system_attrs) >= {"constraints:ram", "constraints:flash", "constraints:macs",
                                       "constraints"}


def test_recorded_run_follows_the_specification(searched):
    study, _, _ = searched
    recorded = {(t.params["k"], t.params["c"]): t for t in study.trials}

    def acc_of(k, c):
        return recorded[(k, c)].value

    def feasible_of(k, c):
        return recorded[(k, c)].user_attrs["feasible"]

    _, best, _, evaluations = reference_search(acc_of, feasible_of)
    assert [(t.params["k"], t.params["c"]) for t in study.trials] == evaluations
    summary = tt.summarize(study)
    assert summary.finished and (summary.best.k, summary.best.c) == best
    assert str(summary).startswith("Best: k=")
    assert summary.to_dict()["trained_count"] == summary.trained_count


def test_figures_are_measured_or_labelled_estimates(searched):
    study, _, _ = searched
    for t in study.trials:
        method = t.user_attrs["figures_method"]
        assert method in ("measured", "analytic")
        if method == "analytic":  # only used to reject on exact MACs
            assert t.user_attrs["macs"] > PAPER_BUDGET.macs and not t.user_attrs["feasible"]


def test_labels_any_values_and_one_hot_give_same_search_inputs(motions):
    x, y = motions.x_train, motions.y_train
    as_ints = tt.TinyTNASObjective((x, y * 10 - 7), budget=PAPER_BUDGET, seed=1)
    one_hot = tt.TinyTNASObjective((x, np.eye(4)[y]), budget=PAPER_BUDGET, seed=1)
    assert as_ints.data.classes == (-7, 3, 13, 23)
    assert one_hot.data.classes == (0, 1, 2, 3)
    # 40 series and no val: 3-fold cross-validation, the same folds whatever the label format.
    assert as_ints.data.validation == one_hot.data.validation == "3-fold"
    np.testing.assert_array_equal(as_ints.data.folds, one_hot.data.folds)
    for fold in as_ints.data.splits():  # stratified: every class in every fold
        assert set(fold.y_val) == {0, 1, 2, 3}
        assert len(fold.y_val) == pytest.approx(len(y) / 3, abs=2)


def test_group_split_keeps_subjects_apart():
    har = load_dataset("har")
    objective = tt.TinyTNASObjective((har.x_train, har.y_train), groups=har.groups_train,
                                     budget=PAPER_BUDGET, seed=0)
    # Subjects: 3 folds of whole subjects, every window validated once by a model that never
    # saw its subject.
    data = objective.data
    assert data.validation == "3-fold" and len(data.y_train) == len(har.y_train)
    subjects = [set(har.groups_train[data.folds == f]) for f in range(3)]
    assert all(len(s) >= 6 for s in subjects)
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2]
                or subjects[1] & subjects[2])
    # Standardisation: train features have zero mean, unit variance per channel.
    np.testing.assert_allclose(objective.data.x_train.mean(axis=(0, 1)), 0, atol=5e-3)
    np.testing.assert_allclose(objective.data.x_train.std(axis=(0, 1)), 1, atol=1e-3)


def test_time_bound_holds_and_cut_training_keeps_completed_epochs(motions):
    # A 30 s search of long trainings (20,000 steps each), so that the bound cuts one in flight.
    objective = tt.TinyTNASObjective(
        (motions.x_train, motions.y_train), val=(motions.x_test, motions.y_test),
        budget=PAPER_BUDGET, steps=20000, seed=0, timeout=30,
    )
    study = optuna.create_study(direction="maximize", sampler=tt.TinyTNASSampler())
    start = time.monotonic()
    study.optimize(objective, timeout=30)
    elapsed = time.monotonic() - start
    assert elapsed < 35, f"a 30 s search took {elapsed:.1f} s"
    cut = [t for t in study.trials if t.user_attrs.get("interrupted")]
    assert cut, "the bound should have cut a training"
    for t in cut:
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert 0 < t.user_attrs["steps"] < 20000 and t.user_attrs["epochs_trained"] > 0
            assert t.value == max(t.intermediate_values.values())


@pytest.mark.full
def test_same_seed_same_trial_sequence(motions):
    def run():
        objective = tt.TinyTNASObjective(
            (motions.x_train, motions.y_train), budget=PAPER_BUDGET, epochs=1, seed=3,
        )
        study = optuna.create_study(direction="maximize", sampler=tt.TinyTNASSampler(seed=3))
        study.optimize(objective, n_trials=3)
        return [(t.params["k"], t.params["c"], t.state, t.value) for t in study.trials]

    first, second = run(), run()
    assert first == second
    assert any(value is not None for *_, value in first)


@pytest.mark.full
def test_other_samplers_get_figures_and_constraints(motions):
    objective = tt.TinyTNASObjective(
        (motions.x_train, motions.y_train), val=(motions.x_test, motions.y_test),
        budget=PAPER_BUDGET, epochs=2, seed=0, k_range=(2, 24),  # mostly feasible
    )
    for sampler in (optuna.samplers.RandomSampler(seed=0), optuna.samplers.TPESampler(seed=0),
                    optuna.samplers.GPSampler(seed=0, n_startup_trials=2),
                    optuna.samplers.NSGAIISampler(seed=0)):
        study = optuna.create_study(direction="maximize", sampler=sampler,
                                    pruner=optuna.pruners.NopPruner())
        study.optimize(objective, n_trials=3)
        assert len(study.trials) == 3
        assert any(t.user_attrs["epochs_trained"] > 0 for t in study.trials), sampler
        for t in study.trials:
            assert {"ram", "flash", "macs", "feasible"} <= set(t.user_attrs)
            # The three named ones, and the legacy list optuna-dashboard reads.
            assert set(t.constraints) == {"ram", "flash", "macs", "0", "1", "2"}
            assert (t.state == optuna.trial.TrialState.PRUNED) == (not t.user_attrs["feasible"])


def test_hardware_aware_pruner_prunes_an_objective_of_ones_own_over_budget():
    # The pruner matters for objectives that record figures and then report (the
    # TinyTNASObjective rejects an infeasible candidate before its first report).
    pruner = tt.HardwareAwarePruner(PAPER_BUDGET)

    def objective(trial: optuna.Trial) -> float:
        ram = trial.suggest_int("ram", 10_000, 30_000, step=10_000)
        trial.set_user_attr("ram", ram)
        trial.set_user_attr("flash", 1_000)
        trial.set_user_attr("macs", 1_000)
        for step in range(3):
            trial.report(0.5, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return 0.5

    study = optuna.create_study(direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.BruteForceSampler())
    study.optimize(objective)
    states = {t.params["ram"]: t.state.name for t in study.trials}
    assert states == {10_000: "COMPLETE", 20_000: "COMPLETE", 30_000: "PRUNED"}
    assert [pruner.over_budget(t) for t in sorted(study.trials, key=lambda t: t.params["ram"])] \
        == [False, False, True]


def test_same_network_is_trained_once(motions):
    # (k, 3) and (k, 4) can be the same network for short inputs; revisits reuse results.
    x = motions.x_train[:, :8, :]  # length 8: at most 3 cells
    objective = tt.TinyTNASObjective((x, motions.y_train), budget=PAPER_BUDGET, epochs=1, seed=0)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"k": 4, "c": 3})
    study.enqueue_trial({"k": 4, "c": 4})
    study.optimize(objective, n_trials=2)
    first, second = study.trials
    assert second.user_attrs["reused_from"] == first.number
    assert second.value == first.value and second.user_attrs["epochs_trained"] == 0


def test_bad_input_is_refused(motions):
    with pytest.raises(ValueError, match="metric"):
        tt.TinyTNASObjective((motions.x_train, motions.y_train), budget=PAPER_BUDGET,
                             metric="f1")
    with pytest.raises(ValueError, match="timeout"):
        tt.TinyTNASObjective((motions.x_train, motions.y_train), budget=PAPER_BUDGET,
                             timeout=0)
    tiny = tt.HardwareBudget(ram="2KB", flash="64KB", macs="60K")
    with pytest.raises(ValueError, match=r"no architecture fits.*smallest.*ram \d"):
        tt.TinyTNASObjective((motions.x_train, motions.y_train), budget=tiny)


def test_the_final_reserve_before_and_after_a_candidate_is_trained(motions):
    from tinytnas_optuna._trial import STEP_SECONDS

    objective = tt.TinyTNASObjective((motions.x_train, motions.y_train), budget=PAPER_BUDGET,
                                     timeout=40)
    # Nothing trained: only exporting the first candidate's network is kept back (seconds),
    # so a slow start does not cut the first training.
    assert 0 < objective.final_reserve([]) < 0.25 * 40
    trained = optuna.trial.create_trial(value=0.9, user_attrs={STEP_SECONDS: 0.02})
    # Then the final training's estimate, within 10..50 % of the bound.
    assert 0.1 * 40 <= objective.final_reserve([trained]) <= 0.5 * 40
    assert objective.final_reserve([trained]) > objective.final_reserve([])


def test_the_final_reserve_counts_the_restarts_trained_side_by_side(motions):
    from tinytnas_optuna._trial import STEP_SECONDS

    objective = tt.TinyTNASObjective((motions.x_train, motions.y_train), budget=PAPER_BUDGET,
                                     timeout=1200)  # neither 10 % nor 50 % of it binds here
    trained = optuna.trial.create_trial(value=0.9, user_attrs={STEP_SECONDS: 0.05})
    alone = objective.final_reserve([trained])
    objective.jobs = 2  # restarts 1 and 2 side by side, then restart 3: two rounds of three
    side_by_side = objective.final_reserve([trained])
    assert 120 < side_by_side < 0.8 * alone < 0.8 * 600
