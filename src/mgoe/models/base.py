"""What every model shares: the config base class and the ``MultiTaskModel`` contract.

Every model (MGOE and each baseline) is ``Model(spec, config)`` with

* ``forward(batch) -> logits [B, T]`` (see :mod:`mgoe.models.spec` for the batch);
* ``predict_proba(batch) -> [B, T]``: ``sigmoid(forward(batch))`` unless the model overrides it;
* ``regularization_loss(batch) -> scalar``: ``embedding_l2`` times the squared norm of the
  embeddings this batch used (see :meth:`MultiTaskModel.regularization_loss`); the trainer adds
  it to the loss;
* optionally ``auxiliary_loss(batch, logits) -> scalar`` (AITM's calibrator), which the trainer
  adds to the loss when the method exists.

Constructors only store parameters and build layers; sizes come from the spec, hyper-parameters
from the config dataclass, whose defaults are documented field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from mgoe.errors import MgoeError
from mgoe.models.blocks import ACTIVATIONS
from mgoe.models.spec import ModelSpec

Batch = dict[str, torch.Tensor]


@dataclass
class ModelConfig:
    """Hyper-parameters shared by every model."""

    embedding_dim: int = 16
    """``d``: size of the user/item id embeddings and of each side-feature embedding."""
    embedding_init_std: float = 0.05
    """Std of the normal init of every embedding table. Not much smaller: embeddings of ~1e-4
    with Adam's tiny second moments end up as denormal floats, which are very slow on CPUs."""
    embedding_l2: float = 0.0
    """L2 weight on the embeddings a batch uses; read by :meth:`MultiTaskModel.regularization_loss`."""
    dropout: float = 0.0
    """Dropout after every hidden layer of every MLP."""
    batch_norm: bool = False
    """Batch normalisation after every hidden linear layer of every MLP."""
    activation: str = "relu"
    """Hidden activation of every MLP: relu, gelu, silu, tanh, leaky_relu or sigmoid."""

    def validate(self) -> None:
        """Raise :class:`MgoeError` naming the first invalid field."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_dims"):
                if not isinstance(value, tuple) or not all(
                    isinstance(v, int) and v > 0 for v in value
                ):
                    raise MgoeError(f"{f.name} must be a list of positive integers, got {value!r}")
        if self.embedding_dim <= 0:
            raise MgoeError(f"embedding_dim must be positive, got {self.embedding_dim}")
        if self.embedding_init_std <= 0:
            raise MgoeError(f"embedding_init_std must be positive, got {self.embedding_init_std}")
        if self.embedding_l2 < 0:
            raise MgoeError(f"embedding_l2 must be >= 0, got {self.embedding_l2}")
        if not 0.0 <= self.dropout < 1.0:
            raise MgoeError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise MgoeError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )


def make_config(config_class: type[ModelConfig], overrides: dict[str, Any] | None,
                model_name: str) -> ModelConfig:
    """``config_class`` defaults updated with ``overrides``; lists become tuples for tuple fields.

    Raises :class:`MgoeError` for a key the config does not have (naming key and model) and for
    an invalid value.
    """
    overrides = dict(overrides or {})
    known = {f.name: f for f in fields(config_class)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise MgoeError(
            f"unknown config key(s) {', '.join(map(repr, unknown))} for model {model_name!r}; "
            f"known keys: {', '.join(sorted(known))}"
        )
    defaults = config_class()
    for key, value in overrides.items():
        if isinstance(getattr(defaults, key), tuple) and isinstance(value, list):
            overrides[key] = tuple(value)
    config = config_class(**overrides)
    config.validate()
    return config


class MultiTaskModel(nn.Module):
    """Base class: stores ``spec`` and ``config``; sigmoid ``predict_proba``; L2 on embeddings.

    Subclasses set ``config_class`` and build an ``embedding`` (:class:`FeatureEmbedding`);
    macro models also list their macro-node embedding tables in ``macro_tables()``.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, spec: ModelSpec, config: ModelConfig) -> None:
        super().__init__()
        if spec.num_tasks < 1:
            raise MgoeError("the model spec has no tasks")
        if not isinstance(config, self.config_class):
            raise MgoeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        config.validate()
        self.spec = spec
        self.config = config

    @property
    def num_tasks(self) -> int:
        return self.spec.num_tasks

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        """Probabilities ``[B, T]``: ``sigmoid(forward(batch))``."""
        return torch.sigmoid(self.forward(batch))

    def macro_tables(self) -> list[torch.Tensor]:
        """Macro-node embedding tables (regularised in full: they are small and always used)."""
        return []

    def regularization_loss(self, batch: Batch) -> torch.Tensor:
        """``embedding_l2 · (Σ_rows ‖e‖² / B + Σ ‖M‖²)``: a scalar.

        The first sum runs over the id and side-feature embedding rows of this batch (mini-batch
        regularisation: a table row is only penalised when it is used, so the cost per step does
        not grow with the number of users); the second over the macro-node tables.
        """
        device = next(self.parameters()).device
        if self.config.embedding_l2 == 0.0:
            return torch.zeros((), device=device)
        used = self.embedding.squared_norm(batch)
        macro = sum((table.pow(2).sum() for table in self.macro_tables()),
                    torch.zeros((), device=device))
        return self.config.embedding_l2 * (used + macro)


def check_macro_spec(spec: ModelSpec, model_name: str) -> None:
    """A macro model needs the merged graph plus one graph per task (``G = 1 + T``)."""
    if not spec.has_macro:
        raise MgoeError(
            f"model {model_name!r} needs macro graph features, but the spec has no graphs "
            "(build the macro graphs for this dataset first)"
        )
    if len(spec.graphs) != 1 + spec.num_tasks:
        raise MgoeError(
            f"model {model_name!r} expects 1 + T = {1 + spec.num_tasks} graphs "
            f"(merged, then one per task), the spec has {len(spec.graphs)}: {spec.graphs}"
        )
    if spec.num_user_macro < 1 or spec.num_item_macro < 1:
        raise MgoeError("num_user_macro and num_item_macro must be >= 1")
