"""MGOE: ablation flags, invariance to the numbering of macro nodes, and learning from counts."""

from __future__ import annotations

import pytest
import torch

from mgoe.errors import MgoeError
from mgoe.models import build_model
from mgoe.models.mgoe import MGOE
from mgoe.models.spec import ModelSpec
from mgoe.train.metrics import auc


def _model(spec: ModelSpec, **overrides: object) -> MGOE:
    torch.manual_seed(0)
    model = build_model("mgoe", spec, overrides)
    assert isinstance(model, MGOE)
    return model.eval()


def _with_counts_changed(batch: dict[str, torch.Tensor], graphs: slice) -> dict:
    changed = dict(batch)
    for key in ("user_first", "user_second", "item_first", "item_second"):
        counts = batch[key].clone()
        counts[:, graphs] = counts[:, graphs].flip(-1) + 1.0
        changed[key] = counts
    return changed


def test_default_structure(spec: ModelSpec, make_batch) -> None:
    model = _model(spec)
    tasks = spec.num_tasks
    assert model.macro_experts.num_experts == tasks + 1
    assert model.macro_experts.graph_index.tolist() == [1, 2, 3, 0]
    assert model.plain_experts is not None and model.plain_experts.num_experts == 1
    assert model.gate.num_experts == tasks + 2
    assert model.expert_names() == ["task:click", "task:cart", "task:buy", "merged:0", "plain:0"]
    assert model.tower.bilinear is not None
    assert model.macro_experts.user_first.query_weight is not None
    batch = make_batch(spec)
    experts, weights, _ = model.experts_and_gates(batch)
    assert experts.shape[1] == tasks + 2
    torch.testing.assert_close(weights.sum(-1), torch.ones(16, tasks))
    # Every graph matters.
    logits = model(batch)
    for graphs in (slice(0, 1), slice(1, 2), slice(3, 4)):
        assert not torch.allclose(model(_with_counts_changed(batch, graphs)), logits)


def test_no_merged_graph(spec: ModelSpec, make_batch) -> None:
    model = _model(spec, use_merged_graph=False)
    assert model.macro_experts.graph_index.tolist() == [1, 2, 3]
    assert model.gate.num_experts == spec.num_tasks + 1
    batch = make_batch(spec)
    torch.testing.assert_close(model(_with_counts_changed(batch, slice(0, 1))), model(batch))
    assert not torch.allclose(model(_with_counts_changed(batch, slice(1, 2))), model(batch))


def test_merged_graph_only(spec: ModelSpec, make_batch) -> None:
    model = _model(spec, task_specific_graphs=False, num_merged_experts=2)
    assert model.macro_experts.graph_index.tolist() == [0, 0]
    assert model.expert_names() == ["merged:0", "merged:1", "plain:0"]
    batch = make_batch(spec)
    torch.testing.assert_close(model(_with_counts_changed(batch, slice(1, None))), model(batch))
    assert not torch.allclose(model(_with_counts_changed(batch, slice(0, 1))), model(batch))


def test_plain_towers(spec: ModelSpec, make_batch) -> None:
    model = _model(spec, cross_task_tower=False, num_plain_experts=0)
    assert model.tower.bilinear is None
    assert model.plain_experts is None
    expert_dim = model.macro_experts.output_dim
    assert model.tower.towers.layers[0].weight.shape == (spec.num_tasks, expert_dim, 32)
    # The logits are exactly the towers on the gated mixture.
    batch = make_batch(spec)
    _, _, z = model.experts_and_gates(batch)
    torch.testing.assert_close(model(batch), model.tower.towers(z).squeeze(-1))


def test_released_macgnn_attention(spec: ModelSpec, make_batch) -> None:
    model = _model(spec, released_macgnn_attention=True)
    attention = model.macro_experts.user_first
    assert attention.mode == "released_macgnn" and attention.query_weight is None
    assert not attention.mask_zero_counts
    assert not any("query_weight" in name or "key_weight" in name
                   for name, _ in model.named_parameters())
    assert _model(spec, released_macgnn_attention=True,
                  mask_zero_counts=True).macro_experts.user_first.mask_zero_counts
    assert _model(spec).macro_experts.user_first.mask_zero_counts


def test_no_macro_expert_is_rejected(spec: ModelSpec) -> None:
    with pytest.raises(MgoeError, match="mmoe"):
        build_model("mgoe", spec, {"use_merged_graph": False, "task_specific_graphs": False})


@pytest.mark.parametrize("overrides", [{}, {"released_macgnn_attention": True},
                                       {"attention_query": "owner"}])
