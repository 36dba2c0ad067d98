"""``mgoe train | evaluate | predict``: thin wrappers over :mod:`mgoe.train.api`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

import pandas as pd

from mgoe.errors import MgoeError


def _metric(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _table(results: dict[str, dict[str, dict[str, float | None]]]) -> str:
    """A per-task table of ``{split: {task: {auc, gauc, logloss}}}``."""
    tasks = [t for split in results.values() for t in split]
    width = max([4, *(len(t) for t in tasks)])
    lines = [f"{'split':<6} {'task':<{width}} {'auc':>8} {'gauc':>8} {'logloss':>8}"]
    for split, per_task in results.items():
        for task, m in per_task.items():
            lines.append(f"{split:<6} {task:<{width}} {_metric(m['auc']):>8} "
                         f"{_metric(m['gauc']):>8} {_metric(m['logloss']):>8}")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    from mgoe.train.config import config_template

    if args.print_config:
        print(config_template(), end="")
        return 0
    if args.output is None:
        raise MgoeError("mgoe train needs --output RUNDIR")
    if args.data is None and not args.resume:
        raise MgoeError("mgoe train needs --data DIR (only --resume can take it from the run)")
    from mgoe.train.distributed import run_cli  # --nproc N, torchrun, or this process alone

    metrics = run_cli(args.nproc, data=args.data, graph=args.graph, output=args.output,
                      model=args.model, config=args.config, seed=args.seed, resume=args.resume,
                      progress=not args.quiet, epochs=args.epochs)
    if metrics is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    print(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} "
          f"({metrics['stop_reason']}, {metrics['early_stopping_metric']} on valid); "
          f"{metrics['train_samples_per_s'] or 0:,.0f} training samples/s")
    print(_table({"valid": metrics["valid"], "test": metrics["test"]}))
    print(f"run directory: {args.output}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mgoe.train import api

    results = api.evaluate(args.run_dir, split=args.split, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(_table(results))
    return 0


def read_pairs(path: str | Path) -> pd.DataFrame:
    """(user_id, item_id) pairs from a Parquet or CSV file; ids are read as strings."""
    path = Path(path)
    if not path.is_file():
        raise MgoeError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in (".csv", ".tsv"):
        frame = pd.read_csv(path, dtype=str, sep="\t" if suffix == ".tsv" else ",")
    else:
        raise MgoeError(f"input file {path}: use .parquet, .csv or .tsv")
    missing = [c for c in ("user_id", "item_id") if c not in frame.columns]
    if missing:
        raise MgoeError(f"input file {path} has no column(s) {', '.join(missing)} "
                        f"(columns: {', '.join(map(str, frame.columns))})")
    return frame[["user_id", "item_id"]]


def write_scores(frame: pd.DataFrame, path: str | Path) -> None:
    """Write scores to Parquet (or CSV by suffix) via a temporary file and a rename."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise MgoeError(f"output file {path}: use .parquet or .csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        if suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cmd_predict(args: argparse.Namespace) -> int:
    from mgoe.train import api

    pairs = read_pairs(args.input)
    scores = api.predict(args.run_dir, pairs, batch_size=args.batch_size)
    write_scores(scores, args.output)
    print(f"scored {len(scores):,} pairs for tasks {', '.join(scores.columns[2:])} -> {args.output}",
          file=sys.stderr)
    return 0


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train``, ``evaluate`` and ``predict`` to the ``mgoe`` command line."""
    t = sub.add_parser("train", help="train a model; writes a run directory",
                       description="Train MGOE or a baseline. The run directory gets config.json, "
                       "log.txt, checkpoints/ and metrics.json (best epoch chosen on valid).")
    t.add_argument("--data", help="prepared dataset directory (mgoe data prepare / synth)")
    t.add_argument("--graph", help="graph directory (mgoe graph build); needed by mgoe and macgnn")
    t.add_argument("--output", help="run directory to write")
    t.add_argument("--model", help="mgoe (default), mmoe, ple, shared_bottom, esmm, aitm, macgnn")
    t.add_argument("--config", help="training config (.yaml, .toml or .json); see --print-config")
    t.add_argument("--seed", type=int, help="overrides the config's seed")
    t.add_argument("--epochs", type=_positive_int, help="overrides the config's epochs")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --output from its last checkpoint (data and config "
                   "default to the run's own)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or log echo")
    t.add_argument("--nproc", type=_positive_int, metavar="N",
                   help="data-parallel training in N local processes (DDP: gloo on CPU, nccl "
                   "with one GPU each); batch_size is the global batch, split over them. Under "
                   "torchrun leave it out: the processes join torchrun's group")
    t.add_argument("--print-config", action="store_true",
                   help="print the default config with a comment per key, and exit")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="metrics of a run's best weights on a split")
    e.add_argument("run_dir", help="run directory written by mgoe train")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--batch-size", type=_positive_int, help="default: the run's eval batch size")
    e.add_argument("--json", action="store_true",
                   help='print {"<split>": {"<task>": {"auc", "gauc", "logloss"}}}')
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="score (user_id, item_id) pairs with a run's best weights")
    p.add_argument("run_dir", help="run directory written by mgoe train")
    p.add_argument("--input", required=True, help="pairs file (.parquet, .csv, .tsv) with user_id, item_id")
    p.add_argument("--output", required=True, help="scores file (.parquet or .csv): user_id, "
                   "item_id, one probability column per task")
    p.add_argument("--batch-size", type=_positive_int, help="default: the run's eval batch size")
    p.set_defaults(func=cmd_predict)
