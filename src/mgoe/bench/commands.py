"""``mgoe bench``: the benchmark suite on the command line (thin over :mod:`mgoe.bench.runner`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mgoe.errors import MgoeError


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in _split(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the bench (or only rewrite its report) and print where the report is."""
    from mgoe.bench.report import write_report
    from mgoe.bench.runner import run_bench, split_datasets
    from mgoe.train.config import resolve_config

    if args.report_only:
        frame = write_report(args.output)
        print(f"report of {frame.groupby(['dataset', 'model', 'seed']).ngroups} runs -> "
              f"{Path(args.output) / 'results.md'}")
        return 0
    if not args.datasets:
        raise MgoeError("mgoe bench needs --datasets (comma-separated specs)")
    config = resolve_config(args.config)
    if args.threads is not None:
        if args.threads < 1:
            raise MgoeError(f"--threads must be at least 1, got {args.threads}")
        config = config.replace(num_threads=args.threads)
    frame = run_bench(
        split_datasets(args.datasets), _split(args.models), args.seeds, args.output,
        epochs=args.epochs, config=config, ablations=args.ablations, data_root=args.data_root,
        shared_data=args.shared_data, progress=not args.quiet,
    )
    unavailable = frame.attrs.get("unavailable", [])
    print(f"{len(frame.attrs.get('trained', []))} runs trained, "
          f"{len(frame.attrs.get('skipped', []))} already done"
          + (f", {len(unavailable)} not possible (macro model, data without a user-item graph)"
             if unavailable else "") + "; report: "
          f"{Path(args.output) / 'results.md'}, {Path(args.output) / 'results.csv'}")
    failed = frame.attrs.get("failed", [])
    for run in failed:
        message = (Path(run) / "bench_error.txt").read_text().strip()
        print(f"mgoe: error: run {run} failed: {message}", file=sys.stderr)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``mgoe bench`` to the CLI's sub-commands."""
    from mgoe.bench.runner import ABLATIONS, DEFAULT_INPUTS
    from mgoe.models import MODELS

    p = sub.add_parser(
        "bench", help="benchmark MGOE, its ablations and the baselines (same data, same budget)",
        description="Train every (dataset, model, seed) with one training budget and write "
        "results.csv, results.md and plots. Finished runs are skipped, interrupted ones resumed.",
    )
    p.add_argument("--datasets", help="comma-separated: a source (" + ", ".join(DEFAULT_INPUTS)
                   + "), NAME=PATH, synth:<preset>[:key=value,...] or a prepared dataset directory")
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated models or ablations (default: all models: "
                   + ", ".join(MODELS) + "); ablations: " + ", ".join(ABLATIONS))
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="comma-separated (default 0,1,2)")
    p.add_argument("--output", required=True, help="bench directory (BENCHDIR)")
    p.add_argument("--epochs", type=int, help="maximum epochs (overrides the config)")
    p.add_argument("--config", help="training config file (YAML/TOML/JSON) every model gets")
    p.add_argument("--ablations", action="store_true", help="add the MGOE ablations")
    p.add_argument("--data-root", help="folder of the raw source files (default ../shared/data "
                   "beside the repository)")
    p.add_argument("--shared-data", help="keep prepared datasets and graphs here instead of "
                   "BENCHDIR (to share them between benches)")
    p.add_argument("--threads", type=int, help="torch CPU threads per run (num_threads)")
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite results.csv, results.md and the plots from finished runs")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_bench)
