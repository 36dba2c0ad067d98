"""Every macro feature against a brute-force nested-loop computation on small random graphs."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mgoe.data.prepare import PrepareOptions, RawDataset, prepare_dataset
from mgoe.graph.build import GraphConfig, build_graph, load_graph
from mgoe.graph.features import (
    HistoryEdges,
    MacroFeatureTable,
    graph_features,
    stack_graphs,
)
from mgoe.graph.merge import boxcox_score, merge_scores, rank_table


def brute_features(adj: np.ndarray, cu: np.ndarray, ci: np.ndarray, ku: int, ki: int):
    """Nested loops straight from the definitions in METHOD.md §4."""
    n_users, n_items = adj.shape
    uf = np.zeros((n_users, ki))
    us = np.zeros((n_users, ku))
    itf = np.zeros((n_items, ku))
    its = np.zeros((n_items, ki))
    for u in range(n_users):
        for i in range(n_items):
            uf[u, ci[i]] += adj[u, i]
            itf[i, cu[u]] += adj[u, i]
            for u2 in range(n_users):
                if u2 != u:
                    us[u, cu[u2]] += adj[u, i] * adj[u2, i]
            for i2 in range(n_items):
                if i2 != i:
                    its[i, ci[i2]] += adj[u, i] * adj[u, i2]
    return {"user_first": uf, "user_second": us, "item_first": itf, "item_second": its}


def brute_merge_score(labels: np.ndarray, beta: float) -> np.ndarray:
    out = []
    for row in labels:
        rank = sum(2**t for t in range(len(row)) if row[t] == 1)  # deepest task = highest bit
        r = rank + 1
        out.append(np.log(r) if beta == 0 else (r**beta - 1) / beta)
    return np.array(out)


def random_case(seed: int, n_users=7, n_items=6, n_tasks=2, density=0.45):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n_users, n_items, n_tasks)) < density).astype(np.int64)
    ku, ki = 3, 3
    cu = rng.integers(0, ku, n_users)
    ci = rng.integers(0, ki, n_items)
    return labels, cu, ci, ku, ki


def graphs_of(labels: np.ndarray, beta: float) -> list[np.ndarray]:
    n_users, n_items, n_tasks = labels.shape
    merged = brute_merge_score(labels.reshape(-1, n_tasks), beta).reshape(n_users, n_items)
    return [merged] + [labels[:, :, t].astype(float) for t in range(n_tasks)]


@pytest.mark.parametrize("beta", [0.5, 0.0, 1.0])
def test_merge_scores_brute(beta):
    labels = np.array(list(itertools.product([0, 1], repeat=3)))
    got = merge_scores(labels, ["click", "like", "follow"], beta=beta)
    np.testing.assert_allclose(got, brute_merge_score(labels, beta), rtol=1e-6)
    # A combination with a deeper task outranks every combination without it.
    ranks = rank_table(["click", "like", "follow"])
    assert ranks[0b100] > ranks[0b011]


def test_explicit_ranking_table():
    tasks = ["cart", "buy"]
    table = rank_table(tasks, {"cart": 1, "cart+buy": 2, "buy": 3})
    assert table.tolist() == [0, 1, 3, 2]
    np.testing.assert_allclose(boxcox_score(table, 0.5), [0.0, (2**0.5 - 1) / 0.5, (4**0.5 - 1) / 0.5, (3**0.5 - 1) / 0.5])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_graph_features_brute(seed):
    labels, cu, ci, ku, ki = random_case(seed)
    for adj in graphs_of(labels, 0.5):
        got = graph_features(sp.csr_matrix(adj), cu, ci, ku, ki)
        want = brute_features(adj, cu, ci, ku, ki)
        for kind in want:
            np.testing.assert_allclose(got[kind].toarray(), want[kind], atol=1e-9, err_msg=kind)


def _table(labels, cu, ci, ku, ki, beta=0.5) -> MacroFeatureTable:
    n_users, n_items, n_tasks = labels.shape
    adjs = graphs_of(labels, beta)
    per_kind = {k: [] for k in ("user_first", "user_second", "item_first", "item_second")}
    for adj in adjs:
        for k, m in graph_features(sp.csr_matrix(adj), cu, ci, ku, ki).items():
            per_kind[k].append(m)
    u, i = np.nonzero(labels.any(axis=2))
    keys = u * n_items + i
    weights = np.stack([adj[u, i] for adj in adjs], axis=1).astype(np.float32)
    return MacroFeatureTable(
        graphs=["merged"] + [f"t{t}" for t in range(n_tasks)],
        user_macro=cu.astype(np.int32),
        item_macro=ci.astype(np.int32),
        num_user_macro=ku,
        num_item_macro=ki,
        stacked={k: stack_graphs(v) for k, v in per_kind.items()},
        edges=HistoryEdges(keys, weights, n_items),
    )


@pytest.mark.parametrize("seed", [0, 3])
def test_lookup_without_leave_one_out_brute(seed):
    labels, cu, ci, ku, ki = random_case(seed)
    table = _table(labels, cu, ci, ku, ki)
    adjs = graphs_of(labels, 0.5)
    users, items = np.meshgrid(np.arange(labels.shape[0]), np.arange(labels.shape[1]), indexing="ij")
    got = table.lookup(users.ravel(), items.ravel(), leave_one_out=False)
    for g, adj in enumerate(adjs):
        want = brute_features(adj, cu, ci, ku, ki)
        for b, (u, i) in enumerate(zip(users.ravel(), items.ravel(), strict=True)):
            np.testing.assert_allclose(got["user_first"][b, g], want["user_first"][u], atol=1e-5)
            np.testing.assert_allclose(got["user_second"][b, g], want["user_second"][u], atol=1e-5)
            np.testing.assert_allclose(got["item_first"][b, g], want["item_first"][i], atol=1e-5)
            np.testing.assert_allclose(got["item_second"][b, g], want["item_second"][i], atol=1e-5)
    assert (got["user_macro"] == cu[users.ravel()]).all()
    assert (got["item_macro"] == ci[items.ravel()]).all()


def without_lost_edges(labels, u, i, got, b):
    """The graph a LOO sample sees: without its own edge, or (balanced) without the random
    user edge and item edge the lookup reports having removed."""
    removed = labels.copy()
    if labels[u, i].any():
        removed[u, i, :] = 0
        assert got["removed_user_edge_item"][b] == i and got["removed_item_edge_user"][b] == u
        return removed
    j, v = got["removed_user_edge_item"][b], got["removed_item_edge_user"][b]
    assert (j >= 0) == labels[u].any() and (v >= 0) == labels[:, i].any()
    if j >= 0:
        assert labels[u, j].any()
        removed[u, j, :] = 0
    if v >= 0:
        assert labels[v, i].any()
        removed[v, i, :] = 0
    return removed


@pytest.mark.parametrize("seed", [0, 4, 5])
def test_leave_one_out_brute(seed):
    """LOO lookup == features recomputed from scratch on the graph without the lost edges: the
    sample's own edge, or for a non-edge (balanced LOO) one random edge of each of its nodes."""
    labels, cu, ci, ku, ki = random_case(seed)
    table = _table(labels, cu, ci, ku, ki)
    n_users, n_items, _ = labels.shape
    users, items = np.meshgrid(np.arange(n_users), np.arange(n_items), indexing="ij")
    users, items = users.ravel(), items.ravel()
    got = table.lookup(users, items, leave_one_out=True, draws=np.random.default_rng(seed).random((len(users), 2)), return_removed=True)
    assert (got["removed_user_edge_item"] >= 0).sum() > (labels.any(axis=2)).sum()  # non-edges lose one too
    for b, (u, i) in enumerate(zip(users, items, strict=True)):
        removed = without_lost_edges(labels, u, i, got, b)
        for g, adj in enumerate(graphs_of(removed, 0.5)):
            want = brute_features(adj, cu, ci, ku, ki)
            np.testing.assert_allclose(got["user_first"][b, g], want["user_first"][u], atol=1e-5)
            np.testing.assert_allclose(got["user_second"][b, g], want["user_second"][u], atol=1e-5)
            np.testing.assert_allclose(got["item_first"][b, g], want["item_first"][i], atol=1e-5)
            np.testing.assert_allclose(got["item_second"][b, g], want["item_second"][i], atol=1e-5)


