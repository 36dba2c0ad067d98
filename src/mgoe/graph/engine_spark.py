"""Distributed graph engine: PySpark DataFrame jobs over the dataset's Parquet files.

``mgoe graph build --engine spark [--spark-master URL]`` runs the same five steps as the
``memory`` and ``duckdb`` engines (:mod:`mgoe.graph.build`), each as Spark jobs, and writes the
same graph directory (``edges.parquet``; ``features/<kind>.parquet`` with ``graph`` int16,
``node`` int32, ``macro`` int32, ``weight`` float32). Given the same macro assignments the three
engines write the same features (tests/graph/test_engine_spark.py).

Steps (the DuckDB engine's SQL, as DataFrame jobs):

1. ``edges``: ``groupBy(user, item)`` of the positive train rows, the task mask ``bit_or``-ed,
   the merged score joined from the ``2^T``-row score table (broadcast). The result is written
   once, sorted by ``(user, item)`` (range partitions, so a user's edges sit in one partition),
   to the engine's scratch directory and read back by every later step — Spark's equivalent of
   DuckDB's ``CREATE TABLE``. ``edges.parquet`` is these part files concatenated in order.
2. strengths: ``groupBy(user)`` / ``groupBy(item)`` of the merged score.
3. the randomised SVD's products ``Ŝ X`` and ``Ŝᵀ Y`` (``Ŝ = D_U^{-1/2} S D_I^{-1/2}``): see below.
4. first order: edges ⋈ macro assignment, ``groupBy(node, macro)`` with one SUM per graph
   (graph 0 = merged score, graph 1+t = bit t of the mask), written to scratch (it is an input
   of step 5);
5. second order: edges ⋈ first order of the other side, ``groupBy(node, macro)`` of
   ``SUM(a · n)``, minus the self path ``Σ a²`` at the node's own macro node. The wide
   ``(node, macro, g0..gG)`` tables become the long layout with ``stack`` (no UDF), entries
   below 1e-6 in magnitude are dropped (as in the other engines), and the part files are
   concatenated into one Parquet file per kind on the driver (streamed, one row group at a time).

SVD products. The randomised SVD (:func:`mgoe.graph.grouping.randomized_svd`) runs on the
driver and needs ``Ŝ X`` with ``X`` dense ``[items, l]`` (``l`` = rank + oversampling, 42 by
default), and ``Ŝᵀ Y`` with ``Y [users, l]``: 12 products per build with the default 4 power
iterations (10 in the SVD, 2 for the coordinates). Each product is one ``mapInArrow`` job. The
factor is broadcast (numpy, pickled once per product; the degree vectors once per build). Every
task multiplies its Arrow batches of edges with scipy.sparse: one CSR product per batch, rows
compacted to the nodes present, partial rows merged as they accumulate. It emits one partial row
``(node, c0..c{l-1})`` per node it saw. Partial rows go to scratch Parquet, and the driver adds
them into the ``[nodes, l]`` result while streaming them (a node split over two partitions is
simply added twice). The edges are stored twice — range-partitioned by user (step 1) and
hash-partitioned by item (written at the first ``Ŝᵀ Y``) — so each product emits about one
partial row per node.

Why this and not the UDF-free alternative (join ``X`` as a DataFrame of ``l`` columns, then
``groupBy(node)`` with ``l`` SUMs): that shuffles ``E`` joined rows of ``l`` doubles per product,
about ``E · l · 8`` bytes (3.4 GB for 10^7 edges), 12 times; the broadcast ships ``nodes · l · 8``
bytes (7 MB for 20,000 items) and the edges never move. How it scales: executor and driver
memory both hold one ``[nodes, l]`` float64 block (the driver's randomised SVD keeps ``U`` and
``V`` of that size in any engine), i.e. about 340 MB per 10^6 nodes on the broadcast side; the
edges themselves are streamed in Arrow batches and never collected. Past ~10^7 nodes per side
the dense factors stop fitting a single driver at all, and the SVD itself would have to be
distributed (e.g. a block Krylov method with the factors as DataFrames) — beyond this engine.

Clustering stays in :func:`mgoe.graph.build.build_graph` on the driver (weighted mini-batch
k-means, sklearn): it runs on the node embeddings, ``nodes × r`` floats (r = 32: 256 MB for 2·10^6
nodes), which the driver already holds for the SVD; keeping it there gives the very same
assignment rule (and centroids for leave-one-out re-assignment) as the other engines, so a spark
build equals a memory build up to float rounding of the SVD products. Spark MLlib's KMeans
(k-means|| initialisation, different mini-batch schedule) would give different macro nodes and
would need the embeddings shipped back to the cluster for no gain at this size.

Sessions and configuration. One SparkSession per process (``getOrCreate``; Spark's start costs
seconds), log level WARN. ``GraphConfig.spark_master`` (default ``local[2]``) and
``GraphConfig.spark_conf`` (any ``spark.*`` setting, e.g. ``spark.driver.memory``; for
``local[n]`` the defaults are ``spark.sql.shuffle.partitions = 2n`` and no UI) are applied when
the session is created; ``spark.sql.*`` settings are also applied to a running session at every
build. Under ``spark-submit`` the submitted master and settings win. Two engine
settings ride in ``spark_conf`` as well (or, from ``spark-submit``, as ``--conf spark.mgoe.workdir=…``
and ``--conf spark.mgoe.data_uri=…``); see docs/scaling.md:

* ``mgoe.workdir``: scratch directory (a URI that every executor and the driver can reach, e.g.
  ``hdfs:///tmp/mgoe`` or ``s3://bucket/tmp``; default ``$MGOE_TMPDIR`` or ``/tmp``, local);
* ``mgoe.data_uri``: the prepared dataset directory as the executors see it (e.g.
  ``hdfs:///data/aliccp``); its ``train/*.parquet`` are read from there. The driver still reads
  the small metadata (``meta.json``, users, items) from the local ``--data`` directory.

The functions shipped to executors use only numpy, scipy and pyarrow (they are defined inside
the engine's methods, so cloudpickle sends them by value): the executors do not need mgoe.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mgoe.data.schema import ITEM_COL, USER_COL, Dataset
from mgoe.errors import MgoeError
from mgoe.graph.features import FEATURE_SCHEMA, FEATURE_TOLERANCE
from mgoe.graph.grouping import inverse_sqrt_degree
from mgoe.graph.merge import score_table

log = logging.getLogger(__name__)

OUTPUT_BATCH_ROWS = 65536
"""Rows per Arrow batch emitted by the product tasks."""
COMPACT_ROWS = 262144
"""A product task merges its pending partial rows when they exceed this plus twice the rows
already merged (bounded memory per task)."""
ARROW_BATCH_ROWS = "131072"
"""Edges per Arrow batch handed to the product tasks (Spark's default, 10,000, makes the
per-batch Python overhead dominate), unless ``spark.sql.execution.arrow.maxRecordsPerBatch``
is configured."""
EDGE_SCHEMA = pa.schema([(USER_COL, pa.int32()), (ITEM_COL, pa.int32()), ("mask", pa.int32()),
                         ("merged", pa.float32())])

_SESSION = None


# ----------------------------------------------------------------------------- session


def _local_cores(master: str) -> int | None:
    """``n`` of ``local[n]`` (``local`` = 1, ``local[*]`` = the CPU count); None otherwise."""
    if master == "local":
        return 1
    if master.startswith("local[") and master.endswith("]"):
        inner = master[6:-1].split(",")[0]
        return os.cpu_count() or 1 if inner == "*" else int(inner)
    return None


def spark_session(master: str = "local[2]", conf: dict[str, str] | None = None):
    """The process's SparkSession, created on first use (later calls reuse it).

    ``conf`` entries whose key starts with ``mgoe.`` are engine settings and are not passed to
    Spark. Settings only take effect when the session is created (e.g. ``spark.driver.memory``
    sizes the JVM); a later call with a different master or settings reuses the running session
    and logs that it does.
    """
    global _SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MgoeError(f"the spark engine needs pyspark (pip install 'mgoe[spark]'): {exc}") from None
    spark_conf = {k: str(v) for k, v in (conf or {}).items() if not k.startswith("mgoe.")}
    if _SESSION is not None and _SESSION.sparkContext._jsc is not None:
        running = _SESSION.sparkContext.master
        submitted = "PYSPARK_GATEWAY_PORT" in os.environ
        if running != master and not submitted:
            log.warning("reusing the running Spark session (master %s), not %s", running, master)
        return _SESSION
    active = SparkSession.getActiveSession()
    if active is not None:
        _SESSION = active
        return active
    builder = SparkSession.builder.appName("mgoe-graph")
    # spark-submit starts the JVM and hands its master and settings to this process: keep them.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(master)
        # Python workers must run this interpreter (its numpy/scipy/pyarrow), not `python3`.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        cores = _local_cores(master)
        if cores is not None:
            defaults = {"spark.sql.shuffle.partitions": str(max(2, 2 * cores)),
                        "spark.ui.enabled": "false",
                        "spark.ui.showConsoleProgress": "false"}
            spark_conf = {**defaults, **spark_conf}
    for key, value in spark_conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    _SESSION = session
    return session


def stop_session() -> None:
    """Stop the process's SparkSession (benchmarks; the engine itself keeps it for reuse)."""
    global _SESSION
    if _SESSION is not None:
        _SESSION.stop()
        _SESSION = None


