"""``mgoe graph build | info | inspect`` on real data and on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mgoe.cli import main
from mgoe.data.prepare import PrepareOptions, RawDataset, prepare_dataset
from mgoe.graph import build as build_module
from mgoe.graph.build import GraphConfig, build_graph, load_graph

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TMALL = SHARED / "mbgcn-tmall"


@pytest.fixture(scope="module")
def tmall_graph(tmp_path_factory):
    if not TMALL.is_dir():
        pytest.skip(f"real data not found at {TMALL}")
    tmp = tmp_path_factory.mktemp("tmall")
    # Everything in train, no sampled negatives: the history graph is exactly the raw files.
    assert main(["data", "prepare", "tmall", "--input", str(TMALL), "--output", str(tmp / "d"),
                 "--fractions", "1,0,0", "--neg-per-pos", "0"]) == 0
    assert main(["graph", "build", "--data", str(tmp / "d"), "--output", str(tmp / "g"),
                 "--user-clusters", "20", "--item-clusters", "16", "--quiet"]) == 0
    return tmp / "g"


def _raw_tmall() -> dict[str, pd.DataFrame]:
    read = lambda name: pd.read_csv(TMALL / name, sep=" ", header=None, names=["u", "i"])  # noqa: E731
    return {
        "collect": read("collect.txt"),
        "cart": read("cart.txt"),
        "buy": pd.concat([read("buy.txt"), read("validation.txt"), read("test.txt")]),
    }


def test_inspect_tmall_user_matches_raw_files(tmall_graph, capsys):
    raw = _raw_tmall()
    items = pd.read_parquet(tmall_graph / "item_macro.parquet")
    users = pd.read_parquet(tmall_graph / "user_macro.parquet")
    item_macro = dict(zip(items["item_id"].astype(int), items["macro"], strict=True))
    user_macro = dict(zip(users["user_id"].astype(int), users["macro"], strict=True))
    # A user active in all three behaviours.
    candidates = set(raw["cart"]["u"]) & set(raw["collect"]["u"]) & set(raw["buy"]["u"])
    uid = sorted(candidates)[0]
    capsys.readouterr()
    assert main(["graph", "inspect", str(tmall_graph), "--user", str(uid), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["id"] == str(uid) and out["macro_node"] == user_macro[uid]
    for task, pairs in raw.items():
        mine = pairs[pairs["u"] == uid].drop_duplicates()
        want: dict[str, float] = {}
        for i in mine["i"]:
            key = str(item_macro[i])
            want[key] = want.get(key, 0) + 1
        assert out["features"][task]["first_order"] == pytest.approx(want)
        # second order: paths uid -> item -> other user, counted per other user's macro node
        second: dict[str, float] = {}
        others = pairs.drop_duplicates()
        others = others[others["i"].isin(mine["i"]) & (others["u"] != uid)]
        for u2 in others["u"]:
            key = str(user_macro[u2])
            second[key] = second.get(key, 0) + 1
        assert out["features"][task]["second_order"] == pytest.approx(second)


def test_info_reports_coverage(tmall_graph, capsys):
    capsys.readouterr()
    assert main(["graph", "info", str(tmall_graph), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_users"] == 41_738 and info["num_items"] == 11_953
    assert info["num_user_macro"] == 21 and info["num_item_macro"] == 17
    assert sum(info["user_cluster_sizes"]) == 41_738
    # users without any interaction in the raw files are exactly the cold node
    raw = _raw_tmall()
    active = set(pd.concat(raw.values())["u"])
    assert info["user_cluster_sizes"][-1] == 41_738 - len(active)


def _toy(tmp_path: Path, tasks_positive=(True, True)) -> Path:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"user_id": rng.integers(0, 20, n), "item_id": rng.integers(0, 15, n)})
    frame["a"] = int(tasks_positive[0]) * (rng.random(n) < 0.5)
    frame["b"] = int(tasks_positive[1]) * (rng.random(n) < 0.3)
    frame["timestamp"] = np.arange(n)
    raw = RawDataset(name="toy", interactions=frame, tasks=["a", "b"], negatives="real")
    prepare_dataset(raw, tmp_path / "d", PrepareOptions(split="time"))
    return tmp_path / "d"


def test_task_without_positives_is_a_clear_error(tmp_path, capsys):
    data = _toy(tmp_path, (True, False))
    assert main(["graph", "build", "--data", str(data), "--output", str(tmp_path / "g"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mgoe: error:") and "'b' has no positives" in err and "\n" not in err


def test_more_clusters_than_nodes_is_adjusted(tmp_path):
    data = _toy(tmp_path)
    manifest = build_graph(data, tmp_path / "g", GraphConfig(user_clusters=500, item_clusters=500))
    n_active_users = sum(manifest["user_cluster_sizes"][:-1])
    assert manifest["num_user_macro"] - 1 == n_active_users  # one macro node per active user at most


def test_rebuild_skipped_and_killed_build_keeps_previous(tmp_path, monkeypatch):
    data = _toy(tmp_path)
    first = build_graph(data, tmp_path / "g", GraphConfig(user_clusters=3, item_clusters=3))
    assert not first["skipped"]
    assert build_graph(data, tmp_path / "g", GraphConfig(user_clusters=3, item_clusters=3))["skipped"]
    before = (tmp_path / "g" / "manifest.json").read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_module, "normalise_rows", killed)
    with pytest.raises(KeyboardInterrupt):
        build_graph(data, tmp_path / "g", GraphConfig(user_clusters=4, item_clusters=3))
    assert (tmp_path / "g" / "manifest.json").read_text() == before
    load_graph(tmp_path / "g")  # still complete and loadable
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".g")] == []


def test_missing_or_incomplete_inputs(tmp_path, capsys):
    assert main(["graph", "build", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "g")]) == 2
    assert "no such dataset directory" in capsys.readouterr().err
    data = _toy(tmp_path)
    (data / "_COMPLETE").unlink()
    assert main(["graph", "build", "--data", str(data), "--output", str(tmp_path / "g")]) == 2
    assert "incomplete dataset directory" in capsys.readouterr().err
    assert main(["graph", "info", str(tmp_path / "missing")]) == 2


def test_group_by_item_column(tmp_path):
    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame({"user_id": rng.integers(0, 25, n), "item_id": rng.integers(0, 12, n)})
    frame["watch"] = 1
    genres = pd.DataFrame({"item_id": np.arange(12), "genre": np.array(["drama", "comedy", "noir"])[np.arange(12) % 3]})
    raw = RawDataset(name="g", interactions=frame, tasks=["watch"], negatives="sampled", item_features=genres)
    prepare_dataset(raw, tmp_path / "d", PrepareOptions(split="random"))
    manifest = build_graph(tmp_path / "d", tmp_path / "g", GraphConfig(item_group_column="genre"))
    assert manifest["num_item_macro"] == 4  # three genres + cold
    assign = pd.read_parquet(tmp_path / "g" / "item_macro.parquet")
    items = pd.read_parquet(tmp_path / "d" / "items.parquet")
    # macro node = genre code - 1 (codes are 1..V in sorted order: comedy, drama, noir)
    np.testing.assert_array_equal(assign["macro"].to_numpy(), items["genre"].to_numpy() - 1)
