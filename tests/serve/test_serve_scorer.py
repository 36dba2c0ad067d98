"""Scorer: equal to ``mgoe predict``, cold ids, ranking, and online first-order updates against
features recomputed from scratch on the edge list."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from serve_helpers import brute_first_order

from mgoe.errors import MgoeError
from mgoe.serve.scorer import Scorer, ScorerConfig
from mgoe.train import api


@pytest.fixture(scope="module")
def scorers(world):
    return {name: Scorer.load(path) for name, path in world.artifacts.items()}


@pytest.mark.parametrize("model", ["mgoe", "mmoe"])
def test_scores_equal_predict_on_the_same_pairs(world, scorers, model):
    scorer = scorers[model]
    rng = np.random.default_rng(3)
    users = [f"u{v}" for v in rng.integers(0, 500, 400)] + ["stranger"]
    items = [f"i{v}" for v in rng.integers(0, 200, 400)] + ["i5"]
    ref = api.predict(world.runs[model], pd.DataFrame({"user_id": users, "item_id": items}))
    got = scorer.score_pairs(users, items)
    for task in scorer.tasks:
        np.testing.assert_allclose(got[task], ref[task].to_numpy(), rtol=0, atol=1e-6)
    # one user, many candidates (the serving shape): one forward, same numbers
    one = scorer.score("u7", items[:100])
    ref_one = api.predict(world.runs[model], pd.DataFrame({"user_id": ["u7"] * 100, "item_id": items[:100]}))
    for task in scorer.tasks:
        assert one[task].shape == (100,) and one[task].dtype == np.float32
        np.testing.assert_allclose(one[task], ref_one[task].to_numpy(), rtol=0, atol=1e-6)
    # a probability model: scores differ between items and lie in (0, 1)
    assert all(0 < v.min() and v.max() < 1 and np.ptp(v) > 0 for v in one.values())


def test_cold_users_and_items_get_the_cold_macro_node_and_fallback_row(world, scorers):
    scorer = scorers["mgoe"]
    ku, ki = scorer.spec.num_user_macro, scorer.spec.num_item_macro
    popular = f"i{pd.read_parquet(world.artifacts['mgoe'] / 'graph/edges.parquet')['item'].mode()[0]}"
    users = np.full(3, scorer.users.lookup(["nobody"])[0])
    items = scorer.items.lookup([popular, "no-such-item", "i2"])
    batch = scorer._batch(users, items, one_user=True)
    assert batch["user"].tolist() == [500] * 3 and batch["item"].tolist()[1] == 200  # spare rows
    assert batch["user_macro"].tolist() == [ku - 1] * 3 and batch["item_macro"][1] == ki - 1
    for key in ("user_first", "user_second"):
        assert float(batch[key].abs().sum()) == 0.0
    assert float(batch["item_first"][1].abs().sum()) == 0.0 and float(batch["item_second"][1].abs().sum()) == 0.0
    assert float(batch["item_first"][0].sum()) > 0  # a known item keeps its counts
    scores = scorer.score("nobody", [popular, "no-such-item", "i2"])
    ref = api.predict(world.runs["mgoe"], pd.DataFrame({"user_id": ["nobody"] * 3,
                                                        "item_id": [popular, "no-such-item", "i2"]}))
    for task in scorer.tasks:
        np.testing.assert_allclose(scores[task], ref[task].to_numpy(), atol=1e-6)
    # no graph (MMoE on ids): unknown ids still score
    assert np.isfinite(scorers["mmoe"].score("nobody", ["no-such-item"])["click"]).all()


def test_ranking_by_weighted_tasks(scorers):
    scorer = scorers["mgoe"]
    items = [f"i{v}" for v in range(30)]
    ranking, combined, scores = scorer.rank("u3", items, {"click": 1.0, "follow": 5.0})
    expected = scores["click"].astype(np.float64) + 5.0 * scores["follow"]
    np.testing.assert_allclose(combined, expected)
    assert ranking == [items[i] for i in np.argsort(-expected, kind="stable")]
    with pytest.raises(MgoeError, match="unknown task.*'buy'"):
        scorer.rank("u3", items, {"buy": 1.0})


def _index(scorer, user, item):
    return scorer.users.get(user), scorer.items.get(item)


def test_events_update_first_order_vectors_like_a_rebuilt_graph(world):
    scorer = Scorer.load(world.artifacts["mgoe"])
    art = world.artifacts["mgoe"]
    edges = pd.read_parquet(art / "graph/edges.parquet")
    # an existing edge with only 'click', to add 'like'; a pair that is no edge yet
    u_old, i_old = (int(v) for v in edges.loc[edges["mask"] == 1, ["user", "item"]].iloc[0])
    known = set(zip(edges["user"], edges["item"], strict=True))
    u_new, i_new = next((u, i) for u in range(500) for i in range(200)
                        if u != u_old and (u, i) not in known and (u_old, i) not in known)
    events = [
        (f"u{u_old}", f"i{i_old}", {"click": 1, "like": 1}),   # new bit on an edge: mask 1 -> 3
        (f"u{u_new}", f"i{i_new}", {"follow": 1, "click": 0}),  # a new edge, only 'follow'
        (f"u{u_old}", f"i{i_new}", {"like": 1}),
        ("fresh-user", f"i{i_old}", {"click": 1}),               # an id first seen now
    ]
    before_untouched = scorer.first_order(user_id="u9").copy()
    stats = scorer.apply_events(events)
    assert (stats.events, stats.changed, stats.new_users, stats.new_items) == (4, 4, 1, 0)
    assert scorer.pair_mask(f"u{u_old}", f"i{i_old}") == 0b011 and scorer.pair_mask(f"u{u_new}", f"i{i_new}") == 0b100
    brute = brute_first_order(art, [(u_old, i_old, 0b011), (u_new, i_new, 0b100), (u_old, i_new, 0b010),
                                    (501, i_old, 0b001)], extra_users=1)
    for user in (u_old, u_new, 9):
        np.testing.assert_allclose(scorer.first_order(user_id=f"u{user}"), brute["user_first"][user], atol=1e-5)
    for item in (i_old, i_new):
        np.testing.assert_allclose(scorer.first_order(item_id=f"i{item}"), brute["item_first"][item], atol=1e-5)
    np.testing.assert_allclose(scorer.first_order(user_id="fresh-user"), brute["user_first"][501], atol=1e-5)
    assert scorer.users.get("fresh-user") == 501 and scorer.macro_node(user_id="fresh-user") == scorer.spec.num_user_macro - 1
    np.testing.assert_array_equal(scorer.first_order(user_id="u9"), before_untouched)
    # the scores use the new vectors: the changed user's scores move, the fresh user scores
    ref = api.predict(world.runs["mgoe"], pd.DataFrame({"user_id": [f"u{u_old}"], "item_id": ["i7"]}))
    assert abs(scorer.score(f"u{u_old}", ["i7"])["click"][0] - ref["click"][0]) > 1e-7
    assert np.isfinite(scorer.score("fresh-user", ["i1", "i2"])["like"]).all()


def test_repeated_events_are_idempotent_and_zero_labels_never_clear(world):
    scorer = Scorer.load(world.artifacts["mgoe"])
    events = [("u4", "i8", {"click": 1}), ("u4", "i8", {"click": 1, "like": 1}), ("u4", "i8", {"click": 1})]
    scorer.apply_events(events)
    after = (scorer.first_order(user_id="u4"), scorer.first_order(item_id="i8"), scorer.pair_mask("u4", "i8"))
    for repeat in (events, events[::-1], [("u4", "i8", {"click": 0, "like": 0, "follow": 0})]):
        stats = scorer.apply_events(repeat)
        assert stats.changed == 0
        np.testing.assert_array_equal(scorer.first_order(user_id="u4"), after[0])
        np.testing.assert_array_equal(scorer.first_order(item_id="i8"), after[1])
        assert scorer.pair_mask("u4", "i8") == after[2]
    u, i = _index(scorer, "u4", "i8")
    brute = brute_first_order(world.artifacts["mgoe"], [(u, i, 0b011)])
    np.testing.assert_allclose(after[0], brute["user_first"][u], atol=1e-5)
    np.testing.assert_allclose(after[1], brute["item_first"][i], atol=1e-5)


@pytest.mark.parametrize("dense_above", [0.0, 2.0])
def test_storage_and_compaction_keep_the_values(world, dense_above):
    """Dense or CSR tables, with overrides folded into the base after every batch, give the
    same vectors and scores as the default layout with its overrides."""
    plain = Scorer.load(world.artifacts["mgoe"])
    compacting = Scorer.load(world.artifacts["mgoe"], ScorerConfig(compact_override_mb=1e-9, dense_above=dense_above))
    assert {r.storage for r in compacting.macro.rows.values()} == {"dense" if dense_above == 0 else "csr"}
    items = [f"i{v}" for v in range(60)]
    for task, values in plain.score("u3", items).items():
        np.testing.assert_array_equal(compacting.score("u3", items)[task], values)
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = [(f"u{u}", f"i{i}", {"click": 1, "follow": int(f)})
                 for u, i, f in zip(rng.integers(0, 500, 20), rng.integers(0, 200, 20), rng.random(20) < 0.3, strict=True)]
        batch.append(("brand-new", "also-new", {"like": 1}))
        plain.apply_events(batch)
        compacting.apply_events(batch)
        assert compacting.macro.rows["user_first"].num_overrides == 0
    for user in ("u1", "u2", "brand-new", *[f"u{u}" for u in rng.integers(0, 500, 10)]):
        np.testing.assert_allclose(compacting.first_order(user_id=user), plain.first_order(user_id=user), atol=1e-5)
    np.testing.assert_allclose(compacting.first_order(item_id="also-new"), plain.first_order(item_id="also-new"), atol=1e-6)
    items = [f"i{v}" for v in range(50)] + ["also-new"]
    for task, values in plain.score("brand-new", items).items():
        np.testing.assert_allclose(compacting.score("brand-new", items)[task], values, atol=1e-6)


def test_ignore_policy_and_bad_events(world):
    scorer = Scorer.load(world.artifacts["mgoe"], ScorerConfig(new_ids="ignore"))
    before = scorer.first_order(item_id="i1").copy()
    stats = scorer.apply_events([("somebody-new", "i1", {"click": 1})])
    assert stats.ignored == 1 and stats.changed == 0 and scorer.users.get("somebody-new") is None
    np.testing.assert_array_equal(scorer.first_order(item_id="i1"), before)
    # validation happens before anything is applied
    mask, vector = scorer.pair_mask("u1", "i1"), scorer.first_order(user_id="u1").copy()
    with pytest.raises(MgoeError, match="event 1: unknown task.*'cart'"):
        scorer.apply_events([("u1", "i1", {"follow": 1}), ("u1", "i2", {"cart": 1})])
    with pytest.raises(MgoeError, match="labels must be 0 or 1"):
        scorer.apply_events([("u1", "i1", {"follow": 2})])
    assert scorer.pair_mask("u1", "i1") == mask
    np.testing.assert_array_equal(scorer.first_order(user_id="u1"), vector)
    with pytest.raises(MgoeError, match="new_ids must be one of"):
        Scorer.load(world.artifacts["mgoe"], ScorerConfig(new_ids="keep"))
    # a model without graphs accepts events (logged for the batch refresh) and changes nothing
    mmoe = Scorer.load(world.artifacts["mmoe"])
    s = mmoe.score("u1", ["i1", "i2"])
    assert mmoe.apply_events([("u1", "i1", {"click": 1})]).events == 1
    np.testing.assert_array_equal(mmoe.score("u1", ["i1", "i2"])["click"], s["click"])
