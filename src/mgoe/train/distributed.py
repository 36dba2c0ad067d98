"""Data-parallel training: DistributedDataParallel over N processes (gloo on CPU, nccl on GPUs).

Two ways to start it; both run the ordinary trainer (:func:`mgoe.train.trainer.train`) in every
process, with this module's :class:`Distributed` context hooked in::

    mgoe train --nproc 2 --data D --graph G --output RUN ...         # spawns 2 local processes
    torchrun --nproc_per_node 2 -m mgoe.train.distributed --data D --graph G --output RUN ...
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m mgoe.train.distributed ...                                 # several hosts

(``-m mgoe.cli train ...`` under torchrun works as well: ``mgoe train`` notices torchrun's
environment and joins its process group.)

What every rank does, and why the result matches a single process:

* **Sharded reading.** The epoch order is the single-process order (same seeded shuffle). It is
  cut into micro-batches of ``batch_size / N`` rows and rank ``r`` takes micro-batches
  ``r, r + N, r + 2N, …``, so the N micro-batches of global step ``s`` are exactly the rows of
  the single-process batch ``s``, and the union over ranks is the single-process epoch. A rank
  assembles only its own micro-batches (features and leave-one-out lookups are the expensive
  part): the source's ``batches`` runs with its assembly deferred, which costs only the index
  slicing of the other ranks' rows. Resuming at global step ``s`` skips ``s · N`` micro-batches.
* **The same objective.** Each rank's loss is a mean over its rows; DDP averages gradients over
  the ranks. With equal micro-batches that *is* the gradient of the global batch mean. The last
  step of an epoch can be short: rank ``r`` then scales its loss by ``N · rows_r / rows_step``
  (0 for a rank with no rows left, which runs a weighted-out copy of the step's first
  micro-batch so that every rank joins every all-reduce), so the averaged gradient is still
  that of the mean over the step's rows. Gradient clipping and Adam see identical averaged
  gradients on every rank, so the replicas stay identical (DDP also broadcasts rank 0's
  initial weights).
* **Bookkeeping.** The per-step loss and per-task BCE are all-reduced (one small all-reduce per
  step) so the trainer state — and therefore checkpoints, ``log.txt`` and the loss history — is
  the global one, identical on every rank. Dropout is seeded from ``(seed, epoch, step) + rank``.
* **Evaluation.** Each rank scores every N-th evaluation batch; ``all_gather_object`` brings all
  predictions to every rank, in source order, and every rank computes the same exact metrics over
  the full split — so early stopping decides the same on every rank with no extra broadcast.
* **Files.** Only rank 0 writes ``config.json``, ``log.txt``, checkpoints and ``metrics.json``;
  every rank checks the run directory first (a barrier separates the checks from the writes),
  resumes from the same checkpoint, and waits at a barrier before reloading the best weights
  for the final evaluation.

Throughput: the global batch, learning rate and schedule are unchanged, so N processes do the
same optimisation with 1/N of the rows each per step. On N separate cores or GPUs that is up to
N times the samples/s; processes that share cores compete for them (see BENCHMARKS.md).
"""

from __future__ import annotations

import copy
import os
import socket
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mgoe.errors import MgoeError

Batch = dict[str, torch.Tensor]

_ACTIVE: Distributed | None = None


@dataclass(frozen=True)
class Share:
    """This rank's part of one global step."""

    rows: int
    """Rows of this rank's micro-batch (0: nothing left for it in the last step)."""
    total: int
    """Rows of the global step over all ranks."""
    scale: float
    """Factor on this rank's loss: ``world · rows / total``."""


