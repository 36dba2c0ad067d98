"""Checkpoints and weights on disk with safetensors: no pickle anywhere.

A training checkpoint is **one** safetensors file, so it is replaced atomically as a whole
(written to a temporary sibling, fsynced, renamed)::

    model.<name>                 every tensor of model.state_dict() (parameters and buffers)
    optim.<param>.<name>         every tensor of the optimiser state (Adam: step, exp_avg, ...)
    rng.torch                    torch's CPU generator state (uint8)
    header metadata (strings):
      "state"        JSON: the trainer's progress (epoch, batch, best metric, history, ...)
      "optim"        JSON: the optimiser's param_groups and non-tensor state entries
      "format"       "mgoe-checkpoint-1"

Weights-only files (``best.safetensors``) hold ``model.<name>`` tensors and a JSON "info" entry.
Loading uses :func:`safetensors.torch.load_file` only (never ``torch.load``).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from mgoe.errors import MgoeError

CHECKPOINT_FORMAT = "mgoe-checkpoint-1"
WEIGHTS_FORMAT = "mgoe-weights-1"


def _tensors_of(prefix: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    return {f"{prefix}{k}": v.detach().to("cpu").contiguous().clone() for k, v in values.items()}


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file's header."""
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


# ----------------------------------------------------------------------------- optimiser state


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (``<param>.<name>``) and a JSON-able rest."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
              for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                        rest: dict) -> None:
    """Load what :func:`optimizer_to_flat` produced into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        param_id, name = key.split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in rest["scalars"].items():
        state.setdefault(int(param_id), {}).update(entries)
    current = optimizer.state_dict()["param_groups"]
    if len(current) != len(rest["param_groups"]):
        raise MgoeError("the checkpoint's optimiser has a different number of parameter groups")
    groups = []
    for now, saved in zip(current, rest["param_groups"], strict=True):
        # JSON turned tuples (Adam's betas) into lists; give them back their type
        groups.append({k: tuple(v) if isinstance(now.get(k), tuple) else v for k, v in saved.items()})
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any]) -> None:
    """Write model, optimiser, torch RNG and the trainer ``state`` to one file, atomically."""
    optim_tensors, optim_rest = optimizer_to_flat(optimizer)
    tensors = _tensors_of("model.", model.state_dict())
    tensors.update(_tensors_of("optim.", optim_tensors))
    tensors["rng.torch"] = torch.get_rng_state().clone()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "state": json.dumps(state),
        "optim": json.dumps(optim_rest),
    }
    _atomic_save(tensors, Path(path), metadata)


def load_checkpoint(path: str | Path, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``, and torch's RNG); return ``state``."""
    path = Path(path)
    metadata = read_metadata(path)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise MgoeError(f"{path} is not an mgoe training checkpoint")
    tensors = load_file(str(path))
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    _load_model_state(model, model_state, path)
    if optimizer is not None:
        optim_tensors = {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}
        optimizer_from_flat(optimizer, optim_tensors, json.loads(metadata["optim"]))
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return json.loads(metadata["state"])


def save_weights(path: str | Path, model: nn.Module, info: dict[str, Any] | None = None) -> None:
    """Write the model's state dict (weights and buffers) to ``path``, atomically."""
    metadata = {"format": WEIGHTS_FORMAT, "info": json.dumps(info or {})}
    _atomic_save(_tensors_of("model.", model.state_dict()), Path(path), metadata)


def load_weights(path: str | Path, model: nn.Module) -> dict[str, Any]:
    """Load weights (from a weights file or a checkpoint) into ``model``; return its info."""
    path = Path(path)
    if not path.is_file():
        raise MgoeError(f"weights file {path} does not exist")
    metadata = read_metadata(path)
    tensors = load_file(str(path))
    _load_model_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    if metadata.get("format") == CHECKPOINT_FORMAT:
        return {"checkpoint_state": json.loads(metadata["state"])}
    return json.loads(metadata.get("info", "{}"))


def _load_model_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise MgoeError(
            f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # shape mismatch: weights of a differently sized model
        raise MgoeError(f"{path} does not fit this model: {str(exc).splitlines()[-1].strip()}") from None
