"""Online scoring of a serving artifact, with online updates of first-order macro features.

>>> from mgoe.serve import Scorer
>>> scorer = Scorer.load("artifacts/mgoe-1")                       # doctest: +SKIP
>>> scorer.score("u17", ["i3", "i9", "i42"])                       # doctest: +SKIP
{'click': array([...], dtype=float32), 'like': array([...]), 'follow': array([...])}
>>> scorer.rank("u17", ["i3", "i9", "i42"], {"click": 1, "follow": 5})  # doctest: +SKIP
>>> scorer.apply_events([("u17", "i9", {"click": 1, "like": 1})])  # doctest: +SKIP

Scoring builds one batch for all candidates (the model contract of :mod:`mgoe.models.spec`)
and runs one forward pass; it gives the same probabilities as ``mgoe predict`` on the same
pairs (the inputs are assembled by the same rules as :class:`mgoe.train.inputs.BatchSource`):
unknown ids get the spare embedding row (index ``num_users`` / ``num_items``), no side
features, the cold macro node and empty macro features; there is no context at serving time
(context codes 0 = missing, as in ``mgoe predict``).

Online events (:meth:`Scorer.apply_events`), METHOD.md §4 — an event ``(user_id, item_id,
{task: 0/1})`` is OR-ed into the pair's task mask ``m_old -> m_new = m_old | bits``; when the
mask changes, for every graph at once:

* merged graph: the user's first-order vector gets ``score[m_new] − score[m_old]`` at the
  item's macro node, the item's first-order vector the same at the user's macro node
  (``score`` = :func:`mgoe.graph.merge.score_table` with the graph build's β and ranking);
* task graph ``t``: ``+1`` at the same places when bit ``t`` is newly set.

Labels of 0 never clear a bit (OR semantics), so replaying or repeating events is idempotent.
Macro assignments and second-order features are not updated online; they are refreshed in
batch (``mgoe data add-events`` + ``mgoe graph build`` + retrain/export + reload).

Ids first seen in an event (``new_ids="track"``, the default) become known to the scorer:
they get the next free index, keep the fallback embedding row and no side features, belong
to the cold macro node, and accumulate their own first-order counts; the other side of the
event counts them at the cold macro node. This is exactly what the feature equations give
for a graph in which the new node is assigned to the cold node. With ``new_ids="ignore"``,
events naming an unknown user or item change nothing (they are still logged by the server
and reach the next batch refresh).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from mgoe.errors import MgoeError
from mgoe.serve.artifact import Artifact, open_artifact
from mgoe.serve.state import FeatureRows, IdMap, PairMasks, load_feature_rows

NEW_ID_POLICIES = ("track", "ignore")


@dataclass
class ScorerConfig:
    """Options of a :class:`Scorer` (and of ``mgoe serve``)."""

    num_threads: int | None = 1
    """torch CPU threads (``torch.set_num_threads``, process-wide). Default 1: one request
    uses one core; on a shared 2-core machine 2 threads measured up to 20x slower. None:
    leave torch's setting alone."""
    flush_denormal: bool = True
    """``torch.set_flush_denormal(True)`` (process-wide), as in training."""
    new_ids: str = "track"
    """Ids first seen in events: ``track`` (become known, cold macro node, counts accumulate)
    or ``ignore`` (such events do not change features)."""
    compact_override_mb: float = 256.0
    """Fold the online overrides into the CSR feature tables when they exceed this many MiB
    (an O(nnz) rebuild, amortised over the events that filled them); 0: never."""
    verify: bool = True
    """Check every artifact file's SHA-256 on load (sizes are always checked)."""
    dense_above: float = 0.5
    """Keep a feature table dense (float32 ``[nodes, G · K]``) when at least this share of its
    entries is non-zero — smaller than CSR's 8 bytes per entry from 0.5 on, and faster to
    gather; CSR below. Second-order tables are usually dense, first-order ones sparse. Values
    are the same either way."""

    def validate(self) -> None:
        if self.num_threads is not None and self.num_threads < 1:
            raise MgoeError(f"num_threads must be at least 1 (or None), got {self.num_threads}")
        if self.new_ids not in NEW_ID_POLICIES:
            raise MgoeError(f"new_ids must be one of {', '.join(NEW_ID_POLICIES)}, got {self.new_ids!r}")
        if self.dense_above < 0:
            raise MgoeError(f"dense_above must be >= 0 (0: always dense, above 1: never), got {self.dense_above}")
        if self.compact_override_mb < 0:
            raise MgoeError(f"compact_override_mb must be >= 0, got {self.compact_override_mb}")


