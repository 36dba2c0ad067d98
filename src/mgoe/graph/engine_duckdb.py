"""Out-of-core graph engine: DuckDB SQL over the dataset's Parquet files.

Memory is bounded by DuckDB's ``memory_limit`` (it spills hash aggregates and joins to a temp
directory) plus the outputs' per-node arrays; the interactions are never loaded at once. The
steps are the same as the in-memory engine's, as SQL (each maps one-to-one onto a Spark
DataFrame job):

1. ``edges``: ``GROUP BY user, item`` of the positive train rows, task mask ``bit_or``-ed, merged
   score joined from the ``2^T``-row score table;
2. strengths: ``GROUP BY user`` / ``GROUP BY item`` of the merged score;
3. the SVD's products ``Ŝ X`` / ``Ŝᵀ Y`` stream the edge table in Arrow chunks;
4. first order: edges ⋈ macro assignment, ``GROUP BY node, macro`` with one SUM per graph;
5. second order: edges ⋈ first order of the other side, ``GROUP BY node, macro`` of
   ``SUM(a · n)``, minus the self path ``Σ a²`` at the node's own macro node.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from mgoe.data.schema import ITEM_COL, USER_COL, Dataset
from mgoe.graph.grouping import inverse_sqrt_degree
from mgoe.graph.merge import score_table

TOLERANCE = 1e-6


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
        cursor = self.con.cursor()  # a stream of its own, so it never blocks the main connection
        reader = _arrow_reader(cursor.sql('SELECT "user", item, merged FROM edges'), self.config.chunk_rows)
        for batch in reader:
            u = batch.column(0).to_numpy()
            i = batch.column(1).to_numpy()
            w = batch.column(2).to_numpy() * du[u] * di[i]
            if transpose:
                out += sp.csr_matrix((w, (i, u)), shape=(n_items, n_users)) @ x
            else:
                out += sp.csr_matrix((w, (u, i)), shape=(n_users, n_items)) @ x
        cursor.close()
        return out

    def spectral_operators(self, user_strength: np.ndarray, item_strength: np.ndarray):
        du = inverse_sqrt_degree(user_strength)
        di = inverse_sqrt_degree(item_strength)
        return (
            lambda x: self._stream_products(x, False, du, di),
            lambda y: self._stream_products(y, True, du, di),
        )

    def write_features(self, user_macro, item_macro, ku, ki, directory: Path) -> None:
        con = self.con
        con.register("umac_arrow", pa.table({"node": np.arange(len(user_macro), dtype=np.int32), "macro": user_macro.astype(np.int32)}))
        con.register("imac_arrow", pa.table({"node": np.arange(len(item_macro), dtype=np.int32), "macro": item_macro.astype(np.int32)}))
        con.execute("CREATE OR REPLACE TABLE umac AS SELECT * FROM umac_arrow")
        con.execute("CREATE OR REPLACE TABLE imac AS SELECT * FROM imac_arrow")
        w = self._weight_exprs("e")
        g_cols = [f"g{g}" for g in range(self.n_graphs)]
        sums = ", ".join(f"SUM({expr}) AS {c}" for expr, c in zip(w, g_cols, strict=True))
        # First order: user -> item macro nodes, item -> user macro nodes.
        con.execute(f"""CREATE OR REPLACE TABLE user_first AS
            SELECT e."user" AS node, m.macro, {sums} FROM edges e JOIN imac m ON e.item = m.node
            GROUP BY e."user", m.macro""")
        con.execute(f"""CREATE OR REPLACE TABLE item_first AS
            SELECT e.item AS node, m.macro, {sums} FROM edges e JOIN umac m ON e."user" = m.node
            GROUP BY e.item, m.macro""")
        # Self paths Σ a² per node and graph.
        self_sums = ", ".join(f"SUM(({expr}) * ({expr})) AS {c}" for expr, c in zip(w, g_cols, strict=True))
        con.execute(f'CREATE OR REPLACE TABLE user_self AS SELECT e."user" AS node, {self_sums} FROM edges e GROUP BY e."user"')
        con.execute(f"CREATE OR REPLACE TABLE item_self AS SELECT e.item AS node, {self_sums} FROM edges e GROUP BY e.item")
        for side, other_first, join_col, own_macro, own_self in (
            ("user", "item_first", "item", "umac", "user_self"),
            ("item", "user_first", '"user"', "imac", "item_self"),
        ):
            node_col = '"user"' if side == "user" else "item"
            path_sums = ", ".join(f"SUM(({expr}) * f.{c}) AS {c}" for expr, c in zip(w, g_cols, strict=True))
            corrected = ", ".join(
                f"p.{c} - CASE WHEN p.macro = m.macro THEN s.{c} ELSE 0 END AS {c}" for c in g_cols
            )
            con.execute(f"""CREATE OR REPLACE TABLE {side}_second AS
                SELECT p.node, p.macro, {corrected}
                FROM (SELECT e.{node_col} AS node, f.macro, {path_sums}
                      FROM edges e JOIN {other_first} f ON e.{join_col} = f.node
                      GROUP BY e.{node_col}, f.macro) p
                JOIN {own_macro} m ON p.node = m.node
                JOIN {own_self} s ON p.node = s.node""")
        for kind in ("user_first", "user_second", "item_first", "item_second"):
            unions = " UNION ALL ".join(
                f"SELECT {g}::SMALLINT AS graph, node::INTEGER AS node, macro::INTEGER AS macro, "
                f"{c}::FLOAT AS weight FROM {kind} WHERE ABS({c}) >= {TOLERANCE}"
                for g, c in enumerate(g_cols)
            )
            con.execute(f"COPY ({unions}) TO '{directory / (kind + '.parquet')}' (FORMAT PARQUET)")

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)


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
