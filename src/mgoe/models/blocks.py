"""Building blocks shared by MGOE and the baselines, each with its equation and tensor shapes.

Notation: ``B`` batch, ``T`` tasks, ``G`` graphs, ``E`` experts (or any stack of independent
modules), ``K`` macro nodes, ``d`` embedding size, ``Dx`` base-input size, ``De`` expert output.

Stacked modules (:class:`GroupedLinear`, :class:`StackedMLP`, :class:`MacroAttention`,
:class:`TaskGate`, ...) hold ``E`` independent parameter sets in one tensor and evaluate all of
them in one batched ``einsum``, so the cost of many experts / graphs / tasks is a few large
matrix products rather than a Python loop of small ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from mgoe.models.spec import ModelSpec

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}

ATTENTION_MODES = ("additive", "count_only", "released_macgnn")
QUERY_PAIRINGS = ("same_type", "owner")
ABSENT_PENALTY = 1e4
"""Subtracted from the attention logit of a macro node with a zero count (weight exp(−1e4) = 0)."""


def small_softmax(x: torch.Tensor) -> torch.Tensor:
    """``softmax`` over a short last axis (gates: a few experts or tasks).

    Same values as ``torch.softmax(x, -1)``, several times faster on CPU when the last axis
    is short, where the fused kernel is inefficient; use ``torch.softmax`` for long axes.
    """
    exp = torch.exp(x - x.amax(dim=-1, keepdim=True))
    return exp / exp.sum(dim=-1, keepdim=True)


def _uniform_(tensor: torch.Tensor, fan_in: int) -> torch.Tensor:
    """``U(-1/√fan_in, 1/√fan_in)``: the scale ``nn.Linear`` uses, for stacked weights."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


class MLP(nn.Module):
    """A multi-layer perceptron.

    ``h_0 = x``; for every hidden size ``h_{l+1} = dropout(act(BN(W_l h_l + b_l)))``; then, if
    ``out_dim`` is given, a final plain linear layer ``y = W h_L + b`` (no activation: logits).

    Shapes: ``[..., in_dim] -> [..., out_dim or hidden_dims[-1] or in_dim]``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for hidden in hidden_dims:
            layers.append(nn.Linear(dim, hidden))
            if batch_norm:
                layers.append(_FlatBatchNorm(hidden))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            dim = hidden
        if out_dim is not None:
            layers.append(nn.Linear(dim, out_dim))
            dim = out_dim
        self.layers = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _FlatBatchNorm(nn.Module):
    """``BatchNorm1d`` over the last axis of a tensor with any number of leading axes."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return self.norm(x.reshape(-1, shape[-1])).reshape(shape)


