"""Agreement math against hand-computed and textbook values, and the dashboard's figures from a real store."""

from __future__ import annotations

import pytest

from annotation_ui.agreement import cohen_kappa, fleiss_kappa, pairwise_cohen, percent_agreement, ratings_table
from annotation_ui.dashboard import is_verified, team_stats


def test_cohen_kappa_textbook_example() -> None:
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> p_o = 0.7, p_e = 0.5, kappa = 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert percent_agreement(a, b) == pytest.approx(0.7)
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_cohen_kappa_small_hand_computed() -> None:
    # p_o = 3/4; p_e = 3/4*2/4 + 1/4*2/4 = 1/2 -> kappa = 1/2
    assert cohen_kappa(["k", "k", "r", "k"], ["k", "r", "r", "k"]) == pytest.approx(0.5)
    assert cohen_kappa(["k", "r"], ["k", "r"]) == pytest.approx(1.0)
    assert cohen_kappa(["k", "r"], ["r", "k"]) == pytest.approx(-1.0)


def test_kappa_undefined_without_variation() -> None:
    assert cohen_kappa(["k", "k"], ["k", "k"]) is None
    assert fleiss_kappa([[2, 0], [2, 0]]) is None
    assert cohen_kappa([], []) is None and fleiss_kappa([]) is None


def test_fleiss_kappa_textbook_example() -> None:
    # 10 items, 14 raters, 5 categories (Fleiss 1971 as tabulated on Wikipedia): kappa = 0.210
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)


def test_fleiss_kappa_small_hand_computed() -> None:
    # p_keep = 5/8, p_rej = 3/8 -> P_e = 34/64; P_bar = (1 + 0 + 1 + 1) / 4 = 3/4 -> kappa = 0.21875 / 0.46875
    table = ratings_table(
        {"a": ["k", "k"], "b": ["k", "r"], "c": ["r", "r"], "d": ["k", "k"], "e": ["k"]}, ["k", "r"], 2
    )
    assert table == [[2, 0], [1, 1], [0, 2], [2, 0]]
    assert fleiss_kappa(table) == pytest.approx(0.21875 / 0.46875)
    with pytest.raises(ValueError):
        fleiss_kappa([[2, 0], [1, 0]])


def test_pairwise_cohen_only_over_shared_items() -> None:
    pairs = pairwise_cohen({"a": {"1": "k", "2": "r", "3": "k"}, "b": {"1": "k", "2": "r"}, "c": {"9": "k"}})
    assert pairs == [{"raters": ("a", "b"), "items": 2, "agreement": 1.0, "kappa": 1.0}]


def test_verified_rule() -> None:
    assert is_verified(["accept", "edit"], 2)
    assert not is_verified(["accept", "reject"], 1)  # a tie does not verify
    assert is_verified(["accept", "accept", "reject"], 2)
    assert not is_verified(["accept"], 2)


def test_dashboard_figures_from_a_real_store(open_store) -> None:
    store = open_store(overlap=2)
    # alice: keep keep reject keep ; bob: keep reject reject keep  (same four samples)
    plan = {"alice": ["accept", "edit", "reject", "accept"], "bob": ["accept", "reject", "reject", "accept"]}
    for i in range(4):
        for name in ("alice", "bob"):
            sid = store.claim_next(name)
            d = plan[name][i]
            if d == "edit":
                d = "accept"  # an edit needs a sample; keep-vs-reject agreement treats both alike
            store.record_decision(name, sid, d, reason="Wrong answer" if d == "reject" else "")
    s = team_stats(store)
    assert (s.decisions, s.target, s.complete, s.multi_rated) == (8, 16, 4, 4)
    # a: k k r k, b: k r r k -> p_o = 3/4, p_e = 3/4*1/2 + 1/4*1/2 = 1/2 -> kappa 0.5
    assert s.pairs[0]["kappa"] == pytest.approx(0.5)
    assert s.fleiss == pytest.approx(0.21875 / 0.46875)
    assert s.unanimous == pytest.approx(0.75)
    assert s.verified == 2 and s.reasons == {"Wrong answer": 3}
    assert sum(r.n for r in s.by_task.values()) == 8
