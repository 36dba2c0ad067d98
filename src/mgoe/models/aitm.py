"""AITM: Adaptive Information Transfer Multi-task framework (Xi et al., "Modeling the Sequential
Dependence among Audience Multi-step Conversions with Multi-task Learning in Targeted Display
Advertising", KDD 2021).

Tasks are in funnel order (``spec.tasks``, shallowest first). Each task has a tower encoder; the
AIT module lets task ``t`` take what it needs from task ``t − 1``'s representation::

    q_t = Tower_t(x)                                          [B, T, h]   (embeddings shared)
    z_1 = q_1
    p_{t-1} = ReLU(W^info_{t-1} z_{t-1} + b)                  transferred information
    for u ∈ {p_{t-1}, q_t}:  w_u = softmax_u( <h1_t(u), h2_t(u)> / √h )
    z_t = Σ_u w_u h3_t(u)                                     (h1, h2, h3: linear maps)
    ŷ_t = σ(w_tᵀ z_t + b_t)                                   logits [B, T]

Behavioural-expectation calibrator (a loss term; :meth:`AITM.auxiliary_loss`, which the trainer
adds when the model has it): later funnel stages should not be more likely than earlier ones::

    L_lc = α · Σ_{t≥2} mean_batch( max(ŷ_t − ŷ_{t−1}, 0) )          α = calibrator_weight

Uses only ids and side features. The chain over tasks is sequential by nature (``T`` steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mgoe.errors import MgoeError
from mgoe.models.base import Batch, ModelConfig, MultiTaskModel
from mgoe.models.blocks import FeatureEmbedding, GroupedLinear, StackedMLP, small_softmax
from mgoe.models.spec import ModelSpec


@dataclass
class AITMConfig(ModelConfig):
    """Hyper-parameters of :class:`AITM` (the paper's defaults where it gives them)."""

    tower_dims: tuple[int, ...] = (64, 32)
    """Hidden sizes of every task tower encoder; the last is the representation size ``h``."""
    calibrator_weight: float = 0.6
    """``α``, the weight of the behavioural-expectation calibrator (0.6 in the paper)."""

    def validate(self) -> None:
        super().validate()
        if self.calibrator_weight < 0:
            raise MgoeError(f"calibrator_weight must be >= 0, got {self.calibrator_weight}")


class _InformationTransfer(nn.Module):
    """AIT between two adjacent tasks: ``(z_prev, q) [B, h] -> z [B, h]`` (see module doc)."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.info = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout))
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.scale = math.sqrt(dim)

    def forward(self, previous: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        inputs = torch.stack([self.info(previous), own], dim=1)  # [B, 2, h]
        scores = (self.query(inputs) * self.key(inputs)).sum(-1) / self.scale  # [B, 2]
        weights = small_softmax(scores)
        return (weights.unsqueeze(-1) * self.value(inputs)).sum(1)


class AITM(MultiTaskModel):
    """Task towers chained by adaptive information transfer, plus the calibrator loss."""

    config_class = AITMConfig
    config: AITMConfig

    def __init__(self, spec: ModelSpec, config: AITMConfig) -> None:
        super().__init__(spec, config)
        c = config
        self.embedding = FeatureEmbedding(spec, c.embedding_dim, c.embedding_init_std)
        self.towers = StackedMLP(spec.num_tasks, self.embedding.output_dim, c.tower_dims,
                                 dropout=c.dropout, activation=c.activation,
                                 batch_norm=c.batch_norm)
        dim = self.towers.output_dim
        self.transfers = nn.ModuleList(
            _InformationTransfer(dim, c.dropout) for _ in range(spec.num_tasks - 1))
        self.heads = GroupedLinear(spec.num_tasks, dim, 1)

    def forward(self, batch: Batch) -> torch.Tensor:
        own = self.towers(self.embedding(batch).x)  # [B, T, h]
        z = [own[:, 0]]
        for step, transfer in enumerate(self.transfers):
            z.append(transfer(z[-1], own[:, step + 1]))
        return self.heads(torch.stack(z, dim=1)).squeeze(-1)

    def auxiliary_loss(self, batch: Batch, logits: torch.Tensor) -> torch.Tensor:
        """Calibrator ``α Σ_{t≥2} mean(max(ŷ_t − ŷ_{t−1}, 0))`` for ``logits [B, T]``."""
        probs = torch.sigmoid(logits)
        if probs.shape[1] < 2:
            return probs.new_zeros(())
        excess = torch.relu(probs[:, 1:] - probs[:, :-1])
        return self.config.calibrator_weight * excess.mean(0).sum()
