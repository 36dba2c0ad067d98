"""The training loop: learning, exact resume after a kill, valid-only model selection,
task weights, the loss terms and the run directory."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from train_helpers import RecordingSource, make_source, small_config

from mgoe.errors import MgoeError
from mgoe.train import trainer
from mgoe.train.checkpoint import read_metadata
from mgoe.train.trainer import batch_loss, build_training_model, train

TIME_KEYS = {"train_seconds", "eval_seconds", "train_samples_per_s"}


def strip_times(value):
    """Metrics without wall-clock fields (the only ones that may differ between runs)."""
    if isinstance(value, dict):
        return {k: strip_times(v) for k, v in value.items() if k not in TIME_KEYS}
    if isinstance(value, list):
        return [strip_times(v) for v in value]
    return value


def assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


# ----------------------------------------------------------------------------- learning


def test_learns_synthetic_tasks(source, tmp_path):
    metrics = train(source, tmp_path / "run", small_config(epochs=4), progress=False)
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0] - 0.05
    for task in ("click", "buy"):
        assert metrics["valid"][task]["auc"] > 0.7
        assert metrics["test"][task]["auc"] > 0.7
    assert metrics["epochs_run"] == 4 and metrics["stop_reason"] == "epochs"
    # the reported valid metrics are those of the best epoch's weights
    best = metrics["history"][metrics["best_epoch"] - 1]
    assert metrics["valid"] == best["valid"]
    assert metrics["train_samples_per_s"] > 0


def test_run_directory_layout(source, tmp_path):
    run = tmp_path / "run"
    metrics = train(source, run, small_config(epochs=1), progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json", "log.txt", "metrics.json"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.safetensors", "last.safetensors"]
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["model"] == "mmoe" and config["train"]["batch_size"] == 128
    assert config["model"]["config"]["embedding_dim"] == 8
    assert config["model"]["config"]["embedding_l2"] == 1e-6  # from l2_embedding
    assert config["spec"]["tasks"] == ["click", "buy"]
    assert set(config["source"]) == {"kind", "data_dir", "graph_dir"}
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    log = (run / "log.txt").read_text()
    assert "epoch 1:" in log and "done: best epoch 1" in log


def test_refuses_existing_run_without_resume(source, tmp_path):
    train(source, tmp_path / "run", small_config(epochs=1), progress=False)
    with pytest.raises(MgoeError, match="already holds a training run"):
        train(source, tmp_path / "run", small_config(epochs=1), progress=False)


# ----------------------------------------------------------------------------- resume


class Killed(Exception):
    pass


def kill_at(epoch: int, batch: int):
    def hook(e: int, b: int, loss: float) -> None:
        if (e, b) == (epoch, batch):
            raise Killed
    return hook


RESUME_CONFIG = {"epochs": 3, "checkpoint_every_batches": 5,
                 "model_config": {"embedding_dim": 8, "dropout": 0.3, "batch_norm": True}}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run with dropout and batch norm (RNG and buffers matter)."""
    src = make_source()
    run = tmp_path_factory.mktemp("reference") / "run"
    return run, train(src, run, small_config(**RESUME_CONFIG), progress=False)


@pytest.mark.parametrize("kill", [(1, 12), (0, 4), (2, 0)],
                         ids=["mid-epoch", "before-first-checkpoint", "after-epoch-end"])
def test_kill_and_resume_is_exact(reference_run, tmp_path, kill):
    reference_dir, reference = reference_run
    src = make_source()
    run = tmp_path / "run"
    with pytest.raises(Killed):
        train(src, run, small_config(**RESUME_CONFIG), progress=False, on_batch_end=kill_at(*kill))
    assert not (run / "metrics.json").exists()
    resumed = train(src, run, small_config(**RESUME_CONFIG), resume=True, progress=False)
    assert strip_times(resumed) == strip_times(reference)
    assert_same_tensors(run / "checkpoints" / "best.safetensors",
                        reference_dir / "checkpoints" / "best.safetensors")
    last, ref_last = load_file(str(run / "checkpoints/last.safetensors")), \
        load_file(str(reference_dir / "checkpoints/last.safetensors"))
    for key in ref_last:
        if key != "rng.torch":
            assert torch.equal(last[key], ref_last[key]), key
    assert "resumed from" in (run / "log.txt").read_text()


def test_kill_9_in_a_subprocess_then_resume(reference_run, tmp_path):
    """A real SIGKILL (no cleanup runs) in the middle of epoch 2, then resume in-process."""
    reference_dir, reference = reference_run
    data = make_source().save(tmp_path / "data")
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from train_helpers import small_config
        from mgoe.train.sources import TensorBatchSource
        from mgoe.train.trainer import train

        def hook(epoch, batch, loss):
            if (epoch, batch) == (1, 7):
                os.kill(os.getpid(), signal.SIGKILL)

        train(TensorBatchSource.open({str(data)!r}), {str(run)!r},
              small_config(**{RESUME_CONFIG!r}), progress=False, on_batch_end=hook)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == -9, result.stderr
    state = json.loads(read_metadata(run / "checkpoints/last.safetensors")["state"])
    assert (state["epoch"], state["batch"]) == (1, 5)
    from mgoe.train.sources import TensorBatchSource

    resumed = train(TensorBatchSource.open(data), run, small_config(**RESUME_CONFIG),
                    resume=True, progress=False)
    assert strip_times(resumed) == strip_times(reference)
    assert_same_tensors(run / "checkpoints/best.safetensors",
                        reference_dir / "checkpoints/best.safetensors")


