"""Online serving: export a run as an artifact, score candidates, apply events, serve HTTP.

>>> from mgoe.serve import Scorer, export_run             # doctest: +SKIP
>>> export_run("runs/mgoe-1", "artifacts/mgoe-1")         # doctest: +SKIP
>>> Scorer.load("artifacts/mgoe-1").score("u1", ["i1", "i2"])  # doctest: +SKIP

Modules: :mod:`~mgoe.serve.artifact` (export, verified loading), :mod:`~mgoe.serve.scorer`
(batched scoring, online first-order updates), :mod:`~mgoe.serve.state` (feature rows, pair
masks, id maps), :mod:`~mgoe.serve.events` (durable event log), :mod:`~mgoe.serve.app`
(FastAPI service), :mod:`~mgoe.serve.refresh` (event log -> new dataset), and
:mod:`~mgoe.serve.commands` (CLI). Names are imported lazily, so the CLI starts fast.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Artifact": "mgoe.serve.artifact",
    "export_run": "mgoe.serve.artifact",
    "open_artifact": "mgoe.serve.artifact",
    "Event": "mgoe.serve.scorer",
    "EventStats": "mgoe.serve.scorer",
    "Scorer": "mgoe.serve.scorer",
    "ScorerConfig": "mgoe.serve.scorer",
    "EventLog": "mgoe.serve.events",
    "read_events": "mgoe.serve.events",
    "create_app": "mgoe.serve.app",
    "serve": "mgoe.serve.app",
    "add_events": "mgoe.serve.refresh",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mgoe.serve' has no attribute {name!r}")
