"""Build a graph directory from a prepared dataset: merged graph, macro nodes, macro features.

Graph directory layout::

    GDIR/manifest.json            config, data fingerprint, sizes, build time, cluster sizes
    GDIR/user_macro.parquet       user (int32), user_id (original id), macro (int32; cold = KU-1)
    GDIR/item_macro.parquet       item, item_id, macro
    GDIR/centroids_user.npy       k-means centroids in the spectral embedding space
    GDIR/centroids_item.npy
    GDIR/coords_user.npy          spectral coordinates y_u (before normalisation) and the
    GDIR/basis_user.npy           per-edge basis rows, for leave-one-out re-assignment
    GDIR/coords_item.npy, basis_item.npy
    GDIR/edges.parquet            distinct history edges: user, item, mask (task bit mask), merged
    GDIR/features/<kind>.parquet  kind ∈ user_first, user_second, item_first, item_second:
                                  graph (int16: 0 merged, 1+t task t), node, macro, weight (float32)
    GDIR/_COMPLETE

Engines: ``memory`` (scipy.sparse, everything in RAM) and ``duckdb`` (SQL over Parquet with a
memory limit and spilling; the SVD streams edge chunks). Both run the same steps — (1) distinct
history edges with task masks and merged scores, (2) node strengths, (3) spectral embedding,
(4) weighted k-means, (5) the four feature aggregations — and each step is a group-by/join that
maps one-to-one onto a distributed DataFrame engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from mgoe.data.schema import ITEM_COL, USER_COL, Dataset
from mgoe.errors import IncompleteDirectoryError, MgoeError
from mgoe.graph.features import (
    FEATURE_SCHEMA,
    KINDS,
    HistoryEdges,
    LooAssignment,
    MacroFeatureTable,
    graph_features,
    stack_graphs,
)
from mgoe.graph.grouping import assign_clusters, inverse_sqrt_degree, normalise_rows, randomized_svd
from mgoe.graph.merge import label_masks, score_table
from mgoe.io import atomic_directory, is_complete, write_json_atomic

log = logging.getLogger(__name__)
GRAPH_FORMAT_VERSION = 1


def default_clusters(n_nodes: int) -> int:
    """Default macro nodes for ``n_nodes`` nodes: ``clip(round(sqrt(n) / 2), 8, 256)``."""
    return int(np.clip(round(np.sqrt(max(n_nodes, 1)) / 2), 8, 256))


@dataclass
class GraphConfig:
    """Options of ``mgoe graph build``; every [ours] choice of METHOD.md §2-4 is a field."""

    user_clusters: int | None = None
    """User macro nodes K_U (cold node not counted); None: default_clusters(#users)."""
    item_clusters: int | None = None
    beta: float = 0.5
    """Box-Cox β of the merging score (β = 0: log)."""
    ranking: dict[str, int] | None = None
    """Explicit rank table {"cart+buy": rank, ...}; None: bit-mask order by task importance."""
    embedding_dim: int = 32
    """Rank of the truncated SVD used as spectral embedding."""
    svd_iterations: int = 4
    weighted: bool = True
    """Preference-weighted k-means (False: every node weight 1, the ablation)."""
    threshold_quantile: float = 0.5
    """θ = this quantile of node strengths; node weight min(1, strength / θ)."""
    user_group_column: str | None = None
    """Group users by this categorical user feature instead of clustering."""
    item_group_column: str | None = None
    balanced_leave_one_out: bool = True
    """A training sample without an edge of its own loses a random edge of its user and of its
    item, so every training sample misses exactly one edge per node (False: plain
    leave-one-out, where the missing edge marks the positives)."""
    loo_assignment: bool = True
    """Re-assign a training sample's own user and item to macro nodes without its edge
    (False: keep the full-graph assignment, which leaks the label through sparse nodes)."""
    seed: int = 0
    duckdb_memory_limit: str = "4GB"
    duckdb_threads: int | None = None
    chunk_rows: int = 4_000_000
    """Edges per streamed chunk in the duckdb engine's SVD passes."""
    spark_master: str = "local[2]"
    """Spark master URL of the spark engine (spark-submit's own master wins when submitted)."""
    spark_conf: dict[str, str] = field(default_factory=dict)
    """Spark settings of the spark engine (spark.driver.memory, spark.sql.shuffle.partitions, ...)
    plus its own mgoe.workdir (shared scratch URI) and mgoe.data_uri (see engine_spark)."""

    def fingerprint(self) -> str:
        relevant = {k: v for k, v in asdict(self).items()
                    if not k.startswith(("duckdb_", "spark_")) and k != "chunk_rows"}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def data_fingerprint(ds: Dataset) -> str:
    """Hash of the dataset's metadata and its train files (names and sizes)."""
    h = hashlib.sha256((ds.root / "meta.json").read_bytes())
    for path in ds.split_files("train"):
        h.update(f"{path.name}:{path.stat().st_size}".encode())
    return h.hexdigest()[:16]


@dataclass
class Edges:
    """Distinct history edges (sorted by user, then item) with their task masks and merged score."""

    users: np.ndarray
    items: np.ndarray
    masks: np.ndarray
    merged: np.ndarray
    num_users: int
    num_items: int
    positives: dict[str, int] = field(default_factory=dict)

    def graph_weights(self, num_tasks: int) -> np.ndarray:
        """``float32 [E, 1 + T]``: merged score, then 0/1 per task."""
        bits = (self.masks[:, None] >> np.arange(num_tasks)) & 1
        return np.column_stack([self.merged, bits]).astype(np.float32)


# ----------------------------------------------------------------------------- memory engine


class MemoryEngine:
    name = "memory"

    def __init__(self, ds: Dataset, config: GraphConfig) -> None:
        self.ds = ds
        self.config = config

    def history_edges(self) -> Edges:
        tasks = self.ds.tasks
        frame = self.ds.read_split("train", columns=[USER_COL, ITEM_COL, *tasks])
        masks = label_masks(frame[tasks].to_numpy())
        keep = masks > 0
        users = frame[USER_COL].to_numpy(np.int64)[keep]
        items = frame[ITEM_COL].to_numpy(np.int64)[keep]
        masks = masks[keep]
        n_items = self.ds.meta.num_items
        keys = users * n_items + items
        order = np.argsort(keys, kind="stable")
        keys, masks = keys[order], masks[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if keys.size else np.zeros(0, np.int64)
        masks = np.bitwise_or.reduceat(masks, starts) if keys.size else masks
        keys = keys[starts]
        scores = score_table(tasks, self.config.beta, self.config.ranking)[masks]
        return Edges(
            users=keys // n_items,
            items=keys % n_items,
            masks=masks,
            merged=scores,
            num_users=self.ds.meta.num_users,
            num_items=n_items,
            positives={t: int(((masks >> k) & 1).sum()) for k, t in enumerate(tasks)},
        )

    def load_edges(self) -> dict[str, int]:
        """Collect the distinct history edges; returns positives per task."""
        edges = self.history_edges()
        self.edges = edges
        self.weights = edges.graph_weights(len(self.ds.tasks))
        self.merged = sp.csr_matrix(
            (edges.merged.astype(np.float64), (edges.users, edges.items)),
            shape=(edges.num_users, edges.num_items),
        )
        return edges.positives

    def write_edges(self, path: Path) -> int:
        e = self.edges
        pq.write_table(
            pa.table({
                USER_COL: e.users.astype(np.int32),
                ITEM_COL: e.items.astype(np.int32),
                "mask": e.masks.astype(np.int32),
                "merged": e.merged.astype(np.float32),
            }),
            path,
        )
        return int(e.users.size)

    def strengths(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.asarray(self.merged.sum(axis=1)).ravel(),
            np.asarray(self.merged.sum(axis=0)).ravel(),
        )

    def spectral_operators(self, user_strength: np.ndarray, item_strength: np.ndarray):
        du = inverse_sqrt_degree(user_strength)
        di = inverse_sqrt_degree(item_strength)
        normalised = sp.diags(du) @ self.merged @ sp.diags(di)
        normalised_t = normalised.T.tocsr()
        return (lambda x: normalised @ x), (lambda y: normalised_t @ y)

    def write_features(self, user_macro, item_macro, ku, ki, directory: Path) -> None:
        """Write the four feature kinds of every graph as long Parquet files into ``directory``."""
        sizes = {"user_first": ki, "user_second": ku, "item_first": ku, "item_second": ki}
        for kind, matrix in self.features(user_macro, item_macro, ku, ki).items():
            _write_long(directory / f"{kind}.parquet", matrix, sizes[kind])

    def features(self, user_macro, item_macro, ku, ki) -> dict[str, sp.csr_matrix]:
        per_kind: dict[str, list[sp.csr_matrix]] = {k: [] for k in KINDS}
        for g in range(self.weights.shape[1]):
            adjacency = sp.csr_matrix(
                (self.weights[:, g].astype(np.float64), (self.edges.users, self.edges.items)),
                shape=(self.edges.num_users, self.edges.num_items),
            )
            feats = graph_features(adjacency, user_macro, item_macro, ku, ki)
            for k in KINDS:
                per_kind[k].append(feats[k])
        return {k: stack_graphs(v) for k, v in per_kind.items()}

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- build


def _group_by_column(ds: Dataset, side: str, column: str) -> tuple[np.ndarray, int]:
    table = ds.users() if side == "user" else ds.items()
    if column not in table.columns:
        have = [c for c in table.columns if c not in (USER_COL, ITEM_COL, "user_id", "item_id")]
        raise MgoeError(f"no {side} feature {column!r} to group by; {side} features: {have or 'none'}")
    codes = table[column].to_numpy(np.int64)  # 1..V, 0 = missing
    k = int(codes.max()) if codes.size else 0
    return np.where(codes > 0, codes - 1, k).astype(np.int32), max(k, 1)


def _write_long(path: Path, matrix: sp.csr_matrix, k: int) -> None:
    coo = matrix.tocoo()
    pq.write_table(
        pa.table(
            {
                "graph": (coo.col // k).astype(np.int16),
                "node": coo.row.astype(np.int32),
                "macro": (coo.col % k).astype(np.int32),
                "weight": coo.data.astype(np.float32),
            },
            schema=FEATURE_SCHEMA,
        ),
        path,
    )


def _read_stacked(path: Path, n_nodes: int, n_graphs: int, k: int) -> sp.csr_matrix:
    t = pq.read_table(path)
    col = t["graph"].to_numpy().astype(np.int64) * k + t["macro"].to_numpy()
    return sp.csr_matrix(
        (t["weight"].to_numpy(), (t["node"].to_numpy(), col)), shape=(n_nodes, n_graphs * k), dtype=np.float32
    )


def _engine(name: str, ds: Dataset, config: GraphConfig):
    if name == "memory":
        return MemoryEngine(ds, config)
    if name == "duckdb":
        from mgoe.graph.engine_duckdb import DuckDBEngine

        return DuckDBEngine(ds, config)
    if name == "spark":
        from mgoe.graph.engine_spark import SparkEngine

        return SparkEngine(ds, config)
    raise MgoeError(f"unknown engine {name!r}; use memory, duckdb or spark")


def build_graph(
    data_dir: str | Path,
    output: str | Path,
    config: GraphConfig | None = None,
    engine: str = "memory",
    force: bool = False,
    progress: bool = False,
) -> dict:
    """Build (or skip, if unchanged) the graph directory ``output`` for dataset ``data_dir``.

    Returns the manifest; ``manifest["skipped"]`` is True when an up-to-date build existed.
    """
    config = config or GraphConfig()
    ds = Dataset.open(data_dir)
    if not ds.meta.has_graph:
        raise MgoeError(f"{data_dir}: dataset {ds.meta.name!r} has no user-item graph (tabular data)")
    ds.split_path("train")
    output = Path(output)
    fingerprint = data_fingerprint(ds)
    if not force and is_complete(output) and (output / "manifest.json").is_file():
        old = json.loads((output / "manifest.json").read_text())
        if old.get("data_fingerprint") == fingerprint and old.get("config_fingerprint") == config.fingerprint():
            old["skipped"] = True
            return old

    tasks = ds.tasks
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    eng = _engine(engine, ds, config)
    steps = ["edges", "embedding", "clusters", "features", "write"]
    bar = _progress(progress, steps)
    try:
        with atomic_directory(output) as tmp:
            t0 = time.perf_counter()
            positives = eng.load_edges()
            for task, count in positives.items():
                if count == 0:
                    raise MgoeError(f"{data_dir}: task {task!r} has no positives in the train split")
            n_edges = eng.write_edges(tmp / "edges.parquet")
            user_strength, item_strength = eng.strengths()
            timings["edges_s"] = time.perf_counter() - t0
            bar.update("embedding")

            t0 = time.perf_counter()
            matmat, rmatmat = eng.spectral_operators(user_strength, item_strength)
            u, s, vt = randomized_svd(
                matmat,
                rmatmat,
                (ds.meta.num_users, ds.meta.num_items),
                config.embedding_dim,
                n_iter=config.svd_iterations,
                seed=config.seed,
            )
            # Row projections (see grouping): y_u = Σ_j s_uj d_j^{-1/2} V_j, x_i likewise.
            # The "basis" rows d^{-1/2} V_i / d^{-1/2} U_u are what one edge contributes.
            user_basis = (inverse_sqrt_degree(user_strength)[:, None] * u).astype(np.float32)
            item_basis = (inverse_sqrt_degree(item_strength)[:, None] * vt.T).astype(np.float32)
            user_coords = (np.sqrt(user_strength)[:, None] * matmat(vt.T)).astype(np.float32)
            item_coords = (np.sqrt(item_strength)[:, None] * rmatmat(u)).astype(np.float32)
            user_emb = normalise_rows(user_coords)
            item_emb = normalise_rows(item_coords)
            timings["embedding_s"] = time.perf_counter() - t0
            bar.update("clusters")

            t0 = time.perf_counter()
            k_users = config.user_clusters or default_clusters(int((user_strength > 0).sum()))
            k_items = config.item_clusters or default_clusters(int((item_strength > 0).sum()))
            if config.user_group_column:
                user_macro, k_users = _group_by_column(ds, "user", config.user_group_column)
                user_centroids = np.zeros((0, user_emb.shape[1]), np.float32)
            else:
                user_macro, user_centroids, k_users = assign_clusters(
                    user_emb, user_strength, k_users, weighted=config.weighted,
                    threshold_quantile=config.threshold_quantile, seed=config.seed,
                )
            if config.item_group_column:
                item_macro, k_items = _group_by_column(ds, "item", config.item_group_column)
                item_centroids = np.zeros((0, item_emb.shape[1]), np.float32)
            else:
                item_macro, item_centroids, k_items = assign_clusters(
                    item_emb, item_strength, k_items, weighted=config.weighted,
                    threshold_quantile=config.threshold_quantile, seed=config.seed + 1,
                )
            ku, ki = k_users + 1, k_items + 1  # + the cold node
            timings["clusters_s"] = time.perf_counter() - t0
            bar.update("features")

            t0 = time.perf_counter()
            (tmp / "features").mkdir()
            eng.write_features(user_macro, item_macro, ku, ki, tmp / "features")
            timings["features_s"] = time.perf_counter() - t0
            bar.update("write")

            t0 = time.perf_counter()
            graphs = ["merged", *tasks]
            pq.write_table(
                pa.table({
                    USER_COL: np.arange(ds.meta.num_users, dtype=np.int32),
                    "user_id": ds.user_ids().astype(str),
                    "macro": user_macro.astype(np.int32),
                }),
                tmp / "user_macro.parquet",
            )
            pq.write_table(
                pa.table({
                    ITEM_COL: np.arange(ds.meta.num_items, dtype=np.int32),
                    "item_id": ds.item_ids().astype(str),
                    "macro": item_macro.astype(np.int32),
                }),
                tmp / "item_macro.parquet",
            )
            np.save(tmp / "centroids_user.npy", user_centroids, allow_pickle=False)
            np.save(tmp / "centroids_item.npy", item_centroids, allow_pickle=False)
            if not config.user_group_column:
                np.save(tmp / "coords_user.npy", user_coords, allow_pickle=False)
                np.save(tmp / "basis_user.npy", user_basis, allow_pickle=False)
            if not config.item_group_column:
                np.save(tmp / "coords_item.npy", item_coords, allow_pickle=False)
                np.save(tmp / "basis_item.npy", item_basis, allow_pickle=False)
            timings["write_s"] = time.perf_counter() - t0
            timings["total_s"] = time.perf_counter() - t_start
            manifest = {
                "format_version": GRAPH_FORMAT_VERSION,
                "dataset": ds.meta.name,
                "data_dir": str(Path(data_dir).resolve()),
                "data_fingerprint": fingerprint,
                "config_fingerprint": config.fingerprint(),
                "config": asdict(config),
                "engine": engine,
                "tasks": tasks,
                "graphs": graphs,
                "num_users": ds.meta.num_users,
                "num_items": ds.meta.num_items,
                "num_user_macro": ku,
                "num_item_macro": ki,
                "loo_assignment": config.loo_assignment and not (config.user_group_column or config.item_group_column),
                "balanced_leave_one_out": config.balanced_leave_one_out,
                "history_edges": n_edges,
                "history_positives": positives,
                "user_cluster_sizes": np.bincount(user_macro, minlength=ku).tolist(),
                "item_cluster_sizes": np.bincount(item_macro, minlength=ki).tolist(),
                "singular_values": s.tolist(),
                "timings": timings,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            write_json_atomic(tmp / "manifest.json", manifest)
    finally:
        eng.close()
        bar.close()
    manifest["skipped"] = False
    return manifest


class _progress:
    """A step-wise progress display (tqdm) that is silent when disabled."""

    def __init__(self, enabled: bool, steps: list[str]) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=len(steps), desc=f"graph: {steps[0]}", unit="step")

    def update(self, step: str) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_description(f"graph: {step}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.bar.total - self.bar.n)
            self.bar.close()


def load_manifest(gdir: str | Path) -> dict:
    """The manifest of a complete graph directory (refuses incomplete or foreign directories)."""
    gdir = Path(gdir)
    if not gdir.is_dir():
        raise MgoeError(f"{gdir}: no such graph directory")
    if not is_complete(gdir) or not (gdir / "manifest.json").is_file():
        raise IncompleteDirectoryError(f"{gdir}: incomplete or not a graph directory - build it again")
    try:
        manifest = json.loads((gdir / "manifest.json").read_text())
    except ValueError as exc:
        raise MgoeError(f"{gdir / 'manifest.json'}: unreadable ({exc})") from None
    if manifest.get("format_version") != GRAPH_FORMAT_VERSION:
        raise MgoeError(f"{gdir}: graph format {manifest.get('format_version')}, expected {GRAPH_FORMAT_VERSION}")
    return manifest


def load_graph(gdir: str | Path) -> tuple[dict, MacroFeatureTable]:
    """Load a graph directory's manifest and feature tables (for training and serving)."""
    gdir = Path(gdir)
    manifest = load_manifest(gdir)
    ku, ki = manifest["num_user_macro"], manifest["num_item_macro"]
    n_graphs = len(manifest["graphs"])
    sizes = {
        "user_first": (manifest["num_users"], ki),
        "user_second": (manifest["num_users"], ku),
        "item_first": (manifest["num_items"], ku),
        "item_second": (manifest["num_items"], ki),
    }
    stacked = {
        kind: _read_stacked(gdir / "features" / f"{kind}.parquet", n, n_graphs, k) for kind, (n, k) in sizes.items()
    }
    user_macro = pq.read_table(gdir / "user_macro.parquet", columns=["macro"])["macro"].to_numpy()
    item_macro = pq.read_table(gdir / "item_macro.parquet", columns=["macro"])["macro"].to_numpy()
    e = pq.read_table(gdir / "edges.parquet")
    users = e[USER_COL].to_numpy().astype(np.int64)
    items = e[ITEM_COL].to_numpy().astype(np.int64)
    masks = e["mask"].to_numpy().astype(np.int64)
    keys = users * manifest["num_items"] + items
    order = np.argsort(keys)
    edges = Edges(users[order], items[order], masks[order], e["merged"].to_numpy()[order],
                  manifest["num_users"], manifest["num_items"])
    history = HistoryEdges(keys[order], edges.graph_weights(len(manifest["tasks"])), manifest["num_items"])
    reassign = None
    if manifest.get("loo_assignment", True) and all(
        (gdir / f"{n}.npy").is_file() for n in ("coords_user", "basis_user", "coords_item", "basis_item")
    ):
        load = lambda name: np.load(gdir / f"{name}.npy", allow_pickle=False)  # noqa: E731
        reassign = LooAssignment(
            user_coords=load("coords_user"), user_basis=load("basis_user"), user_centroids=load("centroids_user"),
            item_coords=load("coords_item"), item_basis=load("basis_item"), item_centroids=load("centroids_item"),
        )
    table = MacroFeatureTable(
        reassign=reassign,
        balanced=manifest.get("balanced_leave_one_out", True),
        graphs=manifest["graphs"],
        user_macro=user_macro.astype(np.int32),
        item_macro=item_macro.astype(np.int32),
        num_user_macro=ku,
        num_item_macro=ki,
        stacked=stacked,
        edges=history,
    )
    return manifest, table


def assignments_frame(gdir: str | Path, side: str) -> pd.DataFrame:
    return pd.read_parquet(Path(gdir) / f"{side}_macro.parquet")