class GroupedLinear(nn.Module):
    """``E`` independent linear maps evaluated at once: ``y_e = x_e W_e + b_e``.

    ``weight`` ``[E, in, out]``, ``bias`` ``[E, out]``. Input ``[B, E, in]`` (one input per
    group) or ``[B, in]`` (the same input for every group); output ``[B, E, out]``.
    """

    def __init__(self, groups: int, in_dim: int, out_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.groups, self.in_dim, self.out_dim = groups, in_dim, out_dim
        self.weight = nn.Parameter(_uniform_(torch.empty(groups, in_dim, out_dim), in_dim))
        self.bias = (
            nn.Parameter(_uniform_(torch.empty(groups, out_dim), in_dim)) if bias else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            # One [B, in] x [in, E·out] product, already laid out [B, E, out].
            weight = self.weight.transpose(0, 1).reshape(self.in_dim, -1)
            y = (x @ weight).view(x.shape[0], self.groups, self.out_dim)
        else:
            y = torch.einsum("bei,eio->beo", x, self.weight)
        return y if self.bias is None else y + self.bias


class StackedMLP(nn.Module):
    """``E`` independent :class:`MLP` s with the same layer sizes, evaluated in one pass.

    Group ``e`` computes exactly ``MLP_e(x_e)`` with its own weights (layer ``l`` of group ``e``
    is ``weight[e]`` of the ``l``-th :class:`GroupedLinear`). Batch norm, if on, normalises every
    (group, unit) separately. Shapes: ``[B, E, in]`` or ``[B, in]`` (shared input) ``->
    [B, E, out]``.
    """

    def __init__(
        self,
        groups: int,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.groups = groups
        layers: list[nn.Module] = []
        dim = in_dim
        for hidden in hidden_dims:
            layers.append(GroupedLinear(groups, dim, hidden))
            if batch_norm:
                layers.append(_GroupBatchNorm(groups, hidden))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            dim = hidden
        if out_dim is not None:
            layers.append(GroupedLinear(groups, dim, out_dim))
            dim = out_dim
        if not layers:
            raise ValueError("StackedMLP needs at least one layer")
        self.layers = nn.Sequential(*layers)
        self.output_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _GroupBatchNorm(nn.Module):
    """``BatchNorm1d`` over ``E · D`` features of a ``[B, E, D]`` tensor."""

    def __init__(self, groups: int, features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(groups * features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, groups, features = x.shape
        return self.norm(x.reshape(batch, groups * features)).reshape(batch, groups, features)


class EmbeddedInput(NamedTuple):
    """Output of :class:`FeatureEmbedding`."""

    x: torch.Tensor
    """``[B, Dx]``: ``[e_user ; e_item ; e_f1 ; … ; e_fF]``."""
    user: torch.Tensor
    """``[B, d]``: user id embedding ``e_u``."""
    item: torch.Tensor
    """``[B, d]``: item id embedding ``e_i``."""


class FeatureEmbedding(nn.Module):
    """Id and side-feature embeddings, concatenated into the base input ``x``.

    ``x = [E_U[u] ; E_I[i] ; E_F[f_1] ; … ; E_F[f_F]]`` with ``F = Fu + Fi + Fc`` side features
    (user, item, then context columns, in batch order). All side features share one table
    ``E_F`` with a row offset per feature (one lookup for all of them); code ``0`` (missing)
    embeds to the zero vector and its row receives no gradient.

    Shapes: ``user``, ``item`` ``[B]``; ``user_features`` ``[B, Fu]`` (etc.) ``->
    x [B, (2 + F)·d]``, ``user``/``item`` embeddings ``[B, d]``.
    Init: ``N(0, init_std²)``.
    """

    FEATURE_KEYS = ("user_features", "item_features", "context_features")

    def __init__(self, spec: ModelSpec, dim: int, init_std: float = 0.05) -> None:
        super().__init__()
        self.dim = dim
        self.user = nn.Embedding(spec.num_users, dim)
        self.item = nn.Embedding(spec.num_items, dim)
        self.feature_counts = (
            len(spec.user_feature_sizes),
            len(spec.item_feature_sizes),
            len(spec.context_feature_sizes),
        )
        sizes = [*spec.user_feature_sizes, *spec.item_feature_sizes, *spec.context_feature_sizes]
        self.num_features = len(sizes)
        offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0) if sizes else None
        self.register_buffer("offsets", offsets, persistent=False)
        self.features = nn.Embedding(sum(sizes), dim) if sizes else None
        for table in self.tables():
            nn.init.normal_(table.weight, std=init_std)
        self.output_dim = (2 + self.num_features) * dim

    def tables(self) -> list[nn.Embedding]:
        return [t for t in (self.user, self.item, self.features) if t is not None]

    def _side(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """``[B, F, d]`` side-feature embeddings (zero for code 0), or None without features."""
        if self.features is None:
            return None
        codes = torch.cat(
            [batch[key] for key, count in zip(self.FEATURE_KEYS, self.feature_counts, strict=True)
             if count > 0],
            dim=1,
        ).long()
        embedded = self.features(codes + self.offsets)
        return embedded * (codes > 0).unsqueeze(-1).to(embedded.dtype)

    def forward(self, batch: dict[str, torch.Tensor]) -> EmbeddedInput:
        user = self.user(batch["user"])
        item = self.item(batch["item"])
        parts = [user, item]
        side = self._side(batch)
        if side is not None:
            parts.append(side.flatten(1))
        return EmbeddedInput(torch.cat(parts, dim=1), user, item)

    def squared_norm(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``Σ ‖e‖² / B`` over every embedding row this batch looks up (a scalar)."""
        embedded = self.forward(batch).x
        return embedded.pow(2).sum() / embedded.shape[0]


class MacroAttention(nn.Module):
    """Attention of a node over the macro nodes it has neighbours in, with a count prior.

    For counts ``n ∈ R^K`` (weight of the node's neighbours in each macro node), macro node
    embeddings ``M ∈ R^{K×d}`` and a query embedding ``e ∈ R^d``::

        mode="additive" (MGOE, METHOD.md §5; the default):
            α_k = softmax_{k: n_k > 0}( log(n_k + 1)/τ + (W_q e)ᵀ(W_k M_k)/√a )
        mode="count_only" (MacGNN's macro weights; no query term, no W_q / W_k):
            α_k = softmax_{k: n_k > 0}( log(n_k + 1)/τ )
        mode="released_macgnn" (MacGNN's released code, model/macgnn.py):
            α_k = softmax_{all k}( log(n_k + 1)/τ )
        output:  h = Σ_k α_k W_v M_k

    MacGNN's released ``NeighborAggregation`` computes a query–key score per macro node but
    takes its softmax over a size-1 axis, so the attention weight is the constant 1 and what
    remains is ``Σ_k w_k · W_v M_k`` with the macro weights ``w = softmax(log(n+1)/τ)`` taken
    over *all* ``K`` nodes, zeros included (an all-zero row gives the uniform mean of
    ``W_v M_k``). ``released_macgnn`` reproduces exactly that; it is ``count_only`` without the
    zero mask. ``mask_zero_counts`` overrides the mask for any mode (default: on, except for
    ``released_macgnn``). With the mask, a row whose counts are all zero outputs the zero vector;
    counts ``<= 0`` count as absent (without it, negative counts are clamped to 0); counts must
    be ``> -1`` (the data pipeline guarantees ``>= 0`` up to rounding).

    Cost: ``O(B·E·K·(a + v))`` multiply-adds plus about ten elementwise passes over
    ``[B, E, K]`` (count prior, mask, softmax), which dominate on CPU.

    ``E`` independent parameter sets (``W_q, W_k ∈ R^{E×d×a}``, ``W_v ∈ R^{E×d×v}``; one per
    graph or expert) are evaluated at once. Shapes: ``counts [B, E, K]`` (or ``[B, K]`` when
    ``E = 1``, giving ``[B, v]``), ``query [B, d]`` or ``[B, E, d]``, ``macro [K, d]`` ->
    ``h [B, E, v]``; with ``return_weights`` also ``α [B, E, K]``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_graphs: int = 1,
        attention_dim: int | None = None,
        value_dim: int | None = None,
        tau: float = 0.8,
        mode: str = "additive",
        mask_zero_counts: bool | None = None,
    ) -> None:
        super().__init__()
        if mode not in ATTENTION_MODES:
            raise ValueError(f"mode must be one of {ATTENTION_MODES}, got {mode!r}")
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.mode = mode
        self.tau = tau
        self.mask_zero_counts = (mode != "released_macgnn") if mask_zero_counts is None \
            else mask_zero_counts
        self.attention_dim = attention_dim or embed_dim
        self.value_dim = value_dim or embed_dim
        self.num_graphs = num_graphs
        if mode == "additive":
            self.query_weight = nn.Parameter(
                _uniform_(torch.empty(num_graphs, embed_dim, self.attention_dim), embed_dim))
            self.key_weight = nn.Parameter(
                _uniform_(torch.empty(num_graphs, embed_dim, self.attention_dim), embed_dim))
        else:
            self.query_weight = None
            self.key_weight = None
        self.value_weight = nn.Parameter(
            _uniform_(torch.empty(num_graphs, embed_dim, self.value_dim), embed_dim))

    def count_prior(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, any_present)``: the count prior ``log(n+1)/τ`` ``[B, E, K]``, with
        ``−ABSENT_PENALTY`` added at absent (``n <= 0``) nodes when masking, and
        ``any_present [B, E, 1]`` (None without the mask).

        The penalty is added in float arithmetic (``sign(n) − 1`` is 0 or −1) rather than with a
        boolean mask and ``where``: boolean kernels are several times slower on CPU, and these
        ``[B, E, K]`` passes dominate the model's cost. ``exp(−1e4)`` is exactly 0 in float32,
        so absent nodes get weight 0 exactly; a row with no present node gets a finite softmax
        that ``any_present`` then zeroes.
        """
        if not self.mask_zero_counts:
            return torch.log1p(counts.clamp(min=0)).mul_(1.0 / self.tau), None
        # Negative counts (rounding after leave-one-out) count as absent; no clamp needed.
        logits = torch.log1p(counts).mul_(1.0 / self.tau)
        logits.add_(torch.sign(counts).sub_(1.0), alpha=ABSENT_PENALTY)
        return logits, counts.amax(dim=-1, keepdim=True) > 0

    def forward(
        self,
        counts: torch.Tensor,
        query: torch.Tensor | None,
        macro: torch.Tensor,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        single = counts.dim() == 2
        if single:
            counts = counts.unsqueeze(1)
        batch, graphs, k = counts.shape
        logits, any_present = self.count_prior(counts)  # [B, E, K]
        if self.query_weight is not None:
            if query is None:
                raise ValueError("additive macro attention needs a query")
            keys = torch.einsum("kd,eda->eka", macro, self.key_weight)  # [E, K, a]
            scale = 1.0 / math.sqrt(self.attention_dim)
            if query.dim() == 2:
                # (W_q e)ᵀ(W_k M_k) = eᵀ (W_q (W_k M_k)ᵀ): one [B, d] x [d, E·K] product whose
                # output is already laid out [B, E, K].
                bilinear = torch.einsum("eda,eka->dek", self.query_weight, keys) * scale
                scores = (query @ bilinear.reshape(query.shape[1], -1)).view(batch, graphs, k)
            else:
                queries = torch.einsum("bed,eda->bea", query, self.query_weight)
                scores = torch.einsum("bea,eka->bek", queries, keys) * scale
            logits = logits.add_(scores)
        weights = torch.softmax(logits, dim=-1)
        values = torch.einsum("kd,edv->ekv", macro, self.value_weight)  # [E, K, v]
        out = torch.bmm(weights.transpose(0, 1), values).transpose(0, 1)  # [B, E, v]
        if any_present is not None:
            out = out * any_present.to(out.dtype)
            if return_weights:
                weights = weights * any_present.to(weights.dtype)
        if single:
            out, weights = out.squeeze(1), weights.squeeze(1)
        return (out, weights) if return_weights else out


class MacroCounts(NamedTuple):
    """The four macro neighbour count tensors of a batch, each ``[B, G, K]``."""

    user_first: torch.Tensor
    """``[B, G, KI]`` over item macro nodes."""
    user_second: torch.Tensor
    """``[B, G, KU]`` over user macro nodes."""
    item_first: torch.Tensor
    """``[B, G, KU]`` over user macro nodes."""
    item_second: torch.Tensor
    """``[B, G, KI]`` over item macro nodes."""

    @classmethod
    def from_batch(cls, batch: dict[str, torch.Tensor]) -> MacroCounts:
        return cls(*(batch[name].float() for name in cls._fields))


class MacroGraphExpert(nn.Module):
    """Macro graph experts: one per entry of ``graph_index``, all evaluated in one pass.

    Expert ``e`` reads graph ``g = graph_index[e]`` (several experts may read the same graph,
    e.g. more than one shared expert on the merged graph ``S``)::

        h¹_u = Attn_{e,1}(n¹_u[g], M_I)    user 1st order, over item macro nodes
        h²_u = Attn_{e,2}(n²_u[g], M_U)    user 2nd order, over user macro nodes
        h¹_i = Attn_{e,3}(n¹_i[g], M_U)    item 1st order, over user macro nodes
        h²_i = Attn_{e,4}(n²_i[g], M_I)    item 2nd order, over item macro nodes
        o_e  = MLP_e([x ; h¹_u ; h²_u ; h¹_i ; h²_i])

    with :class:`MacroAttention` ``Attn`` (own parameters per expert and per neighbour vector).
    Queries: ``query="same_type"`` (default) queries item-macro neighbourhoods with the target
    item embedding and user-macro neighbourhoods with the user embedding, the pairing of
    MacGNN's code (the candidate item selects the relevant groups of the user's history);
    ``query="owner"`` queries each node's own vectors with its own embedding.

    Shapes: ``x [B, Dx]``, ``user``/``item`` ``[B, d]``, counts ``[B, G, K·]``, ``macro_user
    [KU, d]``, ``macro_item [KI, d]`` -> ``[B, E, De]`` (``De = expert_dims[-1]``).
    """

    def __init__(
        self,
        graph_index: Sequence[int],
        embed_dim: int,
        x_dim: int,
        expert_dims: Sequence[int],
        attention_dim: int | None = None,
        value_dim: int | None = None,
        tau: float = 0.8,
        mode: str = "additive",
        mask_zero_counts: bool | None = None,
        query: str = "same_type",
        dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if query not in QUERY_PAIRINGS:
            raise ValueError(f"query must be one of {QUERY_PAIRINGS}, got {query!r}")
        self.query = query
        self.register_buffer("graph_index", torch.tensor(list(graph_index), dtype=torch.long),
                             persistent=False)
        experts = len(graph_index)
        self.num_experts = experts

        def attention() -> MacroAttention:
            return MacroAttention(embed_dim, experts, attention_dim, value_dim, tau, mode,
                                  mask_zero_counts)

        self.user_first = attention()
        self.user_second = attention()
        self.item_first = attention()
        self.item_second = attention()
        value = self.user_first.value_dim
        self.mlp = StackedMLP(experts, x_dim + 4 * value, expert_dims, dropout=dropout,
                              activation=activation, batch_norm=batch_norm)
        self.output_dim = self.mlp.output_dim

    def forward(
        self,
        x: torch.Tensor,
        user: torch.Tensor,
        item: torch.Tensor,
        counts: MacroCounts,
        macro_user: torch.Tensor,
        macro_item: torch.Tensor,
    ) -> torch.Tensor:
        def pick(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.index_select(1, self.graph_index)

        same = self.query == "same_type"
        h = torch.cat(
            [
                self.user_first(pick(counts.user_first), item if same else user, macro_item),
                self.user_second(pick(counts.user_second), user, macro_user),
                self.item_first(pick(counts.item_first), user if same else item, macro_user),
                self.item_second(pick(counts.item_second), item, macro_item),
            ],
            dim=-1,
        )  # [B, E, 4v]
        inputs = torch.cat([x.unsqueeze(1).expand(-1, self.num_experts, -1), h], dim=-1)
        return self.mlp(inputs)


class PlainExpert(nn.Module):
    """``E`` plain (MMoE) experts on the base input: ``o_e = MLP_e(x)``.

    Shapes: ``x [B, Dx]`` (or ``[B, E, Dx]``) -> ``[B, E, De]``.
    """

    def __init__(
        self,
        in_dim: int,
        expert_dims: Sequence[int],
        num_experts: int = 1,
        dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.num_experts = num_experts
        self.mlp = StackedMLP(num_experts, in_dim, expert_dims, dropout=dropout,
                              activation=activation, batch_norm=batch_norm)
        self.output_dim = self.mlp.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class TaskGate(nn.Module):
    """One softmax gate per task over ``E`` experts (MMoE's gates), all tasks at once.

    ``g_t = softmax_e(G_t x_t + b_t)``, ``z_t = Σ_e g_{t,e} o_e``; ``G ∈ R^{T×Dx×E}``.
    The gate input is ``x [B, Dx]`` (the same for every task) or ``[B, T, Dx]`` (one per task,
    as in PLE's upper levels). Shapes: ``experts [B, E, De]`` (shared by the tasks) or
    ``[B, T, E, De]`` (a set per task, as in PLE) -> ``z [B, T, De]``.
    """

    def __init__(self, in_dim: int, num_experts: int, num_tasks: int) -> None:
        super().__init__()
        self.num_experts, self.num_tasks = num_experts, num_tasks
        self.linear = GroupedLinear(num_tasks, in_dim, num_experts)

    def weights(self, gate_input: torch.Tensor) -> torch.Tensor:
        """``[B, T, E]`` gate weights (rows sum to 1)."""
        return small_softmax(self.linear(gate_input))

    def forward(self, experts: torch.Tensor, gate_input: torch.Tensor) -> torch.Tensor:
        weights = self.weights(gate_input).unsqueeze(-1)  # [B, T, E, 1]
        if experts.dim() == 3:
            experts = experts.unsqueeze(1)
        # A broadcast product and sum: faster on CPU than B tiny [T, E] x [E, De] matmuls.
        return (weights * experts).sum(dim=2)


class MacroPredictionTower(nn.Module):
    """MGOE's Macro Prediction Tower: task ``t`` attends over the macro expert outputs.

    With ``cross_task=True``::

        c_t = Σ_{t'} softmax_{t'}( z_tᵀ W o_{t'} / √De ) o_{t'}
        ŷ_t = MLP_t([z_t ; c_t])                         (a logit)

    where ``z_t`` is task ``t``'s gated representation and ``o_{t'}`` the outputs of the
    task-specific macro experts (``M`` of them; ``W ∈ R^{De×De}`` shared by the tasks; the
    ``1/√De`` scale is ours, to keep the initial scores O(1)). With ``cross_task=False`` these
    are plain towers ``ŷ_t = MLP_t(z_t)``. Every ``MLP_t`` has its own weights (one
    :class:`StackedMLP`).

    Shapes: ``z [B, T, De]``, ``macro [B, M, De]`` (ignored without cross-task attention) ->
    logits ``[B, T]``.
    """

    def __init__(
        self,
        num_tasks: int,
        dim: int,
        tower_dims: Sequence[int],
        cross_task: bool = True,
        dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.cross_task = cross_task
        self.dim = dim
        self.bilinear = (
            nn.Parameter(_uniform_(torch.empty(dim, dim), dim)) if cross_task else None
        )
        self.towers = StackedMLP(num_tasks, 2 * dim if cross_task else dim, tower_dims,
                                 out_dim=1, dropout=dropout, activation=activation,
                                 batch_norm=batch_norm)

    def attention(self, z: torch.Tensor, macro: torch.Tensor) -> torch.Tensor:
        """``[B, T, M]`` weights of the macro experts for every task (rows sum to 1)."""
        scores = torch.bmm(z @ self.bilinear, macro.transpose(1, 2))
        return small_softmax(scores / math.sqrt(self.dim))

    def forward(self, z: torch.Tensor, macro: torch.Tensor | None = None) -> torch.Tensor:
        if self.cross_task:
            if macro is None:
                raise ValueError("the cross-task tower needs the macro expert outputs")
            context = torch.einsum("btm,bmd->btd", self.attention(z, macro), macro)
            z = torch.cat([z, context], dim=-1)
        return self.towers(z).squeeze(-1)
