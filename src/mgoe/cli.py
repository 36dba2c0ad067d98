"""The ``mgoe`` command line. Thin: it parses arguments and calls the library.

Every user error (:class:`mgoe.errors.MgoeError`) is printed as one line on stderr and exits
with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from mgoe.errors import MgoeError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _split_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _fractions(value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {value!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {value!r}")
    return parts  # type: ignore[return-value]


# ----------------------------------------------------------------------------- data


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from mgoe.data.importers import get_importer
    from mgoe.data.prepare import PrepareOptions, prepare_dataset

    importer = get_importer(args.source)
    options = {
        "user_col": args.user_col,
        "item_col": args.item_col,
        "task_cols": _split_list(args.task_cols) if args.task_cols else None,
        "time_col": args.time_col,
        "feature_cols": _split_list(args.feature_cols) if args.feature_cols else None,
        "split_col": args.split_col,
        "download": args.download,
        "negatives": args.negatives,
    }
    raw = importer(args.input, **{k: v for k, v in options.items() if v is not None})
    prepare_options = PrepareOptions(
        split=args.split,
        fractions=args.fractions,
        negatives_per_positive=args.neg_per_pos,
        negative_sampling=args.neg_sampling,
        seed=args.seed,
    )
    meta = prepare_dataset(raw, args.output, prepare_options)
    print(
        f"prepared {meta.name}: {meta.num_users} users, {meta.num_items} items, tasks "
        f"{', '.join(meta.tasks)}; "
        + ", ".join(f"{k} {v.rows} rows" for k, v in meta.splits.items())
        + f" -> {args.output}"
    )
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from mgoe.data.synth import SynthConfig, generate

    config = SynthConfig(
        users=args.users,
        items=args.items,
        interactions=args.interactions,
        tasks=args.tasks,
        communities=args.communities,
        seed=args.seed,
    )
    meta = generate(config, args.output, progress=not args.quiet)
    print(
        f"generated {meta.name}: {meta.num_users} users, {meta.num_items} items, tasks "
        f"{', '.join(meta.tasks)} -> {args.output}"
    )
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from mgoe.data.schema import Dataset

    ds = Dataset.open(args.directory)
    info = ds.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    meta = ds.meta
    print(f"dataset     {meta.name}  ({args.directory})")
    print(f"users       {info['users']:,}")
    print(f"items       {info['items']:,}")
    print(f"tasks       {' < '.join(meta.tasks)}  (funnel order)")
    print(f"negatives   {meta.negatives}")
    print(f"protocol    {meta.split_protocol}")
    for kind, feats in (("user", meta.user_features), ("item", meta.item_features), ("context", meta.context_features)):
        if feats:
            print(f"{kind} feats  " + ", ".join(f"{k}({v})" for k, v in feats.items()))
    width = max(len(t) for t in meta.tasks)
    print(f"{'split':<6} {'rows':>12}  " + "  ".join(f"{t:>{max(width, 9)}}" for t in meta.tasks))
    for name, split in info["splits"].items():
        print(
            f"{name:<6} {split['rows']:>12,}  "
            + "  ".join(f"{split['positives'][t]:>{max(width, 9)},}" for t in meta.tasks)
        )
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="import, generate and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="{prepare,synth,info}")

    p = dsub.add_parser("prepare", help="import a public dataset or your own table")
    p.add_argument("source", help="tmall, beibei, movielens100k, kuairand, aliccp, aliexpress, "
                   "byterec, taobao-userbehavior, census-income, adult, tenrec, or table (your own file)")
    p.add_argument("--input", required=True, help="the source's file or folder")
    p.add_argument("--output", required=True, help="dataset directory to write")
    p.add_argument("--split", default="auto", choices=["auto", "time", "random", "given"],
                   help="auto: the source's protocol (given split column > timestamps > per-user random)")
    p.add_argument("--fractions", type=_fractions, default=(0.8, 0.1, 0.1),
                   help="train,valid,test fractions (default 0.8,0.1,0.1)")
    p.add_argument("--neg-per-pos", type=int, default=4, help="sampled negatives per positive (implicit data)")
    p.add_argument("--neg-sampling", default="uniform", choices=["uniform", "popularity"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--download", action="store_true", help="fetch the official files (sources that support it)")
    g = p.add_argument_group("table source (your own CSV/Parquet file or folder)")
    g.add_argument("--user-col")
    g.add_argument("--item-col")
    g.add_argument("--task-cols", help="0/1 label columns in funnel order, comma-separated")
    g.add_argument("--time-col")
    g.add_argument("--feature-cols", help="categorical side-feature columns, comma-separated")
    g.add_argument("--split-col", help="column holding train/valid/test, kept as given")
    g.add_argument("--negatives", choices=["real", "sampled"],
                   help="real: rows with all-zero labels are logged impressions; sampled: implicit "
                   "data, negatives are drawn (default: real if any row has all-zero labels)")
    p.set_defaults(func=cmd_data_prepare)

    s = dsub.add_parser("synth", help="generate synthetic multi-task data with planted structure")
    s.add_argument("--users", type=int, required=True)
    s.add_argument("--items", type=int, required=True)
    s.add_argument("--interactions", type=int, required=True, help="logged impressions (rows)")
    s.add_argument("--tasks", type=int, default=3)
    s.add_argument("--communities", type=int, default=8, help="planted user/item communities")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--output", required=True)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_data_synth)

    i = dsub.add_parser("info", help="summarise a prepared dataset")
    i.add_argument("directory")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_data_info)


# ----------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from mgoe.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgoe", description="MGOE: multi-task recommendation with macro graphs of experts"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    demo = sub.add_parser("demo", help="run the whole pipeline on the embedded synthetic default")
    demo.add_argument("--output", default="mgoe-demo", help="working directory (default ./mgoe-demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--epochs", type=int, default=4, help="maximum training epochs per model")
    demo.add_argument("--interactions", type=int, help="impressions to generate (default: the demo preset)")
    demo.add_argument("--batch-size", type=int, help="training batch size (default: the training config's)")
    demo.add_argument("--fresh", action="store_true", help="regenerate the dataset even if present")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


def _register_graph(sub: argparse._SubParsersAction) -> None:
    from mgoe.graph.commands import register

    register(sub)


def _register_train(sub: argparse._SubParsersAction) -> None:
    from mgoe.train.commands import register

    register(sub)


def _register_serve(sub: argparse._SubParsersAction) -> None:
    from mgoe.serve.commands import register

    register(sub)


def _register_bench(sub: argparse._SubParsersAction) -> None:
    from mgoe.bench.commands import register

    register(sub)


# Each layer (graph, train, serve, bench) registers its sub-commands here.
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_graph, _register_train, _register_serve, _register_bench
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except MgoeError as exc:
        print(f"mgoe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mgoe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
