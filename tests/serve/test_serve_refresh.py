"""Batch refresh: ``mgoe data add-events`` folds the serving event log into a new dataset, whose
graph build and retrained artifact already contain the events (a replay then changes nothing)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from serve_helpers import FAST

from mgoe.cli import main
from mgoe.data.schema import Dataset
from mgoe.errors import MgoeError
from mgoe.graph.build import GraphConfig, build_graph
from mgoe.serve.artifact import export_run
from mgoe.serve.events import EventLog, read_events
from mgoe.serve.refresh import add_events
from mgoe.serve.scorer import Event, Scorer
from mgoe.train import api


def _log(path, batches):
    log = EventLog(path)
    for batch in batches:
        log.append([Event(*e) for e in batch])
    log.close()
    return path


def test_add_events_then_rebuild_retrain_and_reload_replay_is_a_no_op(world, tmp_path):
    data = Dataset.open(world.data)
    edges = pd.read_parquet(world.graph / "edges.parquet")
    u, i, m = (int(v) for v in edges.loc[edges["mask"] == 1, ["user", "item", "mask"]].iloc[0])
    log = _log(tmp_path / "events.jsonl", [
        [(f"u{u}", f"i{i}", {"like": 1})],
        [("new-user", "i3", {"click": 1}), ("u2", "new-item", {"click": 1, "follow": 1})],
        [("new-user", "i3", {"click": 1, "like": 1}), ("u8", "i9", {"click": 0})],  # OR; a negative row
    ])
    summary = add_events(world.data, log, tmp_path / "data2")
    assert (summary["events"], summary["rows_added"], summary["new_users"], summary["new_items"]) == (5, 4, 1, 1)
    ds2 = Dataset.open(tmp_path / "data2")
    assert (ds2.meta.num_users, ds2.meta.num_items) == (data.meta.num_users + 1, data.meta.num_items + 1)
    users, items = ds2.users(), ds2.items()
    assert users["user_id"].iloc[-1] == "new-user" and users["user"].iloc[-1] == data.meta.num_users
    assert items["item_id"].iloc[-1] == "new-item" and int(items["color"].iloc[-1]) == 0  # missing side feature
    pd.testing.assert_frame_equal(users.iloc[:-1], data.users())
    train = ds2.read_split("train")
    old_train = data.read_split("train")
    assert len(train) == len(old_train) + 4 and ds2.meta.splits["train"].rows == len(train)
    added = train.iloc[len(old_train):].set_index(["user", "item"])
    assert added.loc[(data.meta.num_users, 3), ["click", "like", "follow"]].tolist() == [1, 1, 0]
    assert added.loc[(2, data.meta.num_items), ["click", "like", "follow"]].tolist() == [1, 0, 1]
    assert added.loc[(8, 9), ["click", "like", "follow"]].tolist() == [0, 0, 0]
    for split in ("valid", "test"):
        pd.testing.assert_frame_equal(ds2.read_split(split), data.read_split(split))
    assert json.loads((tmp_path / "data2/added_events.json").read_text())["rows_added"] == 4

    # graph build on DATA2: the events are history edges with the OR-ed masks
    build_graph(tmp_path / "data2", tmp_path / "graph2", GraphConfig(user_clusters=6, item_clusters=5))
    e2 = pd.read_parquet(tmp_path / "graph2/edges.parquet").set_index(["user", "item"])["mask"]
    assert e2.loc[(u, i)] == m | 0b010
    assert e2.loc[(data.meta.num_users, 3)] == 0b011 and e2.loc[(2, data.meta.num_items)] == 0b101
    assert (8, 9) not in e2.index or e2.loc[(8, 9)] == edges.set_index(["user", "item"])["mask"].get((8, 9))

    # retrain + export; replaying the whole log onto the new artifact changes nothing
    api.train(tmp_path / "data2", tmp_path / "graph2", output=tmp_path / "run2", model="mgoe", epochs=1,
              config=FAST, progress=False)
    export_run(tmp_path / "run2", tmp_path / "art2")
    scorer = Scorer.load(tmp_path / "art2")
    before = {k: scorer.first_order(user_id=k).copy() for k in ("new-user", f"u{u}", "u2")}
    events, _ = read_events(log)
    stats = scorer.apply_events(events)
    assert stats.events == 5 and stats.changed == 0 and stats.new_users == 0 and stats.new_items == 0
    for k, v in before.items():
        np.testing.assert_array_equal(scorer.first_order(user_id=k), v)
    assert np.isfinite(scorer.score("new-user", ["i3", "new-item"])["click"]).all()


def test_add_events_refuses_bad_logs_with_one_line(world, tmp_path, capsys):
    log = _log(tmp_path / "bad.jsonl", [[("u1", "i1", {"cart": 1})]])
    with pytest.raises(MgoeError, match="'cart' are not tasks"):
        add_events(world.data, log, tmp_path / "out")
    assert main(["data", "add-events", str(world.data), "--events", str(log), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mgoe: error:") and "\n" not in err and not (tmp_path / "out").exists()
    (tmp_path / "damaged.jsonl").write_text('{"v":1,"events":[{"user_id":"u1"}]}\n')
    with pytest.raises(MgoeError, match="line 1: damaged event record"):
        add_events(world.data, tmp_path / "damaged.jsonl", tmp_path / "out")
    good = _log(tmp_path / "good.jsonl", [[("u1", "i1", {"click": 1})]])
    assert main(["data", "add-events", str(world.data), "--events", str(good), "--output", str(tmp_path / "ok")]) == 0
    assert "added 1 events as 1 train rows" in capsys.readouterr().out