def test_plain_leave_one_out_leaves_non_edges_alone():
    labels, cu, ci, ku, ki = random_case(7)
    table = _table(labels, cu, ci, ku, ki)
    table.balanced = False
    u, i = np.nonzero(~labels.any(axis=2))
    loo = table.lookup(u, i, True)
    full = table.lookup(u, i, False)
    for kind in ("user_first", "user_second", "item_first", "item_second"):
        np.testing.assert_array_equal(loo[kind], full[kind])


def test_balanced_leave_one_out_removes_one_unit_of_mass():
    """Every training sample sees its user and item with exactly one edge fewer (0/1 task
    graphs): the missing mass no longer tells positives from negatives."""
    labels, cu, ci, ku, ki = random_case(8, n_users=12, n_items=10)
    table = _table(labels, cu, ci, ku, ki)
    u, i = np.meshgrid(np.arange(12), np.arange(10), indexing="ij")
    u, i = u.ravel(), i.ravel()
    loo = table.lookup(u, i, True, draws=np.random.default_rng(0).random((len(u), 2)))
    full = table.lookup(u, i, False)
    for g in (1, 2):  # task graphs
        task = labels[:, :, g - 1]
        user_deg, item_deg = task.sum(axis=1)[u], task.sum(axis=0)[i]
        lost_u = full["user_first"][:, g].sum(1) - loo["user_first"][:, g].sum(1)
        lost_i = full["item_first"][:, g].sum(1) - loo["item_first"][:, g].sum(1)
        # at most one unit, and exactly one when the drawn edge is in this task's graph
        assert ((lost_u == 0) | (lost_u == 1)).all() and (lost_u <= user_deg).all()
        assert ((lost_i == 0) | (lost_i == 1)).all() and (lost_i <= item_deg).all()
    merged_u = full["user_first"][:, 0].sum(1) - loo["user_first"][:, 0].sum(1)
    has_history = labels.any(axis=2).sum(axis=1)[u] > 0
    assert (merged_u[has_history] > 0).all() and (merged_u[~has_history] == 0).all()


