"""KuaiRand: the real 200-row sample and Pure feature tables, and the official log format."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mgoe.data import Dataset, prepare_dataset
from mgoe.data.importers import get_importer
from mgoe.errors import MgoeError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LOG_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,"
    "is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,"
    "is_profile_enter,is_rand,tab"
)


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (expected ../shared/data beside the repo root)")
    return path


def sample_counts(path: Path) -> tuple[int, int, int]:
    clicks = long_views = rows = 0
    with open(path, newline="") as handle:
        for rec in csv.DictReader(handle):
            rows += 1
            clicks += int(float(rec["is_click"]))
            play, duration = float(rec["play_time_ms"]), float(rec["duration_ms"])
            long_views += play >= duration if duration <= 18_000 else play >= 18_000
    return rows, clicks, long_views


def prepare(raw, tmp_path) -> Dataset:
    prepare_dataset(raw, tmp_path / "d")
    return Dataset.open(tmp_path / "d")


def test_sample_folder_with_feature_tables(tmp_path):
    root = shared("kuairand-sample")
    rows, clicks, long_views = sample_counts(root / "kuairand_sample.csv")
    assert (rows, clicks, long_views) == (200, 32, 31)
    ds = prepare(get_importer("kuairand")(root), tmp_path)
    info = ds.info()
    assert info["tasks"] == ["click", "long_view"]
    assert (info["users"], info["items"]) == (145, 29)
    assert sum(s["rows"] for s in info["splits"].values()) == rows  # real negatives: no sampling
    assert sum(s["positives"]["click"] for s in info["splits"].values()) == clicks
    assert sum(s["positives"]["long_view"] for s in info["splits"].values()) == long_views
    assert ds.meta.negatives == "real"
    # features come from the Pure tables (text values), not the sample's encoded copies
    users = ds.users()
    code = int(users.loc[users["user_id"] == "0", "user_active_degree"].iloc[0])
    vocab = ds.vocab("user", "user_active_degree").set_index("code")["value"]
    assert vocab[code] == "full_active"  # user_features_pure.csv, user 0
    items = ds.items()
    code = int(items.loc[items["item_id"] == "5543", "upload_type"].iloc[0])
    expected = None
    with open(root / "video_features_basic_pure.csv", newline="") as handle:
        for rec in csv.DictReader(handle):
            if rec["video_id"] == "5543":
                expected = rec["upload_type"]
    assert ds.vocab("item", "upload_type").set_index("code")["value"][code] == expected
    assert set(ds.meta.item_features) == {"author_id", "video_type", "upload_type", "music_type", "tag"}
    assert ds.meta.context_features == {"tab": 2}


def test_sample_single_file_uses_the_joined_columns(tmp_path):
    path = shared("kuairand-sample", "kuairand_sample.csv")
    raw = get_importer("kuairand")(path)
    assert raw.tasks == ["click", "long_view"]
    assert raw.interactions["click"].sum() == 32
    assert raw.interactions["user_id"].dtype.kind == "i"  # "0.0" in the file -> 0
    assert "user_active_degree" in raw.user_features.columns
    assert list(raw.item_features.columns) == ["item_id", "video_type"]


def test_official_log_format(tmp_path):
    (tmp_path / "log_standard_4_08_to_4_21_pure.csv").write_text(
        LOG_HEADER + "\n"
        "0,10,20220408,1000,1649383200123,1,1,0,0,0,0,1,30000,40000,0,0,0,0,1\n"
        "0,11,20220408,1001,1649383260999,0,0,0,0,0,0,0,500,40000,0,0,0,0,1\n"
        "1,10,20220409,1200,1649476800000,1,0,1,1,1,0,0,2000,40000,0,0,1,0,2\n"
    )
    (tmp_path / "log_random_4_22_to_5_08_pure.csv").write_text(
        LOG_HEADER + "\n" "1,12,20220422,0900,1650610800000,0,0,0,0,0,0,0,100,9000,0,0,0,1,4\n"
    )
    (tmp_path / "user_features_pure.csv").write_text(
        "user_id,user_active_degree,is_live_streamer\n0,full_active,1\n1,high_active,-124\n"
    )
    raw = get_importer("kuairand")(tmp_path)
    assert raw.tasks == ["click", "long_view", "like", "comment", "follow", "forward"]
    frame = raw.interactions.sort_values(["user_id", "item_id"]).reset_index(drop=True)
    assert frame["timestamp"].tolist() == [1649383200, 1649383260, 1649476800, 1650610800]
    assert frame["click"].tolist() == [1, 0, 1, 0]
    assert frame["long_view"].tolist() == [1, 0, 0, 0]  # taken from the file, not derived
    assert frame["follow"].tolist() == [0, 0, 1, 0]
    assert frame["tab"].tolist() == ["1", "1", "2", "4"]
    ds = prepare(raw, tmp_path)
    assert ds.meta.has_timestamp and ds.meta.user_features == {"user_active_degree": 3, "is_live_streamer": 3}


def test_errors_are_clear_and_offline(tmp_path):
    with pytest.raises(MgoeError, match="no KuaiRand log file"):
        get_importer("kuairand")(tmp_path)
    with pytest.raises(MgoeError, match="zenodo.org/records/10439422"):
        get_importer("kuairand")(tmp_path / "KuaiRand-Pure", download=True)
    bad = tmp_path / "log_x.csv"
    bad.write_text("user_id,video_id,is_click\n0,1,3\n")
    with pytest.raises(MgoeError, match=r"log_x.csv: label column 'is_click' must be 0/1, found 3 \(line 2\)"):
        get_importer("kuairand")(bad)
    bad.write_text("user,video_id,is_click\n0,1,1\n")
    with pytest.raises(MgoeError, match=r"no column 'user_id'; the file has: user, video_id, is_click"):
        get_importer("kuairand")(bad)
