"""Baselines: the equations of each docstring, checked against explicit computations."""

from __future__ import annotations

import math

import pytest
import torch

from mgoe.models import build_model
from mgoe.models.aitm import AITM
from mgoe.models.blocks import MacroAttention
from mgoe.models.esmm import ESMM
from mgoe.models.macgnn import MacGNN
from mgoe.models.mmoe import MMoE
from mgoe.models.ple import PLE
from mgoe.models.shared_bottom import SharedBottom
from mgoe.models.spec import ModelSpec


def test_esmm_probabilities_are_funnel_products(spec: ModelSpec, make_batch) -> None:
    torch.manual_seed(0)
    model = build_model("esmm", spec, {"embedding_dim": 4})
    assert isinstance(model, ESMM)
    batch = make_batch(spec, size=64)
    conditional = torch.sigmoid(model.conditional_logits(batch))
    probs = model.predict_proba(batch)
    torch.testing.assert_close(probs, torch.cumprod(conditional, dim=1))
    assert torch.all(probs[:, 1:] <= probs[:, :-1])
    # forward gives the logits of the products, so BCE-with-logits trains on the products.
    torch.testing.assert_close(torch.sigmoid(model(batch)), probs)
    torch.testing.assert_close(model(batch)[:, 0], model.conditional_logits(batch)[:, 0])


def test_esmm_logits_stay_finite_at_extreme_probabilities(spec: ModelSpec, make_batch) -> None:
    model = build_model("esmm", spec, {"embedding_dim": 4})
    last = model.towers.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([[200.0], [-200.0], [5.0]]))
    batch = make_batch(spec, size=4)
    with torch.no_grad():
        logits = model(batch)
    assert torch.isfinite(logits).all()
    assert logits[0, 0] > 60  # p ≈ 1
    assert float(logits[0, 1]) == pytest.approx(-200.0, rel=1e-4)  # p ≈ exp(-200)
    torch.testing.assert_close(logits[:, 2], logits[:, 1], rtol=1e-4, atol=1e-3)


def test_aitm_transfer_and_calibrator_match_equations(spec: ModelSpec, make_batch) -> None:
    torch.manual_seed(0)
    model = build_model("aitm", spec, {"embedding_dim": 4, "calibrator_weight": 0.6})
    assert isinstance(model, AITM)
    batch = make_batch(spec, size=6)
    logits = model(batch)
    own = model.towers(model.embedding(batch).x)
    z = own[:, 0]
    for t in range(1, spec.num_tasks):
        transfer = model.transfers[t - 1]
        info = transfer.info(z)
        new = []
        for b in range(6):
            inputs = [info[b], own[b, t]]
            scores = torch.stack([transfer.query(u) @ transfer.key(u) for u in inputs])
            w = torch.softmax(scores / math.sqrt(own.shape[-1]), dim=0)
            new.append(w[0] * transfer.value(inputs[0]) + w[1] * transfer.value(inputs[1]))
        z = torch.stack(new)
        expected = z @ model.heads.weight[t] + model.heads.bias[t]
        torch.testing.assert_close(logits[:, t], expected[:, 0])
    # Calibrator: 0.6 · Σ_{t≥2} mean(max(p_t − p_{t−1}, 0)).
    fixed = torch.tensor([[0.0, 1.0, -1.0], [2.0, 1.0, 3.0]])
    p = torch.sigmoid(fixed)
    expected = 0.6 * ((p[0, 1] - p[0, 0]) / 2 + (p[1, 2] - p[1, 1]) / 2)
    torch.testing.assert_close(model.auxiliary_loss(batch, fixed), expected)
    assert model.auxiliary_loss(batch, torch.tensor([[3.0, 2.0, 1.0]])) == 0


def test_ple_level_matches_loop(spec: ModelSpec, make_batch) -> None:
    torch.manual_seed(0)
    model = build_model("ple", spec, {"embedding_dim": 4, "num_levels": 2, "task_experts": 2,
                                      "shared_experts": 1, "expert_dims": (5,)})
    assert isinstance(model, PLE)
    batch = make_batch(spec, size=3)
    x = model.embedding(batch).x
    tasks, m_t = spec.num_tasks, 2

    def expert(stack, e, inp):
        layer = stack.layers[0]
        return torch.relu(inp @ layer.weight[e] + layer.bias[e])

    def gate(g, t, inp, outputs):
        w = torch.softmax(inp @ g.linear.weight[t] + g.linear.bias[t], dim=-1)
        return sum(w[:, j:j + 1] * o for j, o in enumerate(outputs))

    task_in = [x] * tasks
    shared_in = x
    for level in model.levels:
        own = [[expert(level.task_experts, t * m_t + j, task_in[t]) for j in range(m_t)]
               for t in range(tasks)]
        shared = [expert(level.shared_experts, 0, shared_in)]
        new_task = [gate(level.task_gate, t, task_in[t], own[t] + shared) for t in range(tasks)]
        if level.shared_gate is not None:
            everything = [o for t in range(tasks) for o in own[t]] + shared
            shared_in = gate(level.shared_gate, 0, shared_in, everything)
        task_in = new_task
    expected = torch.stack([_tower(model, t, task_in[t]) for t in range(tasks)], dim=1)
    torch.testing.assert_close(model(batch), expected)
    assert model.levels[-1].shared_gate is None


