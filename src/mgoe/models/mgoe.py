"""MGOE: Macro Graph of Experts (arXiv 2506.10520; METHOD.md §5).

For a (user, item) pair with base input ``x`` (id + side-feature embeddings, optionally the
embeddings of the user's and item's own macro nodes)::

    Macro Graph Bottom
      o_t = MacroGraphExpert_t(x, n[R_t])          t = 1..T   task-specific macro experts
      o_s = MacroGraphExpert_s(x, n[S])            s = 1..S   shared experts, merged graph S
      o_p = MLP_p(x)                               p = 1..P   plain experts (optional)
    Gates (one per task, over all E = T + S + P experts)
      z_t = Σ_e softmax(G_t x)_e o_e
    Macro Prediction Tower (cross-task attention over the task-specific macro experts)
      c_t = Σ_{t'} softmax_{t'}(z_tᵀ W o_{t'} / √De) o_{t'}
      ŷ_t = σ(MLP_t([z_t ; c_t]))

where each macro graph expert attends, for each of the four macro neighbour vectors of its graph
(user 1st/2nd order, item 1st/2nd order), over the macro nodes with non-zero counts:
``α_k = softmax_k(log(n_k+1)/τ + (W_q e)ᵀ(W_k M_k)/√a)``, ``h = Σ_k α_k W_v M_k``, and feeds
``[x ; h¹_u ; h²_u ; h¹_i ; h²_i]`` to its MLP (:class:`~mgoe.models.blocks.MacroGraphExpert`).

Design choices [ours], each a config field of :class:`MGOEConfig`:

* The macro node embeddings ``M_U [KU, d]`` and ``M_I [KI, d]`` are **shared by all graphs**:
  the grouping (hence what a macro node is) is the same for every graph, so one embedding per
  macro node; each expert has its own ``W_q, W_k, W_v`` and thus its own view of them.
* All macro experts (task-specific and merged) are one stacked module: their attention and MLPs
  run as batched einsums over ``[B, E, K]`` — no Python loop over graphs.
* The gates read ``x``; the tower's ``W`` is shared by the tasks.

Cost per sample: the macro attention touches ``4 · E · K`` logits (``E`` macro experts, ``K``
macro nodes), so MGOE costs more than an MMoE of the same width, and more as ``K`` grows. On a
CPU core (B = 1024, T = 2, d = 16, default widths, forward + backward without the optimizer) it
measured about 3x an MMoE with as many experts at K = 64 and 5x at K = 256; with the dense Adam
update of 100k-row embedding tables included, about 1.5x at K = 64 and 2.2x at K = 256.
``released_macgnn_attention`` (no query term) is about 20% cheaper.

Shapes: batch as in :mod:`mgoe.models.spec` -> logits ``[B, T]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mgoe.errors import MgoeError
from mgoe.models.base import Batch, ModelConfig, MultiTaskModel, check_macro_spec
from mgoe.models.blocks import (
    QUERY_PAIRINGS,
    FeatureEmbedding,
    MacroCounts,
    MacroGraphExpert,
    MacroPredictionTower,
    PlainExpert,
    TaskGate,
)
from mgoe.models.spec import ModelSpec


@dataclass
class MGOEConfig(ModelConfig):
    """Hyper-parameters of :class:`MGOE` (defaults sized for CPU training)."""

    attention_dim: int = 16
    """``a``: size of the query/key projections of the macro attention."""
    value_dim: int = 16
    """``v``: size of each macro attention output ``h = Σ α_k W_v M_k``."""
    tau: float = 0.8
    """``τ``: temperature of the count prior ``log(n+1)/τ`` (MacGNN's default)."""
    mask_zero_counts: bool | None = None
    """Attend only over macro nodes with non-zero counts. None: on, except with
    ``released_macgnn_attention`` (whose code does not mask)."""
    attention_query: str = "same_type"
    """Which embedding queries each neighbour vector: ``same_type`` (item-macro vectors by the
    target item, user-macro vectors by the user; MacGNN's pairing) or ``owner`` (a node's
    vectors by its own embedding)."""
    expert_dims: tuple[int, ...] = (64, 32)
    """Hidden sizes of every expert MLP; the last is the expert output size ``De``."""
    num_merged_experts: int = 1
    """Shared macro experts on the merged graph ``S`` (each with its own parameters)."""
    num_plain_experts: int = 1
    """Plain MMoE experts on ``x`` alone."""
    tower_dims: tuple[int, ...] = (32,)
    """Hidden sizes of every task tower ``MLP_t`` (a final linear layer gives the logit)."""
    use_macro_node_embedding: bool = True
    """Append ``M_U[user_macro]`` and ``M_I[item_macro]`` (the pair's own macro nodes) to
    ``x``; this is what a cold user or item (untrained id embedding) still has."""
    use_merged_graph: bool = True
    """Ablation "no MTMG" when False: no shared experts on the merged graph ``S``."""
    task_specific_graphs: bool = True
    """Ablation "merged graph only" when False: no task-specific experts on the ``R_t``; the
    Macro Prediction Tower then attends over the merged-graph experts instead."""
    cross_task_tower: bool = True
    """Ablation "plain towers" when False: ``ŷ_t = MLP_t(z_t)``, no cross-task attention."""
    released_macgnn_attention: bool = False
    """Ablation: the macro attention of MacGNN's released code — no query term (its softmax
    is over a size-1 axis, i.e. constant), macro weights ``softmax(log(n+1)/τ)`` over all
    macro nodes, zeros included (unless ``mask_zero_counts`` is True)."""

    def validate(self) -> None:
        super().validate()
        if self.tau <= 0:
            raise MgoeError(f"tau must be positive, got {self.tau}")
        for name in ("attention_dim", "value_dim"):
            if getattr(self, name) <= 0:
                raise MgoeError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("num_merged_experts", "num_plain_experts"):
            if getattr(self, name) < 0:
                raise MgoeError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.attention_query not in QUERY_PAIRINGS:
            raise MgoeError(
                f"attention_query must be one of {QUERY_PAIRINGS}, got {self.attention_query!r}"
            )
        if not (self.task_specific_graphs or (self.use_merged_graph and self.num_merged_experts)):
            raise MgoeError(
                "MGOE without task-specific graphs and without merged-graph experts has no macro "
                "expert; use model 'mmoe' for an ids-only mixture of experts"
            )


class MGOE(MultiTaskModel):
    """MGOE: task-specific and merged macro graph experts, gates, Macro Prediction Tower."""

    config_class = MGOEConfig
    config: MGOEConfig

    def __init__(self, spec: ModelSpec, config: MGOEConfig) -> None:
        super().__init__(spec, config)
        check_macro_spec(spec, "mgoe")
        c = config
        d = c.embedding_dim
        self.embedding = FeatureEmbedding(spec, d, c.embedding_init_std)
        self.macro_user = nn.Parameter(torch.randn(spec.num_user_macro, d) * c.embedding_init_std)
        self.macro_item = nn.Parameter(torch.randn(spec.num_item_macro, d) * c.embedding_init_std)
        x_dim = self.embedding.output_dim + (2 * d if c.use_macro_node_embedding else 0)

        tasks = spec.num_tasks
        task_graphs = list(range(1, 1 + tasks)) if c.task_specific_graphs else []
        merged = [0] * c.num_merged_experts if c.use_merged_graph else []
        self.num_task_experts = len(task_graphs)
        self.num_merged_experts = len(merged)
        mlp = {"dropout": c.dropout, "activation": c.activation, "batch_norm": c.batch_norm}
        self.macro_experts = MacroGraphExpert(
            task_graphs + merged, d, x_dim, c.expert_dims,
            attention_dim=c.attention_dim, value_dim=c.value_dim, tau=c.tau,
            mode="released_macgnn" if c.released_macgnn_attention else "additive",
            mask_zero_counts=c.mask_zero_counts, query=c.attention_query, **mlp,
        )
        self.plain_experts = (
            PlainExpert(x_dim, c.expert_dims, c.num_plain_experts, **mlp)
            if c.num_plain_experts > 0 else None
        )
        num_experts = len(task_graphs) + len(merged) + c.num_plain_experts
        self.gate = TaskGate(x_dim, num_experts, tasks)
        self.tower = MacroPredictionTower(tasks, self.macro_experts.output_dim, c.tower_dims,
                                          cross_task=c.cross_task_tower, **mlp)

    def expert_names(self) -> list[str]:
        """Names of the experts in gate order, e.g. ``["task:click", "merged:0", "plain:0"]``."""
        names = [f"task:{t}" for t in self.spec.tasks][: self.num_task_experts]
        names += [f"merged:{i}" for i in range(self.num_merged_experts)]
        names += [f"plain:{i}" for i in range(self.config.num_plain_experts)]
        return names

    def macro_tables(self) -> list[torch.Tensor]:
        return [self.macro_user, self.macro_item]

    def _base_input(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embedded = self.embedding(batch)
        x = embedded.x
        if self.config.use_macro_node_embedding:
            x = torch.cat(
                [x, self.macro_user[batch["user_macro"]], self.macro_item[batch["item_macro"]]],
                dim=1,
            )
        return x, embedded.user, embedded.item

    def experts_and_gates(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(experts [B, E, De], gate weights [B, T, E], z [B, T, De])`` — for inspection."""
        x, user, item = self._base_input(batch)
        experts = self._experts(x, user, item, batch)
        return experts, self.gate.weights(x), self.gate(experts, x)

    def _experts(self, x: torch.Tensor, user: torch.Tensor, item: torch.Tensor,
                 batch: Batch) -> torch.Tensor:
        macro = self.macro_experts(x, user, item, MacroCounts.from_batch(batch),
                                   self.macro_user, self.macro_item)
        if self.plain_experts is None:
            return macro
        return torch.cat([macro, self.plain_experts(x)], dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        x, user, item = self._base_input(batch)
        experts = self._experts(x, user, item, batch)
        z = self.gate(experts, x)
        # The tower attends over the task-specific macro experts; over the merged-graph
        # experts when there are none (task_specific_graphs=False).
        macro_count = self.num_task_experts or self.num_merged_experts
        return self.tower(z, experts[:, :macro_count])
