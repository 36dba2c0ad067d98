"""The HTTP service of ``mgoe serve`` (FastAPI on uvicorn, one worker).

Endpoints (request bodies are validated by pydantic; the schema is at ``/openapi.json``):

``POST /score``
    ``{"user_id": "u1", "item_ids": ["i1", "i2", ...], "weights": {"click": 1, "buy": 4}?}`` ->
    ``{"scores": {task: [p, ...]}}`` in the order of ``item_ids``; with ``weights`` also
    ``"ranking"`` (item ids, best first by ``Σ_t w_t p_t``) and ``"combined"`` (that sum per
    input item). At most ``max_items`` candidates; unknown ids are scored with the fallback
    embedding and the cold macro node.
``POST /events``
    ``{"events": [{"user_id": ..., "item_id": ..., "labels": {task: 0/1}}, ...]}`` -> counts.
    The events are validated, appended to the event log (one JSON line, flushed and fsynced),
    then applied to the scorer's first-order features, and only then answered. The log is
    replayed on startup, so acknowledged events survive a crash or restart.
``GET /health``
    Liveness plus a summary of the loaded artifact.
``GET /inspect?user_id=..&item_id=..``
    Current first-order macro vectors, macro nodes and the pair's task mask (for checks).
``GET /metrics``
    Prometheus text: ``mgoe_http_requests_total{endpoint,method,status}``,
    ``mgoe_http_request_duration_seconds{endpoint}`` (histogram), events and reload counters.
``POST /admin/reload``
    ``{"artifact": "PATH"?}`` (default: the current artifact's path) — loads and verifies the
    new artifact in a worker thread, replays the event log onto it, then swaps the scorer
    reference under the events lock; requests already running finish on the old scorer, none
    is dropped (the process holds both scorers until the old one's last request ends, so
    leave memory for two). ``SIGHUP`` does the same for the current path. A bad artifact is refused with
    a 4xx message and the old one keeps serving. This endpoint has no authentication: bind
    the service to loopback or put it behind a proxy that guards ``/admin``.

Bad requests (malformed JSON, wrong types, too many items, unknown task names) get a 4xx with
a message; they never stop the service.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the request models that
# create_app builds (their limits are options) as real annotations, not strings.
import asyncio
import logging
import signal
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from mgoe.errors import MgoeError
from mgoe.serve.events import EventLog, read_events
from mgoe.serve.scorer import Event, Scorer, ScorerConfig

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 256
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, strict=True)] | Annotated[
    int, Field(strict=True)
]
"""An original user or item id: a string (as stored in the dataset) or an integer (sent as its
decimal string)."""
Label = Annotated[int, Field(strict=True, ge=0, le=1)]
Weight = Annotated[float, Field(allow_inf_nan=False)]
ENDPOINTS = ("/score", "/events", "/health", "/inspect", "/metrics", "/admin/reload", "/openapi.json", "/docs")


class EventIn(BaseModel):
    """One interaction: task labels (0/1; missing tasks count 0) of a (user, item) pair."""

    model_config = ConfigDict(extra="forbid")
    user_id: Id
    item_id: Id
    labels: dict[str, Label]


class ReloadRequest(BaseModel):
    """Artifact to load; None: reload the current artifact's path."""

    model_config = ConfigDict(extra="forbid")
    artifact: str | None = None


class ScoreResponse(BaseModel):
    scores: dict[str, list[float]]
    ranking: list[str] | None = None
    combined: list[float] | None = None


class EventsResponse(BaseModel):
    accepted: int
    changed: int
    ignored: int
    new_users: int
    new_items: int