@dataclass
class Event:
    """One logged interaction: task labels (0/1) of a (user, item) pair."""

    user_id: str
    item_id: str
    labels: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "item_id": self.item_id, "labels": dict(self.labels)}


EventLike = Event | tuple[Any, Any, Mapping[str, int]] | Mapping[str, Any]


def as_event(event: EventLike) -> Event:
    """An :class:`Event` from an Event, a ``(user_id, item_id, labels)`` tuple or a mapping."""
    if isinstance(event, Event):
        return event
    if isinstance(event, Mapping):
        try:
            return Event(str(event["user_id"]), str(event["item_id"]), dict(event.get("labels") or {}))
        except KeyError as exc:
            raise MgoeError(f"event {dict(event)!r} lacks {exc.args[0]!r}") from None
    try:
        user_id, item_id, labels = event
    except (TypeError, ValueError):
        raise MgoeError(f"an event is (user_id, item_id, {{task: 0/1}}), got {event!r}") from None
    return Event(str(user_id), str(item_id), dict(labels))


@dataclass
class EventStats:
    """What :meth:`Scorer.apply_events` did."""

    events: int = 0
    changed: int = 0
    """Events that set a new task bit (and so changed first-order features)."""
    ignored: int = 0
    """Events skipped because of an unknown id under ``new_ids="ignore"``."""
    new_users: int = 0
    new_items: int = 0

    def add(self, other: EventStats) -> None:
        for name in ("events", "changed", "ignored", "new_users", "new_items"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _side_codes(table: pd.DataFrame, columns: list[str], n: int) -> np.ndarray:
    out = np.zeros((n + 1, len(columns)), dtype=np.int64)
    for j, col in enumerate(columns):
        out[:n, j] = table[col].to_numpy()
    return out


class MacroState:
    """Macro assignments, feature rows and pair masks of an artifact's graph (mutable online)."""

    def __init__(self, artifact: Artifact, dense_above: float = 0.5) -> None:
        from mgoe.graph.merge import score_table

        info = artifact.manifest["graph"]
        self.graphs: list[str] = list(info["graphs"])
        self.tasks: list[str] = list(artifact.tasks)
        self.num_users = int(info["num_users"])
        self.num_items = int(info["num_items"])
        self.ku = int(info["num_user_macro"])
        self.ki = int(info["num_item_macro"])
        g = len(self.graphs)
        if g != 1 + len(self.tasks):
            raise MgoeError(f"{artifact.root}: graphs {self.graphs} do not match tasks {self.tasks}")
        sizes = {
            "user_first": (self.num_users, self.ki),
            "user_second": (self.num_users, self.ku),
            "item_first": (self.num_items, self.ku),
            "item_second": (self.num_items, self.ki),
        }
        self.rows: dict[str, FeatureRows] = {
            kind: load_feature_rows(artifact.path(f"graph/features/{kind}.parquet"), n, g, k, dense_above)
            for kind, (n, k) in sizes.items()
        }
        self.user_macro = pq.read_table(artifact.path("graph/user_macro.parquet"), columns=["macro"])["macro"].to_numpy().astype(np.int64)
        self.item_macro = pq.read_table(artifact.path("graph/item_macro.parquet"), columns=["macro"])["macro"].to_numpy().astype(np.int64)
        e = pq.read_table(artifact.path("graph/edges.parquet"), columns=["user", "item", "mask"])
        self.masks = PairMasks(e["user"].to_numpy(), e["item"].to_numpy(), e["mask"].to_numpy(), self.num_items)
        # float64 deltas of the float32 scores the graph build wrote into the merged graph
        self.score = score_table(self.tasks, float(info["beta"]), info.get("ranking")).astype(np.float64)

    def macro_of(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Macro nodes; unknown, fallback and online-only ids -> the cold node."""
        um = np.full(users.shape, self.ku - 1, dtype=np.int64)
        im = np.full(items.shape, self.ki - 1, dtype=np.int64)
        u_ok = users < self.num_users
        i_ok = items < self.num_items
        um[u_ok] = self.user_macro[users[u_ok]]
        im[i_ok] = self.item_macro[items[i_ok]]
        return um, im

    def apply(self, user: int, item: int, bits: int) -> bool:
        """OR ``bits`` into the pair's mask and update both first-order rows; True if changed."""
        old = self.masks.get(user, item)
        new = old | bits
        if new == old:
            return False
        cu = self.ku - 1 if user >= self.num_users else int(self.user_macro[user])
        ci = self.ki - 1 if item >= self.num_items else int(self.item_macro[item])
        delta = float(self.score[new] - self.score[old])
        user_cols, item_cols, values = [ci], [cu], [delta]
        added = new & ~old
        for t in range(len(self.tasks)):
            if added >> t & 1:
                user_cols.append((1 + t) * self.ki + ci)
                item_cols.append((1 + t) * self.ku + cu)
                values.append(1.0)
        self.rows["user_first"].add(user, user_cols, values)
        self.rows["item_first"].add(item, item_cols, values)
        self.masks.set(user, item, new)
        return True

    def override_bytes(self) -> int:
        return self.rows["user_first"].override_bytes + self.rows["item_first"].override_bytes

    def compact(self) -> None:
        self.rows["user_first"].compact()
        self.rows["item_first"].compact()


class Scorer:
    """Scores (user, candidate items) with an artifact's model; applies online events.

    Thread-safe: scoring and event application take a lock around the feature state (the
    model forward runs outside it).
    """

    def __init__(self, artifact: Artifact, config: ScorerConfig | None = None) -> None:
        from mgoe.models import build_model
        from mgoe.models.spec import ModelSpec
        from mgoe.train.checkpoint import load_weights

        self.config = config or ScorerConfig()
        self.config.validate()
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        if self.config.flush_denormal:
            torch.set_flush_denormal(True)
        self.artifact = artifact
        manifest = artifact.manifest
        self.tasks: list[str] = list(manifest["tasks"])
        self.spec = ModelSpec(**manifest["spec"])
        self.model_name: str = manifest["model"]["name"]
        torch.manual_seed(0)  # initial values are overwritten; keep construction reproducible
        self.model = build_model(self.model_name, self.spec, manifest["model"]["config"])
        load_weights(artifact.path("model/weights.safetensors"), self.model)
        self.model.eval()

        dataset = manifest["dataset"]
        users = pd.read_parquet(artifact.path("data/users.parquet"))
        items = pd.read_parquet(artifact.path("data/items.parquet"))
        self.num_users = int(dataset["num_users"])
        self.num_items = int(dataset["num_items"])
        if len(users) != self.num_users or len(items) != self.num_items:
            raise MgoeError(f"{artifact.root}: users/items tables do not match the manifest's counts")
        self.user_side = _side_codes(users, list(dataset["user_features"]), self.num_users)
        self.item_side = _side_codes(items, list(dataset["item_features"]), self.num_items)
        self.num_context = len(dataset["context_features"])
        self.users = IdMap(users["user_id"].to_numpy())
        self.items = IdMap(items["item_id"].to_numpy())
        del users, items
        self.macro: MacroState | None = (
            MacroState(artifact, self.config.dense_above) if artifact.has_graph else None
        )
        self._lock = threading.Lock()
        self.stats = EventStats()

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, artifact: str | Path, config: ScorerConfig | None = None) -> Scorer:
        """Open, verify and load an artifact directory (see :func:`open_artifact`)."""
        config = config or ScorerConfig()
        config.validate()
        return cls(open_artifact(artifact, verify=config.verify), config)

    @property
    def has_macro(self) -> bool:
        return self.macro is not None

    # ------------------------------------------------------------------ scoring

    def _batch(self, users: np.ndarray, items: np.ndarray, one_user: bool) -> dict[str, torch.Tensor]:
        """The model batch of index arrays (unknown/online ids already mapped)."""
        n = len(items)
        u_emb = np.minimum(users, self.num_users)  # online-only ids keep the fallback row
        i_emb = np.minimum(items, self.num_items)
        batch: dict[str, torch.Tensor] = {
            "user": torch.from_numpy(u_emb),
            "item": torch.from_numpy(i_emb),
            "user_features": torch.from_numpy(self.user_side[u_emb]),
            "item_features": torch.from_numpy(self.item_side[i_emb]),
            "context_features": torch.zeros((n, self.num_context), dtype=torch.int64),
        }
        if self.macro is None:
            batch["user_macro"] = torch.zeros(n, dtype=torch.int64)
            batch["item_macro"] = torch.zeros(n, dtype=torch.int64)
            return batch
        m = self.macro
        um, im = m.macro_of(users, items)
        with self._lock:
            if one_user:
                uf = np.repeat(m.rows["user_first"].gather(users[:1]), n, axis=0)
                us = np.repeat(m.rows["user_second"].gather(users[:1]), n, axis=0)
            else:
                uf = m.rows["user_first"].gather(users)
                us = m.rows["user_second"].gather(users)
            itf = m.rows["item_first"].gather(items)
            its = m.rows["item_second"].gather(items)
        batch.update(
            user_macro=torch.from_numpy(um),
            item_macro=torch.from_numpy(im),
            user_first=torch.from_numpy(uf),
            user_second=torch.from_numpy(us),
            item_first=torch.from_numpy(itf),
            item_second=torch.from_numpy(its),
        )
        return batch

    def _forward(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            probs = self.model.predict_proba(batch).float().numpy()
        return {task: probs[:, t] for t, task in enumerate(self.tasks)}

    def score(self, user_id: Any, item_ids: Iterable[Any]) -> dict[str, np.ndarray]:
        """Probabilities ``{task: float32 [len(item_ids)]}`` of one user for candidate items,
        in the order given, from one model forward pass."""
        item_keys = [str(i) for i in item_ids]
        if not item_keys:
            return {task: np.zeros(0, np.float32) for task in self.tasks}
        items = self.items.lookup(item_keys)
        users = np.full(len(items), self.users.lookup([str(user_id)])[0], dtype=np.int64)
        return self._forward(self._batch(users, items, one_user=True))

    def score_pairs(self, user_ids: Iterable[Any], item_ids: Iterable[Any]) -> dict[str, np.ndarray]:
        """Probabilities ``{task: float32 [N]}`` of N (user, item) pairs, one forward pass."""
        user_keys = [str(u) for u in user_ids]
        item_keys = [str(i) for i in item_ids]
        if len(user_keys) != len(item_keys):
            raise MgoeError(f"{len(user_keys)} user ids but {len(item_keys)} item ids")
        if not item_keys:
            return {task: np.zeros(0, np.float32) for task in self.tasks}
        users = self.users.lookup(user_keys)
        items = self.items.lookup(item_keys)
        return self._forward(self._batch(users, items, one_user=False))

    def check_weights(self, weights: Mapping[str, float]) -> None:
        """:class:`MgoeError` for task names the model does not have."""
        unknown = sorted(set(weights) - set(self.tasks))
        if unknown:
            raise MgoeError(f"unknown task(s) {', '.join(map(repr, unknown))} in weights; tasks are {', '.join(self.tasks)}")

    def combine(self, scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
        """``Σ_t w_t · p_t`` (float64); tasks without a weight count 0."""
        self.check_weights(weights)
        n = len(next(iter(scores.values()))) if scores else 0
        total = np.zeros(n, dtype=np.float64)
        for task, w in weights.items():
            total += float(w) * scores[task].astype(np.float64)
        return total

    def rank(self, user_id: Any, item_ids: Iterable[Any], weights: Mapping[str, float]
             ) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
        """Candidates ordered by ``Σ_t w_t · p_t``, best first (ties keep the input order).

        Returns (item ids best first, combined score per input item, per-task scores).
        """
        self.check_weights(weights)
        item_keys = [str(i) for i in item_ids]
        scores = self.score(user_id, item_keys)
        combined = self.combine(scores, weights)
        order = np.argsort(-combined, kind="stable")
        return [item_keys[i] for i in order], combined, scores

    # ------------------------------------------------------------------ online events

    def check_events(self, events: Iterable[EventLike]) -> list[Event]:
        """Events as :class:`Event`; :class:`MgoeError` for unknown tasks or labels not 0/1."""
        out = []
        tasks = set(self.tasks)
        for n, raw in enumerate(events):
            event = as_event(raw)
            unknown = sorted(set(event.labels) - tasks)
            if unknown:
                raise MgoeError(
                    f"event {n}: unknown task(s) {', '.join(map(repr, unknown))}; tasks are {', '.join(self.tasks)}"
                )
            bad = {k: v for k, v in event.labels.items() if isinstance(v, str) or v not in (0, 1)}
            if bad:
                raise MgoeError(f"event {n}: labels must be 0 or 1, got {bad}")
            out.append(event)
        return out

    def apply_events(self, events: Iterable[EventLike]) -> EventStats:
        """Apply interactions at once (see the module docstring for the semantics).

        Every event is validated before any is applied, so a bad event changes nothing.
        O(G · K) per event at most; returns what changed.
        """
        checked = self.check_events(events)
        stats = EventStats(events=len(checked))
        bit = {task: 1 << t for t, task in enumerate(self.tasks)}
        track = self.config.new_ids == "track"
        with self._lock:
            for event in checked:
                bits = 0
                for task, value in event.labels.items():
                    if value:
                        bits |= bit[task]
                user = self.users.get(event.user_id)
                item = self.items.get(event.item_id)
                if (user is None or item is None) and not track:
                    stats.ignored += 1
                    continue
                if bits == 0 or self.macro is None:
                    continue  # nothing to count (all-zero labels or a model without graphs)
                if user is None:
                    user = self.users.add(event.user_id)
                    stats.new_users += 1
                if item is None:
                    item = self.items.add(event.item_id)
                    stats.new_items += 1
                if self.macro.apply(user, item, bits):
                    stats.changed += 1
            limit = self.config.compact_override_mb * 2**20
            if self.macro is not None and limit and self.macro.override_bytes() > limit:
                self.macro.compact()
        self.stats.add(stats)
        return stats

    # ------------------------------------------------------------------ inspection

    def first_order(self, user_id: Any = None, item_id: Any = None) -> np.ndarray:
        """Current first-order vector ``float64 [G, K]`` of one user (or one item): counts per
        item (user) macro node in every graph, index 0 merged, 1 + t task t."""
        if self.macro is None:
            raise MgoeError("this artifact has no macro graph features")
        if (user_id is None) == (item_id is None):
            raise MgoeError("give exactly one of user_id, item_id")
        if user_id is not None:
            node, rows = self.users.get(str(user_id)), self.macro.rows["user_first"]
        else:
            node, rows = self.items.get(str(item_id)), self.macro.rows["item_first"]
        with self._lock:
            row = rows.row(-1 if node is None else node)
        return row.reshape(rows.graphs, rows.k)

    def macro_node(self, user_id: Any = None, item_id: Any = None) -> int:
        """Macro node of one user (or one item); unknown and online-only ids -> the cold node."""
        if self.macro is None:
            raise MgoeError("this artifact has no macro graph features")
        if (user_id is None) == (item_id is None):
            raise MgoeError("give exactly one of user_id, item_id")
        if user_id is not None:
            node = self.users.get(str(user_id))
            return int(self.macro.macro_of(np.array([self.num_users if node is None else node]), np.array([0]))[0][0])
        node = self.items.get(str(item_id))
        return int(self.macro.macro_of(np.array([0]), np.array([self.num_items if node is None else node]))[1][0])

    def pair_mask(self, user_id: Any, item_id: Any) -> int:
        """The pair's current task bit mask (task t = bit 2^t); 0 if never positive."""
        if self.macro is None:
            return 0
        user, item = self.users.get(str(user_id)), self.items.get(str(item_id))
        if user is None or item is None:
            return 0
        with self._lock:
            return self.macro.masks.get(user, item)

    def info(self) -> dict[str, Any]:
        """A summary for ``GET /health`` and logs."""
        m = self.artifact.manifest
        return {
            "artifact": str(self.artifact.root),
            "model": self.model_name,
            "tasks": list(self.tasks),
            "mgoe_version": m.get("mgoe_version"),
            "created_at": m.get("created_at"),
            "data_fingerprint": m.get("data_fingerprint"),
            "graph_fingerprint": m.get("graph_fingerprint"),
            "users": self.num_users,
            "items": self.num_items,
            "online_users": len(self.users.added),
            "online_items": len(self.items.added),
            "macro": self.has_macro,
            "events": self.stats.events,
            "events_changed": self.stats.changed,
        }