def test_mixed_leave_one_out_flags():
    labels, cu, ci, ku, ki = random_case(6)
    table = _table(labels, cu, ci, ku, ki)
    u, i = np.nonzero(labels.any(axis=2))
    flags = np.arange(len(u)) % 2 == 0
    mixed = table.lookup(u, i, flags)
    full = table.lookup(u, i, False)
    loo = table.lookup(u, i, True)
    for kind in ("user_first", "user_second", "item_first", "item_second"):
        np.testing.assert_array_equal(mixed[kind][flags], loo[kind][flags])
        np.testing.assert_array_equal(mixed[kind][~flags], full[kind][~flags])
        # the sample's own edge is in the full features, so LOO must differ somewhere
    assert not np.array_equal(loo["user_first"], full["user_first"])


def _tiny_dataset(tmp_path, seed=0, n_users=30, n_items=20, n_tasks=2):
    rng = np.random.default_rng(seed)
    n = 400
    frame = pd.DataFrame({
        "user_id": rng.integers(0, n_users, n).astype(str),
        "item_id": rng.integers(0, n_items, n).astype(str),
    })
    first = rng.random(n) < 0.5
    frame["t0"] = first.astype(int)
    frame["t1"] = (first & (rng.random(n) < 0.5)).astype(int)
    frame["timestamp"] = rng.integers(0, 1000, n)
    raw = RawDataset(name="tiny", interactions=frame, tasks=["t0", "t1"], negatives="real")
    prepare_dataset(raw, tmp_path / "data", PrepareOptions(split="time"))
    return tmp_path / "data"


@pytest.mark.parametrize("engine", ["memory", "duckdb"])
def test_built_graph_brute(tmp_path, engine):
    """End to end: build from a dataset, reload, and compare with brute force on the train graph."""
    data = _tiny_dataset(tmp_path)
    build_graph(data, tmp_path / "g", GraphConfig(user_clusters=4, item_clusters=3), engine=engine)
    manifest, table = load_graph(tmp_path / "g")
    train = pd.concat(pd.read_parquet(p) for p in sorted((data / "train").glob("*.parquet")))
    n_users, n_items = manifest["num_users"], manifest["num_items"]
    labels = np.zeros((n_users, n_items, 2), dtype=np.int64)
    for t, name in enumerate(["t0", "t1"]):
        pos = train[train[name] == 1]
        labels[pos["user"], pos["item"], t] = 1
    cu, ci = table.user_macro, table.item_macro
    ku, ki = manifest["num_user_macro"], manifest["num_item_macro"]
    users = train["user"].to_numpy()
    items = train["item"].to_numpy()
    got = table.lookup(users, items, leave_one_out=True, draws=np.random.default_rng(1).random((len(users), 2)), return_removed=True)
    for b in range(0, len(users), 7):
        u, i = users[b], items[b]
        removed = without_lost_edges(labels, u, i, got, b)
        for g, adj in enumerate(graphs_of(removed, 0.5)):
            want = brute_features(adj, cu, ci, ku, ki)
            for kind, node in (("user_first", u), ("user_second", u), ("item_first", i), ("item_second", i)):
                np.testing.assert_allclose(got[kind][b, g], want[kind][node], atol=1e-4, err_msg=kind)


