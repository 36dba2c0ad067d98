"""Splits and negative sampling against brute-force checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mgoe.cli import main
from mgoe.data import prepare as prepare_module
from mgoe.data.prepare import PrepareOptions, RawDataset, prepare_dataset
from mgoe.data.schema import Dataset
from mgoe.data.splits import pair_keys, per_user_random_split, sample_negatives, time_split
from mgoe.errors import IncompleteDirectoryError, MgoeError


def test_time_split_orders_windows_and_keeps_ties_together():
    rng = np.random.default_rng(0)
    ts = rng.integers(0, 50, 2000)  # many ties
    codes = time_split(ts)
    for earlier, later in ((0, 1), (1, 2), (0, 2)):
        if (codes == earlier).any() and (codes == later).any():
            assert ts[codes == earlier].max() < ts[codes == later].min()
    # brute force: a row is train iff its time is <= the 80% quantile (lower)
    q80 = np.sort(ts)[int(np.floor(0.8 * (len(ts) - 1)))]
    np.testing.assert_array_equal(codes == 0, ts <= q80)
    assert 0.7 < (codes == 0).mean() < 0.9


def test_per_user_random_split_brute():
    rng = np.random.default_rng(1)
    users = rng.integers(0, 60, 1500)
    codes = per_user_random_split(users, seed=7)
    np.testing.assert_array_equal(codes, per_user_random_split(users, seed=7))
    assert not np.array_equal(codes, per_user_random_split(users, seed=8))
    for u in np.unique(users):
        c = codes[users == u]
        n = len(c)
        if n < 3:
            assert (c == 0).all()
            continue
        n_test = max(round(n * 0.1), 1)
        n_valid = max(round(n * 0.1), 1)
        assert (c == 2).sum() == n_test and (c == 1).sum() == n_valid and (c == 0).sum() == n - n_test - n_valid


@pytest.mark.parametrize("method", ["uniform", "popularity"])
def test_negatives_never_positive(method):
    rng = np.random.default_rng(2)
    n_users, n_items = 50, 40
    users = rng.integers(0, n_users, 800)
    items = rng.integers(0, n_items, 800)
    exclude = np.unique(pair_keys(users, items, n_items))
    pop = np.bincount(items, minlength=n_items)
    neg_u, neg_i, src = sample_negatives(users, n_items, 3, exclude, method=method, item_popularity=pop, seed=0)
    assert len(neg_u) == 3 * len(users)  # nobody saturates 40 items here
    np.testing.assert_array_equal(neg_u, users[src])
    positives = set(zip(users.tolist(), items.tolist(), strict=True))
    assert not any((u, i) in positives for u, i in zip(neg_u.tolist(), neg_i.tolist(), strict=True))


def test_popularity_sampling_follows_popularity():
    n_items = 10
    pop = np.array([100, 50, 25, 12, 6, 3, 2, 1, 1, 0])
    users = np.arange(20000)
    _, items, _ = sample_negatives(users, n_items, 1, np.zeros(0, np.int64), "popularity", pop, seed=3)
    freq = np.bincount(items, minlength=n_items) / len(items)
    np.testing.assert_allclose(freq, pop / pop.sum(), atol=0.01)
    assert freq[-1] == 0


def _raw(**kw) -> RawDataset:
    frame = pd.DataFrame({
        "user_id": ["a", "a", "a", "b", "b", "c", "a"],
        "item_id": ["x", "y", "z", "x", "y", "z", "x"],
        "click": [1, 1, 0, 1, 0, 1, 1],
        "buy": [0, 1, 0, 0, 0, 1, 1],
    })
    return RawDataset(name="toy", interactions=frame, tasks=["click", "buy"], negatives="sampled", **kw)


def test_prepare_dedupes_implicit_pairs_and_samples_negatives(tmp_path):
    meta = prepare_dataset(_raw(), tmp_path / "d", PrepareOptions(split="random", negatives_per_positive=1))
    ds = Dataset.open(tmp_path / "d")
    rows = pd.concat([ds.read_split(s) for s in ("train", "valid", "test")])
    users, items = ds.user_ids(), ds.item_ids()
    labelled = rows[rows[["click", "buy"]].sum(axis=1) > 0]
    got = {(users[u], items[i]): (c, b) for u, i, c, b in labelled[["user", "item", "click", "buy"]].itertuples(index=False)}
    # (a, x) appears twice: labels OR-ed; (a, z) has no positive: dropped as a sample
    assert got == {("a", "x"): (1, 1), ("a", "y"): (1, 1), ("b", "x"): (1, 0), ("c", "z"): (1, 1)}
    assert meta.splits["train"].positives["click"] + meta.splits["valid"].positives["click"] + meta.splits["test"].positives["click"] == 4
    negatives = rows[rows[["click", "buy"]].sum(axis=1) == 0]
    assert len(negatives) <= 4
    for u, i in negatives[["user", "item"]].itertuples(index=False):
        assert (users[u], items[i]) not in got


def test_prepare_is_atomic(tmp_path, monkeypatch):
    prepare_dataset(_raw(), tmp_path / "d", PrepareOptions(split="random"))
    before = (tmp_path / "d" / "meta.json").read_text()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "write_split", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(_raw(), tmp_path / "d", PrepareOptions(split="random", seed=5))
    assert (tmp_path / "d" / "meta.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_info_refuses_incomplete_directory(tmp_path, capsys):
    prepare_dataset(_raw(), tmp_path / "d")
    (tmp_path / "d" / "_COMPLETE").unlink()
    with pytest.raises(IncompleteDirectoryError):
        Dataset.open(tmp_path / "d")
    assert main(["data", "info", str(tmp_path / "d")]) == 2
    assert "incomplete dataset directory" in capsys.readouterr().err


def test_info_json_format(tmp_path, capsys):
    prepare_dataset(_raw(), tmp_path / "d", PrepareOptions(split="random", negatives_per_positive=0))
    capsys.readouterr()
    assert main(["data", "info", str(tmp_path / "d"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["users"] == 3 and info["items"] == 3 and info["tasks"] == ["click", "buy"]
    assert set(info["splits"]) == {"train", "valid", "test"}
    assert sum(s["rows"] for s in info["splits"].values()) == 4
    assert sum(s["positives"]["buy"] for s in info["splits"].values()) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(click=[1, 2, 0, 1, 0, 1, 1]), "task column 'click' must be 0/1, found 2 (row 1)"),
        (lambda f: f.assign(user_id=["a", None, "a", "b", "b", "c", "a"]), "column 'user_id' has a missing id (row 1)"),
        (lambda f: f.iloc[:0], "no interactions (empty input)"),
        (lambda f: f.drop(columns=["buy"]), "missing column(s) buy"),
    ],
)
def test_bad_input_messages(tmp_path, change, message):
    raw = _raw()
    raw.interactions = change(raw.interactions)
    with pytest.raises(MgoeError) as err:
        prepare_dataset(raw, tmp_path / "d")
    assert message in str(err.value)
    assert not (tmp_path / "d").exists()


def test_reserved_feature_name_rejected(tmp_path):
    raw = _raw(context_features=["user"])
    raw.interactions["user"] = 1
    with pytest.raises(MgoeError, match="reserved"):
        prepare_dataset(raw, tmp_path / "d")
