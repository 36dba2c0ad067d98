"""Tenrec QK-video: a tiny fixture in the official CSV format (no sample on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mgoe.data import Dataset, prepare_dataset
from mgoe.data.importers import SOURCES, get_importer
from mgoe.errors import MgoeError

HEADER = "user_id,item_id,click,follow,like,share,video_category,watching_times,gender,age\n"
ROWS = [
    # user, item, click, follow, like, share, category, watching_times, gender, age
    (1, 10, 1, 0, 1, 0, 2, 1, 1, 3),
    (1, 11, 0, 0, 0, 0, 1, 0, 1, 3),
    (1, 12, 1, 1, 1, 1, 2, 3, 1, 3),
    (2, 10, 1, 0, 0, 0, 2, 1, 2, 5),
    (2, 13, 0, 0, 0, 0, 0, 0, 2, 5),
    (2, 11, 1, 0, 1, 1, 1, 2, 2, 5),
    (3, 12, 1, 0, 0, 0, 2, 1, 0, 1),
]


def write(path: Path) -> Path:
    path.write_text(HEADER + "".join(",".join(map(str, r)) + "\n" for r in ROWS))
    return path


def test_registered():
    assert SOURCES["tenrec"] == "tenrec"


def test_official_format(tmp_path):
    write(tmp_path / "QK-video.csv")
    raw = get_importer("tenrec")(tmp_path)
    assert raw.tasks == ["click", "like", "share", "follow"]
    assert raw.negatives == "real"
    prepare_dataset(raw, tmp_path / "d")
    ds = Dataset.open(tmp_path / "d")
    info = ds.info()
    assert (info["users"], info["items"]) == (3, 4)
    assert sum(s["rows"] for s in info["splits"].values()) == len(ROWS)
    col = {"click": 2, "follow": 3, "like": 4, "share": 5}
    for task, index in col.items():
        assert sum(s["positives"][task] for s in info["splits"].values()) == sum(r[index] for r in ROWS)
    assert ds.meta.user_features == {"gender": 4, "age": 4}
    assert ds.meta.item_features == {"video_category": 4}
    users = ds.users()
    gender = int(users.loc[users["user_id"] == "2", "gender"].iloc[0])
    assert ds.vocab("user", "gender").set_index("code")["value"][gender] == "2"


def test_errors(tmp_path):
    with pytest.raises(MgoeError, match="expected the Tenrec QK-video.csv"):
        get_importer("tenrec")(tmp_path)
    bad = tmp_path / "QK-video.csv"
    bad.write_text("user_id,item_id,click\n1,2,1\n")
    with pytest.raises(MgoeError, match=r"no column 'like' \(also missing: share, follow, gender, age, video_category\); the file has: user_id, item_id, click"):
        get_importer("tenrec")(bad)
    bad.write_text(HEADER + "1,2,1,0,0,0,1,1,1,1\n1,3,1,0,5,0,1,1,1,1\n")
    with pytest.raises(MgoeError, match=r"label column 'like' must be 0/1, found 5 \(line 3\)"):
        get_importer("tenrec")(bad)
    bad.write_text(HEADER)
    with pytest.raises(MgoeError, match="empty file"):
        get_importer("tenrec")(bad)
