"""``mgoe export | serve`` and ``mgoe data add-events``: thin wrappers over :mod:`mgoe.serve`.

Heavy imports (torch, FastAPI, uvicorn) happen inside the commands, so ``mgoe --help`` stays
fast.
"""

from __future__ import annotations

import argparse
import json

from mgoe.errors import MgoeError


def cmd_export(args: argparse.Namespace) -> int:
    from mgoe.serve.artifact import export_run

    manifest = export_run(args.run_dir, args.output, weights=args.weights)
    size = sum(f["size"] for f in manifest["files"].values())
    graph = "with macro graph" if manifest["graph"] else "without macro graph"
    print(f"exported {manifest['model']['name']} ({args.weights} weights, {graph}; "
          f"{len(manifest['files'])} files, {size / 2**20:.1f} MiB) -> {args.output}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mgoe.serve.app import serve
    from mgoe.serve.scorer import ScorerConfig

    if args.max_items < 1:
        raise MgoeError(f"--max-items must be at least 1, got {args.max_items}")
    config = ScorerConfig(num_threads=args.threads, new_ids=args.new_ids, verify=not args.no_verify)
    serve(args.artifact, host=args.host, port=args.port, max_items=args.max_items,
          event_log=args.event_log, scorer_config=config, log_level=args.log_level)
    return 0


def cmd_add_events(args: argparse.Namespace) -> int:
    from mgoe.serve.refresh import add_events

    summary = add_events(args.directory, args.events, args.output)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"added {summary['events']:,} events as {summary['rows_added']:,} train rows "
          f"({summary['new_users']:,} new users, {summary['new_items']:,} new items) -> {args.output}; "
          f"next: mgoe graph build --data {args.output}")
    return 0


def _data_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction | None:
    data = sub.choices.get("data")
    if data is None:
        return None
    for action in data._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export``, ``serve`` and ``data add-events`` to the ``mgoe`` command line."""
    e = sub.add_parser("export", help="export a training run as a self-contained serving artifact",
                       description="Write a directory with the run's weights, model config, id "
                       "maps, side features, macro assignments and features, and a manifest "
                       "of SHA-256 hashes. It loads without the training data.")
    e.add_argument("run_dir", metavar="RUNDIR", help="run directory (mgoe train --output)")
    e.add_argument("--output", required=True, help="artifact directory to write (replaced atomically)")
    e.add_argument("--weights", choices=["best", "last"], default="best",
                   help="best (early-stopping choice, default) or last checkpoint")
    e.set_defaults(func=cmd_export)

    s = sub.add_parser("serve", help="serve an artifact over HTTP (scores, events, metrics, reload)",
                       description="POST /score, POST /events, GET /health, GET /metrics, "
                       "POST /admin/reload (or SIGHUP); OpenAPI schema at /openapi.json.")
    s.add_argument("artifact", metavar="ARTIFACT", help="artifact directory (mgoe export)")
    s.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max-items", type=int, default=1000, help="most candidate items per /score request")
    s.add_argument("--event-log", help="JSON-lines log of accepted events (fsynced; replayed on start)")
    s.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    s.add_argument("--new-ids", choices=["track", "ignore"], default="track",
                   help="ids first seen in events: track (cold macro node, counts accumulate) or ignore")
    s.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check of artifact files")
    s.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    s.set_defaults(func=cmd_serve)

    dsub = _data_subparsers(sub)
    if dsub is not None:
        a = dsub.add_parser("add-events", help="add a serving event log to a dataset as train rows",
                            description="Write a new dataset: DATA plus the logged events as train "
                            "rows (new ids appended). Then: mgoe graph build --data OUTPUT.")
        a.add_argument("directory", metavar="DATA", help="prepared dataset directory")
        a.add_argument("--events", required=True, help="event log written by mgoe serve --event-log")
        a.add_argument("--output", required=True, help="dataset directory to write")
        a.add_argument("--json", action="store_true", help="print the summary as JSON")
        a.set_defaults(func=cmd_add_events)
        if dsub.metavar and "add-events" not in dsub.metavar:
            dsub.metavar = dsub.metavar.rstrip("}") + ",add-events}"
