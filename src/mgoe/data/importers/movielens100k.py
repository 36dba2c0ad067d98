"""MovieLens 100K (GroupLens ``ml-100k/``): explicit ratings turned into three funnel tasks.

Files: ``u.data`` (tab-separated user, item, rating 1-5, unix timestamp), ``u.user``
(``|``-separated user id, age, gender, occupation, zip code) and ``u.item`` (``|``-separated,
latin-1: item id, title, release date, video release date, IMDb url, 19 genre flags in the
order of ``u.genre``).

Tasks in funnel order: ``watch`` (the pair was rated: 1 for every rating), ``like``
(rating >= 4) and ``love`` (rating == 5). A rating is an implicit "watch", so negatives are
sampled unwatched pairs with all-zero labels. Timestamps are kept; the default split is by time
(global quantiles). User features: ``age_decade`` (age // 10 * 10), ``gender``, ``occupation``,
``zip_prefix`` (first character of the zip code); item features: ``release_decade`` (of the
release date's year; missing for the one item without a date) and ``primary_genre`` (the first
genre flag set, in u.genre order). All categorical. 943 users / 1,682 items / 100,000 ratings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mgoe.data.importers._common import check_columns, read_csv, require_dir, require_file
from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

TASKS = ["watch", "like", "love"]
GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]
ITEM_COLUMNS = ["item_id", "title", "release_date", "video_release_date", "url", *GENRES]


def load(input_path: str | Path, **_: object) -> RawDataset:
    root = require_dir(input_path)
    data_path = require_file(root, "u.data")
    ratings = read_csv(
        data_path, sep="\t", header=None, names=["user_id", "item_id", "rating", "timestamp"],
        dtype=np.int64,
    )
    bad = ~ratings["rating"].between(1, 5).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise MgoeError(
            f"{data_path}: column 'rating' must be 1-5, found {ratings['rating'].iloc[row]} (row {row})"
        )
    rating = ratings.pop("rating").to_numpy()
    ratings["watch"] = np.ones(len(ratings), np.int8)
    ratings["like"] = (rating >= 4).astype(np.int8)
    ratings["love"] = (rating == 5).astype(np.int8)

    user_features = _user_features(root / "u.user") if (root / "u.user").is_file() else None
    item_features = _item_features(root / "u.item") if (root / "u.item").is_file() else None
    return RawDataset(
        name="movielens100k",
        interactions=ratings,
        tasks=TASKS,
        negatives="sampled",
        user_features=user_features,
        item_features=item_features,
        source=str(root),
        default_split="time",
    )


def _user_features(path: Path) -> pd.DataFrame:
    users = read_csv(
        path, sep="|", header=None, names=["user_id", "age", "gender", "occupation", "zip"],
        dtype={"user_id": np.int64, "age": "Int64", "gender": str, "occupation": str, "zip": str},
        encoding="latin-1",
    )
    return pd.DataFrame({
        "user_id": users["user_id"],
        "age_decade": users["age"] // 10 * 10,
        "gender": users["gender"],
        "occupation": users["occupation"],
        "zip_prefix": users["zip"].str[:1],
    })


def _item_features(path: Path) -> pd.DataFrame:
    items = read_csv(
        path, sep="|", header=None, names=ITEM_COLUMNS, encoding="latin-1",
        dtype={**{c: str for c in ITEM_COLUMNS[:5]}, "item_id": np.int64, **{g: "Int8" for g in GENRES}},
    )
    check_columns(items.columns, ITEM_COLUMNS, path)
    year = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    flags = items[GENRES].fillna(0).to_numpy(np.int8)
    first = flags.argmax(axis=1)
    genre = pd.Series(np.asarray(GENRES, dtype=object)[first]).where(flags.any(axis=1))
    return pd.DataFrame({
        "item_id": items["item_id"],
        "release_decade": (year // 10 * 10).astype("Int64"),
        "primary_genre": genre,
    })
