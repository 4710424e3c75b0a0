"""Splits: grouped by source photo with union-find, stratified by task type, deterministic."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from pipeline.export.splits import TEST, TRAIN, SplitItem, group_by_source, plan_splits


def _items(n: int, types: int = 3, shared_every: int = 0) -> list[SplitItem]:
    items = []
    for i in range(n):
        src = f"p{i // 2}" if shared_every and i % shared_every < 2 else f"solo{i}"
        items.append(SplitItem(f"s{i:03d}", (src,), f"t{i % types}"))
    return items


def test_union_find_joins_chains_of_shared_sources():
    items = [
        SplitItem("a", ("x",), "t"),
        SplitItem("b", ("x", "y"), "t"),  # shares x with a, y with c
        SplitItem("c", ("y",), "t"),
        SplitItem("d", ("z",), "t"),
    ]
    groups = sorted(sorted(ids) for ids in group_by_source(items).values())
    assert groups == [["a", "b", "c"], ["d"]]


def test_no_source_in_both_splits_and_every_sample_assigned():
    items = _items(80, shared_every=3)
    plan = plan_splits(items, 0.2, seed=1)
    assert set(plan.split_of) == {it.id for it in items}
    sources = {TRAIN: set(), TEST: set()}
    for it in items:
        sources[plan.split_of[it.id]].update(it.sources)
    assert sources[TRAIN] and sources[TEST]
    assert not sources[TRAIN] & sources[TEST]


def test_stratified_by_task_type_when_groups_allow():
    items = _items(90, types=3)  # all singletons: the split can hit every per-type target exactly
    plan = plan_splits(items, 0.2, seed=0)
    got = Counter(it.task_type for it in items if plan.split_of[it.id] == TEST)
    assert got == Counter({"t0": 6, "t1": 6, "t2": 6})
    assert plan.targets == {"t0": 6, "t1": 6, "t2": 6}


def test_stratification_is_close_with_uneven_types():
    items = [SplitItem(f"s{i}", (f"p{i}",), "big" if i < 70 else "small") for i in range(80)]
    plan = plan_splits(items, 0.1, seed=3)
    got = Counter(it.task_type for it in items if plan.split_of[it.id] == TEST)
    assert got == Counter({"big": 7, "small": 1})


def test_deterministic_for_a_seed_and_seed_matters():
    items = _items(60, shared_every=4)
    a, b = plan_splits(items, 0.25, seed=7), plan_splits(list(items), 0.25, seed=7)
    assert json.dumps(a.to_json(), sort_keys=True) == json.dumps(b.to_json(), sort_keys=True)
    c = plan_splits(items, 0.25, seed=8)
    assert a.split_of != c.split_of


def test_input_order_does_not_change_the_groups():
    items = _items(30, shared_every=3)
    a = plan_splits(items, 0.2, seed=0)
    b = plan_splits(list(reversed(items)), 0.2, seed=0)
    assert a.groups.keys() == b.groups.keys()
    assert {g: sorted(v) for g, v in a.groups.items()} == {g: sorted(v) for g, v in b.groups.items()}


def test_edge_fractions():
    items = _items(10)
    assert set(plan_splits(items, 0.0).split_of.values()) == {TRAIN}
    tiny = plan_splits(items, 0.01)  # rounds to 0 but a non-zero fraction still gets one test sample
    assert Counter(tiny.split_of.values())[TEST] == 1
    one_group = [SplitItem(f"s{i}", ("same",), "t") for i in range(5)]
    assert set(plan_splits(one_group, 0.5).split_of.values()) == {TRAIN}  # cannot split one group
    with pytest.raises(ValueError):
        plan_splits(items, 1.0)


def test_plan_json_records_groups_and_sources():
    items = _items(12, shared_every=3)
    record = plan_splits(items, 0.25, seed=0).to_json()
    assert record["seed"] == 0 and record["test_fraction"] == 0.25
    for sid, info in record["samples"].items():
        group = record["groups"][info["group"]]
        assert sid in group["samples"] and group["split"] == info["split"]
    assert sum(sum(c.values()) for c in record["counts"].values()) == 12
