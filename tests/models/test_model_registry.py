"""Every registered model: builds, gives finite logits, trains every parameter; the registry."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mgoe.errors import MgoeError
from mgoe.models import (
    MACRO_MODELS,
    MODELS,
    MGOEConfig,
    build_config,
    build_model,
    model_config_class,
)
from mgoe.models.spec import ModelSpec

SMALL = {"embedding_dim": 4}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_forward_and_gradients(name: str, spec: ModelSpec, make_batch) -> None:
    torch.manual_seed(0)
    model = build_model(name, spec, SMALL)
    batch = make_batch(spec, size=32)
    logits = model(batch)
    assert logits.shape == (32, spec.num_tasks) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    probs = model.predict_proba(batch)
    assert ((probs >= 0) & (probs <= 1)).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"])
    if hasattr(model, "auxiliary_loss"):
        loss = loss + model.auxiliary_loss(batch, logits) * 100  # make its gradient visible
    loss.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: {param_name} gets no gradient"
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, f"{name}: {param_name} has an all-zero gradient"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_batch_without_labels_and_in_eval(name: str, spec: ModelSpec, make_batch) -> None:
    model = build_model(name, spec, {**SMALL, "batch_norm": True, "dropout": 0.2})
    batch = make_batch(spec, size=8)
    del batch["labels"]
    model.eval()
    with torch.no_grad():
        first, second = model(batch), model(batch)
    torch.testing.assert_close(first, second)  # eval mode: no dropout noise


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unknown_override_key_is_rejected(name: str, spec: ModelSpec) -> None:
    with pytest.raises(MgoeError, match=rf"'no_such_key'.*{name}"):
        build_model(name, spec, {"no_such_key": 1})


def test_unknown_model_lists_known_names(spec: ModelSpec) -> None:
    with pytest.raises(MgoeError, match="mgoe.*mmoe") as info:
        build_model("transformer", spec)
    assert "transformer" in str(info.value)
    with pytest.raises(MgoeError):
        model_config_class("transformer")


def test_overrides_reach_the_config_and_lists_become_tuples(spec: ModelSpec) -> None:
    assert model_config_class("mgoe") is MGOEConfig
    config = build_config("mgoe", {"expert_dims": [8, 4], "tau": 0.5})
    assert config.expert_dims == (8, 4) and config.tau == 0.5
    model = build_model("mgoe", spec, {"expert_dims": [8, 4]})
    assert model.macro_experts.output_dim == 4
    assert dataclasses.asdict(model.config)["expert_dims"] == (8, 4)


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [("mgoe", {"tau": 0.0}, "tau"), ("mmoe", {"expert_dims": [0]}, "expert_dims"),
     ("mgoe", {"attention_query": "nobody"}, "attention_query"),
     ("macgnn", {"graph": "third"}, "graph"), ("ple", {"num_levels": 0}, "num_levels"),
     ("shared_bottom", {"activation": "swish2"}, "activation"),
     ("aitm", {"dropout": 1.5}, "dropout")],
)
def test_invalid_values_are_rejected(spec: ModelSpec, name: str, overrides: dict,
                                     message: str) -> None:
    with pytest.raises(MgoeError, match=message):
        build_model(name, spec, overrides)


@pytest.mark.parametrize("name", sorted(MACRO_MODELS))
def test_macro_models_need_graphs(name: str, make_spec) -> None:
    with pytest.raises(MgoeError, match="macro"):
        build_model(name, make_spec(graphs=False))


@pytest.mark.parametrize("name", sorted(set(MODELS) - MACRO_MODELS))
def test_id_models_ignore_macro_features(name: str, make_spec, make_batch) -> None:
    spec = make_spec(graphs=False)
    torch.manual_seed(0)
    model = build_model(name, spec, SMALL).eval()
    batch = make_batch(spec, size=8)
    logits = model(batch)
    for key in ("user_first", "user_second", "item_first", "item_second"):
        batch[key] = batch[key] + 3.0
    torch.testing.assert_close(model(batch), logits)


@pytest.mark.parametrize("name", ["mgoe", "mmoe"])
def test_regularization_loss_is_l2_of_used_embeddings(name: str, spec: ModelSpec,
                                                      make_batch) -> None:
    model = build_model(name, spec, {**SMALL, "embedding_l2": 0.1})
    batch = make_batch(spec, size=8)
    emb = model.embedding
    expected = (emb.user.weight[batch["user"]].pow(2).sum()
                + emb.item.weight[batch["item"]].pow(2).sum())
    for column, (key, offset) in enumerate(
            [("user_features", 0), ("user_features", 3), ("item_features", 7),
             ("context_features", 12)]):
        codes = batch[key][:, column if key == "user_features" else 0]
        expected = expected + (emb.features.weight[codes + offset].pow(2).sum(1)
                               * (codes > 0)).sum()
    expected = expected / 8
    for table in model.macro_tables():
        expected = expected + table.pow(2).sum()
    torch.testing.assert_close(model.regularization_loss(batch), 0.1 * expected)
    assert build_model(name, spec, SMALL).regularization_loss(batch) == 0