class _Metrics:
    """Prometheus metrics of one app (own registry, so several apps can live in a process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mgoe_http_requests", "HTTP requests by endpoint, method and status code",
            ["endpoint", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "mgoe_http_request_duration_seconds", "HTTP request latency by endpoint (seconds)",
            ["endpoint"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
                     0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.events = Counter("mgoe_events", "Events accepted", registry=self.registry)
        self.events_changed = Counter(
            "mgoe_events_changed", "Events that set a new task bit", registry=self.registry
        )
        self.reloads = Counter("mgoe_reloads", "Artifact reloads by result", ["result"], registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _MetricsMiddleware:
    """Pure ASGI middleware: request count and latency per endpoint (cheaper than
    ``BaseHTTPMiddleware``). Paths that are not endpoints are counted as ``other``."""

    def __init__(self, app: Any, metrics: _Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = 500
        start = time.perf_counter()

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()


class Service:
    """The state behind the app: current scorer, event log, locks, reload."""

    def __init__(self, artifact: str | Path, event_log: str | Path | None,
                 scorer_config: ScorerConfig | None, metrics: _Metrics) -> None:
        self.scorer_config = scorer_config or ScorerConfig()
        self.metrics = metrics
        self.events_lock = threading.Lock()
        self.reload_lock = threading.Lock()
        self.log = EventLog(event_log) if event_log else None
        self.artifact_path = Path(artifact)
        self.scorer = Scorer.load(self.artifact_path, self.scorer_config)
        self.replayed = self._replay(self.scorer, 0)[0]
        self.loaded_at = time.time()

    def _replay(self, scorer: Scorer, offset: int) -> tuple[int, int]:
        """Apply the log's events from byte ``offset`` on; returns (events, next offset)."""
        if self.log is None:
            return 0, offset
        events, offset = read_events(self.log.path, offset)
        if events:
            # the log only holds validated events; tasks unknown to a reloaded model are dropped
            known = set(scorer.tasks)
            events = [Event(e.user_id, e.item_id, {t: v for t, v in e.labels.items() if t in known})
                      for e in events]
            scorer.apply_events(events)
        return len(events), offset

    def post_events(self, events: list[Event]) -> dict[str, int]:
        with self.events_lock:
            scorer = self.scorer
            checked = scorer.check_events(events)
            if self.log is not None:
                self.log.append(checked)
            stats = scorer.apply_events(checked)
        self.metrics.events.inc(stats.events)
        self.metrics.events_changed.inc(stats.changed)
        return {"accepted": stats.events, "changed": stats.changed, "ignored": stats.ignored,
                "new_users": stats.new_users, "new_items": stats.new_items}

    def reload(self, artifact: str | Path | None = None) -> dict[str, Any]:
        """Load ``artifact`` (default: the current path) fully, replay the log, swap."""
        path = Path(artifact) if artifact else self.artifact_path
        with self.reload_lock:
            start = time.perf_counter()
            try:
                scorer = Scorer.load(path, self.scorer_config)
                replayed, offset = self._replay(scorer, 0)
                with self.events_lock:
                    more, _ = self._replay(scorer, offset)
                    old, self.scorer = self.scorer, scorer
                    self.artifact_path = path
                    self.loaded_at = time.time()
            except MgoeError:
                self.metrics.reloads.labels("error").inc()
                raise
            self.metrics.reloads.labels("ok").inc()
            del old
            return {"artifact": str(path), "model": scorer.model_name, "replayed_events": replayed + more,
                    "seconds": round(time.perf_counter() - start, 3)}

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def create_app(artifact: str | Path, *, max_items: int = 1000, max_events: int = 10_000,
               event_log: str | Path | None = None, scorer_config: ScorerConfig | None = None) -> FastAPI:
    """The FastAPI app serving ``artifact``; loads it (and replays ``event_log``) right away,
    so a bad artifact fails here with :class:`MgoeError`."""
    if max_items < 1 or max_events < 1:
        raise MgoeError("max_items and max_events must be at least 1")
    metrics = _Metrics()
    service = Service(artifact, event_log, scorer_config, metrics)

    score_request = create_model(
        "ScoreRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__="A user and up to max_items candidate items; optional task weights for a ranking.",
        user_id=(Id, ...),
        item_ids=(list[Id], Field(..., min_length=1, max_length=max_items)),
        weights=(dict[str, Weight] | None, None),
    )
    events_request = create_model(
        "EventsRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__="Interactions to apply online and log durably.",
        events=(list[EventIn], Field(..., min_length=1, max_length=max_events)),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        hup = False
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_sighup()))
            hup = True
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            pass  # not the main thread (e.g. a test client) or no SIGHUP on this platform
        try:
            yield
        finally:
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            service.close()

    async def _sighup() -> None:
        try:
            info = await run_in_threadpool(service.reload, None)
            log.warning("SIGHUP: reloaded %s", info)
        except MgoeError as exc:
            log.error("SIGHUP: reload refused: %s", exc)

    app = FastAPI(
        title="mgoe serving",
        description="Multi-task scores from an MGOE (or baseline) artifact, online macro-feature "
                    "updates from events, metrics and hot reload.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes every offending input (a 10,000-id list); keep location,
        # message and type, and a one-line summary.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        summary = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in errors[:5])
        return JSONResponse({"detail": errors, "message": f"invalid request: {summary}"}, status_code=422)

    @app.exception_handler(MgoeError)
    async def _mgoe_error(request: Request, exc: MgoeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.post("/score", response_model=ScoreResponse)
    async def score(body: score_request) -> Response:  # type: ignore[valid-type]
        scorer = service.scorer
        if body.weights is not None:
            scorer.check_weights(body.weights)
            ranking, combined, scores = scorer.rank(body.user_id, body.item_ids, body.weights)
            content: dict[str, Any] = {"scores": {t: v.tolist() for t, v in scores.items()},
                                       "ranking": ranking, "combined": combined.tolist()}
        else:
            scores = scorer.score(body.user_id, body.item_ids)
            content = {"scores": {t: v.tolist() for t, v in scores.items()}}
        return JSONResponse(content)

    @app.post("/events", response_model=EventsResponse)
    def events(body: events_request) -> dict[str, int]:  # type: ignore[valid-type]
        batch = [Event(str(e.user_id), str(e.item_id), dict(e.labels)) for e in body.events]
        return service.post_events(batch)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        info = service.scorer.info()
        info.update(status="ok", max_items=max_items, event_log=str(service.log.path) if service.log else None,
                    replayed_events=service.replayed, loaded_at=service.loaded_at)
        return info

    @app.get("/inspect")
    async def inspect(user_id: str | None = None, item_id: str | None = None) -> dict[str, Any]:
        """First-order macro vectors ``[G][K]`` of a user and/or an item (graph 0 merged,
        1 + t task t), their macro nodes and the pair's task mask; for checks and debugging."""
        if user_id is None and item_id is None:
            raise HTTPException(status_code=422, detail="give user_id and/or item_id")
        scorer = service.scorer
        out: dict[str, Any] = {"graphs": scorer.macro.graphs if scorer.macro else []}
        if user_id is not None:
            out["user_known"] = scorer.users.get(user_id) is not None
            if scorer.macro is not None:
                out["user_first"] = scorer.first_order(user_id=user_id).tolist()
                out["user_macro"] = scorer.macro_node(user_id=user_id)
        if item_id is not None:
            out["item_known"] = scorer.items.get(item_id) is not None
            if scorer.macro is not None:
                out["item_first"] = scorer.first_order(item_id=item_id).tolist()
                out["item_macro"] = scorer.macro_node(item_id=item_id)
        if user_id is not None and item_id is not None:
            out["mask"] = scorer.pair_mask(user_id, item_id)
        return out

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload")
    async def reload(body: ReloadRequest | None = None) -> dict[str, Any]:
        try:
            return await run_in_threadpool(service.reload, body.artifact if body else None)
        except MgoeError as exc:
            raise HTTPException(status_code=400, detail=f"reload refused, still serving the old artifact: {exc}") from None

    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    return app


def _version() -> str:
    from mgoe import __version__

    return __version__


def serve(artifact: str | Path, host: str = "127.0.0.1", port: int = 8000, *, max_items: int = 1000,
          event_log: str | Path | None = None, scorer_config: ScorerConfig | None = None,
          log_level: str = "warning") -> None:
    """Load ``artifact`` and serve it with uvicorn (one worker) until interrupted."""
    import uvicorn

    app = create_app(artifact, max_items=max_items, event_log=event_log, scorer_config=scorer_config)
    uvicorn.run(app, host=host, port=port, workers=1, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=5)


__all__ = ["EventIn", "ReloadRequest", "Service", "create_app", "serve"]
