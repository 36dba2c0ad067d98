"""The input pipeline: deterministic batches, mid-epoch skip, leakage-free training features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mgoe.data.prepare import PrepareOptions, RawDataset, prepare_dataset
from mgoe.graph.build import GraphConfig, build_graph
from mgoe.train.inputs import BatchSource


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({
        "user_id": [f"u{v}" for v in rng.integers(0, 40, n)],
        "item_id": [f"i{v}" for v in rng.integers(0, 30, n)],
    })
    first = rng.random(n) < 0.6
    frame["click"] = first.astype(int)
    frame["buy"] = (first & (rng.random(n) < 0.4)).astype(int)
    raw = RawDataset(name="toy", interactions=frame, tasks=["click", "buy"], negatives="sampled")
    prepare_dataset(raw, tmp / "data", PrepareOptions(split="random", negatives_per_positive=2))
    build_graph(tmp / "data", tmp / "graph", GraphConfig(user_clusters=4, item_clusters=3))
    return BatchSource.open(tmp / "data", tmp / "graph")


def _concat(batches):
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def test_batches_deterministic_and_cover_split(source):
    a = _concat(list(source.batches("train", 64, shuffle=True, seed=3)))
    b = _concat(list(source.batches("train", 64, shuffle=True, seed=3)))
    c = _concat(list(source.batches("train", 64, shuffle=True, seed=4)))
    for k in a:
        assert torch.equal(a[k], b[k])
    assert not torch.equal(a["user"], c["user"])
    assert len(a["user"]) == source.num_rows("train")
    # same multiset of rows whatever the shuffle
    pairs_a = sorted(zip(a["user"].tolist(), a["item"].tolist(), strict=True))
    pairs_c = sorted(zip(c["user"].tolist(), c["item"].tolist(), strict=True))
    assert pairs_a == pairs_c


def test_start_skips_exactly(source):
    full = list(source.batches("train", 50, shuffle=True, seed=1))
    rest = list(source.batches("train", 50, shuffle=True, seed=1, start=3))
    assert len(rest) == len(full) - 3
    for x, y in zip(full[3:], rest, strict=True):
        assert torch.equal(x["user"], y["user"]) and torch.equal(x["user_first"], y["user_first"])


def test_training_features_never_see_own_edge(source):
    """Removing a training sample's edge from the graph leaves its (LOO) features unchanged."""
    batch = next(source.batches("train", 10_000, shuffle=False))
    table = source.table
    users, items = batch["user"].numpy(), batch["item"].numpy()
    own = table.edges.lookup(users, items).any(axis=1)
    assert own.any() and (~own).any()  # positives (own edge) and sampled negatives
    no_loo = table.lookup(users, items, leave_one_out=False)
    for kind in ("user_first", "item_first"):
        # with its own edge the full first-order mass is larger exactly by the edge weights
        diff = no_loo[kind].sum(axis=2) - batch[kind].numpy().sum(axis=2)
        np.testing.assert_allclose(diff[own], table.edges.lookup(users, items)[own], atol=1e-4)
    # negatives (no own edge) lose one random edge per node instead (balanced leave-one-out):
    # a positive and a negative of the same user miss the same number of edges
    for kind in ("user_first", "item_first"):
        lost = (no_loo[kind][:, 1:] - batch[kind].numpy()[:, 1:]).sum(axis=(1, 2))
        has = no_loo[kind][:, 0].sum(axis=1) > 0
        assert (lost[has & ~own] >= 1 - 1e-4).all() and (lost[~has] == 0).all()


def test_eval_splits_are_not_leave_one_out(source):
    batch = next(source.batches("test", 10_000, shuffle=False))
    full = source.table.lookup(batch["user"].numpy(), batch["item"].numpy(), leave_one_out=False)
    np.testing.assert_array_equal(batch["user_first"].numpy(), full["user_first"])
    # test pairs are never history edges (implicit data, per-user split of distinct pairs)
    assert not source.table.edges.lookup(batch["user"].numpy(), batch["item"].numpy()).any()


def test_unknown_ids_fall_back(source):
    batch = next(source.pair_batches(["u1", "nobody"], ["i1", "nothing"]))
    assert batch["user"].tolist()[1] == source.spec.num_users - 1
    assert batch["item"].tolist()[1] == source.spec.num_items - 1
    assert batch["user_macro"][1] == source.spec.num_user_macro - 1
    assert batch["item_macro"][1] == source.spec.num_item_macro - 1
    assert batch["user_first"][1].abs().sum() == 0 and batch["item_second"][1].abs().sum() == 0
    assert batch["user_first"][0].sum() > 0


def test_parts_are_label_mixed_and_batches_shuffle_across_parts(tmp_path):
    """prepare writes rows in random order (sources and negatives arrive in blocks), and a
    cached multi-part split is shuffled globally: no part and no batch holds a single label."""
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame({"user_id": rng.integers(0, 200, n), "item_id": rng.integers(0, 150, n)})
    frame["click"] = 1
    raw = RawDataset(name="blocks", interactions=frame, tasks=["click"], negatives="sampled")
    prepare_dataset(raw, tmp_path / "d", PrepareOptions(split="random", negatives_per_positive=4, part_rows=1000))
    files = sorted((tmp_path / "d" / "train").glob("*.parquet"))
    assert len(files) >= 3
    for path in files:
        rate = pd.read_parquet(path)["click"].mean()
        assert 0.1 < rate < 0.3, (path.name, rate)  # about 1 positive in 5 in every part
    src = BatchSource.open(tmp_path / "d")
    rates = [b["labels"][:, 0].mean().item() for b in src.batches("train", 256, shuffle=True, seed=0)]
    assert sum(len(b["user"]) for b in src.batches("train", 256, shuffle=True, seed=0)) == src.num_rows("train")
    assert min(rates[:-1]) > 0.05 and max(rates[:-1]) < 0.4
