"""Side by side with torch-rechub: its MMoE and PLE against mgoe's mmoe, ple and mgoe.

torch-rechub (PyPI ``torch-rechub``) is an optional extra (``pip install -e .[compare]``), not a
runtime dependency. Its 0.9.0 wheel requires ``torch>=1.10``, which the CPU build 2.13.0 meets;
to be sure pip never replaces torch, install it with ``pip install --no-deps torch-rechub`` (its
other requirements, numpy, pandas, scikit-learn and tqdm, are mgoe's own).

On one prepared dataset split (``mgoe data prepare``), with the same features (user id, item
id, every side feature, all categorical), the same tasks, the same batch size, learning rate,
epochs and one CPU thread, this script trains

* torch-rechub ``MMOE`` and ``PLE`` through its ``DataGenerator`` loaders and ``MTLTrainer.fit``
  (as its users get them) -- training throughput is timed around ``train_one_epoch``;
  and again on batches sliced from pre-built, pre-shuffled tensors (its model's forward,
  backward and Adam step only);
* mgoe's ``mmoe``, ``ple`` and ``mgoe`` through :func:`mgoe.train.api.train` (its trainer's
  ``train_samples_per_s``: input pipeline included, evaluation excluded) and again on
  pre-assembled batches (forward, backward, Adam step only);

and reports test AUC per task and training throughput, then the same as ratios torch-rechub /
mgoe. Throughput is given per second of wall-clock time and per second of CPU time of the
training thread (``time.thread_time``; with one torch thread the work runs on it): on a busy
machine the wall-clock figures also hold the waits for a core, so the ratios use CPU time.
mgoe's own-pipeline figures come from its trainer's per-batch hook (batch assembly, macro
features included, plus the step; each epoch from its second batch on). AUC, GAUC and
log-loss of both libraries are computed by :mod:`mgoe.train.metrics` on the test split.

Architectures are matched to mgoe's defaults where the libraries allow it: embedding size 16,
MMoE 4 experts of (64, 32), PLE 2 levels with 1 task-specific and 1 shared expert of (64, 32),
towers (32,). Differences that stay (torch-rechub's as shipped): its MLPs always have
BatchNorm (gates included), its embeddings start at N(0, 1e-4), its Adam has weight decay
1e-5 and its loss is the mean of the task BCEs; mgoe uses no BatchNorm, N(0, 0.05)
embeddings, L2 1e-6 on the embeddings a batch uses and the sum of the task BCEs. Denormal
flushing (``torch.set_flush_denormal``) is switched on for the whole script, as mgoe's trainer
does process-wide.

    mgoe data prepare movielens100k --input ../shared/data/movielens-100k --output /tmp/ml100k
    python benchmarks/bench_torch_rechub.py --data /tmp/ml100k --output /tmp/trh --epochs 1
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

EMBEDDING_DIM = 16
EXPERT_DIMS = [64, 32]
TOWER_DIMS = [32]
MMOE_EXPERTS = 4


# ----------------------------------------------------------------------------- data


def split_arrays(source: Any, split: str, chunk: int = 65_536) -> dict[str, np.ndarray]:
    """All rows of ``split`` in file order: user, item, side features, labels (numpy)."""
    keys = ("user", "item", "user_features", "item_features", "context_features", "labels")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for batch in source.batches(split, chunk, shuffle=False):
        for k in keys:
            parts[k].append(batch[k].numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def rechub_inputs(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """torch-rechub's ``x`` dict (one int64 column per feature) and ``y`` [N, T] float32."""
    x = {"user": arrays["user"], "item": arrays["item"]}
    for kind, prefix in (("user_features", "uf"), ("item_features", "if"),
                         ("context_features", "cf")):
        for j in range(arrays[kind].shape[1]):
            x[f"{prefix}{j}"] = np.ascontiguousarray(arrays[kind][:, j])
    return x, arrays["labels"].astype(np.float32)


