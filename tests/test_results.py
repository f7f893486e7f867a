"""summarize and retrain_best on real data; the int8 accuracy comes from TFLite Micro."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import tinytnas_optuna as tt
from tinytnas_optuna._hardware import tflm_predict
from tinytnas_optuna.datasets import load_dataset

BUDGET = tt.HardwareBudget(ram="20KB", flash="64KB", macs="60K")


def test_retrain_best_reports_tflm_int8_accuracy_and_exports(gunpoint_search, tmp_path):
    data, objective, study = gunpoint_search
    best = tt.summarize(study).best
    report = tt.retrain_best(study, (data.x_train, data.y_train),
                             test=(data.x_test, data.y_test), epochs=5, out_dir=tmp_path,
                             class_names=list(data.class_names))
    assert (report.k, report.c) == (best.k, best.c)
    assert report.evaluated_on == "test"
    model_bytes = (tmp_path / "model.tflite").read_bytes()
    assert report.flash == len(model_bytes)
    assert report.ram <= report.arena_bytes and report.arena_bytes % 16 == 0
    # Recompute the int8 accuracy by running the written model in TFLM: same number.
    mean, std = objective.data.mean, objective.data.std
    x_test = (data.x_test - mean) / std
    pred = tflm_predict(model_bytes, x_test).argmax(axis=1)
    assert report.int8_accuracy == pytest.approx(float(np.mean(pred == data.y_test)))
    assert np.sum(report.confusion_matrix) == len(data.y_test)
    assert np.trace(report.confusion_matrix) == round(report.int8_accuracy * len(data.y_test))
    header = (tmp_path / "tinytnas_model.h").read_text()
    source = (tmp_path / "tinytnas_model.cc").read_text()
    assert f"#define TINYTNAS_MODEL_ARENA_SIZE {report.arena_bytes}" in header
    assert "AddDepthwiseConv2D" in header and "AddFullyConnected" in header
    assert f"tinytnas_model_len = {len(model_bytes)};" in source
    assert source.count("0x") == len(model_bytes)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["int8_accuracy"] == report.int8_accuracy
    assert "int8 in TFLite Micro" in str(report)


def test_summary_lists_everything(gunpoint_search):
    _, _, study = gunpoint_search
    summary = tt.summarize(study)
    # Each list holds the trials whose own records say so (not a partition by construction).
    trials = study.get_trials(deepcopy=False)
    trained = {t.number for t in trials if t.state == TrialState.COMPLETE
               and "reused_from" not in t.user_attrs and t.user_attrs["epochs_trained"] > 0}
    infeasible = {t.number for t in trials if t.user_attrs.get("feasible") is False}
    assert {r.trial for r in summary.trained} == trained
    assert {r.trial for r in summary.infeasible} == infeasible
    assert {r.trial for r in summary.other} == {t.number for t in trials} - trained - infeasible
    assert summary.trained_count == len(trained) > 0
    assert all(t.state == TrialState.PRUNED for t in trials if t.number in infeasible)
    assert summary.path[0] == (4, 3)
    d = summary.to_dict()
    assert d["best"]["value"] == pytest.approx(study.best_value) and isinstance(d["trained"], list)


def test_retrain_without_feasible_candidate_is_refused(tmp_path):
    ds = load_dataset("gunpoint")
    data = (ds.x_train, ds.y_train)
    study = optuna.create_study(direction="maximize")
    with pytest.raises(ValueError, match="not made by a TinyTNAS search"):
        tt.retrain_best(study, data, out_dir=tmp_path)
    # A search whose only candidate was over budget: nothing to retrain.
    objective = tt.TinyTNASObjective(data, budget=tt.HardwareBudget(ram="20KB", flash="64KB",
                                                                   macs="2K"), steps=10)
    study.enqueue_trial({"k": 64, "c": 4})
    study.optimize(objective, n_trials=1)
    assert study.trials[0].user_attrs["feasible"] is False
    with pytest.raises(ValueError, match="no feasible"):
        tt.retrain_best(study, data, out_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_plateau_is_said_and_learning_candidates_are_not(gunpoint_search):
    # 8 steps per candidate: GunPoint's networks have not left the majority rate yet, so the
    # search says their ranking says little. The shared 300-step search learned: no note.
    ds = gunpoint_search[0]
    objective = tt.TinyTNASObjective((ds.x_train, ds.y_train), budget=BUDGET, seed=0, steps=8)
    flat = optuna.create_study(direction="maximize",
                               sampler=tt.TinyTNASSampler(seed=0, refine=False),
                               pruner=optuna.pruners.NopPruner())
    flat.optimize(objective, n_trials=4)
    summary = tt.summarize(flat)
    assert summary.trained_count >= 3 and summary.plateau >= summary.trained_count / 2
    assert summary.ranking_note and "never left the majority rate" in summary.ranking_note
    assert summary.ranking_note in str(summary) and summary.to_dict()["ranking_note"]
    learned = tt.summarize(gunpoint_search[2])
    assert learned.plateau < learned.trained_count / 2 and learned.ranking_note is None
