"""``mgoe graph build | info | inspect``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mgoe.errors import MgoeError


def cmd_build(args: argparse.Namespace) -> int:
    from mgoe.graph.build import GraphConfig, build_graph

    ranking = None
    if args.ranking:
        try:
            ranking = json.loads(Path(args.ranking).read_text()) if Path(args.ranking).is_file() else json.loads(args.ranking)
        except json.JSONDecodeError as exc:
            raise MgoeError(f"--ranking: not JSON ({exc})") from None
    config = GraphConfig(
        user_clusters=args.user_clusters,
        item_clusters=args.item_clusters,
        beta=args.beta,
        ranking=ranking,
        embedding_dim=args.embedding_dim,
        weighted=not args.unweighted,
        threshold_quantile=args.threshold_quantile,
        user_group_column=args.user_group_col,
        item_group_column=args.item_group_col,
        seed=args.seed,
        duckdb_memory_limit=args.memory_limit,
        duckdb_threads=args.threads,
        spark_master=args.spark_master,
    )
    for name in ("user_clusters", "item_clusters", "embedding_dim"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise MgoeError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    manifest = build_graph(args.data, args.output, config, engine=args.engine, force=args.force, progress=not args.quiet)
    if manifest["skipped"]:
        print(f"graph {args.output} is up to date (same data and config); use --force to rebuild")
        return 0
    print(
        f"built {args.output} ({args.engine}): {manifest['history_edges']:,} history edges, "
        f"{manifest['num_user_macro'] - 1} user + {manifest['num_item_macro'] - 1} item macro nodes "
        f"(+ cold), graphs {', '.join(manifest['graphs'])}, {manifest['timings']['total_s']:.1f} s"
    )
    return 0


def _sizes_summary(sizes: list[int]) -> str:
    active = np.asarray(sizes[:-1])
    return (
        f"{len(active)} nodes, sizes min {active.min()} / median {int(np.median(active))} / max {active.max()}"
        f", cold {sizes[-1]}"
    )


def cmd_info(args: argparse.Namespace) -> int:
    from mgoe.graph.build import load_manifest

    m = load_manifest(args.directory)
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    cfg = m["config"]
    covered_u = 1 - m["user_cluster_sizes"][-1] / max(m["num_users"], 1)
    covered_i = 1 - m["item_cluster_sizes"][-1] / max(m["num_items"], 1)
    print(f"graph        {args.directory}  (dataset {m['dataset']}, engine {m['engine']}, built {m['built_at']})")
    print(f"graphs       {', '.join(m['graphs'])}")
    print(f"history      {m['history_edges']:,} distinct edges; positives " + ", ".join(f"{k} {v:,}" for k, v in m["history_positives"].items()))
    print(f"users        {m['num_users']:,}; macro: {_sizes_summary(m['user_cluster_sizes'])}; coverage {covered_u:.1%}")
    print(f"items        {m['num_items']:,}; macro: {_sizes_summary(m['item_cluster_sizes'])}; coverage {covered_i:.1%}")
    print(f"config       beta {cfg['beta']}, {'weighted' if cfg['weighted'] else 'unweighted'} grouping, "
          f"embedding dim {cfg['embedding_dim']}, seed {cfg['seed']}")
    print("build time   " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in m["timings"].items()))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from mgoe.graph.build import load_graph

    manifest, table = load_graph(args.directory)
    gdir = Path(args.directory)
    side = "user" if args.user is not None else "item"
    wanted = args.user if args.user is not None else args.item
    assign = pd.read_parquet(gdir / f"{side}_macro.parquet")
    hits = np.flatnonzero(assign[f"{side}_id"].astype(str).to_numpy() == str(wanted))
    if hits.size == 0:
        raise MgoeError(f"{side} id {wanted!r} is not in {gdir}")
    node = int(hits[0])
    users = np.array([node if side == "user" else 0])
    items = np.array([node if side == "item" else 0])
    feats = table.lookup(users, items, leave_one_out=False)
    first, second = (feats["user_first"], feats["user_second"]) if side == "user" else (feats["item_first"], feats["item_second"])
    out = {
        "id": str(wanted),
        "macro_node": int(assign["macro"].iloc[node]),
        "features": {
            graph: {
                "first_order": _sparse_dict(first[0, g]),
                "second_order": _sparse_dict(second[0, g]),
            }
            for g, graph in enumerate(manifest["graphs"])
        },
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{side} {out['id']}: macro node {out['macro_node']}")
        for graph, f in out["features"].items():
            print(f"  {graph}: first order {f['first_order']}")
            print(f"  {' ' * len(graph)}  second order {f['second_order']}")
    return 0


def _sparse_dict(vector: np.ndarray) -> dict[str, float]:
    nz = np.flatnonzero(vector)
    return {str(int(k)): round(float(vector[k]), 6) for k in nz}


def register(sub: argparse._SubParsersAction) -> None:
    graph = sub.add_parser("graph", help="build and inspect macro graphs")
    gsub = graph.add_subparsers(dest="graph_command", required=True, metavar="{build,info,inspect}")
    b = gsub.add_parser("build", help="merged graph, macro nodes and macro features of a dataset")
    b.add_argument("--data", required=True, help="prepared dataset directory")
    b.add_argument("--output", required=True, help="graph directory to write")
    b.add_argument("--engine", default="memory", choices=["memory", "duckdb", "spark"],
                   help="memory: scipy.sparse in RAM; duckdb: out-of-core SQL over Parquet; "
                   "spark: PySpark DataFrame jobs (local or a cluster, see docs/scaling.md)")
    b.add_argument("--user-clusters", type=int, help="user macro nodes (default: sqrt(#users)/2 in [8, 256])")
    b.add_argument("--item-clusters", type=int, help="item macro nodes (default: sqrt(#items)/2 in [8, 256])")
    b.add_argument("--beta", type=float, default=0.5, help="Box-Cox beta of the merging score (0 = log)")
    b.add_argument("--ranking", help="explicit combination ranking, JSON or a JSON file: {\"cart+buy\": 3, ...}")
    b.add_argument("--embedding-dim", type=int, default=32, help="spectral embedding rank")
    b.add_argument("--unweighted", action="store_true", help="ablation: k-means without preference weights")
    b.add_argument("--threshold-quantile", type=float, default=0.5, help="node weight threshold quantile")
    b.add_argument("--user-group-col", help="group users by this categorical user feature instead")
    b.add_argument("--item-group-col", help="group items by this categorical item feature (e.g. genre)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--memory-limit", default="4GB", help="duckdb engine memory limit")
    b.add_argument("--threads", type=int, help="duckdb engine threads")
    b.add_argument("--spark-master", default="local[2]", metavar="URL",
                   help="spark engine: Spark master URL (default local[2]; spark-submit's own wins)")
    b.add_argument("--force", action="store_true", help="rebuild even if inputs and config are unchanged")
    b.add_argument("--quiet", action="store_true", help="no progress display")
    b.set_defaults(func=cmd_build)

    i = gsub.add_parser("info", help="cluster sizes, coverage, build time")
    i.add_argument("directory")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    s = gsub.add_parser("inspect", help="one user's or item's macro node and features (full history)")
    s.add_argument("directory")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="original user id")
    who.add_argument("--item", help="original item id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_inspect)
