"""The spark engine (local[2]) against the memory and duckdb engines and brute force.

Needs Java and pyspark. Without them every test here is skipped with a loud reason (and a
warning in the summary): the spark engine is then NOT tested.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest


def _spark_missing() -> str | None:
    if shutil.which("java") is None:
        return "no `java` on PATH (Spark needs Java 17)"
    try:
        import pyspark  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means no Spark
        return f"pyspark cannot be imported ({type(exc).__name__}: {exc})"
    return None


_MISSING = _spark_missing()
if _MISSING is not None:
    _REASON = f"SPARK ENGINE TESTS WERE NOT RUN: {_MISSING}. Install Java 17 and `pip install 'mgoe[spark]'`."
    warnings.warn(_REASON, stacklevel=1)
    pytest.skip(_REASON, allow_module_level=True)

from sklearn.metrics import adjusted_rand_score  # noqa: E402
from test_features_brute import _tiny_dataset, brute_features, graphs_of, without_lost_edges  # noqa: E402

from mgoe.cli import main  # noqa: E402
from mgoe.data.schema import Dataset  # noqa: E402
from mgoe.graph.build import GraphConfig, MemoryEngine, _read_stacked, build_graph, load_graph  # noqa: E402
from mgoe.graph.engine_duckdb import DuckDBEngine  # noqa: E402
from mgoe.graph.engine_spark import SparkEngine, spark_session  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def spark():
    """One local[2] session for the module (the engine reuses it; Spark's start is slow)."""
    return spark_session("local[2]", {"spark.sql.shuffle.partitions": "3"})


def _run_engine(engine_cls, ds, config, cu, ci, ku, ki, out):
    x = np.random.default_rng(1).standard_normal((ds.meta.num_items, 6))
    y = np.random.default_rng(2).standard_normal((ds.meta.num_users, 6))
    eng = engine_cls(ds, config)
    try:
        positives = eng.load_edges()
        out.mkdir()
        n_edges = eng.write_edges(out / "edges.parquet")
        strengths = eng.strengths()
        matmat, rmatmat = eng.spectral_operators(*strengths)
        products = (matmat(x), rmatmat(y))
        eng.write_features(cu, ci, ku, ki, out)
    finally:
        eng.close()
    sizes = {"user_first": (ds.meta.num_users, ki), "user_second": (ds.meta.num_users, ku),
             "item_first": (ds.meta.num_items, ku), "item_second": (ds.meta.num_items, ki)}
    features = {k: _read_stacked(out / f"{k}.parquet", n, 3, kk).toarray() for k, (n, kk) in sizes.items()}
    return positives, n_edges, strengths, products, features


def test_engines_identical_given_assignments(tmp_path, monkeypatch):
    """Given the same macro assignments, spark writes the same edges, strengths, SVD products and
    features as the memory and duckdb engines. Tiny Arrow batches and merge threshold make the
    product tasks merge partial rows across many batches."""
    import mgoe.graph.engine_spark as engine_spark

    monkeypatch.setattr(engine_spark, "COMPACT_ROWS", 3)
    data = _tiny_dataset(tmp_path, seed=3, n_users=40, n_items=25)
    ds = Dataset.open(data)
    config = GraphConfig(spark_conf={"spark.sql.execution.arrow.maxRecordsPerBatch": "7"})
    rng = np.random.default_rng(0)
    ku, ki = 5, 4
    cu = rng.integers(0, ku - 1, ds.meta.num_users).astype(np.int32)
    ci = rng.integers(0, ki - 1, ds.meta.num_items).astype(np.int32)
    results = {cls.__name__: _run_engine(cls, ds, config, cu, ci, ku, ki, tmp_path / cls.__name__)
               for cls in (MemoryEngine, DuckDBEngine, SparkEngine)}
    pos_s, n_s, str_s, prod_s, feat_s = results.pop("SparkEngine")
    edges_s = pq.read_table(tmp_path / "SparkEngine" / "edges.parquet")
    assert edges_s.schema.names == ["user", "item", "mask", "merged"]
    assert [str(t) for t in edges_s.schema.types] == ["int32", "int32", "int32", "float"]
    for name, (pos, n, strengths, products, features) in results.items():
        assert pos == pos_s and n == n_s, name
        edges = pq.read_table(tmp_path / name / "edges.parquet")
        for column in edges_s.schema.names:  # same rows in the same (user, item) order
            np.testing.assert_array_equal(edges[column].to_numpy(), edges_s[column].to_numpy())
        for a, b in zip(strengths, str_s, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-6, err_msg=name)
        for a, b in zip(products, prod_s, strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=name)
        for kind in features:
            assert features[kind].any()
            np.testing.assert_allclose(feat_s[kind], features[kind], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name} {kind}")
    for kind in ("user_first", "user_second", "item_first", "item_second"):
        schema = pq.read_schema(tmp_path / "SparkEngine" / f"{kind}.parquet")
        assert [str(t) for t in schema.types] == ["int16", "int32", "int32", "float"]


def test_built_graph_brute_and_same_clusters_as_memory(tmp_path, record_property):
    """`mgoe graph build --engine spark` end to end: leave-one-out features against brute force,
    and the same macro nodes as the memory engine (clustering runs on the driver for both)."""
    data = _tiny_dataset(tmp_path)
    assert main(["graph", "build", "--data", str(data), "--output", str(tmp_path / "g"),
                 "--engine", "spark", "--spark-master", "local[2]", "--user-clusters", "4",
                 "--item-clusters", "3", "--quiet"]) == 0
    build_graph(data, tmp_path / "m", GraphConfig(user_clusters=4, item_clusters=3), engine="memory")
    manifest, table = load_graph(tmp_path / "g")
    assert manifest["engine"] == "spark"
    reference, ref_table = load_graph(tmp_path / "m")
    ari_users = adjusted_rand_score(ref_table.user_macro, table.user_macro)
    ari_items = adjusted_rand_score(ref_table.item_macro, table.item_macro)
    record_property("ari_users", ari_users)
    record_property("ari_items", ari_items)
    print(f"spark vs memory macro nodes: ARI users {ari_users:.4f}, items {ari_items:.4f}")
    np.testing.assert_array_equal(table.user_macro, ref_table.user_macro)
    np.testing.assert_array_equal(table.item_macro, ref_table.item_macro)
    np.testing.assert_allclose(manifest["singular_values"], reference["singular_values"], rtol=1e-9)
    assert manifest["config_fingerprint"] == reference["config_fingerprint"]

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
    want_ref = ref_table.lookup(users, items, leave_one_out=True, draws=np.random.default_rng(1).random((len(users), 2)), return_removed=True)
    for key in got:
        np.testing.assert_allclose(got[key], want_ref[key], atol=1e-5, err_msg=key)
    for b in range(0, len(users), 7):
        u, i = users[b], items[b]
        removed = without_lost_edges(labels, u, i, got, b)
        for g, adj in enumerate(graphs_of(removed, 0.5)):
            want = brute_features(adj, cu, ci, ku, ki)
            for kind, node in (("user_first", u), ("user_second", u), ("item_first", i), ("item_second", i)):
                np.testing.assert_allclose(got[kind][b, g], want[kind][node], atol=1e-4, err_msg=kind)


def test_uris_for_scratch_and_data_and_cleanup(tmp_path):
    """mgoe.workdir / mgoe.data_uri given as URIs (as on a cluster: hdfs://, s3://): the train
    files are read under the data URI, scratch goes to the workdir and is removed on close."""
    data = _tiny_dataset(tmp_path, seed=1, n_users=10, n_items=8)
    remote = tmp_path / "remote"
    shutil.copytree(data, remote)
    for path in (remote / "train").glob("*.parquet"):  # the copy differs: half the rows
        table = pq.read_table(path)
        pq.write_table(table.slice(0, table.num_rows // 2), path)
    (tmp_path / "scratch").mkdir()
    config = GraphConfig(spark_conf={"mgoe.workdir": f"file://{tmp_path / 'scratch'}",
                                     "mgoe.data_uri": f"file://{remote}"})
    eng = SparkEngine(Dataset.open(data), config)
    try:
        assert all(f.startswith(f"file://{remote}/train/") for f in eng._input_files("train"))
        positives = eng.load_edges()
        assert any((tmp_path / "scratch").iterdir())
    finally:
        eng.close()
    assert not any((tmp_path / "scratch").iterdir())
    assert positives == MemoryEngine(Dataset.open(remote), GraphConfig()).load_edges()
    assert positives != MemoryEngine(Dataset.open(data), GraphConfig()).load_edges()


def test_spark_settings_do_not_change_the_fingerprint():
    a = GraphConfig()
    b = GraphConfig(spark_master="spark://host:7077", spark_conf={"spark.driver.memory": "8g"})
    assert a.fingerprint() == b.fingerprint()
