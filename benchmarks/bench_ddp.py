"""Training throughput of one process against 2 DDP processes (gloo, CPU) on the same data.

    python benchmarks/bench_ddp.py --rows 500000

A synthetic dataset (3 tasks, 32 communities, users = rows/50, items = rows/500) and its graph
(memory engine, 64 + 64 macro nodes) are built once into ``--workdir``. Then MGOE trains one
epoch with the same config (global batch 1024, seed 0) as

* 1 process, 1 thread;
* 1 process, 2 threads;
* ``mgoe train --nproc 2``: 2 processes of 1 thread each, 512 rows per process and step.

Each run is a fresh ``mgoe train`` child process. Reported: training samples/s (the trainer's
``train_samples_per_s``: samples of the epoch over the training-loop time, which includes batch
assembly with leave-one-out features but not evaluation), the wall time of the command
(start-up, training, 2 valid + 1 test evaluations) and valid AUC per task. On a machine with N
free cores the DDP speed-up is bounded by N; here the processes share 2 cores with each other
(and with whatever else runs), so the figure is what DDP costs and gains on one small host, not
a scaling curve.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--workdir", default="/tmp/mgoe-bench-ddp")
    ap.add_argument("--batch-size", type=int, default=1024)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data, graph = work / f"synth-{args.rows}", work / f"graph-{args.rows}"
    if not (data / "_COMPLETE").exists():
        from mgoe.data.synth import SynthConfig, generate

        generate(SynthConfig(users=args.rows // 50, items=args.rows // 500, interactions=args.rows,
                             communities=32), data)
    if not (graph / "_COMPLETE").exists():
        from mgoe.graph.build import GraphConfig, build_graph

        build_graph(data, graph, GraphConfig(user_clusters=64, item_clusters=64))
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"torch {torch.__version__}, load average before {os.getloadavg()[0]:.1f}, "
          f"date {time.strftime('%Y-%m-%d')}")
    print("| processes | threads each | rows per process and step | training samples/s | wall s "
          "| valid AUC per task |")
    print("|---:|---:|---:|---:|---:|---|")
    for nproc, threads in ((1, 1), (1, 2), (2, 1)):
        run = work / f"run-{args.rows}-{nproc}x{threads}-{time.strftime('%H%M%S')}"
        config = work / f"config-{threads}.json"
        config.write_text(json.dumps({"model": "mgoe", "batch_size": args.batch_size, "epochs": 1,
                                      "num_threads": threads, "log_every": 0, "seed": 0,
                                      "checkpoint_every_minutes": 0}))
        cmd = [sys.executable, "-m", "mgoe.cli", "train", "--data", str(data), "--graph", str(graph),
               "--config", str(config), "--output", str(run), "--quiet"]
        if nproc > 1:
            cmd += ["--nproc", str(nproc)]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        wall = time.perf_counter() - started
        metrics = json.loads((run / "metrics.json").read_text())
        aucs = ", ".join(f"{t} {m['auc']:.4f}" for t, m in metrics["valid"].items())
        print(f"| {nproc} | {threads} | {args.batch_size // nproc} | {metrics['train_samples_per_s']:,.0f} "
              f"| {wall:.0f} | {aucs} |", flush=True)


if __name__ == "__main__":
    main()
