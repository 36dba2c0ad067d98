"""Throughput and peak memory of the synthetic generator (``mgoe.data.synth.generate``).

    python benchmarks/bench_synth.py 100000000            # 10^8 rows into a temp dir
    python benchmarks/bench_synth.py 10000000 --keep --output /data/synth-1e7

The generation runs in a child process so that its peak resident memory (``VmHWM``) is its own,
not the parent's. Prints one markdown table row:

    | rows | users | items | communities | chunk rows | wall s | rows/s | peak RSS MiB | disk MiB |

Unless given, users = rows / 50 and items = rows / 500 (at least 1,000 each).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = (
    "| rows | users | items | communities | chunk rows | wall s | rows/s | peak RSS MiB | disk MiB |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(args: argparse.Namespace) -> None:
    from mgoe.data.synth import SynthConfig, generate

    config = SynthConfig(
        users=args.users,
        items=args.items,
        interactions=args.rows,
        tasks=args.tasks,
        communities=args.communities,
        seed=args.seed,
        chunk_rows=args.chunk_rows,
    )
    start = time.perf_counter()
    generate(config, args.output, progress=args.progress)
    wall = time.perf_counter() - start
    print(json.dumps({"wall_s": wall, "peak_rss_mib": _peak_rss_mib()}))


def _disk_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", type=int, nargs="?", default=100_000_000, help="interactions (default 10^8)")
    parser.add_argument("--users", type=int)
    parser.add_argument("--items", type=int)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--communities", type=int, default=32)
    parser.add_argument("--chunk-rows", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="dataset directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated dataset")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.users = args.users or max(1_000, args.rows // 50)
    args.items = args.items or max(1_000, args.rows // 500)

    if args.child:
        _child(args)
        return 0

    tmp_root = None
    if args.output is None:
        tmp_root = Path(tempfile.mkdtemp(prefix="bench-synth-"))
        output = tmp_root / "synth"
    else:
        output = Path(args.output)
    cmd = [
        sys.executable, os.path.abspath(__file__), str(args.rows),
        "--users", str(args.users), "--items", str(args.items), "--tasks", str(args.tasks),
        "--communities", str(args.communities), "--chunk-rows", str(args.chunk_rows),
        "--seed", str(args.seed), "--output", str(output), "--child",
    ] + (["--progress"] if args.progress else [])
    try:
        result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        child = json.loads(result.stdout.strip().splitlines()[-1])
        # The kernel's account of the child agrees with its own VmHWM; take the larger.
        peak = max(child["peak_rss_mib"], resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
        disk = _disk_mib(output)
    finally:
        if not args.keep:
            shutil.rmtree(tmp_root if tmp_root is not None else output, ignore_errors=True)
    wall = child["wall_s"]
    print(HEADER)
    print(
        f"| {args.rows:,} | {args.users:,} | {args.items:,} | {args.communities} | "
        f"{args.chunk_rows:,} | {wall:.1f} | {args.rows / wall:,.0f} | {peak:,.0f} | {disk:,.0f} |"
    )
    if args.keep:
        print(f"kept {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
