"""Optuna's own sampler contract tests, applied to TinyTNASSampler."""

from __future__ import annotations

import optuna
import pytest
from optuna.testing.pytest_samplers import BasicSamplerTestCase, SingleOnlySamplerTestCase

from tinytnas_optuna import TinyTNASSampler


class TestTinyTNASSamplerContract(BasicSamplerTestCase, SingleOnlySamplerTestCase):
    """Parameters other than k and c go to the independent sampler; these tests drive those."""

    @pytest.fixture
    def sampler(self):
        return lambda: TinyTNASSampler(seed=0)


def test_minimize_study_is_refused_for_k_and_c():
    study = optuna.create_study(direction="minimize", sampler=TinyTNASSampler())
    with pytest.raises(ValueError, match="maximize"):
        study.optimize(lambda t: t.suggest_int("k", 2, 1024, log=True), n_trials=1, catch=())


def test_enqueued_candidate_is_respected():
    study = optuna.create_study(direction="maximize", sampler=TinyTNASSampler())
    study.enqueue_trial({"k": 16, "c": 1})
    study.optimize(lambda t: t.suggest_int("k", 2, 1024, log=True) + t.suggest_int("c", 0, 4),
                   n_trials=1)
    assert study.trials[0].params == {"k": 16, "c": 1}
