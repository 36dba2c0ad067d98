"""Macro-graph build time and peak memory on synthetic data, per engine, against a naive build.

    python benchmarks/bench_graph.py --rows 10000000 --engines memory,duckdb,naive
    python benchmarks/bench_graph.py --rows 100000000 --engines duckdb

For every row count the synthetic dataset (3 tasks, 32 communities, users = rows/50,
items = rows/500) is generated once into ``--workdir`` (kept for reuse), then each engine builds
the graph in a fresh child process whose peak RSS (``VmHWM``) is reported. ``naive`` is the
straightforward implementation a user would write first: pandas ``groupby``/``merge`` for the
edges and the four feature aggregations (second order as an edge ⋈ first-order join),
``scipy.sparse.linalg.svds`` and full-batch sklearn ``KMeans`` — the same maths, same K.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
from pathlib import Path
engine, data, out, ku, ki = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
t0 = time.perf_counter()
if engine == "naive":
    sys.path.insert(0, str(Path(sys.argv[6])))
    from bench_graph import naive_build
    timings = naive_build(data, ku, ki)
    edges = timings.pop("edges")
else:
    from mgoe.graph.build import GraphConfig, build_graph
    config = GraphConfig(user_clusters=ku, item_clusters=ki, duckdb_memory_limit=sys.argv[7])
    m = build_graph(data, out, config, engine=engine, force=True, progress=True)  # steps on stderr
    timings, edges = m["timings"], m["history_edges"]
wall = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"wall_s": wall, "peak_rss_mib": int(hwm) / 1024, "edges": edges, "timings": timings}))
"""


def naive_build(data_dir: str, ku: int, ki: int) -> dict:
    """The straightforward pandas/scipy build (same outputs, no care for speed or memory)."""
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds
    from sklearn.cluster import KMeans

    from mgoe.data.schema import Dataset
    from mgoe.graph.merge import merge_scores

    ds = Dataset.open(data_dir)
    tasks = ds.tasks
    t = {}
    t0 = time.perf_counter()
    train = ds.read_split("train", columns=["user", "item", *tasks])
    train = train[train[tasks].sum(axis=1) > 0]
    edges = train.groupby(["user", "item"], as_index=False)[tasks].max()
    edges["merged"] = merge_scores(edges[tasks].to_numpy(), tasks)
    t["edges_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    s = sp.csr_matrix((edges["merged"], (edges["user"], edges["item"])), shape=(ds.meta.num_users, ds.meta.num_items))
    du = np.asarray(s.sum(1)).ravel()
    di = np.asarray(s.sum(0)).ravel()
    norm = sp.diags(1 / np.sqrt(np.maximum(du, 1e-12))) @ s @ sp.diags(1 / np.sqrt(np.maximum(di, 1e-12)))
    u, sv, vt = svds(norm, k=32)
    t["embedding_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cu = np.full(ds.meta.num_users, ku, dtype=np.int64)
    ci = np.full(ds.meta.num_items, ki, dtype=np.int64)
    cu[du > 0] = KMeans(ku, n_init=1, random_state=0).fit_predict(u[du > 0] * sv)
    ci[di > 0] = KMeans(ki, n_init=1, random_state=0).fit_predict(vt.T[di > 0] * sv)
    t["clusters_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    edges["cu"] = cu[edges["user"]]
    edges["ci"] = ci[edges["item"]]
    weights = ["merged", *tasks]
    user_first = edges.groupby(["user", "ci"], as_index=False)[weights].sum()
    item_first = edges.groupby(["item", "cu"], as_index=False)[weights].sum()
    paths = edges[["user", "item", "cu", *weights]].merge(item_first, on="item", suffixes=("", "_n"))
    for w in weights:
        paths[w] = paths[w] * paths[f"{w}_n"] - np.where(paths["cu"] == paths["cu_n"], paths[w] ** 2, 0)
    user_second = paths.groupby(["user", "cu_n"], as_index=False)[weights].sum()
    paths = edges[["user", "item", "ci", *weights]].merge(user_first, on="user", suffixes=("", "_n"))
    for w in weights:
        paths[w] = paths[w] * paths[f"{w}_n"] - np.where(paths["ci"] == paths["ci_n"], paths[w] ** 2, 0)
    item_second = paths.groupby(["item", "ci_n"], as_index=False)[weights].sum()
    t["features_s"] = time.perf_counter() - t0
    t["edges"] = len(edges)
    _ = (user_second, item_second)
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="10000000", help="comma-separated row counts")
    ap.add_argument("--engines", default="memory,duckdb,naive")
    ap.add_argument("--workdir", default="/tmp/mgoe-bench-graph")
    ap.add_argument("--clusters", type=int, default=256, help="user and item macro nodes")
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--users", type=int, help="fixed number of users (default rows/50)")
    ap.add_argument("--items", type=int, help="fixed number of items (default rows/500)")
    ap.add_argument("--memory-limit", default="4GB", help="DuckDB memory_limit")
    ap.add_argument("--generate-only", action="store_true", help="only generate the datasets")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print("| rows | engine | history edges | wall s | edges/s (history) | rows/s (log) | peak RSS MiB | steps |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for rows in [int(r) for r in args.rows.split(",")]:
        users, items = args.users or rows // 50, args.items or rows // 500
        shape = "" if (args.users, args.items) == (None, None) else f"-u{users}-i{items}"
        data = work / f"synth-{rows}{shape}"
        if not (data / "_COMPLETE").exists():
            from mgoe.data.synth import SynthConfig, generate

            generate(SynthConfig(users=users, items=items, interactions=rows, communities=32), data,
                     progress=True)
        if args.generate_only:
            continue
        for engine in args.engines.split(","):
            cmd = [sys.executable, "-c", CHILD, engine, str(data), str(work / f"graph-{rows}{shape}-{engine}"),
                   str(args.clusters), str(args.clusters), str(Path(__file__).resolve().parent),
                   args.memory_limit]
            err_path = work / f"graph-{rows}{shape}-{engine}.stderr"  # the build's progress, live
            try:
                with open(err_path, "w") as err:
                    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                         timeout=args.timeout, check=True)
            except subprocess.CalledProcessError:
                last = (err_path.read_text().strip().splitlines() or ["?"])[-1]
                print(f"| {rows:,} | {engine} | failed: {last} |||||")
                continue
            except subprocess.TimeoutExpired:
                print(f"| {rows:,} | {engine} | timed out after {args.timeout} s |||||")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            steps = ", ".join(f"{k[:-2]} {v:.0f}" for k, v in r["timings"].items() if k != "total_s")
            print(f"| {rows:,} | {engine} | {r['edges']:,} | {r['wall_s']:.1f} | {r['edges'] / r['wall_s']:,.0f} "
                  f"| {rows / r['wall_s']:,.0f} | {r['peak_rss_mib']:,.0f} | {steps} |", flush=True)


if __name__ == "__main__":
    main()
