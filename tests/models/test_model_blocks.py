"""Blocks against brute-force per-sample loops on small random inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mgoe.models.blocks import (
    MLP,
    FeatureEmbedding,
    MacroAttention,
    MacroCounts,
    MacroGraphExpert,
    MacroPredictionTower,
    StackedMLP,
    TaskGate,
)

torch.set_default_dtype(torch.float32)


def _counts(batch: int, graphs: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 4, (batch, graphs, k), generator=g).float()
    counts[0] = 0.0  # an all-zero row in every graph
    counts[1, 0, :] = 0.0
    counts[1, 0, 2] = 3.0  # a single non-zero macro node
    return counts


def _attention_loop(module: MacroAttention, counts: torch.Tensor, query: torch.Tensor,
                    macro: torch.Tensor) -> torch.Tensor:
    """The equations of MacroAttention's docstring, one sample, graph and node at a time."""
    batch, graphs, k = counts.shape
    out = torch.zeros(batch, graphs, module.value_dim, dtype=torch.float64)
    for b in range(batch):
        for e in range(graphs):
            nodes = [j for j in range(k) if counts[b, e, j] > 0 or not module.mask_zero_counts]
            if not nodes:
                continue
            logits = []
            for j in nodes:
                logit = math.log(float(counts[b, e, j]) + 1.0) / module.tau
                if module.mode == "additive":
                    q = query[b].double() @ module.query_weight[e].double()
                    key = macro[j].double() @ module.key_weight[e].double()
                    logit += float((q @ key).detach()) / math.sqrt(module.attention_dim)
                logits.append(logit)
            weights = torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=0)
            for w, j in zip(weights, nodes, strict=True):
                out[b, e] += w * (macro[j].double() @ module.value_weight[e].double())
    return out


@pytest.mark.parametrize(
    ("mode", "mask"),
    [("additive", None), ("count_only", None), ("released_macgnn", None),
     ("additive", False), ("released_macgnn", True)],
)
def test_macro_attention_matches_loop(mode: str, mask: bool | None) -> None:
    torch.manual_seed(0)
    batch, graphs, k, d = 5, 3, 6, 4
    module = MacroAttention(d, graphs, attention_dim=3, value_dim=5, tau=0.7, mode=mode,
                            mask_zero_counts=mask)
    counts = _counts(batch, graphs, k, seed=1)
    query, macro = torch.randn(batch, d), torch.randn(k, d)
    out, weights = module(counts, query, macro, return_weights=True)
    expected = _attention_loop(module, counts, query, macro)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    if module.mask_zero_counts:
        assert torch.all(out[0] == 0)  # all-zero rows give the zero vector
        assert torch.all(weights[counts == 0] == 0)
        torch.testing.assert_close(weights[1, 0], F.one_hot(torch.tensor(2), k).float())
    else:
        torch.testing.assert_close(weights.sum(-1), torch.ones(batch, graphs))


def test_released_mode_is_count_weighted_sum_without_query() -> None:
    """Released MacGNN: w = softmax over all K of log(n+1)/τ, h = Σ w_k W_v M_k, any query."""
    torch.manual_seed(0)
    module = MacroAttention(4, 1, value_dim=8, tau=0.8, mode="released_macgnn")
    assert module.query_weight is None and module.key_weight is None
    assert not module.mask_zero_counts
    counts = torch.tensor([[0.0, 2.0, 5.0], [0.0, 0.0, 0.0]])
    macro = torch.randn(3, 4)
    out_a = module(counts, torch.randn(2, 4), macro)
    out_b = module(counts, None, macro)
    torch.testing.assert_close(out_a, out_b)
    w = torch.softmax(torch.log(counts + 1) / 0.8, dim=1)
    torch.testing.assert_close(out_a, w @ (macro @ module.value_weight[0]))
    # The all-zero row is the uniform mean of the projected macro embeddings, as in the code.
    torch.testing.assert_close(out_a[1], (macro @ module.value_weight[0]).mean(0))


