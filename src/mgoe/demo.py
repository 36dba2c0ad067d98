"""``mgoe demo``: the whole pipeline on the embedded synthetic default, in a few minutes on 2 cores.

1. generate the synthetic default (:data:`mgoe.data.synth.DEMO_CONFIG`: planted user and item
   communities, 3 funnel tasks) unless the working directory already has it;
2. build its macro graphs;
3. train MGOE and a plain MMoE of the same width (same data, same budget, early stopping on
   validation);
4. evaluate both on the test split and print the per-task comparison.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from mgoe.data.synth import DEMO_CONFIG, generate
from mgoe.io import is_complete


def run_demo(args: argparse.Namespace) -> int:
    from mgoe.graph.build import GraphConfig, build_graph
    from mgoe.train import api

    root = Path(args.output)
    root.mkdir(parents=True, exist_ok=True)
    data, graph = root / "data", root / "graph"
    synth = replace(DEMO_CONFIG, seed=args.seed)
    if args.interactions:
        synth = replace(synth, interactions=args.interactions)
    started = time.perf_counter()

    print(f"[1/4] synthetic data: {synth.users:,} users, {synth.items:,} items, {synth.interactions:,} impressions, "
          f"{synth.tasks} tasks -> {data}")
    if not is_complete(data) or args.fresh:
        generate(synth, data, progress=not args.quiet)
    else:
        print("      (reusing the existing dataset; --fresh regenerates it)")

    print(f"[2/4] macro graphs -> {graph}")
    manifest = build_graph(data, graph, GraphConfig(seed=args.seed), progress=not args.quiet)
    print(f"      {manifest['history_edges']:,} history edges, {manifest['num_user_macro'] - 1} user and "
          f"{manifest['num_item_macro'] - 1} item macro nodes, graphs: {', '.join(manifest['graphs'])}")

    results = {}
    for step, model in enumerate(("mgoe", "mmoe"), start=3):
        if step == 3:
            print(f"[3/4] training MGOE and MMoE ({args.epochs} epochs at most, early stopping on valid)")
        run = root / "runs" / model
        if args.fresh and run.exists():
            shutil.rmtree(run)
        if (run / "metrics.json").is_file():
            # A finished run from an earlier demo: report it (``--fresh`` retrains).
            metrics = json.loads((run / "metrics.json").read_text())
            print(f"      {model}: reusing the finished run in {run}")
        else:
            config = {"batch_size": args.batch_size} if args.batch_size else None
            metrics = api.train(data, graph if model == "mgoe" else None, output=run, model=model,
                                config=config, seed=args.seed, epochs=args.epochs,
                                resume=(run / "config.json").is_file(), progress=not args.quiet)
        results[model] = metrics
        print(f"      {model}: best epoch {metrics['best_epoch']}, "
              f"{metrics.get('train_samples_per_s', 0):,.0f} samples/s -> {run}")

    print("[4/4] test metrics")
    tasks = list(results["mgoe"]["test"])
    print(f"      {'task':<10} {'model':<6} {'AUC':>7} {'GAUC':>7} {'logloss':>8}")
    for task in tasks:
        for model, metrics in results.items():
            m = metrics["test"][task]
            print(f"      {task:<10} {model:<6} {_fmt(m['auc'])} {_fmt(m['gauc'])} {_fmt(m['logloss'], 8)}")
        gain = _delta(results["mgoe"]["test"][task]["auc"], results["mmoe"]["test"][task]["auc"])
        print(f"      {'':<10} {'Δ AUC':<6} {gain}")
    print(f"done in {time.perf_counter() - started:.0f} s; runs in {root / 'runs'} "
          f"(`mgoe evaluate {root / 'runs' / 'mgoe'}`)")
    return 0


def _fmt(value, width: int = 7) -> str:
    return f"{value:>{width}.4f}" if value is not None else f"{'n/a':>{width}}"


def _delta(a, b) -> str:
    return f"{a - b:+.4f}" if a is not None and b is not None else "n/a"
