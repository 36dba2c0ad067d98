"""The training loop: Adam, multi-task BCE, valid-based early stopping, exact resume.

Objective of one batch (METHOD.md §5)::

    L = Σ_t λ_t · mean_batch BCE(y_t, logit_t)        λ_t = task_weights (default 1)
      + model.auxiliary_loss(batch, logits)             when the model has one (AITM)
      + model.regularization_loss(batch)                l2_embedding · (Σ_rows ‖e‖² / B + Σ‖M‖²)

The L2 term covers the embedding rows the batch uses (id and side-feature rows, averaged over
the batch) plus the small macro-node tables in full; its weight is the training config's
``l2_embedding``, handed to the model as ``embedding_l2``. (A model without
``regularization_loss`` gets ``l2_embedding · Σ ‖W‖²`` over all its ``nn.Embedding`` tables.)

Per epoch: train over the training split shuffled with a seed derived from ``(seed, epoch)``,
evaluate the **valid** split (AUC, GAUC, log-loss per task), keep the best epoch by the
early-stopping metric, stop after ``patience`` epochs without improvement. The test split is
read once, after training, with the best weights.

Exact resume. Nothing depends on the continuity of a global random stream:

* the shuffle of epoch ``e`` is ``source.batches(seed=f(seed, e))`` and a resumed epoch skips
  the batches already done (``start=``), so it sees the same remaining batches;
* the torch generator (dropout) is reseeded before every step from ``(seed, epoch, batch)``;
* model weights and buffers, the Adam state, and the trainer's accumulators (loss sums, best
  metric, history) are saved exactly (safetensors; floats in JSON round-trip exactly).

A run killed at any point and resumed from its last checkpoint therefore ends with the same
weights and metrics as an uninterrupted run (up to nondeterministic kernels on a GPU); the
caller's own torch RNG state is restored when :func:`train` returns.

Data-parallel training (``mgoe train --nproc N``, torchrun) runs this same loop in every process
with a :class:`mgoe.train.distributed.Distributed` context: the hooks below marked ``dist`` shard
the batches, wrap the model in DDP, all-reduce the step's loss, shard the evaluation, and leave
every file to rank 0 (see that module). With ``dist`` None nothing changes.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mgoe.errors import MgoeError
from mgoe.io import write_json_atomic
from mgoe.models.spec import ModelSpec
from mgoe.train.checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from mgoe.train.config import TrainConfig
from mgoe.train.metrics import evaluate_tasks
from mgoe.train.rundir import RunDir, RunLog

Batch = dict[str, torch.Tensor]

RESUME_MUTABLE = frozenset({
    "epochs", "log_every", "checkpoint_every_batches", "checkpoint_every_minutes",
    "num_threads", "device", "eval_batch_size",
})
"""Config fields a resumed run may change (none of them changes the numbers computed so far)."""


class Source(Protocol):
    """What the trainer needs from a batch source (:class:`mgoe.train.inputs.BatchSource`,
    :class:`mgoe.train.sources.TensorBatchSource`)."""

    spec: ModelSpec
    tasks: list[str]

    def num_rows(self, split: str) -> int: ...

    def batches(self, split: str, batch_size: int, *, shuffle: bool, seed: int = 0,
                start: int = 0) -> Iterator[Batch]: ...


BatchHook = Callable[[int, int, float], None]
"""``hook(epoch, batch_index, loss)`` after every optimiser step (0-based epoch and batch)."""


# ----------------------------------------------------------------------------- seeds


def shuffle_seed(seed: int, epoch: int) -> int:
    """Seed of the training shuffle of ``epoch`` (0-based)."""
    return int(np.random.SeedSequence([seed, 1, epoch]).generate_state(1, np.uint64)[0])


def step_seed(seed: int, epoch: int, batch: int) -> int:
    """Seed of the torch generator (dropout) for step ``batch`` of ``epoch``."""
    return int(np.random.SeedSequence([seed, 2, epoch, batch]).generate_state(1, np.uint64)[0])


# ----------------------------------------------------------------------------- model


def build_training_model(config: TrainConfig, spec: ModelSpec) -> nn.Module:
    """The model named by ``config``, its ``embedding_l2`` set from ``config.l2_embedding``."""
    from mgoe.models import build_model, model_config_class

    overrides = dict(config.model_config)
    field_names = set(model_config_class(config.model).__dataclass_fields__)
    if "embedding_l2" in overrides and overrides["embedding_l2"] != config.l2_embedding:
        raise MgoeError(
            "set the embedding L2 weight once, as l2_embedding in the training config "
            f"(model_config.embedding_l2 = {overrides['embedding_l2']!r} conflicts with "
            f"l2_embedding = {config.l2_embedding!r})"
        )
    if "embedding_l2" in field_names:
        overrides["embedding_l2"] = config.l2_embedding
    return build_model(config.model, spec, overrides)


def model_config_dict(model: nn.Module) -> dict[str, Any]:
    """The model's full config as JSON-able values (tuples become lists)."""
    config = getattr(model, "config", None)
    if config is None:
        return {}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def regularization(model: nn.Module, batch: Batch, l2: float) -> torch.Tensor:
    """The model's ``regularization_loss(batch)``; fallback ``l2 · Σ‖W‖²`` over embeddings."""
    if hasattr(model, "regularization_loss"):
        return model.regularization_loss(batch)
    device = batch["labels"].device
    if l2 == 0.0:
        return torch.zeros((), device=device)
    total = torch.zeros((), device=device)
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            total = total + module.weight.pow(2).sum()
    return l2 * total