class _DDP(DistributedDataParallel):
    """DDP whose unknown attributes (``predict_proba``, ``regularization_loss``,
    ``auxiliary_loss``, ``config``) resolve on the wrapped model, so the trainer's
    ``batch_loss`` runs unchanged on the wrapper."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


class _Deferred:
    """Stands in for an assembled batch: the arguments ``source._assemble`` was called with."""

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    @property
    def rows(self) -> int:
        first = self.args[0] if self.args else next(iter(self.kwargs.values()))
        return len(first["user"]) if isinstance(first, dict) else len(first)


def _rows(batch: Batch) -> int:
    return int(batch["user"].shape[0])


def lazy_batches(source: Any, split: str, batch_size: int, *, shuffle: bool, seed: int = 0,
                 start: int = 0) -> Iterator[tuple[Callable[[], Batch], int]]:
    """``(assemble, rows)`` for every batch of ``source.batches(...)``, in its order.

    For the sources of this package (:class:`~mgoe.train.inputs.BatchSource`,
    :class:`~mgoe.train.sources.TensorBatchSource`), which build each batch with
    ``self._assemble(...)``, ``assemble()`` does that work only when called; other sources are
    iterated as they are (``assemble`` returns the batch already built).
    """
    assemble = getattr(source, "_assemble", None)
    if not callable(assemble):
        for batch in source.batches(split, batch_size, shuffle=shuffle, seed=seed, start=start):
            yield (lambda b=batch: b), _rows(batch)
        return
    proxy = copy.copy(source)  # shares the source's arrays and caches
    proxy._assemble = _Deferred
    for item in proxy.batches(split, batch_size, shuffle=shuffle, seed=seed, start=start):
        if isinstance(item, _Deferred):
            yield (lambda d=item: assemble(*d.args, **d.kwargs)), item.rows
        else:  # the source built it itself
            yield (lambda b=item: b), _rows(item)


class Distributed:
    """This process's place in an initialised ``torch.distributed`` process group, and the
    hooks the trainer calls (see the module docstring)."""

    def __init__(self, rank: int, world_size: int, local_rank: int = 0, backend: str = "gloo") -> None:
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.backend = backend
        self.comm_device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- setup -----------------------------------------------------------------------------------

    def prepare(self, batch_size: int, device: torch.device) -> torch.device:
        """Check the config against the world size; the device of this rank."""
        if batch_size % self.world_size:
            raise MgoeError(
                f"batch_size {batch_size} is not divisible by the {self.world_size} processes: "
                "every process takes batch_size / processes rows per step"
            )
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model for training steps (DDP); evaluation and checkpoints use ``model`` itself."""
        # Parameters whose gradients come out non-contiguous make DDP warn on every step that
        # its bucket copy may be slower; it is correct, and the message would flood the log.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return _DDP(model, device_ids=ids, output_device=ids[0] if ids else None)

    def barrier(self) -> None:
        torch_dist.barrier()

    def seed(self, seed: int) -> int:
        """Per-rank variant of a step seed (rank 0 keeps the single-process seed)."""
        return (seed + self.rank) % (1 << 64)

    # -- training --------------------------------------------------------------------------------

    def train_batches(self, source: Any, batch_size: int, *, seed: int,
                      start: int = 0) -> Iterator[tuple[Batch, Share]]:
        """This rank's micro-batch of every global step from ``start`` on, with its share."""
        world = self.world_size
        micro = batch_size // world
        group: list[tuple[Callable[[], Batch], int]] = []
        for item in lazy_batches(source, "train", micro, shuffle=True, seed=seed, start=start * world):
            group.append(item)
            if len(group) == world:
                yield self._take(group)
                group = []
        if group:
            yield self._take(group)

    def _take(self, group: list[tuple[Callable[[], Batch], int]]) -> tuple[Batch, Share]:
        total = sum(rows for _, rows in group)
        if self.rank < len(group):
            assemble, rows = group[self.rank]
            return assemble(), Share(rows, total, self.world_size * rows / total)
        return group[0][0](), Share(0, total, 0.0)  # weighted out: keeps the all-reduces in step

    def step_stats(self, share: Share, loss: float, task_bce: list[float]) -> tuple[int, float, list[float]]:
        """``(rows, loss, per-task BCE)`` of the whole global step (one all-reduce)."""
        values = torch.tensor([loss, *task_bce], dtype=torch.float64, device=self.comm_device)
        values *= share.scale / self.world_size
        torch_dist.all_reduce(values)
        out = values.cpu().tolist()
        return share.total, out[0], out[1:]

    # -- evaluation ------------------------------------------------------------------------------

    @torch.no_grad()
    def predict_split(self, model: nn.Module, source: Any, split: str, batch_size: int,
                      device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(labels, probabilities, users)`` of the whole split on every rank, in source order;
        each rank scores every N-th batch."""
        from mgoe.train.trainer import _to_device

        device = torch.device(device)
        was_training = model.training
        model.eval()
        mine = []
        try:
            for index, (assemble, _) in enumerate(lazy_batches(source, split, batch_size, shuffle=False)):
                if index % self.world_size != self.rank:
                    continue
                batch = assemble()
                probs = model.predict_proba(_to_device(batch, device)).float().cpu().numpy()
                mine.append((index, batch["labels"].numpy(), probs, batch["user"].numpy()))
        finally:
            model.train(was_training)
        gathered: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(gathered, mine)
        parts = sorted((p for rank_parts in gathered for p in rank_parts), key=lambda p: p[0])
        if not parts:
            num_tasks = len(source.tasks)
            return (np.zeros((0, num_tasks), np.float32), np.zeros((0, num_tasks), np.float32),
                    np.zeros(0, np.int64))
        return (np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
                np.concatenate([p[3] for p in parts]))

    def evaluate_split(self, model: nn.Module, source: Any, split: str, batch_size: int,
                       device: torch.device | str = "cpu") -> dict[str, dict[str, float | None]]:
        """Exact metrics over the full split, identical on every rank."""
        from mgoe.train.metrics import evaluate_tasks

        labels, probs, users = self.predict_split(model, source, split, batch_size, device)
        return evaluate_tasks(labels, probs, users, source.tasks)


# ----------------------------------------------------------------------------- process group


def active() -> Distributed | None:
    """The context :func:`init` registered in this process (None: single-process training)."""
    return _ACTIVE


def launched_by_torchrun() -> bool:
    """True inside a process that torchrun (torch.distributed.run) started with world size > 1."""
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(backend: str | None = None) -> Distributed:
    """Join the process group described by the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``, as torchrun sets them) and register the
    context, so that :func:`mgoe.train.trainer.train` trains data-parallel in this process.

    ``backend`` defaults to nccl when CUDA is available, else gloo.
    """
    global _ACTIVE
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    _ACTIVE = Distributed(rank, world, local_rank, backend)
    return _ACTIVE


def shutdown() -> None:
    """Leave the process group and unregister the context."""
    global _ACTIVE
    _ACTIVE = None
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, nproc: int, port: int, train_kwargs: dict[str, Any], errors: Any) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
    # N processes on one host share its cores (a config's num_threads still wins)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    from mgoe.train import api

    try:
        init()
        api.train(**train_kwargs)
    except MgoeError as exc:
        errors.put((rank, str(exc), exc.exit_code))
        sys.exit(exc.exit_code)
    finally:
        shutdown()


def launch(nproc: int, **train_kwargs: Any) -> dict[str, Any]:
    """Run :func:`mgoe.train.api.train` in ``nproc`` local processes (``mgoe train --nproc``);
    returns the run's ``metrics.json`` (written by rank 0).

    One process per GPU when CUDA is available (nccl), else CPU processes (gloo).
    """
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    from mgoe.train.rundir import RunDir

    if nproc < 1:
        raise MgoeError(f"--nproc must be at least 1, got {nproc}")
    if torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise MgoeError(f"--nproc {nproc} but only {torch.cuda.device_count()} GPUs are visible")
    context = mp.get_context("spawn")
    errors = context.SimpleQueue()
    try:
        mp.start_processes(_worker, args=(nproc, _free_port(), train_kwargs, errors), nprocs=nproc,
                           join=True, start_method="spawn")
    except ProcessException:
        if not errors.empty():
            _, message, code = errors.get()
            error = MgoeError(message)
            error.exit_code = code
            raise error from None
        raise
    return RunDir(train_kwargs["output"]).read_metrics()


def run_cli(nproc: int | None, **train_kwargs: Any) -> dict[str, Any] | None:
    """``mgoe train``: spawn ``nproc`` processes, join torchrun's group when started by it, or
    train in this process. Returns the metrics (None on a torchrun rank other than 0)."""
    from mgoe.train import api

    if nproc is not None and nproc > 1:
        if launched_by_torchrun():
            raise MgoeError("--nproc cannot be combined with torchrun (torchrun already started the processes)")
        return launch(nproc, **train_kwargs)
    if launched_by_torchrun():
        context = init()
        try:
            metrics = api.train(**train_kwargs)
        finally:
            shutdown()
        return metrics if context.is_main else None
    return api.train(**train_kwargs)


def main(argv: list[str] | None = None) -> int:
    """``python -m mgoe.train.distributed ARGS`` = ``mgoe train ARGS`` (the torchrun entry point)."""
    from mgoe.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
