"""Trainings that learn: steps not epochs, cross-validation on small sets, the final recipe's
int8 check and time bound, and the chance verdict (real data, real TensorFlow and TFLM)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

import tinytnas_optuna as tt
from tinytnas_optuna._training import SEARCH_STEPS, final_schedule, search_schedule
from tinytnas_optuna._validation import clearly_above, prepare_data
from tinytnas_optuna.cli import main
from tinytnas_optuna.datasets import load_dataset

BUDGET = tt.HardwareBudget(ram="20KB", flash="64KB", macs="60K")
CLI_BUDGET = ["--ram", "20KB", "--flash", "64KB", "--macs", "60K"]


@pytest.fixture(scope="module")
def gunpoint():
    return load_dataset("gunpoint")


def value_of(objective: tt.TinyTNASObjective, k: int, c: int) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.enqueue_trial({"k": k, "c": c})
    study.optimize(objective, n_trials=1)
    return study.trials[0]


def test_small_set_that_stayed_at_chance_now_learns(gunpoint):
    # GunPoint (50 series): the old recipe's 5 epochs are a handful of steps and stay at the
    # majority rate; the default (steps, warm-up + cosine, 3-fold CV) learns.
    train = (gunpoint.x_train, gunpoint.y_train)
    old = tt.TinyTNASObjective(train, budget=BUDGET, epochs=5, seed=0)
    new = tt.TinyTNASObjective(train, budget=BUDGET, seed=0)
    facts = new.validation_facts()
    assert facts["validation"] == "3-fold" and facts["validation_size"] == 50
    chance, n = facts["chance_rate"], facts["validation_size"]
    before, after = value_of(old, 8, 3), value_of(new, 8, 3)
    assert not clearly_above(before.value, chance, n), before.value
    assert clearly_above(after.value, chance, n) and after.value >= 0.75, after.value
    assert after.user_attrs["steps"] == 3 * SEARCH_STEPS  # every fold trained in full
    assert after.user_attrs["validation"] == "3-fold"
    assert after.user_attrs["epochs_trained"] > 0 and before.user_attrs["epochs_trained"] == 5


def test_epochs_still_override_steps():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 32, 2)).astype(np.float32), np.arange(400) % 2
    objective = tt.TinyTNASObjective((x, y), budget=BUDGET, epochs=3, seed=0)
    data = objective.data  # 400 series: a 15 % hold-out
    assert data.validation == "holdout"
    batch = objective.schedule.batch_size
    assert objective.schedule.steps == -(-3 * len(data.y_train) // batch)
    trial = value_of(objective, 4, 1)
    assert trial.user_attrs["epochs_trained"] == 3
    assert trial.user_attrs["params"]["steps"] == objective.schedule.steps


def test_schedules_are_sized_in_steps():
    assert search_schedule(30).steps == search_schedule(7000).steps == SEARCH_STEPS
    assert final_schedule(60).steps == 3000  # at least 3,000 steps on a tiny set
    assert final_schedule(6258).epochs(6258) == pytest.approx(150, rel=0.01)
    assert search_schedule(10).batch_size <= 10  # never a batch larger than the set


def test_small_set_is_cross_validated_large_set_held_out_given_val_used_as_is(gunpoint):
    x, y = gunpoint.x_train, gunpoint.y_train
    small = prepare_data((x, y), seed=3)
    assert small.validation == "3-fold" and len(small.x_val) == 0
    assert sorted(np.bincount(small.folds)) == [16, 17, 17]
    np.testing.assert_array_equal(small.folds, prepare_data((x, y), seed=3).folds)  # seeded
    given = prepare_data((x, y), (gunpoint.x_test, gunpoint.y_test))
    assert given.validation == "holdout" and len(given.y_val) == len(gunpoint.y_test)


def search(tmp_path: Path, *args: str) -> tuple[int, str]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    code = main(["search", *args, *CLI_BUDGET, "--storage", url, "--study", "s",
                 "--progress", "none"])
    return code, url


def test_shuffled_labels_give_the_chance_warning_and_exit_3(gunpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = rng.permutation(gunpoint.y_train)  # no relation left between series and labels
    np.savez(tmp_path / "shuffled.npz", features=gunpoint.x_train, labels=y)
    # One training in one process and no final model: the verdict is the search's.
    code, url = search(tmp_path, "--train", str(tmp_path / "shuffled.npz"), "--steps", "150",
                       "--trials", "1", "--jobs", "1", "--no-model")
    out, err = capsys.readouterr()
    assert code == 3, err
    # One line for the search's best.
    warning = [line for line in err.splitlines() if "best candidate's" in line
               and "not clearly above" in line]
    assert len(warning) == 1 and "majority class" in warning[0] and "--steps" in warning[0]
    assert len([line for line in err.splitlines() if "not clearly above" in line]) == 1
    assert "not clearly above" in out  # the summary says it too
    code = main(["show", "--storage", url, "--study", "s", "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert code == 0 and shown["above_chance"] is False and shown["warning"]
    assert shown["chance_rate"] == pytest.approx(np.bincount(y).max() / len(y))


@pytest.mark.full  # the default tier: test_final_model.py's one-command bound
def test_retrain_holds_its_time_bound_and_reports_the_int8_check(tmp_path, capsys):
    # ECG5000's 500 series: a hold-out, so the int8 model is checked on validation.
    code, url = search(tmp_path, "--dataset", "ecg5000", "--steps", "200", "--trials", "2",
                       "--no-model")
    assert code == 0, capsys.readouterr().err
    out_dir = tmp_path / "best"
    start = time.monotonic()
    code = main(["retrain", "--storage", url, "--study", "s", "--out", str(out_dir),
                 "--timeout", "25s"])
    seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    assert code == 0, err
    assert seconds < 25 + 15, seconds  # generous margin: the bound, export included
    report = json.loads((out_dir / "report.json").read_text())
    assert (out_dir / "model.tflite").stat().st_size == report["flash"]
    q = report["quantization"]
    assert q["checked_on"] == "val" and report["validation"] == "holdout"
    assert report["val_float_accuracy"] == q["float"] and report["val_int8_accuracy"] == q["int8"]
    assert q["loss_points"] == pytest.approx(100 * (q["float"] - q["int8"]), abs=0.01)
    assert q["action"]
    assert report["above_chance"] is True and report["warning"] is None
    assert report["int8_accuracy"] > report["majority_rate"] + 0.2
    assert "On validation: float" in out


def test_batch_norm_is_folded_into_the_familys_own_network(gunpoint):
    """The final recipe trains with BatchNormalization; what is converted and deployed is the
    family's network: the same operators, RAM, flash and MACs, and the same outputs."""
    import keras

    from tinytnas_optuna._hardware import convert_and_profile
    from tinytnas_optuna._space import family_weights
    from tinytnas_optuna._training import Recipe, train

    data = prepare_data((gunpoint.x_train, gunpoint.y_train), seed=0)
    split = data.splits()[0]
    k, c = 6, 3
    keras.utils.set_random_seed(0)
    trained = tt.build_model(k, c, data.input_shape, data.num_classes, batch_norm=True)
    # Long enough for the moving statistics to leave their initial values (0 and 1).
    train(trained, split, final_schedule(len(split.y_train), steps=300), seed=0,
          recipe=Recipe(batch_norm=True, jitter=0.03, scaling=0.1))
    deployed = tt.build_model(k, c, data.input_shape, data.num_classes)
    deployed.set_weights(family_weights(trained))
    x = data.x_val[:64] if len(data.y_val) else data.x_train[:64]
    assert np.allclose(deployed.predict(x, verbose=0), trained.predict(x, verbose=0), atol=1e-4)
    assert len(trained.layers) > len(deployed.layers)  # the trained one had the extra layers

    # What the search measured for this (k, c) (the architecture, non-zero biases).
    family = tt.profile_architecture(tt.architecture(k, c, data.input_shape, data.num_classes))
    _, folded = convert_and_profile(deployed, data.x_train[:100])
    assert folded.operators == family.operators
    assert "BATCH_NORM" not in " ".join(map(str, folded.operators)).upper()
    assert (folded.ram, folded.flash, folded.macs) == (family.ram, family.flash, family.macs)