def test_macro_attention_gradients_finite_with_empty_rows() -> None:
    torch.manual_seed(0)
    module = MacroAttention(4, 2)
    counts = _counts(4, 2, 5, seed=3)
    macro = torch.randn(5, 4, requires_grad=True)
    query = torch.randn(4, 4, requires_grad=True)
    module(counts, query, macro).sum().backward()
    for tensor in (macro.grad, query.grad, module.query_weight.grad, module.value_weight.grad):
        assert tensor is not None and torch.isfinite(tensor).all()
    assert torch.all(query.grad[0] == 0)  # the empty sample gets no gradient


def test_macro_attention_single_graph_shapes_agree() -> None:
    torch.manual_seed(0)
    module = MacroAttention(4, 1)
    counts = _counts(3, 1, 5, seed=4)
    query, macro = torch.randn(3, 4), torch.randn(5, 4)
    torch.testing.assert_close(module(counts[:, 0], query, macro), module(counts, query, macro)[:, 0])


def test_stacked_mlp_matches_separate_mlps() -> None:
    torch.manual_seed(0)
    stacked = StackedMLP(3, 5, [7, 4], out_dim=2, activation="tanh")
    x = torch.randn(6, 3, 5)
    out = stacked(x)
    linears = [m for m in stacked.layers if hasattr(m, "weight")]
    for e in range(3):
        h = x[:, e]
        for i, layer in enumerate(linears):
            h = h @ layer.weight[e] + layer.bias[e]
            if i < len(linears) - 1:
                h = torch.tanh(h)
        torch.testing.assert_close(out[:, e], h)
    # A shared [B, in] input is the same as repeating it for every group.
    shared = torch.randn(6, 5)
    torch.testing.assert_close(stacked(shared), stacked(shared.unsqueeze(1).expand(-1, 3, -1)))


def test_mlp_layers() -> None:
    torch.manual_seed(0)
    mlp = MLP(4, [6], out_dim=1)
    x = torch.randn(3, 4)
    first, last = mlp.layers[0], mlp.layers[-1]
    torch.testing.assert_close(mlp(x), last(torch.relu(first(x))))
    assert mlp.output_dim == 1
    assert MLP(4, [6, 3], batch_norm=True, dropout=0.1)(torch.randn(5, 2, 4)).shape == (5, 2, 3)


def test_task_gate_matches_loop() -> None:
    torch.manual_seed(0)
    batch, tasks, experts, d_in, d_e = 4, 3, 5, 6, 2
    gate = TaskGate(d_in, experts, tasks)
    x = torch.randn(batch, d_in)
    outputs = torch.randn(batch, experts, d_e)
    z = gate(outputs, x)
    for b in range(batch):
        for t in range(tasks):
            logits = x[b] @ gate.linear.weight[t] + gate.linear.bias[t]
            w = torch.softmax(logits, dim=0)
            expected = sum(w[e] * outputs[b, e] for e in range(experts))
            torch.testing.assert_close(z[b, t], expected)
    # Per-task inputs and per-task expert sets (PLE).
    x_t = torch.randn(batch, tasks, d_in)
    per_task = torch.randn(batch, tasks, experts, d_e)
    z = gate(per_task, x_t)
    for b in range(batch):
        for t in range(tasks):
            w = torch.softmax(x_t[b, t] @ gate.linear.weight[t] + gate.linear.bias[t], dim=0)
            torch.testing.assert_close(z[b, t], w @ per_task[b, t])


@pytest.mark.parametrize("cross_task", [True, False])
def test_macro_prediction_tower_matches_loop(cross_task: bool) -> None:
    torch.manual_seed(0)
    batch, tasks, macro_count, dim = 4, 3, 2, 5
    tower = MacroPredictionTower(tasks, dim, [6], cross_task=cross_task)
    z = torch.randn(batch, tasks, dim)
    macro = torch.randn(batch, macro_count, dim)
    logits = tower(z, macro)
    linears = [m for m in tower.towers.layers if hasattr(m, "weight")]
    for b in range(batch):
        for t in range(tasks):
            h = z[b, t]
            if cross_task:
                scores = torch.stack(
                    [z[b, t] @ tower.bilinear @ macro[b, m] for m in range(macro_count)])
                a = torch.softmax(scores / math.sqrt(dim), dim=0)
                context = sum(a[m] * macro[b, m] for m in range(macro_count))
                h = torch.cat([h, context])
            h = torch.relu(h @ linears[0].weight[t] + linears[0].bias[t])
            expected = h @ linears[1].weight[t] + linears[1].bias[t]
            torch.testing.assert_close(logits[b, t], expected[0])
    if not cross_task:
        assert tower.bilinear is None