def test_permuting_macro_nodes_leaves_outputs_unchanged(spec: ModelSpec, make_batch,
                                                        overrides: dict) -> None:
    model = _model(spec, **overrides)
    batch = make_batch(spec)
    g = torch.Generator().manual_seed(1)
    perm_u = torch.randperm(spec.num_user_macro, generator=g)
    perm_i = torch.randperm(spec.num_item_macro, generator=g)
    # New macro node j is old node perm[j].
    permuted = dict(batch)
    permuted["user_first"] = batch["user_first"][..., perm_i]
    permuted["item_second"] = batch["item_second"][..., perm_i]
    permuted["user_second"] = batch["user_second"][..., perm_u]
    permuted["item_first"] = batch["item_first"][..., perm_u]
    permuted["user_macro"] = torch.argsort(perm_u)[batch["user_macro"]]
    permuted["item_macro"] = torch.argsort(perm_i)[batch["item_macro"]]
    other = _model(spec, **overrides)
    state = model.state_dict()
    state["macro_user"] = state["macro_user"][perm_u]
    state["macro_item"] = state["macro_item"][perm_i]
    other.load_state_dict(state)
    torch.testing.assert_close(other(permuted), model(batch), rtol=1e-5, atol=1e-6)
    # A permutation of the counts alone (embeddings left in place) does change the output.
    assert not torch.allclose(model(permuted), model(batch), atol=1e-6)


def _macro_signal_data(size: int, seed: int, spec: ModelSpec) -> dict[str, torch.Tensor]:
    """Random ids; task t is positive iff the user's graph-R_t count in item macro node 0
    exceeds that in node 1. Only the macro counts carry the signal."""
    g = torch.Generator().manual_seed(seed)
    graphs, ku, ki = len(spec.graphs), spec.num_user_macro, spec.num_item_macro

    def counts(k: int) -> torch.Tensor:
        task_counts = torch.poisson(torch.full((size, graphs - 1, k), 2.0), generator=g)
        return torch.cat([task_counts.sum(1, keepdim=True), task_counts], dim=1)

    user_first = counts(ki)
    labels = (user_first[:, 1:, 0] > user_first[:, 1:, 1]).float()
    return {
        "user": torch.randint(0, spec.num_users, (size,), generator=g),
        "item": torch.randint(0, spec.num_items, (size,), generator=g),
        "user_features": torch.zeros(size, 0, dtype=torch.long),
        "item_features": torch.zeros(size, 0, dtype=torch.long),
        "context_features": torch.zeros(size, 0, dtype=torch.long),
        "user_macro": torch.randint(0, ku, (size,), generator=g),
        "item_macro": torch.randint(0, ki, (size,), generator=g),
        "user_first": user_first,
        "user_second": counts(ku),
        "item_first": counts(ku),
        "item_second": counts(ki),
        "labels": labels,
    }


def _train_and_score(name: str, spec: ModelSpec, train: dict, test: dict,
                     overrides: dict) -> list[float]:
    torch.manual_seed(0)
    model = build_model(name, spec, overrides)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    size, batch_size = train["user"].shape[0], 256
    model.train()
    for step in range(100):
        start = (step * batch_size) % size
        batch = {k: v[start:start + batch_size] for k, v in train.items()}
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch),
                                                                    batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        probs = model.predict_proba(test)
    return [auc(test["labels"][:, t].numpy(), probs[:, t].numpy()) for t in range(2)]


@pytest.fixture
def one_thread():
    """Tiny models train several times faster on one thread on a shared CPU (no spin-waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_learns_from_macro_counts_where_ids_only_mmoe_cannot(one_thread: None) -> None:
    spec = ModelSpec(num_users=5000, num_items=5000, tasks=["click", "buy"],
                     num_user_macro=5, num_item_macro=5, graphs=["merged", "click", "buy"])
    train = _macro_signal_data(25_600 // 2, seed=0, spec=spec)
    test = _macro_signal_data(2000, seed=1, spec=spec)
    small = {"embedding_dim": 8, "expert_dims": (32, 16), "tower_dims": (16,)}
    mgoe_auc = _train_and_score("mgoe", spec, train, test, small)
    mmoe_auc = _train_and_score("mmoe", spec, train, test, small)
    for task in range(2):
        assert mgoe_auc[task] > 0.8, (mgoe_auc, mmoe_auc)
        assert mgoe_auc[task] > mmoe_auc[task] + 0.15, (mgoe_auc, mmoe_auc)
