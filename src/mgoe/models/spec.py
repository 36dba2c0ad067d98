"""The contract between the input pipeline and every model.

A model is built from a :class:`ModelSpec` (sizes only, no data) and called on a *batch*, a dict
of tensors (``B`` = batch size, ``T`` = tasks, ``G = 1 + T`` graphs: index 0 is the merged graph
``S``, index ``1 + t`` the graph ``R_t`` of task ``t``; ``KU``/``KI`` = user/item macro nodes
including the reserved cold node, which is the last index)::

    user               int64 [B]          contiguous user index
    item               int64 [B]          contiguous item index
    user_features      int64 [B, Fu]      side-feature codes (0 = missing); Fu may be 0
    item_features      int64 [B, Fi]
    context_features   int64 [B, Fc]
    user_macro         int64 [B]          macro node of the user (KU - 1 = cold)
    item_macro         int64 [B]          macro node of the item (KI - 1 = cold)
    user_first         float32 [B, G, KI] user's 1st-order counts per item macro node
    user_second        float32 [B, G, KU] user's 2nd-order counts (u -> i -> u') per user macro node
    item_first         float32 [B, G, KU] item's 1st-order counts per user macro node
    item_second        float32 [B, G, KI] item's 2nd-order counts (i -> u -> i') per item macro node
    labels             float32 [B, T]     0/1 (absent at prediction time)

The macro counts already have leave-one-out applied for training samples. ``forward(batch)``
returns logits ``float32 [B, T]``; probabilities are ``sigmoid`` of them, except for models
that define ``predict_proba`` (ESMM: products along the funnel).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelSpec:
    num_users: int
    num_items: int
    tasks: list[str]
    user_feature_sizes: list[int] = field(default_factory=list)
    """Vocabulary size (including the 0 code) of each user side feature, in batch column order."""
    item_feature_sizes: list[int] = field(default_factory=list)
    context_feature_sizes: list[int] = field(default_factory=list)
    num_user_macro: int = 1
    """User macro nodes including the cold node (KU)."""
    num_item_macro: int = 1
    graphs: list[str] = field(default_factory=list)
    """Graph names in batch order: ["merged", *tasks]; empty for data without a graph."""

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def has_macro(self) -> bool:
        return bool(self.graphs)