def batch_loss(model: nn.Module, batch: Batch, weights: torch.Tensor,
               l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(objective, per-task mean BCE [T])`` of one batch (see the module docstring)."""
    logits = model(batch)
    labels = batch["labels"]
    task_bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(0)
    objective = (weights * task_bce).sum()
    auxiliary = getattr(model, "auxiliary_loss", None)
    if auxiliary is not None:
        objective = objective + auxiliary(batch, logits)
    objective = objective + regularization(model, batch, l2)
    return objective, task_bce.detach()


# ----------------------------------------------------------------------------- evaluation


def _to_device(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict_split(model: nn.Module, source: Source, split: str, batch_size: int,
                  device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels [N, T], probabilities [N, T], users [N])`` of a split, in source order."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    labels, probs, users = [], [], []
    try:
        for batch in source.batches(split, batch_size, shuffle=False):
            labels.append(batch["labels"].numpy())
            users.append(batch["user"].numpy())
            probs.append(model.predict_proba(_to_device(batch, device)).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not labels:
        num_tasks = len(source.tasks)
        return (np.zeros((0, num_tasks), np.float32), np.zeros((0, num_tasks), np.float32),
                np.zeros(0, np.int64))
    return np.concatenate(labels), np.concatenate(probs), np.concatenate(users)


def evaluate_split(model: nn.Module, source: Source, split: str, batch_size: int,
                   device: torch.device | str = "cpu") -> dict[str, dict[str, float | None]]:
    """``{task: {"auc", "gauc", "logloss"}}`` of ``model`` on ``split``."""
    labels, probs, users = predict_split(model, source, split, batch_size, device)
    return evaluate_tasks(labels, probs, users, source.tasks)


def early_stopping_value(metrics: dict[str, dict[str, float | None]], criterion: str) -> float:
    """The criterion (``auc`` | ``gauc`` | ``logloss``, optionally ``:task``) on ``metrics``.

    Averaged over the tasks where it is defined; NaN when it is defined for none.
    """
    name, _, task = criterion.partition(":")
    tasks = [task] if task else list(metrics)
    values = [metrics[t][name] for t in tasks if metrics[t][name] is not None]
    return float(np.mean(values)) if values else math.nan


def _is_better(value: float, best: float | None, criterion: str, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    if criterion.startswith("logloss"):
        return value < best - min_delta
    return value > best + min_delta


# ----------------------------------------------------------------------------- state


@dataclass
class TrainState:
    """The trainer's progress; saved (as JSON) inside every checkpoint."""

    epoch: int = 0
    """0-based epoch in progress (or next to start)."""
    batch: int = 0
    """Batches of ``epoch`` already trained."""
    global_step: int = 0
    epoch_loss_sum: float = 0.0
    """Σ objective · batch size over the batches of ``epoch`` done so far."""
    epoch_task_loss_sum: list[float] = field(default_factory=list)
    epoch_samples: int = 0
    epoch_train_seconds: float = 0.0
    train_samples: int = 0
    train_seconds: float = 0.0
    best_value: float | None = None
    best_epoch: int | None = None
    """1-based epoch whose weights are in ``best.safetensors``."""
    epochs_since_best: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    stop_reason: str | None = None
    """``early_stopping`` or ``epochs`` once finished."""

    def start_epoch(self, num_tasks: int) -> None:
        self.batch = 0
        self.epoch_loss_sum = 0.0
        self.epoch_task_loss_sum = [0.0] * num_tasks
        self.epoch_samples = 0
        self.epoch_train_seconds = 0.0


# ----------------------------------------------------------------------------- run setup


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MgoeError(f"device {name!r} requested but CUDA is not available")
    return device


@contextmanager
def _torch_settings(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Threads and denormal flushing for the run; the caller's RNG and threads are restored."""
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    if config.flush_denormal:
        torch.set_flush_denormal(True)
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.set_num_threads(threads)


def _source_description(source: Source) -> dict[str, Any]:
    data_dir = getattr(source, "data_dir", None)
    graph_dir = getattr(source, "graph_dir", None)
    return {
        "kind": getattr(source, "kind", "dataset"),
        "data_dir": str(Path(data_dir).resolve()) if data_dir is not None else None,
        "graph_dir": str(Path(graph_dir).resolve()) if graph_dir is not None else None,
    }


def run_config(config: TrainConfig, source: Source, model: nn.Module) -> dict[str, Any]:
    """The content of ``config.json``."""
    from mgoe import __version__ as mgoe_version

    return {
        "train": config.to_dict(),
        "model": {"name": config.model, "config": model_config_dict(model)},
        "spec": asdict(source.spec),
        "source": _source_description(source),
        "versions": {"mgoe": mgoe_version, "torch": torch.__version__,
                     "python": platform.python_version()},
    }


def _check_resume(stored: dict[str, Any], config: TrainConfig, source: Source, run: RunDir) -> None:
    previous = stored["train"]
    changed = sorted(k for k, v in config.to_dict().items()
                     if k not in RESUME_MUTABLE and previous.get(k) != v)
    if changed:
        details = ", ".join(f"{k}: {previous.get(k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise MgoeError(
            f"cannot resume {run.root}: the config differs from the run's config.json in {details} "
            f"(only {', '.join(sorted(RESUME_MUTABLE))} may change on resume)"
        )
    if stored["spec"] != asdict(source.spec):
        raise MgoeError(
            f"cannot resume {run.root}: the data source's spec differs from the one the run "
            "started with (different dataset or graph?)"
        )


# ----------------------------------------------------------------------------- training


def train(
    source: Source,
    output: str | Path,
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    *,
    on_batch_end: BatchHook | None = None,
    distributed: Any = None,
) -> dict[str, Any]:
    """Train ``config.model`` on ``source``, writing the run directory ``output``.

    Returns the content of ``metrics.json``: ``{"valid": {task: {auc, gauc, logloss}},
    "test": {...}, "best_epoch", "epochs_run", "stop_reason", "train_samples_per_s",
    "history": [...]}`` (metrics of the best epoch's weights).

    ``resume=True`` continues from ``checkpoints/last.safetensors`` (or starts afresh when the
    directory has none); without it a directory that already holds a run is refused.
    ``on_batch_end(epoch, batch, loss)`` is called after every step (0-based indices), after
    any checkpoint of that step; an exception it raises aborts training (tests use it to
    simulate a kill).

    ``distributed``: a :class:`mgoe.train.distributed.Distributed` context for data-parallel
    training; None uses the one :func:`mgoe.train.distributed.init` registered in this process,
    if any (torchrun, ``mgoe train --nproc``), and otherwise trains in this process alone.
    """
    config.validate()
    config.check_tasks(source.tasks)
    if distributed is None:
        from mgoe.train.distributed import active

        distributed = active()
    dist = distributed
    main = dist is None or dist.is_main
    progress = progress and main
    run = RunDir(output)
    resuming = resume and run.last.is_file()
    if not resume and run.holds_run():
        raise MgoeError(
            f"{run.root} already holds a training run; pass --resume (resume=True) to continue "
            "it, or choose another output directory"
        )
    if resuming:
        _check_resume(run.read_config(), config, source, run)
    device = _resolve_device(config.device)
    if dist is not None:
        device = dist.prepare(config.batch_size, device)
        dist.barrier()  # every rank has checked the run directory before rank 0 writes to it
    if main:
        run.root.mkdir(parents=True, exist_ok=True)
    with (RunLog(run.log, echo=progress) if main else _NoLog()) as log, _torch_settings(config, device):
        torch.manual_seed(config.seed)
        model = build_training_model(config, source.spec).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                     betas=tuple(config.adam_betas), eps=config.adam_eps)
        state = TrainState()
        state.start_epoch(len(source.tasks))
        if resuming:
            state = TrainState(**load_checkpoint(run.last, model, optimizer))
            log(f"resumed from {run.last}: epoch {state.epoch + 1}, batch {state.batch}, "
                f"step {state.global_step}")
            if state.finished and state.stop_reason == "epochs" and state.epoch < config.epochs:
                state.finished, state.stop_reason = False, None
                log(f"continuing to {config.epochs} epochs")
        else:
            if resume:
                log(f"no checkpoint in {run.checkpoints}; starting from scratch")
            if main:
                write_json_atomic(run.config, run_config(config, source, model))
            n_params = sum(p.numel() for p in model.parameters())
            log(f"start: model {config.model} ({n_params:,} parameters), "
                f"{source.num_rows('train'):,} training rows, device {device}")
        _fit(model, optimizer, source, config, run, state, device, log, progress, on_batch_end, dist)
        if not state.finished:  # resumed with fewer epochs than already run
            state.finished, state.stop_reason = True, "epochs"
        return _finish(model, source, config, run, state, device, log, dist)


class _NoLog:
    """The run log of ranks other than 0: they write nothing."""

    def __call__(self, message: str) -> None:
        pass

    def __enter__(self) -> _NoLog:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _fit(model: nn.Module, optimizer: torch.optim.Optimizer, source: Source,
         config: TrainConfig, run: RunDir, state: TrainState, device: torch.device,
         log: RunLog, progress: bool, on_batch_end: BatchHook | None, dist: Any = None) -> None:
    from tqdm import tqdm

    tasks = source.tasks
    weights = torch.tensor(config.weights(len(tasks)), dtype=torch.float32, device=device)
    num_batches = -(-source.num_rows("train") // config.batch_size)
    if config.max_batches_per_epoch is not None:
        num_batches = min(num_batches, config.max_batches_per_epoch)
    eval_batch_size = config.resolved_eval_batch_size
    last_checkpoint = time.perf_counter()

    def checkpoint() -> None:
        nonlocal last_checkpoint
        if dist is None or dist.is_main:
            save_checkpoint(run.last, model, optimizer, asdict(state))
        last_checkpoint = time.perf_counter()

    step_model = model if dist is None else dist.wrap(model)  # dist: DDP for the steps

    while not state.finished and state.epoch < config.epochs:
        epoch = state.epoch
        model.train()
        bar = tqdm(total=num_batches, initial=state.batch, disable=not progress, unit="batch",
                   desc=f"epoch {epoch + 1}/{config.epochs}", dynamic_ncols=True, leave=False)
        running = None
        tick = time.perf_counter()
        if dist is None:
            batches = ((b, None) for b in source.batches(
                "train", config.batch_size, shuffle=True, seed=shuffle_seed(config.seed, epoch),
                start=state.batch))
        else:  # dist: this rank's micro-batch of every global step
            batches = dist.train_batches(source, config.batch_size,
                                         seed=shuffle_seed(config.seed, epoch), start=state.batch)
        for batch, share in batches:
            if state.batch >= num_batches:  # max_batches_per_epoch: the rest of this shuffle is unused
                break
            seed = step_seed(config.seed, epoch, state.batch)
            torch.manual_seed(seed if dist is None else dist.seed(seed))
            batch = _to_device(batch, device)
            optimizer.zero_grad(set_to_none=True)
            objective, task_bce = batch_loss(step_model, batch, weights, config.l2_embedding)
            if not torch.isfinite(objective):
                raise MgoeError(
                    f"the training loss became {objective.item()} at epoch {epoch + 1}, batch "
                    f"{state.batch}; lower lr or check the data (resume restarts from the last "
                    "checkpoint)"
                )
            (objective if share is None else objective * share.scale).backward()
            if config.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
            optimizer.step()

            size = int(batch["labels"].shape[0])
            loss = objective.item()
            task_values = task_bce.tolist()
            if share is not None:  # dist: the whole global step's rows and mean losses
                size, loss, task_values = dist.step_stats(share, loss, task_values)
            state.epoch_loss_sum += loss * size
            for t, value in enumerate(task_values):
                state.epoch_task_loss_sum[t] += value * size
            state.epoch_samples += size
            state.batch += 1
            state.global_step += 1
            now = time.perf_counter()
            state.epoch_train_seconds += now - tick
            tick = now
            running = loss if running is None else 0.98 * running + 0.02 * loss
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}",
                            samples_s=f"{state.epoch_samples / max(state.epoch_train_seconds, 1e-9):,.0f}",
                            refresh=False)
            if config.log_every and state.batch % config.log_every == 0:
                log(f"epoch {epoch + 1} batch {state.batch}/{num_batches} "
                    f"loss {state.epoch_loss_sum / state.epoch_samples:.5f}")
            due = (config.checkpoint_every_batches and state.batch % config.checkpoint_every_batches == 0) \
                or (config.checkpoint_every_minutes
                    and now - last_checkpoint >= 60.0 * config.checkpoint_every_minutes)
            if due and state.batch < num_batches:
                checkpoint()
            if on_batch_end is not None:
                on_batch_end(epoch, state.batch - 1, loss)
            tick = time.perf_counter()  # the checkpoint and hook are not training time
        bar.close()
        _end_epoch(model, source, config, run, state, device, log, eval_batch_size, dist)
        checkpoint()