def test_more_epochs_on_resume_equals_longer_run(source, tmp_path):
    long = train(source, tmp_path / "long", small_config(epochs=3), progress=False)
    train(source, tmp_path / "short", small_config(epochs=2), progress=False)
    extended = train(source, tmp_path / "short", small_config(epochs=3), resume=True, progress=False)
    assert strip_times(extended) == strip_times(long)


def test_resume_refuses_a_changed_config(source, tmp_path):
    train(source, tmp_path / "run", small_config(epochs=1), progress=False)
    with pytest.raises(MgoeError, match=r"lr: 0\.01 -> 0\.02"):
        train(source, tmp_path / "run", small_config(epochs=2, lr=0.02), resume=True, progress=False)
    other = make_source(users=50)
    with pytest.raises(MgoeError, match="spec differs"):
        train(other, tmp_path / "run", small_config(epochs=2), resume=True, progress=False)


def test_caller_rng_is_untouched(source, tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(source, tmp_path / "run", small_config(epochs=1), progress=False)
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------- model selection


def test_test_split_is_read_only_after_training(source, tmp_path):
    recording = RecordingSource(source)
    metrics = train(recording, tmp_path / "run", small_config(epochs=3), progress=False)
    calls = recording.calls
    assert calls.count("test") == 1 and calls[-1] == "test"
    assert calls.count("train") == 3 and "test" not in calls[:calls.index("test")]
    values = [h["early_stopping_value"] for h in metrics["history"]]
    assert metrics["best_epoch"] == values.index(max(values)) + 1


def test_early_stopping_on_scripted_valid_metrics(source, tmp_path, monkeypatch):
    """Valid AUC 0.6, 0.7, 0.65, 0.66, ... with patience 2 stops after epoch 4, keeps epoch 2."""
    script = iter([0.6, 0.7, 0.65, 0.66, 0.9, 0.9])
    real = trainer.evaluate_split
    seen = []

    def scripted(model, src, split, batch_size, device="cpu"):
        seen.append(split)
        result = real(model, src, split, batch_size, device)
        if split == "valid" and len(seen) <= 4:
            value = next(script)
            result = {t: {**m, "auc": value} for t, m in result.items()}
        return result

    monkeypatch.setattr(trainer, "evaluate_split", scripted)
    metrics = train(source, tmp_path / "run", small_config(epochs=10, patience=2), progress=False)
    assert metrics["epochs_run"] == 4 and metrics["stop_reason"] == "early_stopping"
    assert metrics["best_epoch"] == 2 and metrics["best_value"] == pytest.approx(0.7)
    assert [h["improved"] for h in metrics["history"]] == [True, True, False, False]
    info = json.loads(read_metadata(tmp_path / "run/checkpoints/best.safetensors")["info"])
    assert info["epoch"] == 2
    assert seen == ["valid"] * 4 + ["valid", "test"]


def test_logloss_criterion_prefers_lower():
    assert trainer._is_better(0.4, 0.5, "logloss", 0.0)
    assert not trainer._is_better(0.6, 0.5, "logloss:buy", 0.0)
    assert trainer._is_better(0.6, 0.5, "auc", 0.0) and not trainer._is_better(0.6, 0.5, "auc", 0.2)
    assert not trainer._is_better(math.nan, None, "auc", 0.0)
    metrics = {"a": {"auc": 0.6, "gauc": None, "logloss": 0.3}, "b": {"auc": 0.8, "gauc": 0.7, "logloss": 0.5}}
    assert trainer.early_stopping_value(metrics, "auc") == pytest.approx(0.7)
    assert trainer.early_stopping_value(metrics, "gauc") == pytest.approx(0.7)  # undefined skipped
    assert trainer.early_stopping_value(metrics, "logloss:a") == pytest.approx(0.3)


# ----------------------------------------------------------------------------- loss terms


def test_loss_is_weighted_bce_plus_l2_plus_auxiliary(source):
    batch = next(source.batches("train", 64, shuffle=False))
    weights = torch.tensor([2.0, 0.5])
    for name in ("shared_bottom", "aitm"):
        config = small_config(model=name, l2_embedding=1e-3)
        torch.manual_seed(0)
        model = build_training_model(config, source.spec)
        objective, task_bce = batch_loss(model, batch, weights, config.l2_embedding)
        logits = model(batch)
        bce = [F.binary_cross_entropy(torch.sigmoid(logits[:, t]), batch["labels"][:, t]).item()
               for t in range(2)]
        assert task_bce.tolist() == pytest.approx(bce, rel=1e-5)
        x = model.embedding(batch).x
        l2 = 1e-3 * x.pow(2).sum().item() / x.shape[0]
        expected = 2.0 * bce[0] + 0.5 * bce[1] + l2
        if name == "aitm":  # the calibrator: max(p_buy - p_click, 0)
            probs = torch.sigmoid(logits)
            expected += 0.6 * torch.relu(probs[:, 1] - probs[:, 0]).mean().item()
        assert objective.item() == pytest.approx(expected, rel=1e-5)


def test_zero_task_weight_leaves_its_tower_untouched(source, tmp_path):
    config = small_config(model="shared_bottom", epochs=1, task_weights=[1.0, 0.0])
    torch.manual_seed(config.seed)
    initial = build_training_model(config, source.spec).state_dict()
    train(source, tmp_path / "run", config, progress=False)
    trained = {k[6:]: v for k, v in load_file(str(tmp_path / "run/checkpoints/last.safetensors")).items()
               if k.startswith("model.")}
    tower_keys = [k for k in initial if k.startswith("towers.")]
    assert tower_keys
    for key in tower_keys:  # GroupedLinear: [tasks, ...]; task 1 = buy has weight 0
        assert torch.equal(trained[key][1], initial[key][1]), key
        assert not torch.equal(trained[key][0], initial[key][0]), key
    assert not torch.equal(trained["bottom.layers.0.weight"], initial["bottom.layers.0.weight"])


def test_l2_is_set_once(source):
    with pytest.raises(MgoeError, match="l2_embedding"):
        build_training_model(small_config(model_config={"embedding_l2": 0.1}), source.spec)
    model = build_training_model(small_config(l2_embedding=0.25), source.spec)
    assert model.config.embedding_l2 == 0.25


def test_macro_model_trains_and_resumes(macro_source, tmp_path):
    config = small_config(model="mgoe", epochs=3, checkpoint_every_batches=4,
                          model_config={"embedding_dim": 8, "dropout": 0.1})
    reference = train(macro_source, tmp_path / "a", config, progress=False)
    assert reference["valid"]["click"]["auc"] > 0.65
    with pytest.raises(Killed):
        train(macro_source, tmp_path / "b", config, progress=False, on_batch_end=kill_at(1, 9))
    resumed = train(macro_source, tmp_path / "b", config, resume=True, progress=False)
    assert strip_times(resumed) == strip_times(reference)


def test_safetensors_files_are_pickle_free(source, tmp_path, monkeypatch):
    import pickle

    run = tmp_path / "run"
    train(source, run, small_config(epochs=1), progress=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    for name in ("best.safetensors", "last.safetensors"):
        path = run / "checkpoints" / name
        raw = path.read_bytes()
        header_size = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + header_size])  # plain JSON header, then raw tensor bytes
        assert "__metadata__" in header
        assert load_file(str(path))
    # resuming and loading go through safetensors only
    train(source, run, small_config(epochs=2), resume=True, progress=False)
    from mgoe.train.api import load_model

    model, _ = load_model(run, source=source)
    assert not model.training


