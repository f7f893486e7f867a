"""tinytnas-optuna: TinyTNAS hardware-aware architecture search as Optuna parts.

Public names are imported lazily so that ``import tinytnas_optuna`` does not import TensorFlow or
Optuna until they are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Architecture": "_space",
    "architecture": "_space",
    "build_model": "_space",
    "HardwareBudget": "_budget",
    "InputSpace": "_input",
    "InputSetting": "_input",
    "HardwareProfile": "_hardware",
    "MeasurementError": "_hardware",
    "profile_model": "_hardware",
    "profile_architecture": "_hardware",
    "profile_tflite": "_hardware",
    "run_on_target": "_target",
    "measure_cycles": "_target",
    "Board": "_boards",
    "BOARDS": "_boards",
    "estimate_profile": "_hardware",
    "convert_int8": "_hardware",
    "profile_cache_info": "_hardware",
    "clear_profile_cache": "_hardware",
    "PreparedData": "_validation",
    "Recipe": "_training",
    "CandidateRecord": "_trial",
    "TrainedNetwork": "_networks",
    "TinyTNASSampler": "_sampler",
    "TinyTNASObjective": "_objective",
    "HardwareAwarePruner": "_pruner",
    "summarize": "_results",
    "SearchSummary": "_results",
    "retrain_best": "_retrain",
    "RetrainReport": "_retrain",
    "recover_stale_trials": "_recovery",
    "fail_dead_trials": "_recovery",
    "SearchSpec": "_study",
    "StudyMismatchError": "_study",
    "save_plots": "_plots",
    "plot_accuracy_vs_figures": "_plots",
    "plot_search_path": "_plots",
    "publish_to_dashboard": "_dashboard",
    "TFLiteArtifactUploader": "_dashboard",
    "DashboardCallback": "_dashboard",
    "SearchProgress": "_progress",
    "optimize": "_run",
    "SearchRun": "_run",
}

__all__ = [
    "BOARDS",
    "Architecture",
    "Board",
    "CandidateRecord",
    "DashboardCallback",
    "HardwareAwarePruner",
    "HardwareBudget",
    "HardwareProfile",
    "InputSetting",
    "InputSpace",
    "MeasurementError",
    "PreparedData",
    "Recipe",
    "RetrainReport",
    "SearchProgress",
    "SearchRun",
    "SearchSpec",
    "SearchSummary",
    "StudyMismatchError",
    "TFLiteArtifactUploader",
    "TinyTNASObjective",
    "TinyTNASSampler",
    "TrainedNetwork",
    "architecture",
    "build_model",
    "clear_profile_cache",
    "convert_int8",
    "estimate_profile",
    "fail_dead_trials",
    "measure_cycles",
    "optimize",
    "plot_accuracy_vs_figures",
    "plot_search_path",
    "profile_architecture",
    "profile_cache_info",
    "profile_model",
    "profile_tflite",
    "publish_to_dashboard",
    "recover_stale_trials",
    "retrain_best",
    "run_on_target",
    "save_plots",
    "summarize",
]

if TYPE_CHECKING:
    from tinytnas_optuna._boards import BOARDS, Board
    from tinytnas_optuna._budget import HardwareBudget
    from tinytnas_optuna._dashboard import (
        DashboardCallback,
        TFLiteArtifactUploader,
        publish_to_dashboard,
    )
    from tinytnas_optuna._hardware import (
        HardwareProfile,
        MeasurementError,
        clear_profile_cache,
        convert_int8,
        estimate_profile,
        profile_architecture,
        profile_cache_info,
        profile_model,
        profile_tflite,
    )
    from tinytnas_optuna._input import InputSetting, InputSpace
    from tinytnas_optuna._networks import TrainedNetwork
    from tinytnas_optuna._objective import TinyTNASObjective
    from tinytnas_optuna._plots import plot_accuracy_vs_figures, plot_search_path, save_plots
    from tinytnas_optuna._progress import SearchProgress
    from tinytnas_optuna._pruner import HardwareAwarePruner
    from tinytnas_optuna._recovery import fail_dead_trials, recover_stale_trials
    from tinytnas_optuna._results import SearchSummary, summarize
    from tinytnas_optuna._retrain import RetrainReport, retrain_best
    from tinytnas_optuna._run import SearchRun, optimize
    from tinytnas_optuna._sampler import TinyTNASSampler
    from tinytnas_optuna._space import Architecture, architecture, build_model
    from tinytnas_optuna._study import SearchSpec, StudyMismatchError
    from tinytnas_optuna._target import measure_cycles, run_on_target
    from tinytnas_optuna._training import Recipe
    from tinytnas_optuna._trial import CandidateRecord
    from tinytnas_optuna._validation import PreparedData


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tinytnas_optuna' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"tinytnas_optuna.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
