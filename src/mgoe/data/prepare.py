"""From an importer's raw table to a prepared dataset directory (see :mod:`mgoe.data.schema`).

Importers only parse a source format into a :class:`RawDataset` with original ids; everything
else is done here, once, for every source: validation, id re-indexing (original ids kept),
side-feature encoding, de-duplication, the split, negative sampling and the atomic write.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mgoe.data.schema import (
    ITEM_COL,
    SPLITS,
    TIME_COL,
    USER_COL,
    DatasetMeta,
    SplitInfo,
)
from mgoe.data.splits import (
    SPLIT_CODES,
    pair_keys,
    per_user_random_split,
    sample_negatives,
    time_split,
)
from mgoe.errors import MgoeError
from mgoe.io import atomic_directory, write_json_atomic

log = logging.getLogger(__name__)

RAW_USER = "user_id"
RAW_ITEM = "item_id"
RAW_SPLIT = "split"


@dataclass
class RawDataset:
    """What an importer returns: one row per logged (user, item) sample, original ids.

    ``interactions`` has columns ``user_id``, ``item_id``, one 0/1 column per task (named as in
    ``tasks``), optionally ``timestamp`` (int seconds), ``split`` (train/valid/test, kept as
    given) and the categorical ``context_features``. ``user_features`` / ``item_features`` are
    optional tables keyed by ``user_id`` / ``item_id`` with categorical columns.
    """

    name: str
    interactions: pd.DataFrame
    tasks: list[str]
    negatives: Literal["real", "sampled"]
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    context_features: list[str] = field(default_factory=list)
    has_graph: bool = True
    source: str = ""
    """Where the rows came from (file paths), for the record in meta.json."""
    default_split: Literal["time", "random", "given"] | None = None
    """The split protocol this source uses unless the user chooses another."""
    user_universe: np.ndarray | None = None
    """All user ids of the source's id space when it declares one (e.g. MBGCN's data_size.txt):
    users without interactions still get an index, so counts match the source."""
    item_universe: np.ndarray | None = None


@dataclass
class PrepareOptions:
    split: Literal["auto", "time", "random", "given"] = "auto"
    """auto: ``given`` if the raw table has a split column, else ``time`` if it has timestamps,
    else a per-user ``random`` split."""
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    negatives_per_positive: int = 4
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    seed: int = 0
    part_rows: int = 2_000_000


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, for readable error messages."""
    return value.item() if hasattr(value, "item") else value


def _check_raw(raw: RawDataset) -> pd.DataFrame:
    df = raw.interactions
    where = raw.source or raw.name
    if not raw.tasks:
        raise MgoeError(f"{where}: no task columns given")
    reserved = {USER_COL, ITEM_COL, TIME_COL, RAW_SPLIT, "_split"} & set(raw.tasks + raw.context_features)
    if reserved:
        raise MgoeError(
            f"{where}: task/feature column name(s) {', '.join(sorted(reserved))} are reserved; rename them"
        )
    if len(set(raw.tasks)) != len(raw.tasks):
        raise MgoeError(f"{where}: duplicate task names in {raw.tasks}")
    needed = [RAW_USER, RAW_ITEM, *raw.tasks, *raw.context_features]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise MgoeError(f"{where}: missing column(s) {', '.join(missing)}")
    if len(df) == 0:
        raise MgoeError(f"{where}: no interactions (empty input)")
    for col in (RAW_USER, RAW_ITEM):
        nulls = df[col].isna().to_numpy()
        if nulls.any():
            row = int(np.flatnonzero(nulls)[0])
            raise MgoeError(f"{where}: column {col!r} has a missing id (row {row})")
    for task in raw.tasks:
        values = pd.to_numeric(df[task], errors="coerce")
        bad = ~values.isin([0, 1]).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise MgoeError(
                f"{where}: task column {task!r} must be 0/1, found {_plain(df[task].iloc[row])!r} (row {row})"
            )
    if RAW_SPLIT in df.columns:
        bad = ~df[RAW_SPLIT].isin(SPLITS).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise MgoeError(
                f"{where}: split column must hold train/valid/test, found "
                f"{_plain(df[RAW_SPLIT].iloc[row])!r} (row {row})"
            )
    if TIME_COL in df.columns:
        ts = pd.to_numeric(df[TIME_COL], errors="coerce")
        if ts.isna().any():
            row = int(np.flatnonzero(ts.isna().to_numpy())[0])
            raise MgoeError(
                f"{where}: column {TIME_COL!r} must be numeric, found {_plain(df[TIME_COL].iloc[row])!r} (row {row})"
            )
    return df


