"""Shared fixtures. The PARAREL data comes from KN_DATA_DIR (the Makefile sets it to a local copy when there is one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Tests never download: the hub is off, the data local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if not os.environ.get("KN_DATA_DIR") and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["KN_DATA_DIR"] = str(ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    value = os.environ.get("KN_DATA_DIR")
    if not value:
        pytest.fail("KN_DATA_DIR is not set: point it at a folder with the PARAREL data")
    return Path(value)


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2-135M, loaded once (float32, CPU)."""
    from kn.core.models import load_model

    return load_model("smollm2-135m")