@pytest.mark.parametrize("chunk_rows", [4_000_000, 7], ids=["one-chunk", "7-edge-chunks"])
def test_engines_identical_given_assignments(tmp_path, chunk_rows):
    """Given the same macro assignments, the duckdb and memory engines write the same features
    (the duckdb engine streams the edges; with 7-edge chunks users straddle chunk borders)."""
    from mgoe.data.schema import Dataset
    from mgoe.graph.build import MemoryEngine, _read_stacked
    from mgoe.graph.engine_duckdb import DuckDBEngine

    data = _tiny_dataset(tmp_path, seed=3, n_users=40, n_items=25)
    ds = Dataset.open(data)
    config = GraphConfig(chunk_rows=chunk_rows)
    rng = np.random.default_rng(0)
    ku, ki = 5, 4
    cu = rng.integers(0, ku - 1, ds.meta.num_users).astype(np.int32)
    ci = rng.integers(0, ki - 1, ds.meta.num_items).astype(np.int32)
    results = {}
    for engine_cls in (MemoryEngine, DuckDBEngine):
        eng = engine_cls(ds, config)
        try:
            positives = eng.load_edges()
            out = tmp_path / engine_cls.__name__
            out.mkdir()
            eng.write_features(cu, ci, ku, ki, out)
            strengths = eng.strengths()
        finally:
            eng.close()
        sizes = {"user_first": (ds.meta.num_users, ki), "user_second": (ds.meta.num_users, ku),
                 "item_first": (ds.meta.num_items, ku), "item_second": (ds.meta.num_items, ki)}
        results[engine_cls.__name__] = (
            positives,
            strengths,
            {k: _read_stacked(out / f"{k}.parquet", n, 3, kk).toarray() for k, (n, kk) in sizes.items()},
        )
    (pos_m, str_m, feat_m), (pos_d, str_d, feat_d) = results.values()
    assert pos_m == pos_d
    np.testing.assert_allclose(str_m[0], str_d[0], rtol=1e-6)
    np.testing.assert_allclose(str_m[1], str_d[1], rtol=1e-6)
    for kind in feat_m:
        assert feat_m[kind].any()
        np.testing.assert_allclose(feat_m[kind], feat_d[kind], rtol=1e-5, atol=1e-5, err_msg=kind)


def test_leave_one_out_assignment_brute(tmp_path):
    """A training sample's own user/item macro nodes = nearest centroid of its coordinates
    recomputed edge by edge without the sample's edge (cold when no edge is left)."""
    from mgoe.graph.grouping import nearest_centroid, normalise_rows

    data = _tiny_dataset(tmp_path, seed=2, n_users=25, n_items=18)
    build_graph(data, tmp_path / "g", GraphConfig(user_clusters=4, item_clusters=3))
    manifest, table = load_graph(tmp_path / "g")
    g = tmp_path / "g"
    basis_u, basis_i = np.load(g / "basis_user.npy"), np.load(g / "basis_item.npy")
    coords_u, coords_i = np.load(g / "coords_user.npy"), np.load(g / "coords_item.npy")
    cent_u, cent_i = np.load(g / "centroids_user.npy"), np.load(g / "centroids_item.npy")
    edges = pd.read_parquet(g / "edges.parquet")
    ku, ki = manifest["num_user_macro"], manifest["num_item_macro"]
    # saved coordinates are sums over the node's edges of (merged weight x basis row)
    for u in range(manifest["num_users"]):
        mine = edges[edges["user"] == u]
        want = (mine["merged"].to_numpy()[:, None] * basis_i[mine["item"].to_numpy()]).sum(axis=0)
        np.testing.assert_allclose(coords_u[u], want, atol=1e-4)
        expected = ku - 1 if mine.empty else nearest_centroid(normalise_rows(coords_u[u : u + 1]), cent_u)[0]
        assert table.user_macro[u] == expected
    for i in range(manifest["num_items"]):
        mine = edges[edges["item"] == i]
        want = (mine["merged"].to_numpy()[:, None] * basis_u[mine["user"].to_numpy()]).sum(axis=0)
        np.testing.assert_allclose(coords_i[i], want, atol=1e-4)
    got = table.lookup(edges["user"].to_numpy(), edges["item"].to_numpy(), leave_one_out=True)
    moved = 0
    for b, (u, i) in enumerate(zip(edges["user"], edges["item"], strict=True)):
        rest_u = edges[(edges["user"] == u) & (edges["item"] != i)]
        rest_i = edges[(edges["item"] == i) & (edges["user"] != u)]
        y = (rest_u["merged"].to_numpy()[:, None] * basis_i[rest_u["item"].to_numpy()]).sum(axis=0)
        x = (rest_i["merged"].to_numpy()[:, None] * basis_u[rest_i["user"].to_numpy()]).sum(axis=0)
        want_u = ku - 1 if rest_u.empty else nearest_centroid(normalise_rows(y[None]), cent_u)[0]
        want_i = ki - 1 if rest_i.empty else nearest_centroid(normalise_rows(x[None]), cent_i)[0]
        assert got["user_macro"][b] == want_u and got["item_macro"][b] == want_i
        moved += int(want_u != table.user_macro[u]) + int(want_i != table.item_macro[i])
    assert moved > 0  # the re-assignment matters on a sparse graph
    # non-LOO lookups keep the full-graph assignment
    full = table.lookup(edges["user"].to_numpy(), edges["item"].to_numpy(), leave_one_out=False)
    np.testing.assert_array_equal(full["user_macro"], table.user_macro[edges["user"].to_numpy()])