# ----------------------------------------------------------------------------- scratch space


class _Scratch:
    """A scratch directory that Spark writes and the driver reads (local path or any URI that
    ``pyarrow.fs`` understands: hdfs://, s3://, gs://, file://)."""

    def __init__(self, base: str) -> None:
        from pyarrow import fs as pafs

        name = f"mgoe-spark-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if "://" in base:
            self.base_uri = base.rstrip("/") + "/" + name
            # Spark's Hadoop S3 connector says s3a://, pyarrow says s3:// (the same objects)
            for spark_scheme, arrow_scheme in (("s3a://", "s3://"), ("s3n://", "s3://")):
                if self.base_uri.startswith(spark_scheme):
                    self.fs, self.root = pafs.FileSystem.from_uri(arrow_scheme + self.base_uri[len(spark_scheme):])
                    break
            else:
                self.fs, self.root = pafs.FileSystem.from_uri(self.base_uri)
        else:
            self.fs = pafs.LocalFileSystem()
            self.root = str(Path(base).resolve() / name)
            self.base_uri = "file://" + self.root
        self.fs.create_dir(self.root, recursive=True)

    def uri(self, name: str) -> str:
        return f"{self.base_uri}/{name}"

    def parts(self, name: str) -> list[str]:
        """Paths of the Parquet part files of a table Spark wrote, in part order."""
        from pyarrow import fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(f"{self.root}/{name}"))
        return sorted(
            i.path for i in infos
            if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
            and not i.base_name.startswith(("_", "."))
        )

    def batches(self, name: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        for path in self.parts(name):
            with self.fs.open_input_file(path) as fh:
                yield from pq.ParquetFile(fh).iter_batches(columns=columns)

    def read(self, name: str) -> pa.Table | None:
        batches = list(self.batches(name))
        if not batches:
            return None
        return pa.Table.from_batches(batches)

    def write(self, name: str, table: pa.Table) -> str:
        """Write an Arrow table for Spark to read; returns its URI."""
        self.fs.create_dir(f"{self.root}/{name}", recursive=True)
        with self.fs.open_output_stream(f"{self.root}/{name}/part-00000.parquet") as fh:
            pq.write_table(table, fh)
        return self.uri(name)

    def concatenate(self, name: str, path: Path, schema: pa.Schema) -> int:
        """Concatenate a table's part files into one local Parquet file; returns the rows."""
        rows = 0
        with pq.ParquetWriter(path, schema) as writer:
            for batch in self.batches(name, columns=schema.names):
                table = pa.Table.from_batches([batch]).cast(schema)
                writer.write_table(table)
                rows += table.num_rows
        return rows

    def remove(self) -> None:
        try:
            self.fs.delete_dir(self.root)
        except (OSError, FileNotFoundError):  # already gone
            pass


# ----------------------------------------------------------------------------- engine


class SparkEngine:
    """The graph engine interface of :mod:`mgoe.graph.build` on Spark (see the module docstring)."""

    name = "spark"

    def __init__(self, ds: Dataset, config) -> None:
        self.ds = ds
        self.config = config
        self.tasks = list(ds.tasks)
        self.n_graphs = 1 + len(self.tasks)
        conf = dict(getattr(config, "spark_conf", None) or {})
        self.spark = spark_session(getattr(config, "spark_master", "local[2]") or "local[2]", conf)
        self.scratch = _Scratch(self._setting(conf, "workdir") or os.environ.get("MGOE_TMPDIR", "/tmp"))
        self.data_uri = self._setting(conf, "data_uri")
        # SQL settings are per session at run time: apply them to this build even when the
        # session was already running (other settings only take effect at its creation).
        runtime = {"spark.sql.execution.arrow.maxRecordsPerBatch": ARROW_BATCH_ROWS}
        runtime.update({k: str(v) for k, v in conf.items() if k.startswith("spark.sql.")})
        for key, value in runtime.items():
            self.spark.conf.set(key, value)
        self._broadcasts: list = []
        self._products = 0
        self.edges = None
        self._edges_by_item = None
        self._num_edges = 0

    # -- helpers ------------------------------------------------------------------------------

    def _setting(self, conf: dict[str, str], key: str) -> str | None:
        """Engine setting ``mgoe.<key>`` from GraphConfig.spark_conf, else ``spark.mgoe.<key>``
        from the session (``spark-submit --conf spark.mgoe.workdir=...``)."""
        return conf.get(f"mgoe.{key}") or self.spark.conf.get(f"spark.mgoe.{key}", None) or None

    def _input_files(self, split: str) -> list[str]:
        files = self.ds.split_files(split)
        if self.data_uri:
            base = self.data_uri.rstrip("/")
            return [f"{base}/{p.relative_to(self.ds.root).as_posix()}" for p in files]
        return ["file://" + str(p.resolve()) for p in files]

    def _materialise(self, df, name: str):
        """Write ``df`` to scratch and return the DataFrame reading it back (a Spark 'table')."""
        df.write.mode("overwrite").parquet(self.scratch.uri(name))
        return self.spark.read.parquet(self.scratch.uri(name))

    def _collect(self, df, name: str) -> pa.Table | None:
        df.write.mode("overwrite").parquet(self.scratch.uri(name))
        return self.scratch.read(name)

    def _upload(self, table: pa.Table, name: str):
        return self.spark.read.parquet(self.scratch.write(name, table))

    def _weights(self, alias: str = "e") -> list:
        """Graph weights as column expressions: g0 = merged score, g{1+t} = bit t of the mask."""
        from pyspark.sql import functions as F

        mask = F.col(f"{alias}.mask")
        return [F.col(f"{alias}.merged")] + [
            F.shiftright(mask, t).bitwiseAND(F.lit(1)).cast("double") for t in range(len(self.tasks))
        ]

    # -- step 1: edges ------------------------------------------------------------------------

    def load_edges(self) -> dict[str, int]:
        """Distinct history edges with task masks and merged scores; returns positives per task."""
        from pyspark.sql import functions as F

        spark = self.spark
        raw = spark.read.parquet(*self._input_files("train"))
        mask = None
        for k, task in enumerate(self.tasks):
            bit = F.shiftleft(F.col(_quote(task)).cast("int"), k)
            mask = bit if mask is None else mask + bit
        scores = score_table(self.tasks, self.config.beta, self.config.ranking).astype(np.float64)
        score_df = spark.createDataFrame([(m, float(s)) for m, s in enumerate(scores)], "mask int, score double")
        grouped = (
            raw.select(F.col(_quote(USER_COL)).cast("int").alias("user"),
                       F.col(_quote(ITEM_COL)).cast("int").alias("item"), mask.alias("mask"))
            .where(F.col("mask") > 0)
            .groupBy("user", "item")
            .agg(F.bit_or("mask").alias("mask"))
        )
        edges = (grouped.join(F.broadcast(score_df), "mask")
                 .select("user", "item", "mask", F.col("score").alias("merged"))
                 .orderBy("user", "item"))
        self.edges = self._materialise(edges, "edges")
        counts = [F.sum(F.shiftright("mask", k).bitwiseAND(F.lit(1))) for k in range(len(self.tasks))]
        row = self.edges.agg(F.count(F.lit(1)), *counts).collect()[0]
        self._num_edges = int(row[0])
        return {t: int(row[1 + k] or 0) for k, t in enumerate(self.tasks)}

    def write_edges(self, path: Path) -> int:
        """``edges.parquet``: the sorted part files concatenated (user, item, mask, merged)."""
        rows = 0
        with pq.ParquetWriter(path, EDGE_SCHEMA) as writer:
            for batch in self.scratch.batches("edges"):
                table = pa.table({
                    USER_COL: batch.column("user"), ITEM_COL: batch.column("item"),
                    "mask": batch.column("mask"), "merged": batch.column("merged"),
                }).cast(EDGE_SCHEMA)
                writer.write_table(table)
                rows += table.num_rows
        return rows

    # -- step 2: strengths --------------------------------------------------------------------

    def strengths(self) -> tuple[np.ndarray, np.ndarray]:
        from pyspark.sql import functions as F

        out = []
        for col, n in (("user", self.ds.meta.num_users), ("item", self.ds.meta.num_items)):
            table = self._collect(
                self.edges.groupBy(col).agg(F.sum("merged").alias("s")).withColumnRenamed(col, "node"),
                f"strength_{col}",
            )
            dense = np.zeros(n, dtype=np.float64)
            if table is not None and table.num_rows:
                dense[table["node"].to_numpy()] = table["s"].to_numpy()
            out.append(dense)
        return out[0], out[1]

    # -- step 3: SVD products -----------------------------------------------------------------

    def spectral_operators(self, user_strength: np.ndarray, item_strength: np.ndarray):
        du = inverse_sqrt_degree(user_strength)
        di = inverse_sqrt_degree(item_strength)
        degrees = self.spark.sparkContext.broadcast((du, di))
        self._broadcasts.append(degrees)
        return (
            lambda x: self._product(x, False, degrees),
            lambda y: self._product(y, True, degrees),
        )

    def _edges_partitioned_by_item(self):
        if self._edges_by_item is None:
            partitions = int(self.spark.conf.get("spark.sql.shuffle.partitions"))
            self._edges_by_item = self._materialise(
                self.edges.select("user", "item", "merged").repartition(partitions, "item"),
                "edges_by_item",
            )
        return self._edges_by_item

    def _product(self, x: np.ndarray, transpose: bool, degrees) -> np.ndarray:
        """``Ŝ x`` (``transpose=False``, x indexed by item) or ``Ŝᵀ x`` (x indexed by user)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        width = x.shape[1]
        n_out = self.ds.meta.num_items if transpose else self.ds.meta.num_users
        out = np.zeros((n_out, width), dtype=np.float64)
        if self._num_edges == 0:
            return out
        source = self._edges_partitioned_by_item() if transpose else self.edges.select("user", "item", "merged")
        factor = self.spark.sparkContext.broadcast(x)
        names = ["node", *(f"c{k}" for k in range(width))]
        schema = "node int, " + ", ".join(f"c{k} double" for k in range(width))
        batch_rows = OUTPUT_BATCH_ROWS
        compact_rows = COMPACT_ROWS

        def partial_products(batches):
            # Runs on the executors: numpy / scipy / pyarrow only (no mgoe import needed there).
            import numpy as np
            import pyarrow as pa
            import scipy.sparse as sp

            dense = factor.value
            d_user, d_item = degrees.value

            def merge(nodes, values):
                """Sorted distinct nodes and their summed partial rows."""
                node = np.concatenate(nodes)
                value = np.concatenate(values)
                present, local = np.unique(node, return_inverse=True)
                if present.size < node.size:
                    adder = sp.csr_matrix((np.ones(node.size), (local, np.arange(node.size))),
                                          shape=(present.size, node.size))
                    return present, adder @ value
                return present, value[np.argsort(node, kind="stable")]

            # Partial rows per batch, merged whenever they outgrow twice the merged part, so a
            # task holds O(distinct nodes of its partition) rows, whatever its batch count.
            nodes, values, merged_rows, pending = [], [], 0, 0
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                u = batch.column("user").to_numpy(zero_copy_only=False)
                i = batch.column("item").to_numpy(zero_copy_only=False)
                w = batch.column("merged").to_numpy(zero_copy_only=False) * d_user[u] * d_item[i]
                rows, cols = (i, u) if transpose else (u, i)
                present, local = np.unique(rows, return_inverse=True)
                block = sp.csr_matrix((w, (local, cols)), shape=(present.size, dense.shape[0]))
                nodes.append(present)
                values.append(block @ dense)
                pending += present.size
                if pending > 2 * merged_rows + compact_rows:
                    node, value = merge(nodes, values)
                    nodes, values, merged_rows, pending = [node], [value], node.size, 0
            if not nodes:
                return
            node, value = merge(nodes, values) if len(nodes) > 1 else (nodes[0], values[0])
            for s in range(0, node.size, batch_rows):
                e = s + batch_rows
                yield pa.RecordBatch.from_arrays(
                    [pa.array(node[s:e].astype(np.int32))]
                    + [pa.array(np.ascontiguousarray(value[s:e, k])) for k in range(value.shape[1])],
                    names=names,
                )

        self._products += 1
        name = f"product_{self._products}"
        try:
            source.mapInArrow(partial_products, schema).write.mode("overwrite").parquet(self.scratch.uri(name))
            for batch in self.scratch.batches(name):
                node = batch.column(0).to_numpy(zero_copy_only=False)
                value = np.column_stack([batch.column(k + 1).to_numpy(zero_copy_only=False)
                                         for k in range(width)])
                if node.size > 1 and not (np.diff(node) > 0).all():
                    np.add.at(out, node, value)
                else:  # one task's output: sorted and unique
                    out[node] += value
        finally:
            factor.destroy()
            self.scratch.fs.delete_dir(f"{self.scratch.root}/{name}")
        return out

    # -- steps 4 and 5: features ----------------------------------------------------------------

    def write_features(self, user_macro, item_macro, ku, ki, directory: Path) -> None:
        """Write the four feature kinds of every graph as long Parquet files into ``directory``."""
        from pyspark.sql import functions as F

        umac = self._upload(pa.table({"node": np.arange(len(user_macro), dtype=np.int32),
                                      "macro": np.asarray(user_macro, dtype=np.int32)}), "umac")
        imac = self._upload(pa.table({"node": np.arange(len(item_macro), dtype=np.int32),
                                      "macro": np.asarray(item_macro, dtype=np.int32)}), "imac")
        e = self.edges.alias("e")
        w = self._weights("e")
        g_cols = [f"g{g}" for g in range(self.n_graphs)]
        sums = [F.sum(expr).alias(c) for expr, c in zip(w, g_cols, strict=True)]
        # First order: user -> item macro nodes, item -> user macro nodes.
        first = {}
        for side, other, assignment in (("user", "item", imac), ("item", "user", umac)):
            m = assignment.alias("m")
            first[side] = self._materialise(
                e.join(m, F.col(f"e.{other}") == F.col("m.node"))
                .groupBy(F.col(f"e.{side}").alias("node"), F.col("m.macro").alias("macro"))
                .agg(*sums),
                f"{side}_first",
            )
        tables = {"user_first": first["user"], "item_first": first["item"]}
        # Second order: paths through the other side, minus the self path at the own macro node.
        for side, other, own in (("user", "item", umac), ("item", "user", imac)):
            f = first[other].alias("f")
            path_sums = [F.sum(expr * F.col(f"f.{c}")).alias(c) for expr, c in zip(w, g_cols, strict=True)]
            paths = (e.join(f, F.col(f"e.{other}") == F.col("f.node"))
                     .groupBy(F.col(f"e.{side}").alias("node"), F.col("f.macro").alias("macro"))
                     .agg(*path_sums)).alias("p")
            self_sums = (e.groupBy(F.col(f"e.{side}").alias("node"))
                         .agg(*[F.sum(expr * expr).alias(c) for expr, c in zip(w, g_cols, strict=True)])
                         ).alias("s")
            m = own.alias("m")
            tables[f"{side}_second"] = (
                paths.join(m, F.col("p.node") == F.col("m.node"))
                .join(self_sums, F.col("p.node") == F.col("s.node"))
                .select(F.col("p.node").alias("node"), F.col("p.macro").alias("macro"), *[
                    (F.col(f"p.{c}") - F.when(F.col("p.macro") == F.col("m.macro"), F.col(f"s.{c}"))
                     .otherwise(F.lit(0.0))).alias(c)
                    for c in g_cols
                ])
            )
        stacked = ", ".join(f"{g}, {c}" for g, c in enumerate(g_cols))
        for kind in ("user_first", "user_second", "item_first", "item_second"):
            long = (
                tables[kind]
                .select("node", "macro", F.expr(f"stack({self.n_graphs}, {stacked}) AS (graph, weight)"))
                .where(F.abs(F.col("weight")) >= F.lit(FEATURE_TOLERANCE))
                .select(F.col("graph").cast("short").alias("graph"), F.col("node").cast("int").alias("node"),
                        F.col("macro").cast("int").alias("macro"), F.col("weight").cast("float").alias("weight"))
            )
            long.write.mode("overwrite").parquet(self.scratch.uri(f"out_{kind}"))
            self.scratch.concatenate(f"out_{kind}", Path(directory) / f"{kind}.parquet", FEATURE_SCHEMA)

    def close(self) -> None:
        """Drop broadcasts and the scratch directory; the SparkSession stays up for reuse."""
        for bc in self._broadcasts:
            try:
                bc.destroy()
            except Exception:  # noqa: BLE001 - a dead session has nothing left to free
                pass
        self._broadcasts.clear()
        self.scratch.remove()


def _quote(name: str) -> str:
    """A column name as a Spark SQL identifier (dots and spaces stay literal)."""
    return "`" + name.replace("`", "``") + "`"
