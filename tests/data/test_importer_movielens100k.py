"""MovieLens 100K on the real files: tasks from ratings, features, counts from the raw file."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mgoe.data import Dataset, PrepareOptions, prepare_dataset
from mgoe.data.importers import get_importer
from mgoe.errors import MgoeError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (expected ../shared/data beside the repo root)")
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = shared("movielens-100k")
    out = tmp_path_factory.mktemp("ml") / "d"
    prepare_dataset(get_importer("movielens100k")(root), out, PrepareOptions(negatives_per_positive=4))
    return root, Dataset.open(out)


def raw_ratings(root: Path) -> list[tuple[str, str, int]]:
    with open(root / "u.data", newline="") as handle:
        return [(u, i, int(r)) for u, i, r, _ in csv.reader(handle, delimiter="\t")]


def test_counts_match_the_ratings(prepared):
    root, ds = prepared
    ratings = raw_ratings(root)
    assert len(ratings) == 100_000
    info = ds.info()
    assert (info["users"], info["items"]) == (943, 1_682)
    assert info["tasks"] == ["watch", "like", "love"]
    total = {t: sum(s["positives"][t] for s in info["splits"].values()) for t in info["tasks"]}
    assert total["watch"] == len({(u, i) for u, i, _ in ratings}) == 100_000
    assert total["like"] == sum(r >= 4 for _, _, r in ratings) == 55_375
    assert total["love"] == sum(r == 5 for _, _, r in ratings) == 21_201
    assert sum(s["rows"] for s in info["splits"].values()) == 5 * 100_000
    assert ds.meta.has_timestamp and ds.meta.split_protocol.startswith("time split")


def test_labels_follow_the_rating_of_each_pair(prepared):
    root, ds = prepared
    rating = {(u, i): r for u, i, r in raw_ratings(root)}
    users, items = ds.user_ids(), ds.item_ids()
    frame = ds.read_split("test", columns=["user", "item", "watch", "like", "love"])
    for row in frame.head(500).itertuples():
        r = rating.get((users[row.user], items[row.item]))
        if r is None:  # a sampled unwatched pair
            assert (row.watch, row.like, row.love) == (0, 0, 0)
        else:
            assert (row.watch, row.like, row.love) == (1, int(r >= 4), int(r == 5))


def test_side_features(prepared):
    _, ds = prepared
    assert set(ds.meta.user_features) == {"age_decade", "gender", "occupation", "zip_prefix"}
    assert set(ds.meta.item_features) == {"release_decade", "primary_genre"}

    def decoded(table, frame, id_col, original, feature):
        row = frame[frame[id_col] == original].iloc[0]
        vocab = ds.vocab(table, feature)
        return vocab.set_index("code")["value"][int(row[feature])]

    users, items = ds.users(), ds.items()
    # u.user line 1: 1|24|M|technician|85711
    assert decoded("user", users, "user_id", "1", "age_decade") == "20"
    assert decoded("user", users, "user_id", "1", "gender") == "M"
    assert decoded("user", users, "user_id", "1", "occupation") == "technician"
    assert decoded("user", users, "user_id", "1", "zip_prefix") == "8"
    # u.item line 1: Toy Story, 01-Jan-1995, genres Animation|Children's|Comedy
    assert decoded("item", items, "item_id", "1", "release_decade") == "1990"
    assert decoded("item", items, "item_id", "1", "primary_genre") == "Animation"
    # item 2 GoldenEye: Action|Adventure|Thriller -> Action
    assert decoded("item", items, "item_id", "2", "primary_genre") == "Action"
    assert np.all(users["gender"].to_numpy() > 0)


def test_bad_rating_is_a_clear_error(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t3\t100\n1\t3\t7\t101\n")
    with pytest.raises(MgoeError, match=r"u.data: column 'rating' must be 1-5, found 7 \(row 1\)"):
        get_importer("movielens100k")(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(MgoeError, match="u.data: file not found"):
        get_importer("movielens100k")(tmp_path)
