"""Synthetic stress cases: where does MGOE gain over MMoE, and where not?

Sweeps two knobs of the synthetic generator (:mod:`mgoe.data.synth`) and trains MGOE and MMoE
on each dataset with one budget (:func:`mgoe.bench.run_bench`):

* ``signal``: probability that an impression's item comes from a community the user's
  community prefers, i.e. how much of the logged graph carries the planted structure the macro
  graphs can find;
* ``task_correlation``: how much the tasks' affinity matrices share (low: the per-task graphs
  differ, which is what the task-specific macro experts are for).

Prints (and writes to ``OUTPUT/stress.md``) a markdown table of the test AUC gap
``mgoe − mmoe`` per task (means over seeds) for every (signal, task_correlation) cell. The full
per-model tables, plots and run directories are in ``OUTPUT`` (a bench directory: rerunning
skips finished runs).

    python benchmarks/bench_stress.py --output stress                 # default sweep, small size
    python benchmarks/bench_stress.py --output /tmp/s --preset tiny --interactions 4000 \\
        --signals 0.2,0.9 --correlations 0.1,0.9 --epochs 1 --seeds 0  # smoke test
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _spec(preset: str, signal: float, correlation: float, interactions: int | None) -> str:
    settings = [f"signal={signal}", f"task_correlation={correlation}"]
    if interactions is not None:
        settings.append(f"interactions={interactions}")
    return f"synth:{preset}:" + ",".join(settings)


def gap_table(frame: pd.DataFrame, cells: list[tuple[float, float, str]],
              models: tuple[str, str] = ("mgoe", "mmoe")) -> str:
    """Markdown: one row per (signal, task_correlation), the mean test AUC gap per task."""
    ours, theirs = models
    means = frame.groupby(["dataset", "model", "task"], sort=False).auc.mean()
    tasks = list(dict.fromkeys(frame.task))
    header = ["signal", "task_correlation", *[f"{t} Δ AUC" for t in tasks], "mean Δ AUC"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---:"] * len(header)) + "|"]
    for signal, correlation, dataset in cells:
        gaps = []
        for task in tasks:
            try:
                gaps.append(float(means[(dataset, ours, task)] - means[(dataset, theirs, task)]))
            except KeyError:
                gaps.append(math.nan)
        valid = [g for g in gaps if not math.isnan(g)]
        mean = sum(valid) / len(valid) if valid else math.nan
        lines.append("| " + " | ".join([f"{signal:g}", f"{correlation:g}",
                                         *(_signed(g) for g in gaps), _signed(mean)]) + " |")
    return "\n".join(lines)


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.4f}"


def main(argv: list[str] | None = None) -> int:
    from mgoe.bench import run_bench
    from mgoe.bench.runner import parse_dataset

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", required=True, help="bench directory")
    p.add_argument("--preset", default="demo", help="synthetic preset (default demo: 5k users, "
                   "2k items)")
    p.add_argument("--interactions", type=int, default=100_000,
                   help="impressions per dataset (default 100,000; 0: the preset's)")
    p.add_argument("--signals", type=_floats, default=[0.2, 0.5, 0.9])
    p.add_argument("--correlations", type=_floats, default=[0.1, 0.5, 0.9])
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    interactions = args.interactions or None
    cells = []
    for signal in args.signals:
        for correlation in args.correlations:
            spec = _spec(args.preset, signal, correlation, interactions)
            cells.append((signal, correlation, spec))
    frame = run_bench(
        [spec for *_, spec in cells], ["mgoe", "mmoe"],
        [int(s) for s in args.seeds.split(",") if s.strip()], args.output, epochs=args.epochs,
        config={"num_threads": args.threads, "batch_size": args.batch_size, "log_every": 0},
        progress=not args.quiet,
    )
    named = [(s, c, parse_dataset(spec).name) for s, c, spec in cells]
    table = gap_table(frame, named)
    text = (f"Test AUC gap mgoe − mmoe (mean over seeds {args.seeds}); preset {args.preset}, "
            f"{interactions or 'preset'} impressions, at most {args.epochs} epochs, batch "
            f"{args.batch_size}, {args.threads} thread(s).\n\n{table}\n")
    Path(args.output, "stress.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
