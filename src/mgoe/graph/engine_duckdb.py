"""Out-of-core graph engine: DuckDB SQL over the dataset's Parquet files.

Memory is bounded by DuckDB's ``memory_limit`` (it spills hash aggregates and joins to a temp
directory) plus the outputs' per-node arrays; the interactions are never loaded at once. The
steps are the same as the in-memory engine's, as SQL (each maps one-to-one onto a Spark
DataFrame job):

1. ``edges``: ``GROUP BY user, item`` of the positive train rows, task mask ``bit_or``-ed, merged
   score joined from the ``2^T``-row score table;
2. strengths: ``GROUP BY user`` / ``GROUP BY item`` of the merged score;
3. the SVD's products ``Ŝ X`` / ``Ŝᵀ Y`` stream the edge table in Arrow chunks;
4. features (first and second order, every graph), streamed in two passes over the edge
   table: the item side's first order and self paths accumulate into ``[items, G, K]`` arrays;
   then the edges ordered by user, a chunk of whole users at a time, give those users' first
   and second order (``A_c · item_first`` minus the self path; written at once) and add
   ``A_cᵀ · user_first_c`` into the item side's second order. Memory: the item-side arrays
   plus one chunk, whatever the number of users. (Earlier versions joined edges with the
   other side's first order in SQL; at 10^9 interactions that join's aggregate spilled more
   than 50 GB to disk. The Spark engine keeps the join form: there it is distributed.)
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from mgoe.data.schema import ITEM_COL, USER_COL, Dataset
from mgoe.graph.features import FEATURE_SCHEMA, FEATURE_TOLERANCE
from mgoe.graph.grouping import inverse_sqrt_degree
from mgoe.graph.merge import score_table


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, ds: Dataset, config) -> None:
        self.ds = ds
        self.config = config
        self.tasks = ds.tasks
        self.n_graphs = 1 + len(self.tasks)
        self.workdir = Path(os.environ.get("MGOE_TMPDIR", "/tmp")) / f"mgoe-duckdb-{os.getpid()}-{id(self)}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.workdir / "work.duckdb"))
        self.con.execute(f"SET memory_limit='{config.duckdb_memory_limit}'")
        self.con.execute(f"SET temp_directory='{self.workdir / 'spill'}'")
        self.con.execute("SET preserve_insertion_order=false")
        self.con.execute("SET enable_progress_bar=false")
        if config.duckdb_threads:
            self.con.execute(f"SET threads={int(config.duckdb_threads)}")

    # -- graph weights as SQL expressions: g0 = merged score, g{1+t} = bit t of the mask
    def _weight_exprs(self, alias: str = "e") -> list[str]:
        return [f"{alias}.merged"] + [f"(({alias}.mask >> {t}) & 1)::DOUBLE" for t in range(len(self.tasks))]

    def load_edges(self) -> dict[str, int]:
        files = [str(p) for p in self.ds.split_files("train")]
        mask_expr = " + ".join(f"({t}::INTEGER << {k})" for k, t in enumerate(_quote(self.tasks)))
        scores = score_table(self.tasks, self.config.beta, self.config.ranking).astype(np.float64)
        self.con.register("score_arrow", pa.table({"mask": np.arange(scores.size, dtype=np.int32), "score": scores}))
        self.con.execute(
            f"""
            CREATE OR REPLACE TABLE edges AS
            SELECT a."user" AS "user", a.item AS item, a.mask AS mask, s.score AS merged
            FROM (
                SELECT "user", item, bit_or(mask) AS mask
                FROM (SELECT "user", item, {mask_expr} AS mask FROM read_parquet(?))
                WHERE mask > 0
                GROUP BY "user", item
            ) a JOIN score_arrow s ON a.mask = s.mask
            """,
            [files],
        )
        sums = ", ".join(f"SUM((mask >> {k}) & 1)" for k in range(len(self.tasks)))
        row = self.con.execute(f"SELECT {sums} FROM edges").fetchall()[0]
        return {t: int(row[k] or 0) for k, t in enumerate(self.tasks)}

    def write_edges(self, path: Path) -> int:
        self.con.execute(
            f"""COPY (SELECT "user"::INTEGER AS "{USER_COL}", item::INTEGER AS "{ITEM_COL}",
                      mask::INTEGER AS mask, merged::FLOAT AS merged FROM edges ORDER BY "user", item)
                TO '{path}' (FORMAT PARQUET)"""
        )
        return int(self.con.execute("SELECT COUNT(*) FROM edges").fetchall()[0][0])

    def strengths(self) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for col, n in (('"user"', self.ds.meta.num_users), ("item", self.ds.meta.num_items)):
            t = _arrow_table(self.con.sql(f"SELECT {col} AS node, SUM(merged) AS s FROM edges GROUP BY {col}"))
            dense = np.zeros(n, dtype=np.float64)
            dense[t["node"].to_numpy()] = t["s"].to_numpy()
            out.append(dense)
        return out[0], out[1]

    def _stream_products(self, x: np.ndarray, transpose: bool, du: np.ndarray, di: np.ndarray) -> np.ndarray:
        n_users, n_items = self.ds.meta.num_users, self.ds.meta.num_items
        out = np.zeros((n_items if transpose else n_users, x.shape[1]), dtype=np.float64)
        for batch in self._scan('SELECT "user", item, merged FROM edges'):
            u = batch.column(0).to_numpy()
            i = batch.column(1).to_numpy()
            w = batch.column(2).to_numpy() * du[u] * di[i]
            if transpose:
                out += sp.csr_matrix((w, (i, u)), shape=(n_items, n_users)) @ x
            else:
                out += sp.csr_matrix((w, (u, i)), shape=(n_users, n_items)) @ x
        return out

    def spectral_operators(self, user_strength: np.ndarray, item_strength: np.ndarray):
        du = inverse_sqrt_degree(user_strength)
        di = inverse_sqrt_degree(item_strength)
        return (
            lambda x: self._stream_products(x, False, du, di),
            lambda y: self._stream_products(y, True, du, di),
        )

    def _scan(self, query: str):
        """Arrow record batches of ``query`` (at most ``chunk_rows`` rows each), streamed on a
        cursor of their own so that they never block the main connection."""
        cursor = self.con.cursor()
        try:
            yield from _arrow_reader(cursor.sql(query), self.config.chunk_rows)
        finally:
            cursor.close()

    def _edge_batches(self, order_by_user: bool):
        """The edge table as ``(users, items, weights [n, G] float64)`` Arrow-sized batches."""
        order = ' ORDER BY "user"' if order_by_user else ""
        for batch in self._scan(f'SELECT "user", item, mask, merged FROM edges{order}'):
            users = batch.column(0).to_numpy().astype(np.int64)
            items = batch.column(1).to_numpy().astype(np.int64)
            mask = batch.column(2).to_numpy()
            weights = np.empty((len(users), self.n_graphs), dtype=np.float64)
            weights[:, 0] = batch.column(3).to_numpy()
            for t in range(len(self.tasks)):
                weights[:, 1 + t] = (mask >> t) & 1
            yield users, items, weights

    def _user_chunks(self):
        """Edge batches ordered by user, cut so that every user's edges sit in one chunk."""
        carry = None
        for users, items, weights in self._edge_batches(order_by_user=True):
            if carry is not None:
                users, items, weights = (np.concatenate([c, x]) for c, x in zip(carry, (users, items, weights),
                                                                                  strict=True))
            cut = int(np.searchsorted(users, users[-1]))  # the last user may go on in the next batch
            carry = (users[cut:], items[cut:], weights[cut:])
            if cut:
                yield users[:cut], items[:cut], weights[:cut]
        if carry is not None and len(carry[0]):
            yield carry

    def write_features(self, user_macro, item_macro, ku, ki, directory: Path) -> None:
        """The four feature kinds of every graph, streamed over the edge table in two passes.

        Pass 1 accumulates the item side's first order ``Aᵀ·onehot(user macro)`` and self paths
        ``Σ a²`` (dense ``[items, G, K_U]``). Pass 2 walks the edges ordered by user, a chunk of
        whole users at a time: the chunk's first order ``A_c·onehot(item macro)``, second order
        ``A_c·item_first`` minus the self path at the user's own macro node (written out at once),
        and adds ``A_cᵀ·user_first_c`` into the item side's second order. Memory: the item-side
        arrays (``items × G × K × 8`` bytes each) plus one chunk - independent of the number of
        users and of the interactions; nothing is spilled to disk.
        """
        n_items, g_count = self.ds.meta.num_items, self.n_graphs
        user_macro = np.asarray(user_macro, dtype=np.int64)
        item_macro = np.asarray(item_macro, dtype=np.int64)
        item_first = np.zeros((n_items, g_count, ku), dtype=np.float64)
        item_self = np.zeros((n_items, g_count), dtype=np.float64)
        for users, items, weights in self._edge_batches(order_by_user=False):
            cell = items * ku + user_macro[users]
            for g in range(g_count):
                w = weights[:, g]
                item_first[:, g, :] += np.bincount(cell, w, n_items * ku).reshape(n_items, ku)
                item_self[:, g] += np.bincount(items, w * w, n_items)
        item_second = np.zeros((n_items, g_count, ki), dtype=np.float64)
        with _LongWriter(directory / "user_first.parquet") as first_out, \
                _LongWriter(directory / "user_second.parquet") as second_out:
            for users, items, weights in self._user_chunks():
                nodes, local = np.unique(users, return_inverse=True)
                n = len(nodes)
                cell = local * ki + item_macro[items]
                own = user_macro[nodes]
                for g in range(g_count):
                    w = weights[:, g]
                    first = np.bincount(cell, w, n * ki).reshape(n, ki)
                    adjacency = sp.csr_matrix((w, (local, items)), shape=(n, n_items))
                    second = adjacency @ item_first[:, g, :]
                    second[np.arange(n), own] -= np.bincount(local, w * w, n)
                    item_second[:, g, :] += adjacency.T @ first
                    first_out.add(g, nodes, first)
                    second_out.add(g, nodes, second)
        item_second[np.arange(n_items), :, item_macro] -= item_self
        for kind, values in (("item_first", item_first), ("item_second", item_second)):
            with _LongWriter(directory / f"{kind}.parquet") as out:
                for g in range(g_count):
                    out.add(g, np.arange(n_items), values[:, g, :])

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)


