"""Models: MGOE and the multi-task baselines, all built the same way.

>>> from mgoe.models import build_model
>>> model = build_model("mgoe", spec, {"embedding_dim": 32})   # doctest: +SKIP
>>> logits = model(batch)                                      # [B, T]

Every model is ``Model(spec, config)`` (see :mod:`mgoe.models.base` for the shared contract and
:mod:`mgoe.models.spec` for the batch); its config is a dataclass whose defaults are documented
field by field. :func:`build_model` fills a config from defaults plus overrides and rejects
unknown keys.
"""

from __future__ import annotations

from typing import Any

from mgoe.errors import MgoeError
from mgoe.models.aitm import AITM, AITMConfig
from mgoe.models.base import ModelConfig, MultiTaskModel, make_config
from mgoe.models.esmm import ESMM, ESMMConfig
from mgoe.models.macgnn import MacGNN, MacGNNConfig
from mgoe.models.mgoe import MGOE, MGOEConfig
from mgoe.models.mmoe import MMoE, MMoEConfig
from mgoe.models.ple import PLE, PLEConfig
from mgoe.models.shared_bottom import SharedBottom, SharedBottomConfig
from mgoe.models.spec import ModelSpec

MODELS: dict[str, type[MultiTaskModel]] = {
    "mgoe": MGOE,
    "shared_bottom": SharedBottom,
    "mmoe": MMoE,
    "ple": PLE,
    "esmm": ESMM,
    "aitm": AITM,
    "macgnn": MacGNN,
}
"""Model name -> model class (its config dataclass is ``cls.config_class``)."""

MACRO_MODELS = frozenset({"mgoe", "macgnn"})
"""Models that read the macro graph features of a batch."""


def _model_class(name: str) -> type[MultiTaskModel]:
    try:
        return MODELS[name]
    except KeyError:
        raise MgoeError(
            f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}"
        ) from None


def model_config_class(name: str) -> type[ModelConfig]:
    """The config dataclass of model ``name``; :class:`MgoeError` for an unknown name."""
    return _model_class(name).config_class


def build_config(name: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The config of model ``name``: defaults updated with ``overrides`` (validated)."""
    return make_config(model_config_class(name), overrides, name)


def build_model(name: str, spec: ModelSpec,
                overrides: dict[str, Any] | None = None) -> MultiTaskModel:
    """Build model ``name`` for ``spec`` from its default config updated with ``overrides``.

    Raises :class:`MgoeError` for an unknown model name (listing the known ones), an unknown
    override key (naming it and the model) or an invalid value.
    """
    return _model_class(name)(spec, build_config(name, overrides))


__all__ = [
    "AITM", "AITMConfig", "ESMM", "ESMMConfig", "MACRO_MODELS", "MGOE", "MGOEConfig", "MMoE",
    "MMoEConfig", "MODELS", "MacGNN", "MacGNNConfig", "ModelConfig", "ModelSpec",
    "MultiTaskModel", "PLE", "PLEConfig", "SharedBottom", "SharedBottomConfig", "build_config",
    "build_model", "model_config_class",
]