def test_a_set_that_plateaus_with_the_plain_recipe_leaves_it_with_the_candidates_default():
    """Fish (175 series, 463 samples, 7 classes): plain trainings of every network stayed at the
    majority rate for about 1,000 steps, so the search ranked noise. The candidates' default
    recipe (batch normalisation, folded at export) leaves the plateau within a search's steps."""
    import keras

    from tinytnas_optuna._training import DEFAULT_RECIPE, Recipe, train
    from tinytnas_optuna._validation import score

    fish = load_dataset("ucr:Fish")
    data = prepare_data((fish.x_train, fish.y_train), seed=0)
    split = data.splits()[0]
    assert DEFAULT_RECIPE.batch_norm
    objective = tt.TinyTNASObjective((fish.x_train, fish.y_train), budget=BUDGET)
    assert objective.recipe == DEFAULT_RECIPE
    chance = max(np.bincount(split.y_val)) / len(split.y_val)
    schedule = search_schedule(len(split.y_train), steps=400)
    best = {}
    for recipe in (Recipe(), DEFAULT_RECIPE):
        keras.utils.set_random_seed(0)
        model = tt.build_model(8, 3, data.input_shape, data.num_classes,
                               batch_norm=recipe.batch_norm)
        result = train(model, split, schedule, seed=0, recipe=recipe)
        best[recipe.batch_norm] = max(score(split.y_val, p, "accuracy", data.num_classes)
                                      for p in result.predictions)
    n = len(split.y_val)
    assert not clearly_above(best[False], chance, n), best
    assert clearly_above(best[True], chance, n) and best[True] >= 2.5 * chance, best
