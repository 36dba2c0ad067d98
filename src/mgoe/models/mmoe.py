"""MMoE: Multi-gate Mixture-of-Experts (Ma et al., "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", KDD 2018).

``E`` experts shared by all tasks; each task mixes them with its own softmax gate::

    x   = [e_user ; e_item ; e_features]                  [B, Dx]
    o_e = MLP_e(x)                                        [B, E, De]
    z_t = Σ_e softmax(G_t x)_e o_e                        [B, T, De]
    ŷ_t = σ(MLP_t(z_t))                                   logits [B, T]

Uses only ids and side features (no macro graph features).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mgoe.errors import MgoeError
from mgoe.models.base import Batch, ModelConfig, MultiTaskModel
from mgoe.models.blocks import FeatureEmbedding, PlainExpert, StackedMLP, TaskGate
from mgoe.models.spec import ModelSpec


@dataclass
class MMoEConfig(ModelConfig):
    """Hyper-parameters of :class:`MMoE`."""

    num_experts: int = 4
    """Number of shared experts ``E``."""
    expert_dims: tuple[int, ...] = (64, 32)
    """Hidden sizes of every expert MLP; the last is the expert output size ``De``."""
    tower_dims: tuple[int, ...] = (32,)
    """Hidden sizes of every task tower (a final linear layer gives the logit)."""

    def validate(self) -> None:
        super().validate()
        if self.num_experts < 1:
            raise MgoeError(f"num_experts must be >= 1, got {self.num_experts}")


class MMoE(MultiTaskModel):
    """Shared experts, one softmax gate and one tower per task."""

    config_class = MMoEConfig
    config: MMoEConfig

    def __init__(self, spec: ModelSpec, config: MMoEConfig) -> None:
        super().__init__(spec, config)
        c = config
        mlp = {"dropout": c.dropout, "activation": c.activation, "batch_norm": c.batch_norm}
        self.embedding = FeatureEmbedding(spec, c.embedding_dim, c.embedding_init_std)
        x_dim = self.embedding.output_dim
        self.experts = PlainExpert(x_dim, c.expert_dims, c.num_experts, **mlp)
        self.gate = TaskGate(x_dim, c.num_experts, spec.num_tasks)
        self.towers = StackedMLP(spec.num_tasks, self.experts.output_dim, c.tower_dims,
                                 out_dim=1, **mlp)

    def forward(self, batch: Batch) -> torch.Tensor:
        x = self.embedding(batch).x
        z = self.gate(self.experts(x), x)
        return self.towers(z).squeeze(-1)