def _tower(model: torch.nn.Module, t: int, inp: torch.Tensor) -> torch.Tensor:
    first, last = model.towers.layers[0], model.towers.layers[-1]
    h = torch.relu(inp @ first.weight[t] + first.bias[t])
    return (h @ last.weight[t] + last.bias[t])[:, 0]


def test_shared_bottom_and_mmoe_match_equations(spec: ModelSpec, make_batch) -> None:
    torch.manual_seed(0)
    batch = make_batch(spec, size=5)
    sb = build_model("shared_bottom", spec, {"embedding_dim": 4})
    assert isinstance(sb, SharedBottom)
    bottom = sb.bottom(sb.embedding(batch).x)
    expected = torch.stack([_tower(sb, t, bottom) for t in range(spec.num_tasks)], dim=1)
    torch.testing.assert_close(sb(batch), expected)

    mmoe = build_model("mmoe", spec, {"embedding_dim": 4, "num_experts": 3, "expert_dims": (6,)})
    assert isinstance(mmoe, MMoE)
    x = mmoe.embedding(batch).x
    layer = mmoe.experts.mlp.layers[0]
    outputs = [torch.relu(x @ layer.weight[e] + layer.bias[e]) for e in range(3)]
    for t in range(spec.num_tasks):
        w = torch.softmax(x @ mmoe.gate.linear.weight[t] + mmoe.gate.linear.bias[t], dim=-1)
        z = sum(w[:, e:e + 1] * outputs[e] for e in range(3))
        torch.testing.assert_close(mmoe(batch)[:, t], _tower(mmoe, t, z))


@pytest.mark.parametrize("mask", [True, False])
def test_macgnn_released_attention(spec: ModelSpec, make_batch, mask: bool) -> None:
    """Released: h = Σ_k softmax(log(n+1)/τ)_k W_v M_k; item-macro vectors share one
    aggregator, user-macro vectors another; the tower input is [x ; h's]."""
    torch.manual_seed(0)
    model = build_model("macgnn", spec, {"embedding_dim": 4, "mask_zero_counts": mask,
                                         "graph": "merged"})
    assert isinstance(model, MacGNN)
    assert model.item_aggregator.mode == "count_only"
    assert model.item_aggregator.value_dim == 8  # 2d, as released
    assert not any("query" in n or "key" in n for n, _ in model.named_parameters())
    batch = make_batch(spec, size=6)

    def aggregate(counts, macro, aggregator: MacroAttention):
        logits = torch.log(counts + 1) / 0.8
        if mask:
            logits = logits.masked_fill(counts == 0, -torch.inf)
        w = torch.nan_to_num(torch.softmax(logits, dim=1))
        return w @ (macro @ aggregator.value_weight[0])

    x = model.embedding(batch).x
    parts = [
        aggregate(batch["user_first"][:, 0], model.macro_item, model.item_aggregator),
        aggregate(batch["user_second"][:, 0], model.macro_user, model.user_aggregator),
        aggregate(batch["item_first"][:, 0], model.macro_user, model.user_aggregator),
        aggregate(batch["item_second"][:, 0], model.macro_item, model.item_aggregator),
    ]
    inp = torch.cat([x, *parts], dim=1)
    towers = model.towers.layers
    for t in range(spec.num_tasks):
        h = torch.relu(inp @ towers[0].weight[t] + towers[0].bias[t])
        h = torch.relu(h @ towers[2].weight[t] + towers[2].bias[t])
        expected = h @ towers[4].weight[t] + towers[4].bias[t]
        torch.testing.assert_close(model(batch)[:, t], expected[:, 0])


@pytest.mark.parametrize(("graph", "graphs_read"), [("first_task", [1]), ("merged", [0]),
                                                     ("all", [0, 1, 2, 3])])
def test_macgnn_reads_the_configured_graph(spec: ModelSpec, make_batch, graph: str,
                                           graphs_read: list[int]) -> None:
    torch.manual_seed(0)
    model = build_model("macgnn", spec, {"embedding_dim": 4, "graph": graph,
                                         "released_attention": False}).eval()
    batch = make_batch(spec, size=6)
    logits = model(batch)
    for g in range(4):
        changed = dict(batch)
        changed["user_first"] = batch["user_first"].clone()
        changed["user_first"][:, g] = changed["user_first"][:, g].flip(-1) + 1
        same = torch.allclose(model(changed), logits)
        assert same == (g not in graphs_read), g
