"""Quality of preference-based grouping: macro nodes against the planted communities.

    python benchmarks/bench_grouping.py --rows 2000000 --communities 16

Generates synthetic data with planted user and item communities, builds the graph with
preference-weighted and with unweighted k-means (K = the number of planted communities, and
the default K), and reports the adjusted Rand index and NMI between macro nodes and planted
communities over the nodes with history (cold nodes excluded), for users and items.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from mgoe.data.synth import SynthConfig, generate
from mgoe.graph.build import GraphConfig, build_graph


def agreement(gdir: Path, data: Path, side: str) -> tuple[float, float, int]:
    macro = pd.read_parquet(gdir / f"{side}_macro.parquet")
    planted = pd.read_parquet(data / "planted" / f"{side}s.parquet")
    k_cold = macro["macro"].max()
    active = macro["macro"].to_numpy() != k_cold
    m = macro["macro"].to_numpy()[active]
    c = planted["community"].to_numpy()[active]
    return adjusted_rand_score(c, m), normalized_mutual_info_score(c, m), int(active.sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--communities", type=int, default=16)
    ap.add_argument("--signal", default="0.5,0.9", help="comma-separated synthetic signal strengths")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| signal | K | grouping | user ARI | user NMI | item ARI | item NMI |")
    print("|---:|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for signal in [float(s) for s in args.signal.split(",")]:
            data = tmp / f"data-{signal}"
            generate(SynthConfig(users=args.rows // 50, items=args.rows // 200, interactions=args.rows,
                                 communities=args.communities, signal=signal, seed=args.seed), data)
            for k_label, k in ((f"{args.communities} (= planted)", args.communities), ("default", None)):
                for weighted in (True, False):
                    gdir = tmp / f"g-{signal}-{k}-{weighted}"
                    build_graph(data, gdir, GraphConfig(user_clusters=k, item_clusters=k, weighted=weighted, seed=args.seed))
                    ua, un, _ = agreement(gdir, data, "user")
                    ia, inmi, _ = agreement(gdir, data, "item")
                    name = "weighted" if weighted else "unweighted"
                    print(f"| {signal} | {k_label} | {name} | {ua:.3f} | {un:.3f} | {ia:.3f} | {inmi:.3f} |", flush=True)
    _ = np


if __name__ == "__main__":
    main()
