"""Small specs and random batches for the model tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from mgoe.models.spec import ModelSpec

TASKS = ["click", "cart", "buy"]


def build_spec(tasks: list[str] | None = None, num_user_macro: int = 6,
               num_item_macro: int = 7, graphs: bool = True) -> ModelSpec:
    tasks = list(tasks or TASKS)
    return ModelSpec(
        num_users=40, num_items=50, tasks=tasks, user_feature_sizes=[3, 4],
        item_feature_sizes=[5], context_feature_sizes=[2],
        num_user_macro=num_user_macro, num_item_macro=num_item_macro,
        graphs=["merged", *tasks] if graphs else [],
    )


def random_batch(spec: ModelSpec, size: int = 16, seed: int = 0,
                 zero_fraction: float = 0.5) -> dict[str, torch.Tensor]:
    """A batch following the contract in mgoe.models.spec, with many zero counts."""
    g = torch.Generator().manual_seed(seed)
    graphs = max(len(spec.graphs), 1)

    def counts(k: int) -> torch.Tensor:
        values = torch.rand(size, graphs, k, generator=g) * 5
        return torch.where(torch.rand(size, graphs, k, generator=g) < zero_fraction,
                           torch.zeros(()), values.round())

    def codes(sizes: list[int]) -> torch.Tensor:
        if not sizes:
            return torch.zeros(size, 0, dtype=torch.long)
        return torch.stack([torch.randint(0, v, (size,), generator=g) for v in sizes], dim=1)

    ku, ki = spec.num_user_macro, spec.num_item_macro
    return {
        "user": torch.randint(0, spec.num_users, (size,), generator=g),
        "item": torch.randint(0, spec.num_items, (size,), generator=g),
        "user_features": codes(spec.user_feature_sizes),
        "item_features": codes(spec.item_feature_sizes),
        "context_features": codes(spec.context_feature_sizes),
        "user_macro": torch.randint(0, ku, (size,), generator=g),
        "item_macro": torch.randint(0, ki, (size,), generator=g),
        "user_first": counts(ki),
        "user_second": counts(ku),
        "item_first": counts(ku),
        "item_second": counts(ki),
        "labels": torch.randint(0, 2, (size, spec.num_tasks), generator=g).float(),
    }


@pytest.fixture
def spec() -> ModelSpec:
    return build_spec()


@pytest.fixture
def make_batch() -> Callable[..., dict[str, torch.Tensor]]:
    return random_batch


@pytest.fixture
def make_spec() -> Callable[..., ModelSpec]:
    return build_spec