def rechub_features(spec: Any) -> list[Any]:
    """One ``SparseFeature`` per input column, vocabularies as in mgoe's spec."""
    from torch_rechub.basic.features import SparseFeature

    features = [SparseFeature("user", spec.num_users, embed_dim=EMBEDDING_DIM),
                SparseFeature("item", spec.num_items, embed_dim=EMBEDDING_DIM)]
    for prefix, sizes in (("uf", spec.user_feature_sizes), ("if", spec.item_feature_sizes),
                          ("cf", spec.context_feature_sizes)):
        features += [SparseFeature(f"{prefix}{j}", size, embed_dim=EMBEDDING_DIM)
                     for j, size in enumerate(sizes)]
    return features


def build_rechub(name: str, spec: Any) -> torch.nn.Module:
    """torch-rechub's ``MMOE`` or ``PLE`` sized like mgoe's defaults."""
    from torch_rechub.models.multi_task import MMOE, PLE

    features = rechub_features(spec)
    types = ["classification"] * spec.num_tasks
    towers = [{"dims": TOWER_DIMS} for _ in range(spec.num_tasks)]
    if name == "MMOE":
        return MMOE(features, types, n_expert=MMOE_EXPERTS, expert_params={"dims": EXPERT_DIMS},
                    tower_params_list=towers)
    return PLE(features, types, n_level=2, n_expert_specific=1, n_expert_shared=1,
               expert_params={"dims": EXPERT_DIMS}, tower_params_list=towers)


# ----------------------------------------------------------------------------- timing


class Clock:
    """Samples and seconds, wall-clock and CPU time of this thread, over timed sections.

    With one torch thread the model's work runs on the calling thread, so its CPU time is
    what the work costs; wall-clock time on a busy machine also holds the waits for a core.
    """

    def __init__(self) -> None:
        self.samples = 0
        self.wall = 0.0
        self.cpu = 0.0

    def add(self, samples: int, wall: float, cpu: float) -> None:
        self.samples += samples
        self.wall += wall
        self.cpu += cpu

    @contextmanager
    def section(self, samples: int) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.thread_time()
        yield
        self.add(samples, time.perf_counter() - wall, time.thread_time() - cpu)

    def rates(self) -> dict[str, float | None]:
        """``{"wall": samples/s, "cpu": samples per CPU second}``."""
        return {"wall": self.samples / self.wall if self.wall else None,
                "cpu": self.samples / self.cpu if self.cpu else None}


def _limit(items: Iterable[Any], n: int) -> Iterator[Any]:
    """The first ``n`` items (all of them when ``n`` is 0)."""
    for k, item in enumerate(items):
        if n and k >= n:
            return
        yield item


def timed_steps(batches: Iterable[Any], loss_of: Callable[[Any], torch.Tensor],
                size_of: Callable[[Any], int], optimizer: torch.optim.Optimizer) -> Clock:
    """Optimiser steps over ``batches``, timing only zero_grad + forward + backward + step."""
    clock = Clock()
    for batch in batches:
        with clock.section(size_of(batch)):
            optimizer.zero_grad(set_to_none=True)
            loss_of(batch).backward()
            optimizer.step()
    return clock


# ----------------------------------------------------------------------------- torch-rechub


