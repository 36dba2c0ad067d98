"""Training configuration: one dataclass, loaded from YAML, TOML or JSON and validated once.

Every field has a default and a one-line doc (``metadata["doc"]``); :func:`config_template`
prints them as a commented YAML file. A config file holds a flat mapping of these fields; the
model's own hyper-parameters go in the ``model_config`` mapping (validated by the model
registry)::

    # run.yaml
    model: mgoe
    model_config: {embedding_dim: 32, dropout: 0.1}
    epochs: 20
    lr: 0.001
    task_weights: [1.0, 2.0]

Loading rejects an unknown key (naming the key and the file) and a value of the wrong type
(naming the key, the expected type and the value). A YAML value such as ``1e-3`` (a string to
YAML 1.1) is accepted for a float field.
"""

from __future__ import annotations

import json
import re
import tomllib
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mgoe.errors import MgoeError

EARLY_STOPPING_METRICS = ("auc", "gauc", "logloss")
"""Valid-split metrics the early-stopping criterion can use (``logloss``: lower is better)."""


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass
class TrainConfig:
    """How to train one model on one dataset (see the module docstring for the file format)."""

    model: str = field(default="mgoe", metadata=_doc(
        "model name: mgoe, mmoe, ple, shared_bottom, esmm, aitm or macgnn"))
    model_config: dict[str, Any] = field(default_factory=dict, metadata=_doc(
        "overrides of the model's hyper-parameters (its config dataclass), e.g. {embedding_dim: 32}"))
    batch_size: int = field(default=1024, metadata=_doc("training samples per optimiser step"))
    eval_batch_size: int | None = field(default=None, metadata=_doc(
        "samples per batch when evaluating or predicting; None: 4 x batch_size"))
    epochs: int = field(default=10, metadata=_doc("maximum number of passes over the training split"))
    max_batches_per_epoch: int | None = field(default=None, metadata=_doc(
        "cap on optimiser steps per epoch: an epoch trains the first N batches of its own "
        "shuffle, so successive epochs see different rows (a fixed budget of samples per run); "
        "None: the whole training split"))
    lr: float = field(default=1e-3, metadata=_doc("Adam learning rate"))
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata=_doc(
        "Adam's (beta1, beta2)"))
    adam_eps: float = field(default=1e-8, metadata=_doc("Adam's epsilon"))
    grad_clip_norm: float | None = field(default=None, metadata=_doc(
        "clip the global gradient norm to this value before each step; None: no clipping"))
    l2_embedding: float = field(default=1e-6, metadata=_doc(
        "L2 weight on the embedding rows each batch uses (plus the small macro-node tables); "
        "passed to the model as its embedding_l2 - set it here, not in model_config"))
    task_weights: list[float] | None = field(default=None, metadata=_doc(
        "loss weight lambda_t per task in funnel order; None: 1.0 for every task"))
    early_stopping_metric: str = field(default="auc", metadata=_doc(
        "valid-split metric that selects the best epoch: auc, gauc or logloss averaged over "
        "tasks, or 'metric:task' for one task (e.g. auc:buy); the test split is never used"))
    patience: int = field(default=2, metadata=_doc(
        "stop after this many epochs without improvement of the early-stopping metric; 0: never"))
    min_delta: float = field(default=0.0, metadata=_doc(
        "an epoch counts as an improvement only if it beats the best by more than this"))
    seed: int = field(default=0, metadata=_doc(
        "seed of the model initialisation, the shuffles (seed, epoch) and dropout (seed, epoch, batch)"))
    num_threads: int | None = field(default=None, metadata=_doc(
        "torch CPU threads during training (restored afterwards); None: torch's default. "
        "On a shared machine set it to the cores you own: oversubscribed threads are many times slower"))
    flush_denormal: bool = field(default=True, metadata=_doc(
        "flush denormal floats to zero (torch.set_flush_denormal, process-wide, left on); "
        "denormals are very slow on CPUs"))
    device: str = field(default="auto", metadata=_doc(
        "torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N"))
    log_every: int = field(default=100, metadata=_doc(
        "write the running training loss to log.txt every this many batches; 0: only per epoch"))
    checkpoint_every_batches: int = field(default=0, metadata=_doc(
        "also checkpoint every this many batches within an epoch (0: off); a checkpoint is "
        "always written at every epoch end"))
    checkpoint_every_minutes: float = field(default=10.0, metadata=_doc(
        "also checkpoint within an epoch when this many minutes passed since the last one (0: off)"))

    # ------------------------------------------------------------------ validation

    def validate(self, source: str = "the training config") -> None:
        """Check types and ranges; :class:`MgoeError` naming the field (and ``source``)."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise MgoeError(
                    f"{source}: {f.name} must be {_type_name(hints[f.name])}, got {value!r}"
                )

        def bad(name: str, requirement: str) -> MgoeError:
            return MgoeError(f"{source}: {name} must be {requirement}, got {getattr(self, name)!r}")

        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise bad(name, "at least 1")
        if self.max_batches_per_epoch is not None and self.max_batches_per_epoch < 1:
            raise bad("max_batches_per_epoch", "at least 1 (or null)")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise bad("eval_batch_size", "at least 1 (or null)")
        if not self.lr > 0:
            raise bad("lr", "positive")
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise bad("adam_betas", "two numbers in [0, 1)")
        if not self.adam_eps > 0:
            raise bad("adam_eps", "positive")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise bad("grad_clip_norm", "positive (or null)")
        if self.l2_embedding < 0:
            raise bad("l2_embedding", ">= 0")
        if self.task_weights is not None and any(w < 0 for w in self.task_weights):
            raise bad("task_weights", "non-negative numbers")
        metric = self.early_stopping_metric.split(":", 1)[0]
        if metric not in EARLY_STOPPING_METRICS:
            raise bad("early_stopping_metric",
                      f"one of {', '.join(EARLY_STOPPING_METRICS)} (optionally ':task')")
        for name in ("patience", "log_every", "checkpoint_every_batches"):
            if getattr(self, name) < 0:
                raise bad(name, ">= 0")
        if self.min_delta < 0:
            raise bad("min_delta", ">= 0")
        if self.checkpoint_every_minutes < 0:
            raise bad("checkpoint_every_minutes", ">= 0")
        if self.num_threads is not None and self.num_threads < 1:
            raise bad("num_threads", "at least 1 (or null)")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise bad("device", "auto, cpu, cuda, cuda:N or mps")
        if self.model == "":
            raise bad("model", "a model name")

    def check_tasks(self, tasks: list[str]) -> None:
        """Check the fields that depend on the dataset's tasks (weights, early-stopping task)."""
        if self.task_weights is not None and len(self.task_weights) != len(tasks):
            raise MgoeError(
                f"task_weights has {len(self.task_weights)} values but the dataset has "
                f"{len(tasks)} tasks ({', '.join(tasks)})"
            )
        if ":" in self.early_stopping_metric:
            task = self.early_stopping_metric.split(":", 1)[1]
            if task not in tasks:
                raise MgoeError(
                    f"early_stopping_metric names task {task!r}, but the dataset's tasks are "
                    f"{', '.join(tasks)}"
                )

    def weights(self, num_tasks: int) -> list[float]:
        """``λ_t`` for every task."""
        return list(self.task_weights) if self.task_weights is not None else [1.0] * num_tasks

    @property
    def resolved_eval_batch_size(self) -> int:
        return self.eval_batch_size or 4 * self.batch_size

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "the training config") -> TrainConfig:
        """Build and validate a config from a mapping; ``source`` names it in error messages."""
        if not isinstance(values, dict):
            raise MgoeError(f"{source}: expected a mapping of config keys, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in values if k not in known)
        if unknown:
            raise MgoeError(
                f"{source}: unknown config key(s) {', '.join(map(repr, unknown))}; "
                f"known keys: {', '.join(sorted(known))}"
            )
        hints = typing.get_type_hints(cls)
        coerced = {key: _coerce(value, hints[key]) for key, value in values.items()}
        for key, value in coerced.items():
            if not _matches(value, hints[key]):
                raise MgoeError(
                    f"{source}: {key} must be {_type_name(hints[key])}, got {values[key]!r}"
                )
        config = cls(**coerced)
        config.validate(source)
        return config

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with ``changes`` applied (``None`` values are ignored)."""
        values = self.to_dict()
        values.update({k: v for k, v in changes.items() if v is not None})
        return TrainConfig.from_dict(values)


def load_config(path: str | Path) -> TrainConfig:
    """Read a :class:`TrainConfig` from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise MgoeError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    text = path.read_text()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
            values = {} if values is None else values
        elif suffix == ".toml":
            values = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            raise MgoeError(f"config file {path}: unknown format {suffix!r}; use .yaml, .toml or .json")
    except MgoeError:
        raise
    except Exception as exc:  # the parsers' own error types differ; all mean "not parseable"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MgoeError(f"config file {path} could not be parsed: {first_line}") from None
    return TrainConfig.from_dict(values, source=f"config file {path}")


def resolve_config(config: TrainConfig | str | Path | dict[str, Any] | None) -> TrainConfig:
    """A :class:`TrainConfig` from an instance, a file path, a mapping or None (defaults)."""
    if config is None:
        return TrainConfig()
    if isinstance(config, TrainConfig):
        config.validate()
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    return load_config(config)


def config_template() -> str:
    """The default config as YAML, every field preceded by its doc comment."""
    import yaml

    lines = ["# mgoe training config (all keys optional; these are the defaults)"]
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        lines.append(f"# {f.metadata['doc']}")
        dumped = yaml.safe_dump({f.name: getattr(defaults, f.name)}, default_flow_style=True,
                                sort_keys=False).strip()
        lines.append(dumped[1:-1] if dumped.startswith("{") else dumped)
    return "\n".join(lines) + "\n"


def field_defaults() -> dict[str, Any]:
    """Field name -> default value."""
    out = {}
    for f in fields(TrainConfig):
        out[f.name] = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
    return out


# ----------------------------------------------------------------------------- type checks

_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value: Any, annotation: Any) -> Any:
    """Lenient conversions a config file needs: '1e-3' (YAML 1.1 string) and ints as floats."""
    if _accepts(annotation, float) and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)
    if _accepts(annotation, float) and isinstance(value, int) and not isinstance(value, bool) \
            and not _accepts(annotation, int):
        return float(value)
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(annotation):
            if typing.get_origin(arg) is list and isinstance(value, list | tuple):
                return [_coerce(v, typing.get_args(arg)[0]) for v in value]
    if origin is list and isinstance(value, list | tuple):
        return [_coerce(v, typing.get_args(annotation)[0]) for v in value]
    return value


def _accepts(annotation: Any, kind: type) -> bool:
    if annotation is kind:
        return True
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        return kind in typing.get_args(annotation)
    return False


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is Any:
        return True
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(annotation)
        return isinstance(value, dict) and all(
            _matches(k, key) and _matches(v, item) for k, v in value.items())
    raise TypeError(f"unsupported annotation {annotation!r}")  # a programming error


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        optional = type(None) in typing.get_args(annotation)
        return " or ".join(names) + (" or null" if optional else "")
    if origin is list:
        item = typing.get_args(annotation)[0]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        return f"a list of {plural.get(item, _type_name(item))}"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))
