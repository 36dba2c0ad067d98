"""The Python API of training runs: train, evaluate, predict, load a model.

>>> from mgoe.train import api
>>> metrics = api.train("data/beibei", "graphs/beibei", output="runs/mgoe-1")  # doctest: +SKIP
>>> api.evaluate("runs/mgoe-1", split="test")["test"]["buy"]["auc"]               # doctest: +SKIP
>>> scores = api.predict("runs/mgoe-1", pairs)   # pairs: DataFrame user_id, item_id  # doctest: +SKIP

A run directory remembers its data (``config.json``: data and graph directories, spec, model
config), so evaluating or predicting needs only the run directory. A run trained on an
in-memory :class:`~mgoe.train.sources.TensorBatchSource` that was never saved cannot reopen its
data; pass ``source=`` to these functions then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mgoe.errors import MgoeError
from mgoe.models.spec import ModelSpec
from mgoe.train.checkpoint import load_weights
from mgoe.train.config import TrainConfig, resolve_config
from mgoe.train.rundir import RunDir
from mgoe.train.trainer import Source, evaluate_split
from mgoe.train.trainer import train as _train

SPLITS = ("train", "valid", "test")


def open_source(data: str | Path, graph: str | Path | None = None,
                kind: str | None = None) -> Source:
    """A batch source for a prepared dataset directory (+ graph) or a saved TensorBatchSource."""
    data = Path(data)
    if kind is None:
        kind = "tensor" if (data / "source.json").is_file() else "dataset"
    if kind == "tensor":
        from mgoe.train.sources import TensorBatchSource

        return TensorBatchSource.open(data)
    if kind != "dataset":
        raise MgoeError(f"unknown data source kind {kind!r} in the run's config.json")
    from mgoe.train.inputs import BatchSource

    return BatchSource.open(data, graph)


def _check_model_fits(model: str, spec: ModelSpec) -> None:
    from mgoe.models import MACRO_MODELS

    if model in MACRO_MODELS and not spec.has_macro:
        raise MgoeError(
            f"model {model!r} needs macro graph features: pass the graph directory "
            "(--graph GDIR, built by `mgoe graph build`), or choose a model without them "
            "(mmoe, ple, shared_bottom, esmm, aitm)"
        )


def train(
    data: str | Path | Source | None,
    graph: str | Path | None = None,
    output: str | Path | None = None,
    model: str | None = None,
    config: TrainConfig | str | Path | dict[str, Any] | None = None,
    seed: int | None = None,
    resume: bool = False,
    progress: bool = True,
    *,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Train a model and return its ``metrics.json`` content (valid/test metrics per task, ...).

    ``data`` is a prepared dataset directory (with ``graph``, a graph directory, for macro
    models), a saved TensorBatchSource directory, or a source object. ``config`` is a
    :class:`TrainConfig`, a YAML/TOML/JSON file, a mapping or None (defaults); ``model``,
    ``seed`` and ``epochs`` override it (``model`` None keeps the config's, default ``mgoe``).

    With ``resume=True`` the run in ``output`` continues from its last checkpoint; ``data`` and
    ``config`` may then be None, to reuse those recorded in the run's ``config.json``.
    """
    if output is None:
        raise MgoeError("train needs an output run directory")
    run = RunDir(output)
    stored = run.read_config() if resume and run.config.is_file() else None
    if config is None and stored is not None:
        train_config = TrainConfig.from_dict(stored["train"], source=f"{run.config}")
    else:
        train_config = resolve_config(config)
    train_config = train_config.replace(model=model, seed=seed, epochs=epochs)
    if data is None:
        if stored is None:
            raise MgoeError("train needs the data directory (--data)")
        described = stored["source"]
        if described["data_dir"] is None:
            raise MgoeError(f"the run in {run.root} was trained on an in-memory source; pass it as data")
        source = open_source(described["data_dir"], described["graph_dir"], described["kind"])
    elif isinstance(data, str | Path):
        source = open_source(data, graph)
    else:
        if graph is not None:
            raise MgoeError("pass graph only with a data directory, not with a source object")
        source = data
    _check_model_fits(train_config.model, source.spec)
    return _train(source, run.root, train_config, resume=resume, progress=progress)


def load_model(run_dir: str | Path, source: Source | None = None,
               weights: str = "best") -> tuple[nn.Module, Source]:
    """The run's model with its best (or ``weights="last"``) weights, in eval mode, and its
    batch source (reopened from the paths in ``config.json`` unless ``source`` is given)."""
    from mgoe.models import build_model

    run = RunDir(run_dir)
    stored = run.read_config()
    spec = ModelSpec(**stored["spec"])
    if source is None:
        described = stored["source"]
        if described["data_dir"] is None:
            raise MgoeError(
                f"the run in {run.root} was trained on an in-memory source; pass source="
            )
        source = open_source(described["data_dir"], described["graph_dir"], described["kind"])
    if source.spec != spec:
        raise MgoeError(
            f"the data source does not match the run in {run.root}: its spec differs from the "
            "one the model was trained on (different dataset or graph?)"
        )
    torch.manual_seed(0)  # initial values are overwritten; keep construction reproducible
    model = build_model(stored["model"]["name"], spec, stored["model"]["config"])
    if weights not in ("best", "last"):
        raise MgoeError(f"weights must be 'best' or 'last', got {weights!r}")
    path = run.best if weights == "best" else run.last
    if not path.is_file():
        raise MgoeError(f"{run.root} has no {path.relative_to(run.root)} (no epoch finished yet)")
    load_weights(path, model)
    model.eval()
    return model, source


def _batch_size(run: RunDir, batch_size: int | None) -> int:
    if batch_size is not None:
        return batch_size
    stored = run.read_config()["train"]
    return stored.get("eval_batch_size") or 4 * stored["batch_size"]


def evaluate(run_dir: str | Path, split: str = "test", source: Source | None = None,
             batch_size: int | None = None) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{split: {task: {"auc", "gauc", "logloss"}}}`` of the run's best weights on ``split``."""
    if split not in SPLITS:
        raise MgoeError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    run = RunDir(run_dir)
    model, source = load_model(run, source)
    return {split: evaluate_split(model, source, split, _batch_size(run, batch_size))}


@torch.no_grad()
def predict(run_dir: str | Path, pairs: pd.DataFrame, source: Source | None = None,
            batch_size: int | None = None) -> pd.DataFrame:
    """Scores of (``user_id``, ``item_id``) pairs: a DataFrame with those two columns and one
    probability column per task, in the order of ``pairs``. Unknown ids get the model's
    fallback (a spare embedding row, the cold macro node, empty macro features)."""
    missing = [c for c in ("user_id", "item_id") if c not in pairs.columns]
    if missing:
        raise MgoeError(
            f"pairs need columns user_id and item_id; missing {', '.join(missing)} "
            f"(has {', '.join(map(str, pairs.columns))})"
        )
    run = RunDir(run_dir)
    model, source = load_model(run, source)
    user_ids = pairs["user_id"].astype(str).to_numpy()
    item_ids = pairs["item_id"].astype(str).to_numpy()
    chunks = [model.predict_proba(batch).float().numpy()
              for batch in source.pair_batches(user_ids, item_ids, _batch_size(run, batch_size))]
    out = pd.DataFrame({"user_id": pairs["user_id"].to_numpy(),
                        "item_id": pairs["item_id"].to_numpy()})
    probs = (np.concatenate(chunks) if chunks
             else np.zeros((0, len(source.tasks)), np.float32))
    for t, task in enumerate(source.tasks):
        out[task] = probs[:, t]
    return out