def _end_epoch(model: nn.Module, source: Source, config: TrainConfig, run: RunDir,
               state: TrainState, device: torch.device, log: RunLog, eval_batch_size: int,
               dist: Any = None) -> None:
    tasks = source.tasks
    started = time.perf_counter()
    evaluate = evaluate_split if dist is None else dist.evaluate_split  # dist: sharded, gathered
    valid = evaluate(model, source, "valid", eval_batch_size, device)
    eval_seconds = time.perf_counter() - started
    value = early_stopping_value(valid, config.early_stopping_metric)
    improved = _is_better(value, state.best_value, config.early_stopping_metric, config.min_delta)
    if improved or state.best_epoch is None:
        # the first epoch is kept even with an undefined metric, so there is always a best
        if dist is None or dist.is_main:
            save_weights(run.best, model, {"epoch": state.epoch + 1, "metric": config.early_stopping_metric,
                                           "value": None if math.isnan(value) else value})
        state.best_value = None if math.isnan(value) else value
        state.best_epoch = state.epoch + 1
        state.epochs_since_best = 0
    else:
        state.epochs_since_best += 1
    samples = max(state.epoch_samples, 1)
    entry = {
        "epoch": state.epoch + 1,
        "train_loss": state.epoch_loss_sum / samples,
        "train_bce": {t: s / samples for t, s in zip(tasks, state.epoch_task_loss_sum, strict=True)},
        "train_samples": state.epoch_samples,
        "valid": valid,
        "early_stopping_value": None if math.isnan(value) else value,
        "improved": bool(improved),
        "train_seconds": state.epoch_train_seconds,
        "eval_seconds": eval_seconds,
    }
    state.history.append(entry)
    state.train_samples += state.epoch_samples
    state.train_seconds += state.epoch_train_seconds
    log(f"epoch {state.epoch + 1}: train loss {entry['train_loss']:.5f}; valid "
        + ", ".join(f"{t} auc {_fmt(m['auc'])} gauc {_fmt(m['gauc'])} logloss {_fmt(m['logloss'])}"
                    for t, m in valid.items())
        + f"; {config.early_stopping_metric} {_fmt(entry['early_stopping_value'])}"
        + (" (best)" if improved else f" (best epoch {state.best_epoch})")
        + f"; {state.epoch_samples / max(state.epoch_train_seconds, 1e-9):,.0f} samples/s")
    state.epoch += 1
    state.start_epoch(len(tasks))
    if config.patience and state.epochs_since_best >= config.patience:
        state.finished, state.stop_reason = True, "early_stopping"
        log(f"early stopping: no improvement for {state.epochs_since_best} epochs")
    elif state.epoch >= config.epochs:
        state.finished, state.stop_reason = True, "epochs"


