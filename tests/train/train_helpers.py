"""Helpers of the trainer tests: a learnable synthetic multi-task source (in memory, small,
fast), a fast config and a source wrapper that records which splits are read."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mgoe.train.config import TrainConfig
from mgoe.train.sources import TensorBatchSource

TASKS = ["click", "buy"]


def make_source(seed: int = 0, users: int = 120, items: int = 90, communities: int = 4,
                rows: tuple[int, int, int] = (3000, 800, 800), macro: bool = False) -> TensorBatchSource:
    """Users and items in planted communities; a pair in the same community clicks (and buys)
    far more often, so the side feature "community" makes both tasks learnable.

    With ``macro=True`` every node also gets macro counts peaked at its community (KU = KI =
    communities + 1 cold node), for the macro models.
    """
    rng = np.random.default_rng(seed)
    user_comm = rng.integers(1, communities + 1, users)
    item_comm = rng.integers(1, communities + 1, items)

    def split(n: int) -> dict[str, np.ndarray]:
        u = rng.integers(0, users, n)
        i = rng.integers(0, items, n)
        match = user_comm[u] == item_comm[i]
        click = rng.random(n) < np.where(match, 0.7, 0.15)
        buy = click & (rng.random(n) < np.where(match, 0.6, 0.2))
        return {"user": u, "item": i, "labels": np.stack([click, buy], 1).astype(np.float32)}

    user_table: dict[str, np.ndarray] = {"user_features": user_comm[:, None]}
    item_table: dict[str, np.ndarray] = {"item_features": item_comm[:, None]}
    if macro:
        k = communities + 1
        graphs = 1 + len(TASKS)

        def counts(comm: np.ndarray) -> np.ndarray:
            rate = np.full((len(comm), graphs, k), 0.4)
            rate[np.arange(len(comm)), :, comm - 1] = 4.0
            rate[:, :, -1] = 0.0
            return rng.poisson(rate).astype(np.float32)

        user_table.update(user_macro=user_comm - 1, user_first=counts(user_comm),
                          user_second=counts(user_comm))
        item_table.update(item_macro=item_comm - 1, item_first=counts(item_comm),
                          item_second=counts(item_comm))
    return TensorBatchSource.from_arrays(
        {"train": split(rows[0]), "valid": split(rows[1]), "test": split(rows[2])},
        tasks=TASKS, user_table=user_table, item_table=item_table,
        user_ids=[f"u{v}" for v in range(users)], item_ids=[f"i{v}" for v in range(items)],
    )


def small_config(**changes) -> TrainConfig:
    """A fast config: one thread (the test machine is shared), small batches, few epochs."""
    values = {"model": "mmoe", "batch_size": 128, "epochs": 3, "lr": 1e-2, "num_threads": 1,
              "log_every": 0, "checkpoint_every_minutes": 0.0, "patience": 0,
              "model_config": {"embedding_dim": 8}}
    values.update(changes)
    return TrainConfig.from_dict(values)


class RecordingSource:
    """Wraps a source and records which split every ``batches`` call reads."""

    def __init__(self, inner: TensorBatchSource) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.tasks = inner.tasks
        self.data_dir = None
        self.graph_dir = None
        self.kind = "tensor"
        self.calls: list[str] = []

    def num_rows(self, split: str) -> int:
        return self.inner.num_rows(split)

    def batches(self, split: str, batch_size: int, *, shuffle: bool, seed: int = 0,
                start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        self.calls.append(split)
        return self.inner.batches(split, batch_size, shuffle=shuffle, seed=seed, start=start)
