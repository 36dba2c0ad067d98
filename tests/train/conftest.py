"""Fixtures of the trainer tests (helpers live in train_helpers.py)."""

from __future__ import annotations

import pytest
from train_helpers import make_source

from mgoe.train.sources import TensorBatchSource


@pytest.fixture(scope="session")
def source() -> TensorBatchSource:
    return make_source()


@pytest.fixture(scope="session")
def macro_source() -> TensorBatchSource:
    return make_source(seed=1, macro=True)