def _finish(model: nn.Module, source: Source, config: TrainConfig, run: RunDir,
            state: TrainState, device: torch.device, log: RunLog, dist: Any = None) -> dict[str, Any]:
    evaluate = evaluate_split
    if dist is not None:  # dist: rank 0 has written the best weights; everyone evaluates a shard
        dist.barrier()
        evaluate = dist.evaluate_split
    load_weights(run.best, model)
    eval_batch_size = config.resolved_eval_batch_size
    metrics = {
        "valid": evaluate(model, source, "valid", eval_batch_size, device),
        "test": evaluate(model, source, "test", eval_batch_size, device),
        "best_epoch": state.best_epoch,
        "early_stopping_metric": config.early_stopping_metric,
        "best_value": state.best_value,
        "epochs_run": len(state.history),
        "stop_reason": state.stop_reason,
        "train_samples_per_s": state.train_samples / state.train_seconds if state.train_seconds else None,
        "history": state.history,
    }
    if dist is None or dist.is_main:
        write_json_atomic(run.metrics, metrics)
    log(f"done: best epoch {state.best_epoch} of {len(state.history)} ({state.stop_reason}); test "
        + ", ".join(f"{t} auc {_fmt(m['auc'])} gauc {_fmt(m['gauc'])} logloss {_fmt(m['logloss'])}"
                    for t, m in metrics["test"].items()))
    return metrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
