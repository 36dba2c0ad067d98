"""Serving latency and throughput: ``Scorer.score`` in process and ``mgoe serve`` over HTTP.

    python benchmarks/bench_serve.py --rows 1000000 10000000

For every row count a synthetic dataset (3 tasks, 32 communities, users = rows/50,
items = rows/500) is generated, its macro graph built with a fixed K (``--clusters``, default
64 user + 64 item macro nodes, so that only the graph size changes between rows), an MGOE
model trained for one epoch and exported — all with the ``mgoe`` command line, into
``--workdir`` (kept and reused). To bound the training time on a small machine the model is
trained on the first Parquet part of the train split (at most 2,000,000 rows; the same users,
items and graph — the graph is built from all rows); serving cost does not depend on how many
rows the model saw.

Then, per artifact:

* in process: ``Scorer.score(user, 100 items)`` ``--requests`` times (random known user,
  100 random known items), with a breakdown (id lookup + feature gather + batch vs forward);
* over HTTP: ``mgoe serve`` (uvicorn, one worker, loopback) in a child process, and an asyncio
  + httpx client sending ``--requests`` ``POST /score`` requests (1 user x 100 items) at each
  concurrency level, capped at ``--time-cap`` seconds per level; latency per request from the
  client's side, throughput = completed / wall time. The client shares the machine's cores
  with the server; the server's CPU time per request comes from ``/proc``. Also ``POST /events``
  (one event, fsynced) at concurrency 1. uvicorn uses httptools and uvloop when importable
  (``uvicorn[standard]``; not a dependency of mgoe): ``PYTHONPATH=DIR`` with both installed in
  DIR, plus ``--http-only``, measures that configuration;
* all sizes in one process, requests alternating between them (the machine's load then hits
  every size alike): wall and CPU time, preparation vs forward;
* once (the artifact closest to 10^7 rows): the two ways to keep a first-order table, dense float32 versus
  CSR + overrides: memory, gather of 100 rows, one update.

Results go to ``--output`` (JSON) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MAX_TRAIN_ROWS = 2_000_000


def _run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def _mgoe(*args: str) -> list[str]:
    return [sys.executable, "-m", "mgoe.cli", *args]


def prepare(rows: int, work: Path, clusters: int, engine: str) -> tuple[Path, dict]:
    """Synthetic data -> graph -> 1-epoch MGOE run -> artifact (reused when present)."""
    data, graph = work / f"synth-{rows}", work / f"graph-{rows}-k{clusters}"
    train_data, run, art = work / f"train-{rows}", work / f"run-{rows}-k{clusters}", work / f"art-{rows}-k{clusters}"
    times: dict[str, float] = {}
    if not (data / "_COMPLETE").exists():
        times["synth_s"] = _run(_mgoe("data", "synth", "--users", str(rows // 50), "--items", str(rows // 500),
                                      "--interactions", str(rows), "--communities", "32", "--output", str(data),
                                      "--quiet"))
    if not (graph / "_COMPLETE").exists():
        times["graph_s"] = _run(_mgoe("graph", "build", "--data", str(data), "--output", str(graph),
                                      "--engine", engine, "--user-clusters", str(clusters),
                                      "--item-clusters", str(clusters), "--quiet"))
    if not (train_data / "_COMPLETE").exists():
        # Same users/items/meta; the first part file of every split (<= 2M rows each).
        tmp = work / f".train-{rows}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name in ("meta.json", "users.parquet", "items.parquet"):
            shutil.copyfile(data / name, tmp / name)
        if (data / "vocab").is_dir():
            shutil.copytree(data / "vocab", tmp / "vocab")
        for split in ("train", "valid", "test"):
            (tmp / split).mkdir()
            first = sorted((data / split).glob("*.parquet"))[0]
            shutil.copyfile(first, tmp / split / first.name)
        (tmp / "_COMPLETE").write_text("ok\n")
        tmp.rename(train_data)
    if not (run / "checkpoints" / "best.safetensors").exists():
        config = work / "train-config.json"
        config.write_text(json.dumps({"num_threads": 1, "batch_size": 2048, "log_every": 0,
                                      "checkpoint_every_minutes": 0.0, "eval_batch_size": 8192}))
        shutil.rmtree(run, ignore_errors=True)
        times["train_s"] = _run(_mgoe("train", "--data", str(train_data), "--graph", str(graph), "--output", str(run),
                                      "--model", "mgoe", "--epochs", "1", "--config", str(config), "--quiet"))
    if not (art / "_COMPLETE").exists():
        times["export_s"] = _run(_mgoe("export", str(run), "--output", str(art)))
    manifest = json.loads((graph / "manifest.json").read_text())
    info = {
        "rows": rows, "users": manifest["num_users"], "items": manifest["num_items"],
        "history_edges": manifest["history_edges"], "num_user_macro": manifest["num_user_macro"],
        "num_item_macro": manifest["num_item_macro"], "graph_build_s": manifest["timings"]["total_s"],
        "artifact_mib": sum(p.stat().st_size for p in art.rglob("*") if p.is_file()) / 2**20,
        **times,
    }
    return art, info


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def _workload(art: Path, n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    import pandas as pd

    users = pd.read_parquet(art / "data/users.parquet", columns=["user_id"])["user_id"].to_numpy()
    items = pd.read_parquet(art / "data/items.parquet", columns=["item_id"])["item_id"].to_numpy()
    rng = np.random.default_rng(seed)
    return [(str(users[rng.integers(len(users))]), [str(v) for v in items[rng.integers(0, len(items), 100)]])
            for _ in range(n)]


def in_process(art: Path, requests: int, time_cap: float) -> dict:
    """``Scorer.score`` latency, and where the time goes."""
    import torch

    from mgoe.serve.scorer import Scorer

    t0 = time.perf_counter()
    scorer = Scorer.load(art)
    load_s = time.perf_counter() - t0
    work = _workload(art, requests)
    for user, items in work[:50]:
        scorer.score(user, items)
    total, prep, fwd = [], [], []
    deadline = time.monotonic() + time_cap
    for user, items in work:
        a = time.perf_counter()
        idx = scorer.items.lookup(items)
        users = np.full(len(idx), scorer.users.lookup([user])[0], dtype=np.int64)
        batch = scorer._batch(users, idx, one_user=True)
        b = time.perf_counter()
        scorer._forward(batch)
        c = time.perf_counter()
        prep.append((b - a) * 1e3)
        fwd.append((c - b) * 1e3)
        if time.monotonic() > deadline:
            break
    cpu = []
    for user, items in work:
        a, ca = time.perf_counter(), time.thread_time()
        scorer.score(user, items)
        total.append((time.perf_counter() - a) * 1e3)
        cpu.append((time.thread_time() - ca) * 1e3)
        if time.monotonic() > deadline + time_cap:
            break
    rss = [line for line in open("/proc/self/status") if line.startswith("VmRSS")][0].split()[1]
    return {"load_s": load_s, "rss_mib": int(rss) / 1024, "threads": torch.get_num_threads(),
            "score": _percentiles(total), "score_cpu": _percentiles(cpu),
            "prepare": _percentiles(prep), "forward": _percentiles(fwd), "loadavg": os.getloadavg()}


def interleaved(arts: dict[int, Path], requests: int) -> dict:
    """All artifacts' scorers in one process, requests alternating between them, so that the
    machine's (shared) load hits every size alike; wall and thread-CPU time, split into
    preparation (ids, feature gather, batch) and the model forward."""
    from mgoe.serve.scorer import Scorer

    scorers = {rows: Scorer.load(art) for rows, art in arts.items()}
    works = {rows: _workload(art, requests, seed=2) for rows, art in arts.items()}
    stats: dict[int, dict[str, list[float]]] = {r: {"wall": [], "cpu": [], "prep_cpu": [], "fwd_cpu": []} for r in arts}
    for k in range(-50, requests):
        for rows, scorer in scorers.items():
            user, items = works[rows][max(k, 0)]
            a, ca = time.perf_counter(), time.thread_time()
            idx = scorer.items.lookup(items)
            users = np.full(len(idx), scorer.users.lookup([user])[0], dtype=np.int64)
            batch = scorer._batch(users, idx, one_user=True)
            cb = time.thread_time()
            scorer._forward(batch)
            b, cc = time.perf_counter(), time.thread_time()
            if k >= 0:
                st = stats[rows]
                st["wall"].append((b - a) * 1e3)
                st["cpu"].append((cc - ca) * 1e3)
                st["prep_cpu"].append((cb - ca) * 1e3)
                st["fwd_cpu"].append((cc - cb) * 1e3)
    return {str(rows): {name: _percentiles(v) for name, v in st.items()} for rows, st in stats.items()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _load(url: str, work: list[tuple[str, list[str]]], concurrency: int, requests: int, time_cap: float,
                server_pid: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.monotonic() + time_cap
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:
        for user, items in work[:20]:  # warm-up
            await client.post("/score", json={"user_id": user, "item_ids": items})

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < requests and time.monotonic() < deadline:
                user, items = work[next_index % len(work)]
                next_index += 1
                a = time.perf_counter()
                r = await client.post("/score", json={"user_id": user, "item_ids": items})
                latencies.append((time.perf_counter() - a) * 1e3)
                errors += r.status_code != 200

        start = time.perf_counter()
        cpu0 = _cpu_seconds(server_pid)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        server_cpu = _cpu_seconds(server_pid) - cpu0
    return {"concurrency": concurrency, **_percentiles(latencies), "errors": errors,
            "wall_s": wall, "req_per_s": len(latencies) / wall,
            "server_cpu_ms_per_request": server_cpu / max(len(latencies), 1) * 1e3,
            "loadavg": os.getloadavg()}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc/PID/stat)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _events(url: str, n: int) -> dict:
    import httpx

    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        for k in range(n):
            body = {"events": [{"user_id": f"u{k}", "item_id": f"i{k % 97}", "labels": {"click": 1}}]}
            a = time.perf_counter()
            r = await client.post("/events", json=body)
            latencies.append((time.perf_counter() - a) * 1e3)
            assert r.status_code == 200, r.text
    return _percentiles(latencies)


def over_http(art: Path, work_dir: Path, requests: int, time_cap: float, levels: list[int]) -> dict:
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = work_dir / f"bench-events-{os.getpid()}.jsonl"
    proc = subprocess.Popen(_mgoe("serve", str(art), "--port", str(port), "--event-log", str(log)))
    try:
        t0 = time.perf_counter()
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited")
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        startup_s = time.perf_counter() - t0
        work = _workload(art, requests, seed=1)
        results = [asyncio.run(_load(url, work, c, requests, time_cap, proc.pid)) for c in levels]
        events = asyncio.run(_events(url, 200))
        metrics = httpx.get(url + "/metrics").text
    finally:
        proc.terminate()
        proc.wait(30)
        log.unlink(missing_ok=True)
    count = [line for line in metrics.splitlines() if line.startswith('mgoe_http_request_duration_seconds_count{endpoint="/score"}')]
    return {"startup_s": startup_s, "levels": results, "events": events, "server_score_requests": count}


def feature_store(art: Path) -> dict:
    """Dense float32 vs CSR + overrides for the user first-order table of ``art``."""
    from mgoe.serve.scorer import Scorer

    scorer = Scorer.load(art)
    rows = scorer.macro.rows["user_first"]
    n = rows.num_base
    dense = np.zeros((n, rows.width), dtype=np.float32)
    dense[np.repeat(np.arange(n), np.diff(rows.indptr)), rows.indices] = rows.data
    rng = np.random.default_rng(0)
    picks = [rng.integers(0, n, 100) for _ in range(2000)]

    def timed(fn) -> float:
        a = time.perf_counter()
        for p in picks:
            fn(p)
        return (time.perf_counter() - a) / len(picks) * 1e6

    out = {"nodes": n, "width": rows.width, "nnz": int(rows.data.size),
           "dense_mib": dense.nbytes / 2**20, "csr_mib": rows.nbytes / 2**20,
           "dense_gather_us": timed(lambda p: dense[p]), "csr_gather_us": timed(rows.gather)}
    for p in picks[:500]:  # 500 x 100 touched rows become overrides
        for node in p.tolist():
            rows.add(node, [3, 70], [1.0, 1.0])
    out["csr_gather_with_overrides_us"] = timed(rows.gather)
    out["override_rows"] = rows.num_overrides
    a = time.perf_counter()
    for node in range(1000):
        rows.add(node + 7, [3, 70], [1.0, 1.0])
    out["csr_update_us"] = (time.perf_counter() - a) / 1000 * 1e6
    a = time.perf_counter()
    rows.compact()
    out["compact_s"] = time.perf_counter() - a
    a = time.perf_counter()
    for node in range(1000):
        dense[node + 7, [3, 70]] += 1.0
    out["dense_update_us"] = (time.perf_counter() - a) / 1000 * 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--workdir", default="/tmp/mgoe-bench-serve")
    ap.add_argument("--clusters", type=int, default=64, help="user and item macro nodes (fixed across sizes)")
    ap.add_argument("--engine", default="memory", help="graph engine for rows < 10^8 (duckdb is used from 10^8)")
    ap.add_argument("--requests", type=int, default=2000, help="requests per level (bounded)")
    ap.add_argument("--time-cap", type=float, default=60.0, help="seconds per level at most")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--output", default="bench_serve.json")
    ap.add_argument("--http-only", action="store_true", help="only the HTTP levels (no in-process, no feature store)")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    import importlib.util

    fast = {m: importlib.util.find_spec(m) is not None for m in ("httptools", "uvloop")}
    report = {"machine": {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()},
              "uvicorn_extras": fast,
              "date": time.strftime("%Y-%m-%d"), "args": vars(args), "sizes": []}
    arts: dict[int, Path] = {}
    for rows in args.rows:
        engine = "duckdb" if rows >= 100_000_000 else args.engine
        art, info = prepare(rows, work, args.clusters, engine)
        arts[rows] = art
        if not args.http_only:
            info["in_process"] = in_process(art, args.requests, args.time_cap)
            print(json.dumps(info["in_process"]), flush=True)
        info["http"] = over_http(art, work, args.requests, args.time_cap, args.concurrency)
        print(json.dumps(info["http"]), flush=True)
        report["sizes"].append(info)
        Path(args.output).write_text(json.dumps(report, indent=2))
    if not args.http_only:
        report["interleaved"] = interleaved(arts, args.requests)
        print(json.dumps(report["interleaved"]), flush=True)
        # the 10^7-row artifact when there is one: a dense copy of 10^8's table would need 2 GB more
        store_rows = min(arts, key=lambda r: abs(np.log10(r) - 7))
        report["feature_store"] = {"rows": store_rows, **feature_store(arts[store_rows])}
        Path(args.output).write_text(json.dumps(report, indent=2))

    print("\n| rows | users | items | edges | K | where | conc. | p50 ms | p95 ms | p99 ms | req/s |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for s in report["sizes"]:
        head = f"| {s['rows']:,} | {s['users']:,} | {s['items']:,} | {s['history_edges']:,} | {s['num_user_macro'] - 1} |"
        if "in_process" in s:
            ip = s["in_process"]["score"]
            print(f"{head} in process | 1 | {ip['p50_ms']:.2f} | {ip['p95_ms']:.2f} | {ip['p99_ms']:.2f} | {1e3 / ip['mean_ms']:.0f} |")
        for lv in s["http"]["levels"]:
            print(f"{head} HTTP | {lv['concurrency']} | {lv['p50_ms']:.2f} | {lv['p95_ms']:.2f} | {lv['p99_ms']:.2f} | {lv['req_per_s']:.0f} |")
    print(json.dumps(report.get("feature_store"), indent=2))


if __name__ == "__main__":
    main()
