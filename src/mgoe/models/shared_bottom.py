"""Shared-Bottom multi-task model (Caruana, "Multitask Learning", Machine Learning 28, 1997).

One bottom network is shared by every task and each task has its own tower::

    x   = [e_user ; e_item ; e_features]                  [B, Dx]
    b   = MLP_bottom(x)                                   [B, Db]
    ŷ_t = σ(MLP_t(b))                                     logits [B, T]

Uses only ids and side features (no macro graph features).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mgoe.models.base import Batch, ModelConfig, MultiTaskModel
from mgoe.models.blocks import MLP, FeatureEmbedding, StackedMLP
from mgoe.models.spec import ModelSpec


@dataclass
class SharedBottomConfig(ModelConfig):
    """Hyper-parameters of :class:`SharedBottom`."""

    bottom_dims: tuple[int, ...] = (128, 64)
    """Hidden sizes of the shared bottom MLP."""
    tower_dims: tuple[int, ...] = (32,)
    """Hidden sizes of every task tower (a final linear layer gives the logit)."""


class SharedBottom(MultiTaskModel):
    """Shared bottom MLP, one tower per task."""

    config_class = SharedBottomConfig
    config: SharedBottomConfig

    def __init__(self, spec: ModelSpec, config: SharedBottomConfig) -> None:
        super().__init__(spec, config)
        c = config
        mlp = {"dropout": c.dropout, "activation": c.activation, "batch_norm": c.batch_norm}
        self.embedding = FeatureEmbedding(spec, c.embedding_dim, c.embedding_init_std)
        self.bottom = MLP(self.embedding.output_dim, c.bottom_dims, **mlp)
        self.towers = StackedMLP(spec.num_tasks, self.bottom.output_dim, c.tower_dims,
                                 out_dim=1, **mlp)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.towers(self.bottom(self.embedding(batch).x)).squeeze(-1)
