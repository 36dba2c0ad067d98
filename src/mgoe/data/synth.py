r"""Synthetic multi-task impression logs with a planted, checkable community structure.

:func:`generate` streams a dataset of ``interactions`` logged impressions into the prepared
format of :mod:`mgoe.data.schema` (``negatives = "real"``: rows whose labels are all zero are
impressions without a response). It is the embedded default of ``mgoe demo`` and the input of
the scale benchmarks (up to and beyond 10^9 rows, in bounded memory).

Generative model
----------------
Notation: ``C_U`` user and ``C_I`` item communities, ``T`` tasks in funnel order, ``σ`` the
logistic function. The structure is drawn once from the seed; rows are drawn chunk by chunk,
chunk ``k`` from its own generator seeded with ``(seed, k)``. Users and items are drawn from
Walker alias tables (:func:`alias_tables`), O(1) per row.

Structure

* Community sizes are Zipf-skewed: ``π_c ∝ (c + 1)^(−community_skew)``. Each user gets a
  community ``c_u ~ π^U`` and each item ``c_i ~ π^I`` (every community gets at least one
  member).
* User activity ``a_u ~ LogNormal(0, activity_sigma)``.
* Item popularity is Zipf within the item's community: with ``r_i`` a random rank of ``i``
  among the items of ``c_i``, ``w_i = (r_i + 1)^(−popularity_exponent)``.
* Community preference ``P[c, ·] ~ Dirichlet(preference_concentration · 1)`` (``C_U × C_I``,
  rows sum to 1): which item communities the users of community ``c`` are shown.
* Task affinities (``C_U × C_I`` each). A shared component partly follows the preference,
  ``S = √κ · z(log P) + √(1−κ) · N(0, 1)`` with ``κ = preference_affinity`` and ``z`` the
  standardisation over all cells, and each task mixes it with its own noise matrix ``E_t``::

      A_t = affinity_scale · ( √ρ · S + √(1−ρ) · E_t ),      ρ = task_correlation ∈ [0, 1]

  so ``corr(A_t, A_t') ≈ ρ`` for ``t ≠ t'``.
* Per-user and per-item biases ``β_u ~ N(0, user_bias_std²)``, ``γ_i ~ N(0, item_bias_std²)``.

Rows (row ``r`` of ``N``, generated in chunks of ``chunk_rows``)

* user ``u ~ a_u / Σ a`` (activity skew);
* item: with probability ``signal`` from a preferred community, ``j ~ P[c_u, ·]`` and then
  ``i ~ w_i`` among the items of ``j``; otherwise ``i ~ w_i / Σ w`` (global popularity);
* labels along the funnel, with ``ε_t ~ N(0, noise_std²)``::

      ℓ_t = b_t + A_t[c_u, c_i] + β_u + γ_i + ε_t
      y_0 ~ Bernoulli(σ(ℓ_0)),   y_t = y_{t−1} · Bernoulli(σ(ℓ_t))   (t ≥ 1)

  i.e. ``σ(ℓ_t)`` is ``P(y_t = 1 | y_{t−1} = 1)``, and a deeper task is positive only where
  every shallower one is. The intercepts ``b_t`` are calibrated (bisection over the expected
  impression share of every community cell ``(c_u, c_i)``, biases and noise folded in by the
  probit approximation) so that the rate of task ``t`` among rows positive for task ``t − 1``
  (all rows for ``t = 0``) is about ``funnel_rates[t]``;
* timestamp ``start_time + ⌊r · D / N⌋`` with ``D = duration_days · 86400`` s: time grows
  with the row position, so the time split (train before ``f_0 · D``, valid before
  ``(f_0 + f_1) · D``, test after; ``fractions = (f_0, f_1, f_2)``) is known while streaming,
  rows sharing a timestamp share a split, and the split sizes do not depend on the chunking.

Repeated (user, item) impressions occur, as in real logs. The same config (seed included)
always yields the same files; the chunk size changes the random draws but not the split sizes.

Output
------
The prepared format (``meta.json``, ``users.parquet``, ``items.parquet``, ``train/``, ``valid/``,
``test/`` part files, ``_COMPLETE``), written atomically. Original ids are the strings
``"u<index>"`` and ``"i<index>"``. Items carry one *harmless* side feature ``color`` (uniform
noise, ``side_feature_values`` codes; 0 disables it) to exercise the side-feature path. The
planted truth, which no model may see, is stored beside it::

    planted/users.parquet     user, community, activity (sampling probability), bias
    planted/items.parquet     item, community, popularity (weight w_i), bias, rank
    planted/structure.json    config, tasks, community sizes, preference P, shared S,
                              affinity {task: A_t}, base logits b_t, split cut times
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from mgoe.data.schema import ITEM_COL, SPLITS, TIME_COL, USER_COL, DatasetMeta, SplitInfo
from mgoe.errors import MgoeError
from mgoe.io import atomic_directory, write_json_atomic

TASK_NAMES: dict[int, list[str]] = {
    1: ["click"],
    2: ["click", "like"],
    3: ["click", "like", "follow"],
    4: ["click", "like", "share", "follow"],
    5: ["click", "like", "comment", "share", "follow"],
    6: ["view", "click", "like", "comment", "share", "follow"],
}
"""Default task names (funnel order, shallow to deep) by number of tasks; ``task<k>`` beyond."""

SIDE_FEATURE = "color"
_STRUCTURE_STREAM = 0
_SIDE_FEATURE_STREAM = 1
_CHUNK_STREAM = 2


def default_task_names(tasks: int) -> list[str]:
    return list(TASK_NAMES.get(tasks, [f"task{k}" for k in range(tasks)]))


def default_funnel_rates(tasks: int) -> list[float]:
    """Funnel rates: 20% of impressions clicked, 40% of those liked, then 30% at each deeper step."""
    return [0.2, 0.4, *([0.3] * max(0, tasks - 2))][:tasks]


@dataclass
class SynthConfig:
    """Parameters of the generative model (see the module docstring for the equations)."""

    users: int
    items: int
    interactions: int
    """Logged impressions (rows)."""
    tasks: int = 3
    communities: int = 8
    """User communities ``C_U`` (and item communities unless ``item_communities`` is set)."""
    seed: int = 0
    item_communities: int | None = None
    task_names: list[str] | None = None
    """Funnel order, shallow to deep; default :data:`TASK_NAMES` / ``task<k>``."""
    funnel_rates: list[float] | None = None
    """Target rate of task ``t`` among rows positive for task ``t − 1`` (of all rows for the
    first task); default :func:`default_funnel_rates`. Met approximately (±~0.02)."""
    signal: float = 0.7
    """Probability that an impression's item comes from a community the user's community prefers."""
    task_correlation: float = 0.5
    """``ρ``: weight of the shared component in each task's affinity matrix."""
    preference_affinity: float = 0.5
    """``κ``: how much the shared affinity follows the preference (items users are shown)."""
    affinity_scale: float = 1.5
    """Standard deviation of the affinities, in logits."""
    preference_concentration: float = 0.5
    """Dirichlet concentration of each preference row; small = few preferred communities."""
    community_skew: float = 1.0
    popularity_exponent: float = 0.8
    activity_sigma: float = 1.0
    user_bias_std: float = 0.3
    item_bias_std: float = 0.3
    noise_std: float = 0.5
    side_feature_values: int = 16
    """Values of the item side feature ``color`` (pure noise); 0 writes no side feature."""
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    start_time: int = 1_700_000_000
    duration_days: float = 30.0
    chunk_rows: int = 2_000_000
    """Rows generated (and at most written per part file) at a time: bounds the memory."""
    name: str = "synth"

    def __post_init__(self) -> None:
        self.fractions = tuple(float(f) for f in self.fractions)  # type: ignore[assignment]
        if self.task_names is not None:
            self.task_names = list(self.task_names)
        if self.funnel_rates is not None:
            self.funnel_rates = [float(b) for b in self.funnel_rates]

    @property
    def user_communities(self) -> int:
        return self.communities

    @property
    def num_item_communities(self) -> int:
        return self.item_communities if self.item_communities is not None else self.communities

    def resolved_task_names(self) -> list[str]:
        return list(self.task_names) if self.task_names is not None else default_task_names(self.tasks)

    def resolved_funnel_rates(self) -> list[float]:
        return list(self.funnel_rates) if self.funnel_rates is not None else default_funnel_rates(self.tasks)

    def validate(self) -> None:
        def bad(msg: str) -> MgoeError:
            return MgoeError(f"synthetic data: {msg}")

        if self.tasks < 1:
            raise bad(f"tasks must be >= 1, got {self.tasks}")
        if self.communities < 1 or self.num_item_communities < 1:
            raise bad("communities must be >= 1")
        if self.users < self.communities:
            raise bad(f"users ({self.users}) must be >= communities ({self.communities})")
        if self.items < self.num_item_communities:
            raise bad(f"items ({self.items}) must be >= item communities ({self.num_item_communities})")
        if self.users > np.iinfo(np.int32).max or self.items > np.iinfo(np.int32).max:
            raise bad("users and items must fit in int32")
        if self.interactions < 1:
            raise bad(f"interactions must be >= 1, got {self.interactions}")
        if self.chunk_rows < 1:
            raise bad(f"chunk_rows must be >= 1, got {self.chunk_rows}")
        names = self.resolved_task_names()
        if len(names) != self.tasks or len(set(names)) != len(names):
            raise bad(f"task_names must be {self.tasks} distinct names, got {names}")
        rates = self.resolved_funnel_rates()
        if len(rates) != self.tasks or not all(0 < b < 1 for b in rates):
            raise bad(f"funnel_rates must be {self.tasks} numbers in (0, 1), got {rates}")
        for key in ("signal", "task_correlation", "preference_affinity"):
            value = getattr(self, key)
            if not 0 <= value <= 1:
                raise bad(f"{key} must be in [0, 1], got {value}")
        for key in ("affinity_scale", "community_skew", "popularity_exponent", "activity_sigma",
                    "user_bias_std", "item_bias_std", "noise_std"):
            if getattr(self, key) < 0:
                raise bad(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.preference_concentration <= 0:
            raise bad("preference_concentration must be > 0")
        if self.side_feature_values < 0:
            raise bad("side_feature_values must be >= 0")
        f = self.fractions
        if len(f) != 3 or any(x < 0 for x in f) or abs(sum(f) - 1) > 1e-9:
            raise bad(f"fractions must be three non-negative numbers summing to 1, got {f}")
        if self.duration_days <= 0:
            raise bad("duration_days must be > 0")


DEMO_CONFIG = SynthConfig(users=5_000, items=2_000, interactions=300_000, tasks=3, communities=8)
"""The embedded default of ``mgoe demo``: a few minutes for graph + two models on 2 cores."""

PRESETS: dict[str, SynthConfig] = {
    "tiny": SynthConfig(users=500, items=200, interactions=20_000, tasks=3, communities=4),
    "demo": DEMO_CONFIG,
    "medium": SynthConfig(users=200_000, items=50_000, interactions=10_000_000, communities=32),
    "large": SynthConfig(users=2_000_000, items=200_000, interactions=100_000_000, communities=64),
    "billion": SynthConfig(users=20_000_000, items=2_000_000, interactions=1_000_000_000, communities=128),
}


def preset(name: str, **overrides) -> SynthConfig:
    """A copy of the named preset (``tiny``, ``demo``, ``medium``, ``large``, ``billion``)."""
    if name not in PRESETS:
        raise MgoeError(f"unknown synthetic preset {name!r}; one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


# ----------------------------------------------------------------------------- structure


@dataclass
class PlantedStructure:
    """The latent truth behind a synthetic dataset (what ``planted/`` stores)."""

    user_community: np.ndarray  # int32 [U]
    user_activity: np.ndarray  # float64 [U], sums to 1
    user_bias: np.ndarray  # float32 [U]
    item_community: np.ndarray  # int32 [I]
    item_rank: np.ndarray  # int32 [I], popularity rank within the community
    item_popularity: np.ndarray  # float64 [I], w_i
    item_bias: np.ndarray  # float32 [I]
    preference: np.ndarray  # float64 [C_U, C_I], rows sum to 1
    shared_affinity: np.ndarray  # float64 [C_U, C_I]
    affinity: np.ndarray  # float64 [T, C_U, C_I]
    base_logits: np.ndarray  # float64 [T]


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    return (np.arange(1, n + 1, dtype=np.float64)) ** (-exponent)


def _assign_communities(rng: np.random.Generator, n: int, sizes: np.ndarray) -> np.ndarray:
    """Community per member, drawn from ``sizes``; each community gets at least one member."""
    k = len(sizes)
    comm = rng.choice(k, size=n, p=sizes).astype(np.int32)
    comm[rng.choice(n, size=k, replace=False)] = np.arange(k, dtype=np.int32)
    return comm


def _standardise(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def plant_structure(config: SynthConfig) -> PlantedStructure:
    """Draw the latent structure (communities, preference, affinities) from the config's seed."""
    config.validate()
    rng = np.random.default_rng([config.seed, _STRUCTURE_STREAM])
    cu, ci, n_tasks = config.user_communities, config.num_item_communities, config.tasks

    user_sizes = _zipf_weights(cu, config.community_skew)
    item_sizes = _zipf_weights(ci, config.community_skew)
    user_community = _assign_communities(rng, config.users, user_sizes / user_sizes.sum())
    item_community = _assign_communities(rng, config.items, item_sizes / item_sizes.sum())

    activity = rng.lognormal(0.0, config.activity_sigma, size=config.users)
    activity /= activity.sum()

    # Random rank of each item inside its community: sort by (community, random key).
    order = np.lexsort((rng.random(config.items), item_community))
    sorted_comm = item_community[order]
    starts = np.searchsorted(sorted_comm, np.arange(ci))
    item_rank = np.empty(config.items, dtype=np.int32)
    item_rank[order] = (np.arange(config.items) - starts[sorted_comm]).astype(np.int32)
    popularity = (item_rank.astype(np.float64) + 1.0) ** (-config.popularity_exponent)

    preference = rng.dirichlet(np.full(ci, config.preference_concentration), size=cu)
    # Dirichlet rows with tiny concentrations can underflow to exact zeros; keep them tiny.
    preference = np.maximum(preference, 1e-12)
    preference /= preference.sum(axis=1, keepdims=True)

    kappa, rho = config.preference_affinity, config.task_correlation
    shared = math.sqrt(kappa) * _standardise(np.log(preference)) + math.sqrt(1 - kappa) * rng.standard_normal((cu, ci))
    specific = rng.standard_normal((n_tasks, cu, ci))
    affinity = config.affinity_scale * (math.sqrt(rho) * shared[None] + math.sqrt(1 - rho) * specific)

    user_bias = (config.user_bias_std * rng.standard_normal(config.users)).astype(np.float32)
    item_bias = (config.item_bias_std * rng.standard_normal(config.items)).astype(np.float32)
    user_share = np.bincount(user_community, weights=activity, minlength=cu)
    item_share = np.bincount(item_community, weights=popularity, minlength=ci)
    impressions = user_share[:, None] * (
        config.signal * preference + (1 - config.signal) * (item_share / item_share.sum())[None, :]
    )
    noise_var = config.user_bias_std**2 + config.item_bias_std**2 + config.noise_std**2
    base_logits = _calibrate_base_logits(
        impressions, affinity, config.resolved_funnel_rates(), noise_var
    )
    return PlantedStructure(
        user_community=user_community,
        user_activity=activity,
        user_bias=user_bias,
        item_community=item_community,
        item_rank=item_rank,
        item_popularity=popularity,
        item_bias=item_bias,
        preference=preference,
        shared_affinity=shared,
        affinity=affinity,
        base_logits=base_logits,
    )


def _calibrate_base_logits(
    impressions: np.ndarray, affinity: np.ndarray, rates: list[float], noise_var: float
) -> np.ndarray:
    """``b_t`` such that the expected rate of task ``t`` among rows positive for ``t − 1`` is
    ``rates[t]``, given the impression share of every community cell.

    The Gaussian biases and noise (total variance ``v``) are folded in with the probit
    approximation ``E σ(x + N(0, v)) ≈ σ(x / √(1 + π v / 8))``.
    """
    shrink = 1.0 / math.sqrt(1.0 + math.pi * noise_var / 8.0)
    weights = impressions / impressions.sum()
    logits = []
    for t, rate in enumerate(rates):
        lo, hi = -30.0, 30.0
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            expected = float((weights / (1 + np.exp(-(mid + affinity[t]) * shrink))).sum())
            lo, hi = (mid, hi) if expected < rate else (lo, mid)
        b = 0.5 * (lo + hi)
        logits.append(b)
        weights = weights / (1 + np.exp(-(b + affinity[t]) * shrink))
        weights = weights / weights.sum()
    return np.asarray(logits, dtype=np.float64)


def alias_tables(weights: np.ndarray, sizes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Walker alias tables for O(1) draws, one table per consecutive segment of ``weights``.

    ``weights`` (non-negative, every segment with a positive sum) is cut into consecutive
    segments of ``sizes`` (default: one segment). Within a segment of ``n`` slots starting at
    ``s``, a draw is ``k = s + ⌊n·U⌋`` and then ``k`` if ``frac(n·U) < prob[k]`` else
    ``alias[k]``, which yields slot ``j`` with probability ``weights[j] / Σ_segment weights``:
    ``q_j = n · w_j / Σ w = prob[j] + Σ_{k: alias[k] = j} (1 − prob[k])``.

    Vose's pairing, vectorised in rounds: every current *small* slot (``q < 1``) is finalised
    with ``prob = q`` and aliased to the *large* slot (``q ≥ 1``) of its segment whose
    cumulative surplus ``Σ (q − 1)`` covers the start of its cumulative deficit ``Σ (1 − q)``;
    each large gives up the deficits it receives and may become small for the next round.
    Returns ``(prob float64, alias int32)`` indexed by slot (int64 beyond 2^31 slots).
    """
    weights = np.asarray(weights, dtype=np.float64)
    n = weights.size
    sizes = np.asarray([n] if sizes is None else sizes, dtype=np.int64)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    multi = sizes.size > 1
    segment = np.repeat(np.arange(sizes.size, dtype=np.int32), sizes) if multi else None
    totals = np.add.reduceat(weights, starts)
    # ``prob`` holds q while a slot is active; a finalised slot's q is its prob.
    prob = weights * (sizes / totals)[segment] if multi else weights * (n / totals[0])
    alias = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
    active = np.arange(n, dtype=np.int64)
    scale = float(sizes.max()) + 2.0  # segment offset: keys of different segments never mix
    for _ in range(100_000):
        is_small = prob[active] < 1.0
        small, large = active[is_small], active[~is_small]
        del is_small
        if small.size == 0 or large.size == 0:
            break
        deficit = 1.0 - prob[small]
        surplus = prob[large] - 1.0
        surplus_end = np.cumsum(surplus)
        deficit_start = np.cumsum(deficit)
        deficit_start -= deficit
        if multi:
            # Cumulative sums restarted at every segment, offset by the segment index.
            small_seg, large_seg = segment[small], segment[large]
            deficit_start -= _segment_base(deficit, small_seg, sizes.size)[small_seg]
            deficit_start += small_seg * scale
            surplus_end -= _segment_base(surplus, large_seg, sizes.size)[large_seg]
            surplus_end += large_seg * scale
        target = np.searchsorted(surplus_end, deficit_start, side="right")
        del surplus, surplus_end, deficit_start
        if multi:  # stay inside the small's own segment
            lo = np.searchsorted(large_seg, small_seg, side="left")
            hi = np.searchsorted(large_seg, small_seg, side="right") - 1
            has_large = hi >= lo  # else only rounding made q < 1: that slot keeps prob = 1
            np.clip(target, lo, np.maximum(hi, lo), out=target)
            del lo, hi, small_seg, large_seg
            if not has_large.all():
                prob[small[~has_large]] = 1.0
                small, deficit, target = small[has_large], deficit[has_large], target[has_large]
        else:
            np.minimum(target, large.size - 1, out=target)
        alias[small] = large[target]
        prob[large] = np.maximum(prob[large] - np.bincount(target, weights=deficit, minlength=large.size), 0.0)
        active = large
    # Whatever is left has q = 1 up to rounding: it keeps its own slot (prob 1, alias itself).
    prob[active] = 1.0
    return prob, alias


def _segment_base(values: np.ndarray, segment: np.ndarray, num_segments: int) -> np.ndarray:
    """Sum of ``values`` in all segments before each segment (``segment`` is sorted)."""
    sums = np.bincount(segment, weights=values, minlength=num_segments)
    return np.r_[0.0, np.cumsum(sums)[:-1]]


def _alias_draw(
    rng: np.random.Generator, prob: np.ndarray, alias: np.ndarray, start: np.ndarray | int,
    size: np.ndarray | int, n: int,
) -> np.ndarray:
    x = rng.random(n) * size
    slot = x.astype(np.int64)
    np.minimum(slot, np.asarray(size) - 1, out=slot)
    x -= slot
    slot += start
    return np.where(x < prob[slot], slot, alias[slot])


class _Sampler:
    """Vectorised draws of (user, item, labels) for a chunk of rows from a planted structure."""

    def __init__(self, config: SynthConfig, planted: PlantedStructure) -> None:
        self.config = config
        self.p = planted
        self.num_item_comms = config.num_item_communities
        self.user_prob, self.user_alias = alias_tables(planted.user_activity)
        # Items laid out community by community: one alias table over the whole layout for the
        # global popularity draw, one per community segment for the preferred-community draw.
        self.item_order = np.lexsort((planted.item_rank, planted.item_community)).astype(np.int32)
        layout_weights = planted.item_popularity[self.item_order]
        self.comm_size = np.bincount(planted.item_community, minlength=self.num_item_comms).astype(np.int64)
        self.comm_start = np.r_[0, np.cumsum(self.comm_size)[:-1]].astype(np.int64)
        self.global_prob, self.global_alias = alias_tables(layout_weights)
        self.comm_prob, self.comm_alias = alias_tables(layout_weights, self.comm_size)
        # Preference rows stacked so that row c spans (c, c + 1]: one searchsorted draws j ~ P[c].
        pref_cdf = np.cumsum(planted.preference, axis=1)
        pref_cdf[:, -1] = 1.0
        self.pref_flat = (pref_cdf + np.arange(config.user_communities)[:, None]).ravel()
        self.affinity_flat = planted.affinity.reshape(config.tasks, -1).astype(np.float32)
        self.base_logits = planted.base_logits.astype(np.float32)

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        cfg, p = self.config, self.p
        users = _alias_draw(rng, self.user_prob, self.user_alias, 0, cfg.users, n)
        user_comm = p.user_community[users].astype(np.int64)

        from_pref = rng.random(n) < cfg.signal
        pref_users = user_comm[from_pref]
        comm = np.searchsorted(self.pref_flat, pref_users + rng.random(pref_users.size), side="right")
        comm -= pref_users * self.num_item_comms
        np.clip(comm, 0, self.num_item_comms - 1, out=comm)
        pos = _alias_draw(rng, self.global_prob, self.global_alias, 0, cfg.items, n)
        pos[from_pref] = _alias_draw(
            rng, self.comm_prob, self.comm_alias, self.comm_start[comm], self.comm_size[comm], comm.size
        )
        items = self.item_order[pos]

        cell = user_comm * self.num_item_comms + p.item_community[items]
        bias = p.user_bias[users] + p.item_bias[items]
        labels: list[np.ndarray] = []
        alive = np.ones(n, dtype=bool)
        for t in range(cfg.tasks):
            logit = self.affinity_flat[t][cell] + bias
            logit += self.base_logits[t]
            if cfg.noise_std > 0:
                logit += np.float32(cfg.noise_std) * rng.standard_normal(n, dtype=np.float32)
            # y ~ Bernoulli(σ(ℓ))  <=>  logit(U) < ℓ  for U ~ Uniform(0, 1).
            u = rng.random(n, dtype=np.float32)
            np.clip(u, np.float32(1e-7), np.float32(1 - 1e-7), out=u)
            alive &= np.log(u) - np.log1p(-u) < logit
            labels.append(alive.astype(np.int8))
        return users.astype(np.int32), items, labels


# ----------------------------------------------------------------------------- writing


def _id_strings(prefix: str, n: int) -> pa.Array:
    digits = pa.array(np.arange(n, dtype=np.int64)).cast(pa.string())
    return pc.binary_join_element_wise(prefix, digits, "")


def _split_cuts(config: SynthConfig) -> tuple[int, int, int]:
    """Time span ``D`` in seconds and the offsets where valid and test start."""
    span = max(1, int(round(config.duration_days * 86_400)))
    f0, f1, _ = config.fractions
    cut_valid = int(math.floor(f0 * span))
    cut_test = int(math.floor((f0 + f1) * span))
    return span, cut_valid, cut_test


def _write_planted(directory: Path, config: SynthConfig, planted: PlantedStructure, tasks: list[str]) -> None:
    directory.mkdir()
    pq.write_table(
        pa.table({
            USER_COL: np.arange(config.users, dtype=np.int32),
            "community": planted.user_community,
            "activity": planted.user_activity,
            "bias": planted.user_bias,
        }),
        directory / "users.parquet",
    )
    pq.write_table(
        pa.table({
            ITEM_COL: np.arange(config.items, dtype=np.int32),
            "community": planted.item_community,
            "popularity": planted.item_popularity,
            "bias": planted.item_bias,
            "rank": planted.item_rank,
        }),
        directory / "items.parquet",
    )
    span, cut_valid, cut_test = _split_cuts(config)
    structure = {
        "config": asdict(config),
        "tasks": tasks,
        "user_community_sizes": np.bincount(planted.user_community, minlength=config.user_communities),
        "item_community_sizes": np.bincount(planted.item_community, minlength=config.num_item_communities),
        "preference": planted.preference,
        "shared_affinity": planted.shared_affinity,
        "affinity": {task: planted.affinity[t] for t, task in enumerate(tasks)},
        "base_logits": {task: float(planted.base_logits[t]) for t, task in enumerate(tasks)},
        "time": {
            "start": config.start_time,
            "span_seconds": span,
            "valid_from": config.start_time + cut_valid,
            "test_from": config.start_time + cut_test,
        },
        "equations": {
            "item": "with prob signal: j ~ preference[c_u], i ~ popularity within j; else i ~ popularity",
            "label": "l_t = base_logit_t + affinity_t[c_u, c_i] + bias_u + bias_i + N(0, noise_std^2); "
                     "y_0 ~ B(sigmoid(l_0)); y_t = y_{t-1} * B(sigmoid(l_t))",
        },
    }
    write_json_atomic(directory / "structure.json", structure)


def load_planted(root: str | Path) -> dict:
    """Read ``planted/`` of a synthetic dataset: ``users``/``items`` frames and ``structure``."""
    import pandas as pd

    planted = Path(root) / "planted"
    if not (planted / "structure.json").is_file():
        raise MgoeError(f"{root}: not a synthetic dataset (no planted/structure.json)")
    return {
        "users": pd.read_parquet(planted / "users.parquet"),
        "items": pd.read_parquet(planted / "items.parquet"),
        "structure": json.loads((planted / "structure.json").read_text()),
    }


def generate(config: SynthConfig, output: str | Path, progress: bool = False) -> DatasetMeta:
    """Generate ``config.interactions`` rows into the dataset directory ``output`` (atomically).

    Memory is bounded by ``config.chunk_rows`` plus per-user/per-item arrays; rows are never
    held all at once. Returns the written :class:`DatasetMeta`.
    """
    config.validate()
    tasks = config.resolved_task_names()
    planted = plant_structure(config)
    sampler = _Sampler(config, planted)
    n_rows = config.interactions
    span, cut_valid, cut_test = _split_cuts(config)
    f = config.fractions

    item_features: dict[str, int] = {}
    if config.side_feature_values > 0:
        item_features[SIDE_FEATURE] = config.side_feature_values + 1
    meta = DatasetMeta(
        name=config.name,
        tasks=tasks,
        negatives="real",
        num_users=config.users,
        num_items=config.items,
        item_features=item_features,
        has_timestamp=True,
        has_graph=True,
        split_protocol=(
            f"time split at {f[0]:.0%} / {f[0] + f[1]:.0%} of the time range (synthetic "
            "impressions are uniform in time, so these are the row quantiles; train / valid / "
            "test); history graph = positive train rows, leave-one-out for training samples"
        ),
        source=(
            f"synthetic (mgoe.data.synth, seed {config.seed}, {config.communities} communities, "
            f"signal {config.signal}); planted structure in planted/"
        ),
    )
    counts = {name: SplitInfo(rows=0, positives=dict.fromkeys(tasks, 0)) for name in SPLITS}
    parts = dict.fromkeys(SPLITS, 0)
    schema = pa.schema(
        [(USER_COL, pa.int32()), (ITEM_COL, pa.int32()), (TIME_COL, pa.int64())]
        + [(t, pa.int8()) for t in tasks]
    )

    with atomic_directory(output) as tmp:
        users_table = {USER_COL: pa.array(np.arange(config.users, dtype=np.int32)),
                       "user_id": _id_strings("u", config.users)}
        pq.write_table(pa.table(users_table), tmp / "users.parquet")
        items_table = {ITEM_COL: pa.array(np.arange(config.items, dtype=np.int32)),
                       "item_id": _id_strings("i", config.items)}
        if config.side_feature_values > 0:
            side_rng = np.random.default_rng([config.seed, _SIDE_FEATURE_STREAM])
            items_table[SIDE_FEATURE] = pa.array(
                side_rng.integers(1, config.side_feature_values + 1, size=config.items, dtype=np.int32)
            )
            (tmp / "vocab").mkdir()
            pq.write_table(
                pa.table({
                    "code": np.arange(1, config.side_feature_values + 1, dtype=np.int32),
                    "value": [f"{SIDE_FEATURE}{k}" for k in range(config.side_feature_values)],
                }),
                tmp / "vocab" / f"item.{SIDE_FEATURE}.parquet",
            )
        pq.write_table(pa.table(items_table), tmp / "items.parquet")
        _write_planted(tmp / "planted", config, planted, tasks)
        for name in SPLITS:
            (tmp / name).mkdir()

        n_chunks = -(-n_rows // config.chunk_rows)
        with tqdm(total=n_rows, unit="rows", unit_scale=True, disable=not progress,
                  desc="synth") as bar:
            for k in range(n_chunks):
                first = k * config.chunk_rows
                n = min(config.chunk_rows, n_rows - first)
                rng = np.random.default_rng([config.seed, _CHUNK_STREAM, k])
                users, items, labels = sampler.draw(rng, n)
                offset = np.arange(first, first + n, dtype=np.int64) * span // n_rows
                # Offsets are non-decreasing, so each split is one contiguous slice of the chunk.
                bounds = [0, *np.searchsorted(offset, [cut_valid, cut_test]).tolist(), n]
                timestamps = offset + np.int64(config.start_time)
                for s, name in enumerate(SPLITS):
                    a, b = bounds[s], bounds[s + 1]
                    if b <= a:
                        continue
                    columns = [users[a:b], items[a:b], timestamps[a:b], *(y[a:b] for y in labels)]
                    table = pa.Table.from_arrays([pa.array(c) for c in columns], schema=schema)
                    pq.write_table(table, tmp / name / f"part-{parts[name]:05d}.parquet")
                    parts[name] += 1
                    counts[name].rows += b - a
                    for task, y in zip(tasks, labels, strict=True):
                        counts[name].positives[task] += int(np.count_nonzero(y[a:b]))
                bar.update(n)

        for name in SPLITS:
            if parts[name] == 0:  # an empty split still has a (schema-only) part file
                pq.write_table(schema.empty_table(), tmp / name / "part-00000.parquet")
        meta.splits = counts
        write_json_atomic(tmp / "meta.json", meta.to_json())
    return meta


__all__ = [
    "DEMO_CONFIG",
    "PRESETS",
    "TASK_NAMES",
    "PlantedStructure",
    "SynthConfig",
    "alias_tables",
    "default_task_names",
    "generate",
    "load_planted",
    "plant_structure",
    "preset",
]
