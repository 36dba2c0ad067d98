"""Graph build on the spark engine (local[2]) against the duckdb engine: wall time and peak memory.

    python benchmarks/bench_spark.py --rows 10000000
    python benchmarks/bench_spark.py --rows 100000000 --spark-driver-memory 8g

For every row count the synthetic dataset (3 tasks, 32 communities, users = rows/50,
items = rows/500) is generated once into ``--workdir``; each engine then builds the graph
(64 user and 64 item macro nodes) in a fresh child process, ``--force``, with the same
GraphConfig except for the engine settings (duckdb: ``memory_limit`` 4 GB; spark: ``local[2]``,
``spark.driver.memory`` = ``--spark-driver-memory``, 4 shuffle partitions). The parent samples
the resident memory of the child's whole process tree every 0.5 s by reading ``/proc`` — for
spark that is the Python driver, the JVM (driver + local executor) and the Python workers — and
reports the peak of the sum (shared pages counted in every process, so an upper bound) and the
largest single-process ``VmHWM`` seen. The wall time includes starting Spark. The two graphs
are compared at the end: macro assignments (adjusted Rand index) and the history edge count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from mgoe.graph.build import GraphConfig, build_graph
engine, data, out, k, driver_memory = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
config = GraphConfig(user_clusters=k, item_clusters=k, duckdb_memory_limit="4GB",
                     spark_master="local[2]",
                     spark_conf={"spark.driver.memory": driver_memory, "spark.sql.shuffle.partitions": "4"})
m = build_graph(data, out, config, engine=engine, force=True)
wall = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"wall_s": wall, "driver_hwm_mib": int(hwm) / 1024, "edges": m["history_edges"],
                  "timings": m["timings"]}))
"""


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class TreeSampler(threading.Thread):
    """Peak of the summed VmRSS of a process and all its descendants, sampled every ``period``."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak_kib = 0
        self.max_hwm_kib = 0
        self.max_processes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            tree, todo = [], [self.pid]
            while todo:
                pid = todo.pop()
                tree.append(pid)
                todo += _children(pid)
            self.peak_kib = max(self.peak_kib, sum(_status_kib(p, "VmRSS") for p in tree))
            self.max_hwm_kib = max([self.max_hwm_kib, *(_status_kib(p, "VmHWM") for p in tree)])
            self.max_processes = max(self.max_processes, len(tree))
            self.stop.wait(self.period)


def run_engine(engine: str, data: Path, out: Path, clusters: int, driver_memory: str, timeout: int) -> dict:
    cmd = [sys.executable, "-c", CHILD, engine, str(data), str(out), str(clusters), driver_memory]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"timed out after {timeout} s"}
    finally:
        sampler.stop.set()
        sampler.join()
    if proc.returncode != 0:
        return {"error": (stderr.strip().splitlines() or ["?"])[-1]}
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(tree_peak_mib=sampler.peak_kib / 1024, max_process_hwm_mib=sampler.max_hwm_kib / 1024,
                  processes=sampler.max_processes)
    return result


def agreement(a: Path, b: Path) -> str:
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score

    parts = []
    for side in ("user", "item"):
        x = pd.read_parquet(a / f"{side}_macro.parquet")["macro"].to_numpy()
        y = pd.read_parquet(b / f"{side}_macro.parquet")["macro"].to_numpy()
        parts.append(f"{side}s ARI {adjusted_rand_score(x, y):.4f} ({(x == y).mean():.2%} identical)")
    return ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="10000000", help="comma-separated row counts")
    ap.add_argument("--engines", default="duckdb,spark")
    ap.add_argument("--clusters", type=int, default=64, help="user and item macro nodes")
    ap.add_argument("--workdir", default="/tmp/mgoe-bench-spark")
    ap.add_argument("--spark-driver-memory", default="4g")
    ap.add_argument("--timeout", type=int, default=7200)
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    import pyspark

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"pyspark {pyspark.__version__}, date {time.strftime('%Y-%m-%d')}")
    print("| rows | engine | history edges | wall s | peak RSS MiB (process tree) | largest VmHWM MiB "
          "| processes | steps s |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for rows in [int(r) for r in args.rows.split(",")]:
        data = work / f"synth-{rows}"
        if not (data / "_COMPLETE").exists():
            from mgoe.data.synth import SynthConfig, generate

            generate(SynthConfig(users=rows // 50, items=rows // 500, interactions=rows, communities=32), data)
        built = []
        for engine in args.engines.split(","):
            out = work / f"graph-{rows}-{engine}"
            r = run_engine(engine, data, out, args.clusters, args.spark_driver_memory, args.timeout)
            if "error" in r:
                print(f"| {rows:,} | {engine} | failed: {r['error']} ||||||", flush=True)
                continue
            built.append(out)
            steps = ", ".join(f"{k[:-2]} {v:.0f}" for k, v in r["timings"].items() if k != "total_s")
            print(f"| {rows:,} | {engine} | {r['edges']:,} | {r['wall_s']:.1f} | {r['tree_peak_mib']:,.0f} "
                  f"| {r['max_process_hwm_mib']:,.0f} | {r['processes']} | {steps} |", flush=True)
        if len(built) == 2:
            print(f"\n{rows:,} rows, {built[0].name} vs {built[1].name}: {agreement(*built)}", flush=True)


if __name__ == "__main__":
    main()
