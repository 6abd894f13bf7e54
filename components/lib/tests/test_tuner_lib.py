"""The shared modules the tuner image's launcher uses import in the tuner env (Katib SDK, no kfp, no pandas).

Run with the tuner virtualenv (the Makefile's test target does): .venv-tuner/bin/python -m pytest FILE
"""

from __future__ import annotations

import importlib
import sys

import pytest

pytestmark = pytest.mark.tuner


@pytest.mark.parametrize("name", ("storage", "specs", "logs"))
def test_imports_without_kfp_pandas_or_minio(name):
    importlib.import_module(f"components.lib.{name}")
    assert not {"kfp", "pandas", "sklearn", "minio"} & set(sys.modules)