def run_rechub(name: str, spec: Any, data: dict[str, dict[str, np.ndarray]], args: argparse.Namespace,
               workdir: Path) -> dict[str, Any]:
    """Train with torch-rechub's loaders and ``MTLTrainer.fit``; then time its model on tensors."""
    from torch_rechub.trainers import MTLTrainer
    from torch_rechub.utils.data import DataGenerator

    from mgoe.train.metrics import evaluate_tasks

    x = {s: rechub_inputs(data[s]) for s in ("train", "valid", "test")}
    n_train = len(x["train"][1])
    torch.manual_seed(args.seed)
    model = build_rechub(name, spec)
    trainer = MTLTrainer(model, ["classification"] * spec.num_tasks,
                         optimizer_params={"lr": args.lr, "weight_decay": 1e-5},
                         n_epoch=args.epochs, earlystop_patience=args.patience, device="cpu",
                         model_path=str(workdir))
    loaders = DataGenerator(*x["train"]).generate_dataloader(
        x_val=x["valid"][0], y_val=x["valid"][1], x_test=x["test"][0], y_test=x["test"][1],
        batch_size=args.batch_size)
    pipeline = Clock()
    inner = trainer.train_one_epoch

    def timed_epoch(loader: Any) -> Any:
        with pipeline.section(n_train):
            return inner(loader)

    trainer.train_one_epoch = timed_epoch  # fit() calls it once per epoch
    torch.manual_seed(args.seed)
    trainer.fit(loaders[0], loaders[1])
    model.eval()
    probs = []
    with torch.no_grad():
        for xb, _ in loaders[2]:
            probs.append(model(xb).numpy())
    test = evaluate_tasks(data["test"]["labels"], np.concatenate(probs), data["test"]["user"],
                          spec.tasks)

    # Direct: a fresh model on pre-shuffled tensors, forward + backward + Adam step only.
    torch.manual_seed(args.seed)
    model = build_rechub(name, spec)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-5)
    bce = torch.nn.BCELoss()
    order = torch.randperm(n_train)
    tensors = {k: torch.from_numpy(v)[order] for k, v in x["train"][0].items()}
    labels = torch.from_numpy(x["train"][1])[order]

    def batches() -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        for start in range(0, n_train, args.batch_size):
            sl = slice(start, start + args.batch_size)
            yield {k: v[sl] for k, v in tensors.items()}, labels[sl]

    def loss_of(batch: tuple[dict[str, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        xb, yb = batch
        out = model(xb)
        return sum(bce(out[:, t], yb[:, t]) for t in range(spec.num_tasks)) / spec.num_tasks

    direct = timed_steps(_limit(batches(), args.direct_batches), loss_of,
                         lambda batch: len(batch[1]), optimizer)
    return {"library": "torch-rechub", "model": name, "test": test,
            "pipeline": pipeline.rates(), "direct": direct.rates(),
            "epochs_run": pipeline.samples // n_train}


# ----------------------------------------------------------------------------- mgoe


def run_mgoe(name: str, args: argparse.Namespace, graph: Path, workdir: Path) -> dict[str, Any]:
    """Train mgoe's model ``name`` with its trainer; then time it on pre-assembled batches.

    The trainer's per-batch hook timestamps every step, so the pipeline figures cover batch
    assembly (macro features included) + step, per epoch from its second batch on.
    """
    from mgoe.models import MACRO_MODELS
    from mgoe.train.config import TrainConfig
    from mgoe.train.inputs import BatchSource
    from mgoe.train.trainer import batch_loss, build_training_model, train

    needs_graph = name in MACRO_MODELS
    config = TrainConfig.from_dict({
        "model": name, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "patience": args.patience, "num_threads": args.threads, "log_every": 0, "seed": args.seed,
        "checkpoint_every_minutes": 0,
    })
    source = BatchSource.open(args.data, graph if needs_graph else None)
    n_train = source.num_rows("train")
    pipeline = Clock()
    last: dict[str, Any] = {}

    def hook(epoch: int, batch: int, loss: float) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        if last.get("epoch") == epoch and batch > 0:
            size = min(args.batch_size, n_train - batch * args.batch_size)
            pipeline.add(size, wall - last["wall"], cpu - last["cpu"])
        last.update(epoch=epoch, wall=wall, cpu=cpu)

    metrics = train(source, workdir / f"mgoe-{name}", config, progress=False, on_batch_end=hook)

    torch.manual_seed(args.seed)
    model = build_training_model(config, source.spec)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    weights = torch.ones(len(source.tasks))
    batches = list(_limit(source.batches("train", args.batch_size, shuffle=True, seed=args.seed),
                          args.direct_batches))
    direct = timed_steps(batches, lambda b: batch_loss(model, b, weights, config.l2_embedding)[0],
                         lambda b: len(b["labels"]), optimizer)
    return {"library": "mgoe", "model": name, "test": metrics["test"],
            "pipeline": pipeline.rates(), "direct": direct.rates(),
            "trainer_samples_per_s": metrics["train_samples_per_s"],
            "epochs_run": metrics["epochs_run"]}


# ----------------------------------------------------------------------------- report


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.3f}"


def _auc(result: dict[str, Any], task: str) -> float | None:
    return result["test"][task]["auc"]


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def report(results: list[dict[str, Any]], tasks: list[str]) -> str:
    """Markdown: absolute figures, then torch-rechub / mgoe ratios."""
    head = ["library", "model", *[f"{t} AUC" for t in tasks],
            "own pipeline, samples/CPU-s", "direct, samples/CPU-s",
            "own pipeline, samples/s wall", "direct, samples/s wall"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in results:
        aucs = [("n/a" if _auc(r, t) is None else f"{_auc(r, t):.4f}") for t in tasks]
        lines.append("| " + " | ".join([
            r["library"], r["model"], *aucs, _rate(r["pipeline"]["cpu"]), _rate(r["direct"]["cpu"]),
            _rate(r["pipeline"]["wall"]), _rate(r["direct"]["wall"])]) + " |")
    by = {(r["library"], r["model"]): r for r in results}
    pairs = [(("torch-rechub", "MMOE"), ("mgoe", "mmoe")), (("torch-rechub", "MMOE"), ("mgoe", "mgoe")),
             (("torch-rechub", "PLE"), ("mgoe", "ple")), (("torch-rechub", "PLE"), ("mgoe", "mgoe"))]
    head = ["torch-rechub / mgoe", *[f"{t} AUC" for t in tasks],
            "own pipelines (CPU time)", "direct (CPU time)"]
    lines += ["", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for a, b in pairs:
        if a not in by or b not in by:
            continue
        ra, rb = by[a], by[b]
        cells = [_ratio(_auc(ra, t), _auc(rb, t)) for t in tasks]
        lines.append("| " + " | ".join([
            f"{a[1]} / {b[1]}", *cells, _ratio(ra["pipeline"]["cpu"], rb["pipeline"]["cpu"]),
            _ratio(ra["direct"]["cpu"], rb["direct"]["cpu"])]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="prepared dataset directory")
    p.add_argument("--graph", type=Path, help="its graph directory (default: built in --output)")
    p.add_argument("--output", required=True, type=Path, help="working directory (runs, results.json)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--direct-batches", type=int, default=0,
                   help="time at most this many batches in the direct runs (0: one epoch)")
    p.add_argument("--models", default="MMOE,PLE,mmoe,ple,mgoe",
                   help="torch-rechub (MMOE, PLE) and mgoe (mmoe, ple, mgoe) models to run")
    p.add_argument("--quiet", action="store_true", help="silence the tqdm bars")
    args = p.parse_args(argv)
    try:
        import torch_rechub.trainers.mtl_trainer as mtl_trainer
    except ImportError:
        print("torch-rechub is not installed: pip install --no-deps torch-rechub", file=sys.stderr)
        return 2
    if args.quiet:  # its trainer always draws tqdm bars; give its module a silent tqdm
        import tqdm

        mtl_trainer.tqdm = SimpleNamespace(tqdm=functools.partial(tqdm.tqdm, disable=True))

    from mgoe.graph.build import build_graph
    from mgoe.train.inputs import BatchSource

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    args.output.mkdir(parents=True, exist_ok=True)
    graph = args.graph or args.output / "graph"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if "mgoe" in models and args.graph is None:
        build_graph(args.data, graph)
    source = BatchSource.open(args.data)
    data = {s: split_arrays(source, s) for s in ("train", "valid", "test")}
    results = []
    with tempfile.TemporaryDirectory(dir=args.output) as tmp:
        work = Path(tmp)
        for name in models:
            started = time.perf_counter()
            if name in ("MMOE", "PLE"):
                result = run_rechub(name, source.spec, data, args, work)
            else:
                result = run_mgoe(name, args, graph, work)
            result["wall_s"] = time.perf_counter() - started
            results.append(result)
            print(f"{result['library']} {name}: " + ", ".join(
                f"{t} auc {m['auc']:.4f}" for t, m in result["test"].items() if m["auc"] is not None)
                + f"; samples per CPU-s: own pipeline {_rate(result['pipeline']['cpu'])}, direct "
                f"{_rate(result['direct']['cpu'])} ({result['wall_s']:.0f} s)", flush=True)
    import torch_rechub as trh

    meta = {"data": str(args.data), "train_rows": len(data["train"]["labels"]),
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "threads": args.threads, "seed": args.seed,
            "torch": torch.__version__, "torch_rechub": getattr(trh, "__version__", "0.9.0"),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    (args.output / "results.json").write_text(json.dumps({"meta": meta, "results": results},
                                                         indent=2))
    text = report(results, source.tasks)
    (args.output / "results.md").write_text(text + "\n")
    print(f"\n{json.dumps(meta)}\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
