"""Data-parallel training (mgoe.train.distributed): sharded batches, and real 2-process gloo runs
(``mgoe train --nproc 2`` and torchrun) against a single-process run on the same data and seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from train_helpers import make_source

from mgoe.errors import MgoeError
from mgoe.train import api
from mgoe.train.distributed import Distributed, lazy_batches
from mgoe.train.inputs import BatchSource


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A small prepared dataset with macro graphs (the input pipeline with leave-one-out)."""
    from mgoe.data.prepare import PrepareOptions, RawDataset, prepare_dataset
    from mgoe.graph.build import GraphConfig, build_graph

    tmp = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    n = 2400
    user = rng.integers(0, 80, n)
    item = rng.integers(0, 50, n)
    frame = pd.DataFrame({"user_id": [f"u{v}" for v in user], "item_id": [f"i{v}" for v in item]})
    click = rng.random(n) < np.where(user % 3 == item % 3, 0.9, 0.2)
    frame["click"] = click.astype(int)
    frame["buy"] = (click & (rng.random(n) < 0.5)).astype(int)
    frame = frame[frame.click == 1]
    raw = RawDataset(name="toy", interactions=frame, tasks=["click", "buy"], negatives="sampled")
    prepare_dataset(raw, tmp / "data", PrepareOptions(split="random", negatives_per_positive=2))
    build_graph(tmp / "data", tmp / "graph", GraphConfig(user_clusters=4, item_clusters=3), progress=False)
    return tmp


def _sharded_epoch(source, batch_size, world, seed, start=0):
    ranks = [Distributed(r, world) for r in range(world)]
    return [list(d.train_batches(source, batch_size, seed=seed, start=start)) for d in ranks]


@pytest.mark.parametrize("kind", ["tensor", "dataset"])
def test_shards_of_a_step_are_the_single_process_batch(kind, prepared):
    """Rank r takes micro-batches r, r+N, ...: the N micro-batches of step s are the rows of the
    single-process batch s (all batch keys, leave-one-out features included); the last, short
    step is weighted so that the averaged gradient is that of its mean; start= resumes."""
    source = make_source(macro=True) if kind == "tensor" else BatchSource.open(prepared / "data", prepared / "graph")
    batch_size, seed = 128, 7
    single = list(source.batches("train", batch_size, shuffle=True, seed=seed))
    shards = _sharded_epoch(source, batch_size, 2, seed)
    assert len(shards[0]) == len(shards[1]) == len(single)
    for s, reference in enumerate(single):
        (b0, share0), (b1, share1) = shards[0][s], shards[1][s]
        rows = reference["labels"].shape[0]
        assert share0.total == share1.total == rows
        assert share0.rows + share1.rows == rows
        if share1.rows:
            joined = {k: torch.cat([b0[k], b1[k]]) for k in reference}
        else:  # the short last step: rank 1 runs a weighted-out copy
            assert share1.scale == 0.0 and share0.scale == 2.0
            joined = b0
        assert joined.keys() == reference.keys()
        for key in reference:
            assert torch.equal(joined[key], reference[key]), (s, key)
        # DDP averages over the 2 ranks: weights scale_r / 2 = rows_r / rows, summing to 1
        assert share0.scale / 2 == pytest.approx(share0.rows / rows)
        assert (share0.scale + share1.scale) / 2 == pytest.approx(1.0)
    assert single[-1]["labels"].shape[0] < batch_size  # the short step was exercised
    # resuming at global step 3 gives the remaining steps of every rank
    resumed = _sharded_epoch(source, batch_size, 2, seed, start=3)
    for rank in range(2):
        assert len(resumed[rank]) == len(shards[rank]) - 3
        assert torch.equal(resumed[rank][0][0]["user"], shards[rank][3][0]["user"])


def test_a_rank_assembles_only_its_own_batches(monkeypatch):
    source = make_source(macro=True)
    calls = []
    real = source._assemble
    monkeypatch.setattr(source, "_assemble", lambda *a, **k: calls.append(1) or real(*a, **k), raising=False)
    steps = list(Distributed(1, 4).train_batches(source, 256, seed=0))
    assert len(calls) == len(steps)  # not 4x: the other ranks' micro-batches are only sliced
    assert sum(1 for _ in lazy_batches(source, "valid", 100, shuffle=False)) == -(-800 // 100)


def test_batch_size_must_split_over_the_processes():
    with pytest.raises(MgoeError, match="not divisible by the 3 processes"):
        Distributed(0, 3).prepare(128, torch.device("cpu"))


def _write_config(path, **changes):
    values = {"model": "mgoe", "batch_size": 64, "epochs": 2, "num_threads": 1, "log_every": 0,
              "patience": 0, "lr": 0.005, "model_config": {"embedding_dim": 8, "dropout": 0.0}}
    values.update(changes)
    path.write_text(json.dumps(values))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training, in one process and with `mgoe train --nproc 2` (gloo)."""
    from mgoe.cli import main

    tmp = tmp_path_factory.mktemp("runs")
    data = make_source(seed=1, macro=True).save(tmp / "data")  # learnable within 2 epochs
    config = _write_config(tmp / "run.json", batch_size=128, lr=0.01)
    common = ["train", "--data", str(data), "--config", str(config), "--quiet"]
    assert main([*common, "--output", str(tmp / "one")]) == 0
    assert main([*common, "--output", str(tmp / "two"), "--nproc", "2"]) == 0
    return tmp, common


def test_two_processes_match_one(runs):
    """Valid AUC within 0.02 of the single process, the same global sample counts and close
    losses; rank 0 alone writes the run directory; the gathered, sharded evaluation equals a
    plain single-process evaluation of the saved best weights."""
    tmp, _ = runs
    one = json.loads((tmp / "one" / "metrics.json").read_text())
    two = json.loads((tmp / "two" / "metrics.json").read_text())
    for task in ("click", "buy"):
        assert one["valid"][task]["auc"] > 0.65, task  # the comparison means something
        assert abs(two["valid"][task]["auc"] - one["valid"][task]["auc"]) < 0.02, task
    assert [h["train_samples"] for h in two["history"]] == [h["train_samples"] for h in one["history"]]
    for h1, h2 in zip(one["history"], two["history"], strict=True):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=0.02)
    log = (tmp / "two" / "log.txt").read_text()
    assert log.count(" start: ") == 1 and log.count(" done: ") == 1  # one writer: rank 0
    assert sorted(p.name for p in (tmp / "two").iterdir()) == \
        ["checkpoints", "config.json", "log.txt", "metrics.json"]
    assert api.evaluate(tmp / "two", "valid") == {"valid": two["valid"]}
    assert api.evaluate(tmp / "two", "test") == {"test": two["test"]}


def test_torchrun_entry_point(runs):
    """torchrun -m mgoe.train.distributed runs the same DDP training as --nproc 2 (gloo is
    deterministic: identical metrics); only rank 0 reports."""
    tmp, common = runs
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "mgoe.train.distributed", *common[1:], "--output", str(tmp / "torchrun")],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best epoch") == 1
    a = json.loads((tmp / "torchrun" / "metrics.json").read_text())
    b = json.loads((tmp / "two" / "metrics.json").read_text())
    assert a["valid"] == b["valid"] and a["test"] == b["test"]


def test_worker_config_error_is_one_line(runs, capsys):
    from mgoe.cli import main

    tmp, common = runs
    bad = _write_config(tmp / "bad.json", batch_size=63)
    args = [*common, "--config", str(bad), "--output", str(tmp / "bad"), "--nproc", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "not divisible by the 2 processes" in err and "Traceback" not in err
