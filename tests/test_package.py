"""The public surface: every exported name resolves, and importing stays light."""

from __future__ import annotations

import subprocess
import sys

import tinytnas_optuna


def test_every_public_name_resolves():
    assert sorted(tinytnas_optuna.__all__) == sorted(tinytnas_optuna._EXPORTS)
    for name in tinytnas_optuna.__all__:
        assert getattr(tinytnas_optuna, name) is not None


def test_import_does_not_load_tensorflow_or_optuna():
    code = ("import sys, tinytnas_optuna; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'optuna', 'tflite_micro') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