# ----------------------------------------------------------------------------- steps per epoch


def test_max_batches_per_epoch_trains_the_first_batches_of_each_shuffle(source, tmp_path):
    """A capped epoch is the head of the uncapped epoch's shuffle: the steps seen, their
    samples and - for a one-epoch run - the weights equal an uncapped run stopped there."""
    seen = []
    capped = train(source, tmp_path / "capped", small_config(epochs=2, max_batches_per_epoch=3),
                   progress=False, on_batch_end=lambda e, b, loss: seen.append((e, b, loss)))
    assert [(e, b) for e, b, _ in seen] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert capped["epochs_run"] == 2
    for entry in capped["history"]:
        assert entry["train_samples"] == 3 * 128  # batch_size 128

    full = []

    def stop_after_three(epoch, batch, loss):
        full.append(loss)
        if batch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(source, tmp_path / "full", small_config(epochs=1), progress=False,
              on_batch_end=stop_after_three)
    assert full == [loss for e, _, loss in seen if e == 0]


def test_max_batches_per_epoch_resumes_exactly(source, tmp_path):
    config = small_config(epochs=2, max_batches_per_epoch=4, checkpoint_every_batches=2)
    reference = train(source, tmp_path / "ref", config, progress=False)
    with pytest.raises(Killed):
        train(source, tmp_path / "run", config, progress=False, on_batch_end=kill_at(1, 3))
    resumed = train(source, tmp_path / "run", config, resume=True, progress=False)
    assert strip_times(resumed) == strip_times(reference)


def test_max_batches_per_epoch_must_be_positive():
    with pytest.raises(MgoeError, match="max_batches_per_epoch must be at least 1"):
        small_config(max_batches_per_epoch=0).validate()