class _LongWriter:
    """Write ``[nodes, K]`` blocks of one feature kind as long Parquet rows
    ``(graph, node, macro, weight)`` (:data:`FEATURE_SCHEMA`), keeping entries with
    ``|weight| >= FEATURE_TOLERANCE``."""

    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(path, FEATURE_SCHEMA)

    def add(self, graph: int, nodes: np.ndarray, values: np.ndarray) -> None:
        row, macro = np.nonzero(np.abs(values) >= FEATURE_TOLERANCE)
        if len(row):
            self.writer.write_table(pa.table({
                "graph": np.full(len(row), graph, dtype=np.int16),
                "node": nodes[row].astype(np.int32),
                "macro": macro.astype(np.int32),
                "weight": values[row, macro].astype(np.float32),
            }, schema=FEATURE_SCHEMA))

    def __enter__(self) -> _LongWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()


def _arrow_table(result) -> pa.Table:
    """A query result as an Arrow table (DuckDB 2 renamed ``fetch_arrow_table``)."""
    if hasattr(result, "to_arrow_table"):
        return result.to_arrow_table()
    return result.fetch_arrow_table()


def _arrow_reader(result, batch_rows: int):
    """Stream a query result in Arrow record batches of at most ``batch_rows`` rows."""
    if hasattr(result, "to_arrow_reader"):
        return result.to_arrow_reader(batch_rows)
    return result.record_batch(batch_rows)


def _quote(names: list[str]) -> list[str]:
    return ['"' + n.replace('"', '""') + '"' for n in names]
