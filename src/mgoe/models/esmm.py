"""ESMM: Entire Space Multi-task Model (Ma et al., "Entire Space Multi-Task Model: An Effective
Approach for Estimating Post-Click Conversion Rate", SIGIR 2018), along a funnel of ``T`` tasks.

The tasks are in funnel order (``spec.tasks``: shallowest first, e.g. click, cart, buy). Every
task has a tower on the shared embeddings that models the *conditional* probability of reaching
its stage given the previous one; the probability of task ``k`` over the entire impression space
is the product along the funnel, and the loss is put on those products (for ``T = 2``: pCTR and
pCTCVR = pCTR · pCVR, exactly the original model)::

    x     = [e_user ; e_item ; e_features]                 [B, Dx]   (embeddings shared)
    l_j   = MLP_j(x)                                      conditional logits [B, T]
    p_k   = Π_{j≤k} σ(l_j)                                predict_proba [B, T]
    forward(batch) = logit(p_k) = log p_k − log(1 − p_k)  [B, T]

``forward`` returns the logits of the products, so ``sigmoid(forward)`` equals ``predict_proba``
and a trainer's binary cross-entropy on the logits trains on the products, as ESMM does. The
conditional logits are available from :meth:`ESMM.conditional_logits`. By construction
``p_1 ≥ p_2 ≥ … ≥ p_T``. Uses only ids and side features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mgoe.models.base import Batch, ModelConfig, MultiTaskModel
from mgoe.models.blocks import FeatureEmbedding, StackedMLP
from mgoe.models.spec import ModelSpec

# log p is clamped to at most this, so that log(1 - p) stays finite (caps logits at ~69).
_MAX_LOG_PROBA = -1e-30


def _log1mexp(log_p: torch.Tensor) -> torch.Tensor:
    """``log(1 − exp(a))`` for ``a < 0``, accurate on both sides of ``−log 2`` (Mächler, 2012)."""
    return torch.where(
        log_p > -math.log(2.0),
        torch.log(-torch.expm1(log_p)),
        torch.log1p(-torch.exp(log_p)),
    )


@dataclass
class ESMMConfig(ModelConfig):
    """Hyper-parameters of :class:`ESMM`."""

    tower_dims: tuple[int, ...] = (64, 32)
    """Hidden sizes of every task tower (a final linear layer gives the conditional logit)."""


class ESMM(MultiTaskModel):
    """ESMM along a funnel of ``T`` tasks: probabilities are products of conditional ones."""

    config_class = ESMMConfig
    config: ESMMConfig

    def __init__(self, spec: ModelSpec, config: ESMMConfig) -> None:
        super().__init__(spec, config)
        c = config
        self.embedding = FeatureEmbedding(spec, c.embedding_dim, c.embedding_init_std)
        self.towers = StackedMLP(spec.num_tasks, self.embedding.output_dim, c.tower_dims,
                                 out_dim=1, dropout=c.dropout, activation=c.activation,
                                 batch_norm=c.batch_norm)

    def conditional_logits(self, batch: Batch) -> torch.Tensor:
        """``l_j [B, T]``: logit of reaching stage ``j`` given stage ``j − 1`` (given impression
        for ``j = 1``)."""
        return self.towers(self.embedding(batch).x).squeeze(-1)

    def _log_proba(self, batch: Batch) -> torch.Tensor:
        return torch.cumsum(F.logsigmoid(self.conditional_logits(batch)), dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        log_p = self._log_proba(batch).clamp(max=_MAX_LOG_PROBA)
        return log_p - _log1mexp(log_p)

    def predict_proba(self, batch: Batch) -> torch.Tensor:
        """``p_k = Π_{j≤k} σ(l_j)`` ``[B, T]``, non-increasing along the funnel."""
        return torch.exp(self._log_proba(batch))
