"""MacGNN: Macro Graph Neural Network (Chen et al., "Macro Graph Neural Networks for Online
Billion-Scale Recommender Systems", WWW 2024; code: github.com/YuanchenBei/MacGNN), with one
tower per task for multi-task data.

For one graph (config ``graph``), the user and item are described by their macro neighbour
counts; each count vector is aggregated over the macro node embeddings and concatenated with
the id and side-feature embeddings::

    w    = softmax_k( log(n_k + 1)/τ )                     macro weights (non-zero k by default)
    h    = Σ_k w_k · a_k · W_v M_k                          a_k: attention weight
    h¹_u over M_I,  h²_u over M_U,  h¹_i over M_U,  h²_i over M_I
    ŷ_t  = σ(MLP_t([x ; h¹_u ; h²_u ; h¹_i ; h²_i]))       logits [B, T]

Attention (``released_attention``):

* True (default), **as in the released code**: its ``NeighborAggregation`` takes the softmax of
  the query–key scores over a size-1 axis, so ``a_k = 1`` and ``h = Σ_k w_k W_v M_k`` (the
  projections ``W_q, W_k`` have no effect and are not built).
  The released code also does not mask zero counts (``w`` over all ``K`` macro nodes); set
  ``mask_zero_counts=False`` to reproduce that exactly. The default masks them (METHOD.md §4).
* False: a working attention, ``softmax_k(log(n_k+1)/τ + (W_q e)ᵀ(W_k M_k)/√a)``, with the
  code's query pairing (item-macro vectors queried by the target item embedding, user-macro
  vectors by the user embedding).

As in the released code, one aggregator (``W_q, W_k, W_v``) serves all neighbour vectors over
item macro nodes (user 1st order, item 2nd order) and one all vectors over user macro nodes; the
value size is ``2d``. Not reproduced: the "recent behaviours" sequences (the batch contract has
none) and the Dice activation (the towers use ``activation``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mgoe.errors import MgoeError
from mgoe.models.base import Batch, ModelConfig, MultiTaskModel, check_macro_spec
from mgoe.models.blocks import FeatureEmbedding, MacroAttention, MacroCounts, StackedMLP
from mgoe.models.spec import ModelSpec

GRAPH_CHOICES = ("first_task", "merged", "all")


@dataclass
class MacGNNConfig(ModelConfig):
    """Hyper-parameters of :class:`MacGNN` (released-code values where it has them)."""

    tau: float = 0.8
    """``τ`` of the macro weights (the released default)."""
    released_attention: bool = True
    """Reproduce the released code's constant attention (see the module docstring)."""
    mask_zero_counts: bool = True
    """Macro weights over the non-zero macro nodes only (False: the released code)."""
    graph: str = "first_task"
    """Which macro graph to read: ``first_task`` (``R_1``, the shallowest task's graph, as
    MacGNN models the click graph), ``merged`` (``S``), or ``all`` (every graph, each with its
    own aggregators, outputs concatenated)."""
    attention_dim: int | None = None
    """Query/key size (None: ``2d``, as released)."""
    value_dim: int | None = None
    """Aggregated vector size (None: ``2d``, as released)."""
    tower_dims: tuple[int, ...] = (200, 80)
    """Hidden sizes of every task tower (the released MLP: 200, 80, then the logit)."""

    def validate(self) -> None:
        super().validate()
        if self.tau <= 0:
            raise MgoeError(f"tau must be positive, got {self.tau}")
        if self.graph not in GRAPH_CHOICES:
            raise MgoeError(f"graph must be one of {GRAPH_CHOICES}, got {self.graph!r}")
        for name in ("attention_dim", "value_dim"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise MgoeError(f"{name} must be positive, got {value}")


class MacGNN(MultiTaskModel):
    """MacGNN's macro aggregation on one graph (or all), with one tower per task."""

    config_class = MacGNNConfig
    config: MacGNNConfig

    def __init__(self, spec: ModelSpec, config: MacGNNConfig) -> None:
        super().__init__(spec, config)
        check_macro_spec(spec, "macgnn")
        c = config
        d = c.embedding_dim
        self.embedding = FeatureEmbedding(spec, d, c.embedding_init_std)
        self.macro_user = nn.Parameter(torch.randn(spec.num_user_macro, d) * c.embedding_init_std)
        self.macro_item = nn.Parameter(torch.randn(spec.num_item_macro, d) * c.embedding_init_std)
        graphs = {"first_task": [1], "merged": [0], "all": list(range(len(spec.graphs)))}[c.graph]
        self.register_buffer("graph_index", torch.tensor(graphs, dtype=torch.long),
                             persistent=False)

        def aggregator() -> MacroAttention:
            return MacroAttention(
                d, len(graphs), attention_dim=c.attention_dim or 2 * d,
                value_dim=c.value_dim or 2 * d, tau=c.tau,
                mode="count_only" if c.released_attention else "additive",
                mask_zero_counts=c.mask_zero_counts,
            )

        self.user_aggregator = aggregator()  # over user macro nodes
        self.item_aggregator = aggregator()  # over item macro nodes
        in_dim = self.embedding.output_dim + 4 * len(graphs) * self.user_aggregator.value_dim
        self.towers = StackedMLP(spec.num_tasks, in_dim, c.tower_dims, out_dim=1,
                                 dropout=c.dropout, activation=c.activation,
                                 batch_norm=c.batch_norm)

    def macro_tables(self) -> list[torch.Tensor]:
        return [self.macro_user, self.macro_item]

    def forward(self, batch: Batch) -> torch.Tensor:
        embedded = self.embedding(batch)
        user, item = embedded.user, embedded.item
        counts = MacroCounts.from_batch(batch)

        def pick(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.index_select(1, self.graph_index)

        parts = [
            self.item_aggregator(pick(counts.user_first), item, self.macro_item),
            self.user_aggregator(pick(counts.user_second), user, self.macro_user),
            self.user_aggregator(pick(counts.item_first), user, self.macro_user),
            self.item_aggregator(pick(counts.item_second), item, self.macro_item),
        ]  # each [B, G', v]
        x = torch.cat([embedded.x, *(p.flatten(1) for p in parts)], dim=1)
        return self.towers(x).squeeze(-1)