def _encode_ids(values: pd.Series, universe: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous codes in sorted order of the original ids; returns (codes, uniques).

    With a ``universe`` (the source's declared id space) every id in it gets a code, used or not.
    """
    if universe is None:
        codes, uniques = pd.factorize(values, sort=True)
        return codes.astype(np.int32), np.asarray(uniques)
    uniques = np.unique(np.asarray(universe))
    codes = pd.Index(uniques).get_indexer(values)
    if (codes < 0).any():
        bad = values.iloc[int(np.flatnonzero(codes < 0)[0])]
        raise MgoeError(f"id {bad!r} is outside the source's declared id space")
    return codes.astype(np.int32), uniques


def _encode_categorical(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes 1..V for the sorted distinct values; 0 for missing."""
    codes, uniques = pd.factorize(values.astype("string"), sort=True)
    return (codes + 1).astype(np.int32), [str(u) for u in uniques]


def _side_table(
    kind: str,
    ids: np.ndarray,
    features: pd.DataFrame | None,
    id_col: str,
    vocabs: dict[str, list[str]],
) -> tuple[pd.DataFrame, dict[str, int]]:
    index_col = USER_COL if kind == "users" else ITEM_COL
    table = pd.DataFrame({index_col: np.arange(len(ids), dtype=np.int32), id_col: ids.astype(str)})
    sizes: dict[str, int] = {}
    if features is None or features.empty:
        return table, sizes
    if id_col not in features.columns:
        raise MgoeError(f"{kind} feature table has no {id_col!r} column")
    features = features.drop_duplicates(id_col, keep="first").copy()
    features[id_col] = features[id_col].astype(str)
    joined = table[[id_col]].merge(features, on=id_col, how="left")
    for col in features.columns:
        if col == id_col:
            continue
        codes, vocab = _encode_categorical(joined[col])
        table[col] = codes
        vocabs[f"{kind[:-1]}.{col}"] = vocab
        sizes[col] = len(vocab) + 1
    return table, sizes


def _dedupe_pairs(df: pd.DataFrame, tasks: list[str], extra: list[str]) -> pd.DataFrame:
    """Implicit data: one row per (user, item), labels OR-ed, earliest timestamp kept."""
    agg = {t: "max" for t in tasks}
    for col in extra:
        agg[col] = "min" if col == TIME_COL else "first"
    return df.groupby([USER_COL, ITEM_COL], sort=False, as_index=False).agg(agg)


def prepare_dataset(raw: RawDataset, output: str | Path, options: PrepareOptions | None = None) -> DatasetMeta:
    """Validate, encode, split, sample negatives and write ``raw`` to ``output`` atomically."""
    opts = options or PrepareOptions()
    df = _check_raw(raw)
    tasks = list(raw.tasks)

    user_codes, user_uniques = _encode_ids(df[RAW_USER], raw.user_universe)
    item_codes, item_uniques = _encode_ids(df[RAW_ITEM], raw.item_universe)
    samples = pd.DataFrame({USER_COL: user_codes, ITEM_COL: item_codes})
    has_time = TIME_COL in df.columns
    if has_time:
        samples[TIME_COL] = pd.to_numeric(df[TIME_COL]).to_numpy(np.int64)
    for task in tasks:
        samples[task] = pd.to_numeric(df[task]).to_numpy(np.int8)
    vocabs: dict[str, list[str]] = {}
    context_sizes: dict[str, int] = {}
    for col in raw.context_features:
        codes, vocab = _encode_categorical(df[col])
        samples[col] = codes
        vocabs[f"context.{col}"] = vocab
        context_sizes[col] = len(vocab) + 1
    has_given_split = RAW_SPLIT in df.columns
    if has_given_split:
        samples[RAW_SPLIT] = df[RAW_SPLIT].map(SPLIT_CODES).to_numpy(np.int8)

    # Split protocol.
    mode = opts.split
    if mode == "auto":
        mode = raw.default_split or ("given" if has_given_split else "time" if has_time else "random")
    if mode == "given" and not has_given_split:
        raise MgoeError(f"{raw.source or raw.name}: split 'given' needs a split column")
    if mode == "time" and not has_time:
        raise MgoeError(f"{raw.source or raw.name}: split 'time' needs a timestamp column")

    if raw.negatives == "sampled":
        extra = [c for c in [TIME_COL, RAW_SPLIT, *raw.context_features] if c in samples.columns]
        samples = _dedupe_pairs(samples, tasks, extra)
        labels = samples[tasks].to_numpy()
        if not labels.any(axis=1).all():
            # Implicit data: rows without any positive carry no information; drop them.
            samples = samples[labels.any(axis=1)].reset_index(drop=True)

    if mode == "given":
        split_codes = samples[RAW_SPLIT].to_numpy(np.int8)
        protocol = "split as given by the source's split column"
    elif mode == "time":
        split_codes = time_split(samples[TIME_COL].to_numpy(), opts.fractions)
        f = opts.fractions
        protocol = (
            f"time split at global quantiles {f[0]:.0%} / {f[0] + f[1]:.0%} of timestamps "
            "(train / valid / test)"
        )
    elif mode == "random":
        split_codes = per_user_random_split(samples[USER_COL].to_numpy(), opts.seed, opts.fractions)
        f = opts.fractions
        protocol = (
            f"per-user random split {f[0]:.0%}/{f[1]:.0%}/{f[2]:.0%} (seed {opts.seed}; "
            "users with < 3 rows are train only)"
        )
    else:
        raise MgoeError(f"unknown split {mode!r}; use auto, time, random or given")
    samples = samples.drop(columns=[RAW_SPLIT], errors="ignore")
    samples["_split"] = split_codes

    num_users, num_items = len(user_uniques), len(item_uniques)
    if raw.negatives == "sampled" and opts.negatives_per_positive > 0:
        samples = _add_negatives(samples, tasks, num_items, opts)
        protocol += (
            f"; {opts.negatives_per_positive} {opts.negative_sampling} sampled negatives per "
            "positive (all-zero labels, never one of the user's positives), in the positive's split"
        )
    protocol += "; history graph = positive train rows, leave-one-out for training samples"

    users_table, user_sizes = _side_table("users", user_uniques, raw.user_features, RAW_USER, vocabs)
    items_table, item_sizes = _side_table("items", item_uniques, raw.item_features, RAW_ITEM, vocabs)

    meta = DatasetMeta(
        name=raw.name,
        tasks=tasks,
        negatives=raw.negatives,
        num_users=num_users,
        num_items=num_items,
        user_features=user_sizes,
        item_features=item_sizes,
        context_features=context_sizes,
        has_timestamp=has_time,
        has_graph=raw.has_graph,
        split_protocol=protocol,
        source=raw.source,
    )
    with atomic_directory(output) as tmp:
        pq.write_table(pa.Table.from_pandas(users_table, preserve_index=False), tmp / "users.parquet")
        pq.write_table(pa.Table.from_pandas(items_table, preserve_index=False), tmp / "items.parquet")
        (tmp / "vocab").mkdir()
        for key, vocab in vocabs.items():
            pq.write_table(
                pa.table({"code": np.arange(1, len(vocab) + 1, dtype=np.int32), "value": vocab}),
                tmp / "vocab" / f"{key}.parquet",
            )
        codes = samples.pop("_split").to_numpy()
        # Rows go to disk in a seeded random order: sources and negatives arrive in blocks
        # (all positives, then all negatives; one user after another), and a reader that
        # streams part files must not meet a part of one label.
        order = np.random.default_rng(opts.seed + 2).permutation(len(samples))
        samples, codes = samples.iloc[order], codes[order]
        for code, name in enumerate(SPLITS):
            part = samples[codes == code].reset_index(drop=True)
            meta.splits[name] = SplitInfo(
                rows=len(part), positives={t: int(part[t].sum()) for t in tasks}
            )
            write_split(tmp / name, part, opts.part_rows)
        write_json_atomic(tmp / "meta.json", meta.to_json())
    log.info("wrote %s: %d users, %d items", output, num_users, num_items)
    return meta


def write_split(directory: Path, frame: pd.DataFrame, part_rows: int = 2_000_000) -> None:
    """Write ``frame`` as ``part-NNNNN.parquet`` files of at most ``part_rows`` rows."""
    directory.mkdir(parents=True, exist_ok=True)
    n_parts = max(1, -(-len(frame) // part_rows))
    for p in range(n_parts):
        chunk = frame.iloc[p * part_rows : (p + 1) * part_rows]
        pq.write_table(
            pa.Table.from_pandas(chunk, preserve_index=False), directory / f"part-{p:05d}.parquet"
        )


def _add_negatives(samples: pd.DataFrame, tasks: list[str], num_items: int, opts: PrepareOptions) -> pd.DataFrame:
    users = samples[USER_COL].to_numpy(np.int64)
    items = samples[ITEM_COL].to_numpy(np.int64)
    exclude = np.unique(pair_keys(users, items, num_items))
    popularity = np.bincount(items, minlength=num_items) if opts.negative_sampling == "popularity" else None
    neg_users, neg_items, src = sample_negatives(
        users,
        num_items,
        opts.negatives_per_positive,
        exclude,
        method=opts.negative_sampling,
        item_popularity=popularity,
        seed=opts.seed + 1,
    )
    # Each negative inherits its positive's split, timestamp and context features.
    negatives = pd.DataFrame({USER_COL: neg_users.astype(np.int32), ITEM_COL: neg_items.astype(np.int32)})
    for col in samples.columns:
        if col in (USER_COL, ITEM_COL):
            continue
        if col in tasks:
            negatives[col] = np.zeros(len(negatives), np.int8)
        else:
            negatives[col] = samples[col].to_numpy()[src]
    return pd.concat([samples, negatives], ignore_index=True)