def test_feature_embedding_concatenates_and_zeroes_missing(spec, make_batch) -> None:
    embedding = FeatureEmbedding(spec, 4)
    batch = make_batch(spec, size=6)
    batch["user_features"][0] = 0
    out = embedding(batch)
    assert out.x.shape == (6, (2 + 4) * 4)
    torch.testing.assert_close(out.x[:, :4], embedding.user.weight[batch["user"]])
    torch.testing.assert_close(out.x[:, 4:8], embedding.item.weight[batch["item"]])
    # Column 1 of the side features is user feature 2, whose rows start after feature 1's 3.
    codes = batch["user_features"][:, 1]
    expected = embedding.features.weight[codes + 3] * (codes > 0).unsqueeze(1)
    torch.testing.assert_close(out.x[:, 12:16], expected)
    assert torch.all(out.x[0, 8:16] == 0)
    # Context feature (last column) rows start after 3 + 4 + 5.
    codes = batch["context_features"][:, 0]
    expected = embedding.features.weight[codes + 12] * (codes > 0).unsqueeze(1)
    torch.testing.assert_close(out.x[:, 20:24], expected)


def test_feature_embedding_without_side_features(make_spec, make_batch) -> None:
    spec = make_spec()
    spec.user_feature_sizes, spec.item_feature_sizes, spec.context_feature_sizes = [], [], []
    batch = make_batch(spec, size=3)
    out = FeatureEmbedding(spec, 4)(batch)
    assert out.x.shape == (3, 8)


def test_macro_graph_expert_stacks_independent_experts(spec, make_batch) -> None:
    """Expert e of a stacked module equals a one-graph module holding expert e's weights."""
    torch.manual_seed(0)
    d, x_dim = 4, 6
    stacked = MacroGraphExpert([2, 0, 0], d, x_dim, [5, 3], attention_dim=3, value_dim=2)
    batch = make_batch(spec, size=5)
    counts = MacroCounts.from_batch(batch)
    x, user, item = torch.randn(5, x_dim), torch.randn(5, d), torch.randn(5, d)
    macro_user = torch.randn(spec.num_user_macro, d)
    macro_item = torch.randn(spec.num_item_macro, d)
    out = stacked(x, user, item, counts, macro_user, macro_item)
    assert out.shape == (5, 3, 3)
    for e, graph in enumerate([2, 0, 0]):
        single = MacroGraphExpert([graph], d, x_dim, [5, 3], attention_dim=3, value_dim=2)
        with torch.no_grad():
            for (name, p_single), (_, p_stacked) in zip(
                single.named_parameters(), stacked.named_parameters(), strict=True
            ):
                assert p_single.shape[1:] == p_stacked.shape[1:], name
                p_single.copy_(p_stacked[e:e + 1])
        expected = single(x, user, item, counts, macro_user, macro_item)[:, 0]
        torch.testing.assert_close(out[:, e], expected)
    # Same graph, different parameters: the two merged experts differ.
    assert not torch.allclose(out[:, 1], out[:, 2])


def test_macro_graph_expert_query_pairing(spec, make_batch) -> None:
    """same_type: the user 1st-order vector (item macro nodes) is queried by the item."""
    torch.manual_seed(0)
    expert = MacroGraphExpert([1], 4, 3, [2], query="same_type")
    batch = make_batch(spec, size=4)
    counts = MacroCounts.from_batch(batch)
    x, user, item = torch.randn(4, 3), torch.randn(4, 4), torch.randn(4, 4)
    mu, mi = torch.randn(spec.num_user_macro, 4), torch.randn(spec.num_item_macro, 4)
    captured: dict[str, torch.Tensor] = {}

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        captured["query"] = args[1]

    expert.user_first.register_forward_hook(hook)
    expert(x, user, item, counts, mu, mi)
    assert captured["query"] is item
