"""PLE: Progressive Layered Extraction (Tang et al., "Progressive Layered Extraction (PLE): A
Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020).

``L`` stacked CGC (Customized Gate Control) levels. Level ``l`` has ``m_t`` experts per task
and ``m_s`` shared experts; task ``t``'s gate mixes its own and the shared experts, and (below
the last level) a shared gate mixes all experts::

    level input: u_t^{(l)} per task, s^{(l)} shared          u_t^{(0)} = s^{(0)} = x  [B, Dx]
    A_t = {MLP_{t,j}(u_t)}_{j≤m_t},  S = {MLP_{s,j}(s)}_{j≤m_s}
    u_t^{(l+1)} = Σ_{e ∈ A_t ∪ S} softmax(G_t u_t)_e o_e                       [B, T, De]
    s^{(l+1)}   = Σ_{e ∈ A_1 ∪ … ∪ A_T ∪ S} softmax(G_s s)_e o_e  (not at the last level)
    ŷ_t = σ(MLP_t(u_t^{(L)}))                                                logits [B, T]

``num_levels = 1`` is CGC. All tasks' experts and gates of a level run as stacked modules.
Uses only ids and side features (no macro graph features).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mgoe.errors import MgoeError
from mgoe.models.base import Batch, ModelConfig, MultiTaskModel
from mgoe.models.blocks import FeatureEmbedding, StackedMLP, TaskGate
from mgoe.models.spec import ModelSpec


@dataclass
class PLEConfig(ModelConfig):
    """Hyper-parameters of :class:`PLE`."""

    num_levels: int = 2
    """Number of extraction levels ``L`` (1 = CGC)."""
    task_experts: int = 1
    """Task-specific experts per task and level ``m_t``."""
    shared_experts: int = 1
    """Shared experts per level ``m_s``."""
    expert_dims: tuple[int, ...] = (64, 32)
    """Hidden sizes of every expert MLP; the last is the expert output size ``De``."""
    tower_dims: tuple[int, ...] = (32,)
    """Hidden sizes of every task tower (a final linear layer gives the logit)."""

    def validate(self) -> None:
        super().validate()
        if self.num_levels < 1:
            raise MgoeError(f"num_levels must be >= 1, got {self.num_levels}")
        if self.task_experts < 1 or self.shared_experts < 0:
            raise MgoeError("PLE needs task_experts >= 1 and shared_experts >= 0")


class _ExtractionLevel(nn.Module):
    """One CGC level: ``(u [B, T, Din] or [B, Din], s [B, Din]) -> (u' [B, T, De], s')``."""

    def __init__(self, tasks: int, in_dim: int, config: PLEConfig, last: bool) -> None:
        super().__init__()
        c = config
        mlp = {"dropout": c.dropout, "activation": c.activation, "batch_norm": c.batch_norm}
        self.tasks, self.per_task, self.shared = tasks, c.task_experts, c.shared_experts
        self.task_experts = StackedMLP(tasks * c.task_experts, in_dim, c.expert_dims, **mlp)
        self.shared_experts = (
            StackedMLP(c.shared_experts, in_dim, c.expert_dims, **mlp)
            if c.shared_experts else None
        )
        self.task_gate = TaskGate(in_dim, c.task_experts + c.shared_experts, tasks)
        self.shared_gate = (
            None if last else TaskGate(in_dim, tasks * c.task_experts + c.shared_experts, 1)
        )
        self.output_dim = self.task_experts.output_dim

    def forward(self, task_input: torch.Tensor,
                shared_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if task_input.dim() == 3:  # one input per task -> one per task expert
            expert_input = task_input.repeat_interleave(self.per_task, dim=1)
        else:
            expert_input = task_input
        own = self.task_experts(expert_input)  # [B, T·m_t, De]
        batch = own.shape[0]
        per_task = own.view(batch, self.tasks, self.per_task, -1)
        if self.shared_experts is not None:
            shared = self.shared_experts(shared_input)  # [B, m_s, De]
            per_task = torch.cat(
                [per_task, shared.unsqueeze(1).expand(-1, self.tasks, -1, -1)], dim=2)
            everything = torch.cat([own, shared], dim=1)
        else:
            everything = own
        task_output = self.task_gate(per_task, task_input)
        shared_output = (
            None if self.shared_gate is None
            else self.shared_gate(everything, shared_input).squeeze(1)
        )
        return task_output, shared_output


class PLE(MultiTaskModel):
    """Progressive Layered Extraction: stacked CGC levels, one tower per task."""

    config_class = PLEConfig
    config: PLEConfig

    def __init__(self, spec: ModelSpec, config: PLEConfig) -> None:
        super().__init__(spec, config)
        c = config
        self.embedding = FeatureEmbedding(spec, c.embedding_dim, c.embedding_init_std)
        levels = []
        dim = self.embedding.output_dim
        for level in range(c.num_levels):
            levels.append(_ExtractionLevel(spec.num_tasks, dim, c, last=level == c.num_levels - 1))
            dim = levels[-1].output_dim
        self.levels = nn.ModuleList(levels)
        self.towers = StackedMLP(spec.num_tasks, dim, c.tower_dims, out_dim=1,
                                 dropout=c.dropout, activation=c.activation,
                                 batch_norm=c.batch_norm)

    def forward(self, batch: Batch) -> torch.Tensor:
        x = self.embedding(batch).x
        task_input, shared_input = x, x
        for level in self.levels:
            task_input, shared_input = level(task_input, shared_input)
        return self.towers(task_input).squeeze(-1)
