"""Agent calibration: the maths on hand-made inputs, and `mifg review-report` on a real run and store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from annotation_ui import render
from annotation_ui.calibration import (
    VERIFIER,
    VOTES,
    annotators_keep,
    answer_vote_share,
    best_threshold,
    calibrate,
    expected_calibration_error,
    precision_recall,
    reliability_bins,
    threshold_problem,
    uncertainty_order,
    verifier_score,
)
from annotation_ui.dashboard import team_stats
from annotation_ui.review_store import ReviewStore
from pipeline.cli import app, main
from pipeline.shard_store import ShardWriter
from schemas import CriticVerdict, VerifierVerdict
from tests.factories import make_sample

# -- the maths ------------------------------------------------------------------------------------


def test_precision_recall_by_hand() -> None:
    # (agent says good, annotators kept): TP 3, FP 1, FN 2, TN 4
    pairs = [(True, True)] * 3 + [(True, False)] + [(False, True)] * 2 + [(False, False)] * 4
    pr = precision_recall(pairs)
    assert (pr.tp, pr.fp, pr.fn, pr.tn, pr.n) == (3, 1, 2, 4, 10)
    assert pr.precision == pytest.approx(3 / 4)
    assert pr.recall == pytest.approx(3 / 5)
    never_good = precision_recall([(False, True), (False, False)])
    assert never_good.precision is None and never_good.recall == 0.0
    assert precision_recall([(True, False)]).recall is None  # nothing kept: recall undefined


def test_keep_rules_and_scores() -> None:
    assert annotators_keep(["accept"]) and annotators_keep(["edit"]) and not annotators_keep(["reject"])
    assert not annotators_keep(["accept", "reject"])  # a tie is not kept (as `mifg verified`)
    assert annotators_keep(["accept", "edit", "reject"])
    assert not annotators_keep(["accept", "edit", "reject"], "any-reject")
    assert annotators_keep(["accept", "edit"], "any-reject")
    with pytest.raises(ValueError):
        annotators_keep(["accept"], "unanimous")
    assert verifier_score(True, 1.0) == 1.0
    assert verifier_score(True, 0.1) == pytest.approx(0.55)
    assert verifier_score(False, 0.8) == pytest.approx(0.1)
    assert verifier_score(False, 0.0) == 0.5  # no information either way
    assert answer_vote_share(["A", "B", "A", "A"], "A") == 0.75
    assert answer_vote_share([], "A") is None


def test_reliability_bins_and_ece_by_hand() -> None:
    pairs = [(0.05, False), (0.15, True), (0.12, False), (1.0, True), (0.95, False)]
    bins = reliability_bins(pairs)
    assert len(bins) == 10 and [b.n for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert (bins[0].mean_score, bins[0].keep_rate) == (pytest.approx(0.05), 0.0)
    assert (bins[1].mean_score, bins[1].keep_rate) == (pytest.approx(0.135), 0.5)
    assert (bins[9].mean_score, bins[9].keep_rate) == (pytest.approx(0.975), 0.5)  # 1.0 falls in the last bin
    assert bins[2].mean_score is None and bins[2].keep_rate is None
    # (1 x 0.05 + 2 x |0.135 - 0.5| + 2 x |0.975 - 0.5|) / 5 = 1.73 / 5
    assert expected_calibration_error(bins) == pytest.approx(0.346)
    assert expected_calibration_error(reliability_bins([])) is None


def _threshold_pairs() -> list[tuple[float, bool]]:
    """75 samples: 50 rejected (48 at 0.1, one at 0.7, one at 0.9), 25 kept (5 at 0.6, 10 at 0.8, 10 at 0.95)."""
    rejected = [(0.1, False)] * 48 + [(0.7, False), (0.9, False)]
    kept = [(0.6, True)] * 5 + [(0.8, True)] * 10 + [(0.95, True)] * 10
    return rejected + kept


def test_threshold_is_the_lowest_that_keeps_let_through_within_two_percent() -> None:
    pairs = _threshold_pairs()
    # 2% of 50 rejected = 1 may get through. t=0.1 lets 50 through, t=0.6 and t=0.7 let 2 through (0.7
    # and 0.9): too many. t=0.8 lets 1 through (0.9) and auto-accepts 10 + 1 + 10 = 21 of 75.
    t = best_threshold(pairs)
    assert t is not None
    assert t.threshold == 0.8
    assert (t.auto_accepted, t.let_through, t.rejected, t.kept) == (21, 1, 50, 25)
    assert t.saved == pytest.approx(21 / 75)
    assert t.let_through_share == pytest.approx(0.02)
    assert t.precision == pytest.approx(20 / 21)
    assert t.recall == pytest.approx(20 / 25)


def test_the_let_through_limit_is_binding() -> None:
    pairs = _threshold_pairs()
    assert best_threshold(pairs, max_let_through=1.0).threshold == 0.1  # no limit: auto-accept everything
    loose = best_threshold(pairs, max_let_through=0.04)  # 2 of 50 may get through: t=0.6 now passes
    assert (loose.threshold, loose.auto_accepted, loose.let_through) == (0.6, 27, 2)
    assert loose.saved == pytest.approx(27 / 75)
    strict = best_threshold(pairs, max_let_through=0.0)  # none may get through: only the 0.95s
    assert (strict.threshold, strict.auto_accepted, strict.let_through) == (0.95, 10, 0)
    # fewer than 50 rejected: 2% of them rounds down to 0 allowed
    small = [(0.9, False), (0.5, True), (0.95, True)]
    assert best_threshold(small).threshold == 0.95
    assert best_threshold([(0.9, False), (0.5, True)]) is None  # the top score is a reject: nothing is safe


def test_threshold_problems_are_said_plainly() -> None:
    offline = [(1.0, True), (1.0, False), (1.0, True)]
    assert threshold_problem(offline, VERIFIER) == (
        "no spread in verifier confidence (every sample 1.00): threshold analysis not possible"
    )
    assert "rejected none" in threshold_problem([(0.5, True), (0.9, True)], VERIFIER)
    assert "not possible" in threshold_problem([], VOTES)
    assert threshold_problem(_threshold_pairs(), VERIFIER) == ""


def _record(sid: str, agrees: bool, confidence: float, votes=(), reasons=(), answer: str = "A") -> dict:
    """A shard record as `ReviewStore.agent_records` returns it."""
    return {
        "id": sid,
        "answer": answer,
        "provenance": {
            "verifier": {"agrees": agrees, "confidence": confidence, "votes": list(votes), "vote_share": 0.0},
            "critic": {"verdict": "accept", "reasons": list(reasons), "probes": []},
        },
    }


def test_offline_like_run_says_what_it_cannot_measure() -> None:
    records = {f"s{i}": _record(f"s{i}", True, 1.0) for i in range(5)}
    decisions = [("s0", "accept"), ("s1", "reject"), ("s2", "edit"), ("s3", "accept")]
    cal = calibrate(decisions, records)
    assert (cal.reviewed, cal.kept, cal.undecided, cal.uncertain_first) == (4, 3, 1, ["s4"])
    ver = cal.scores[VERIFIER]
    assert ver.threshold is None and not ver.searched
    assert cal.scores[VOTES].n == 0
    text = "\n".join(cal.notes)
    assert "no spread in verifier confidence (every sample 1.00): threshold analysis not possible" in text
    assert "no verifier votes" in text and "vote share not available" in text
    assert "no reasons raised" in text
    assert cal.notes[0].startswith("rule: majority - ")


def test_critic_reasons_and_votes_become_signals() -> None:
    records = {
        "a": _record("a", True, 0.9, votes="AAA"),
        "b": _record("b", True, 0.9, votes="AAB", reasons=["glance_solvable"]),
        "c": _record("c", False, 0.5, votes="BBA", reasons=["glance_solvable"]),
        "d": _record("d", True, 0.3, votes="ABB"),
    }
    decisions = [("a", "accept"), ("b", "reject"), ("c", "reject"), ("d", "accept"), ("d", "reject")]
    cal = calibrate(decisions, records)  # d: a tie, rejected under the majority rule
    assert (cal.reviewed, cal.kept, cal.multi_rated, cal.split) == (4, 1, 1, 1)
    reason = cal.binary["critic: no glance_solvable"]
    assert (reason.tp, reason.fp, reason.fn, reason.tn) == (1, 1, 0, 2)  # says good on a (kept) and d (rejected)
    assert cal.scores[VOTES].n == 4
    # vote shares for the proposed answer: a 1.0 kept, b 2/3, c 1/3, d 1/3 rejected; none of 3 rejected may pass
    assert cal.scores[VOTES].threshold.threshold == 1.0
    assert cal.scores[VOTES].threshold.saved == 0.25


def test_uncertainty_order_puts_coin_flips_first() -> None:
    bins = reliability_bins([(0.95, True), (0.95, True), (0.55, True), (0.55, False), (0.15, False)])
    order = uncertainty_order({"sure": 0.96, "coin": 0.58, "bad": 0.12, "unknown": 0.45}, bins)
    assert order == ["coin", "unknown", "sure", "bad"]  # bin keep rates 1/2, (empty: score) 0.45, 1, 0


# -- `mifg review-report` on a real run -----------------------------------------------------------

# per sample: verifier agrees, confidence, votes (a: the proposed answer, b: the other option), critic reasons,
# alice's decision (None: skipped)
PLAN = [
    (True, 1.0, "aaa", (), "accept"),
    (True, 1.0, "aab", (), "accept"),
    (True, 0.9, "aaa", (), "accept"),
    (True, 0.9, "abb", (), "edit"),
    (True, 0.2, "bba", ("thumbnail_solvable",), "reject"),
    (False, 0.6, "bbb", (), "reject"),
    (True, 0.2, "aab", ("thumbnail_solvable",), "accept"),
    (True, 0.5, "aaa", (), None),
]


def _make_calibration_run(root: Path) -> list[str]:
    """A run whose samples carry the verdicts of PLAN; returns their ids in order."""
    samples = []
    for i, (agrees, conf, votes, reasons, _) in enumerate(PLAN):
        s = make_sample(i)
        other = "B" if s.answer == "A" else "A"
        verifier = VerifierVerdict(
            answer=s.answer if agrees else other,
            agrees=agrees,
            method="llm",
            confidence=conf,
            votes=[s.answer if v == "a" else other for v in votes],
        )
        critic = CriticVerdict(verdict="accept", reasons=list(reasons))
        samples.append(
            s.model_copy(
                update={"provenance": s.provenance.model_copy(update={"verifier": verifier, "critic": critic})}
            )
        )
    ShardWriter(root, "main").write(samples)
    return [s.id for s in samples]


def _review(run: Path, ids: list[str]) -> None:
    """Alice decides PLAN through the store; bob (overlap 2) also keeps samples 0 and 5, skipping the rest."""
    plan = dict(zip(ids, (p[4] for p in PLAN), strict=True))
    with ReviewStore(run, overlap=2) as store:
        store.import_shards()
        while (sid := store.claim_next("alice")) is not None:
            decision = plan[sid]
            if decision is None:
                store.skip("alice", sid, "unsure")
            elif decision == "edit":
                before = store.load_sample(sid)
                edited = before.model_copy(update={"question": before.question + " (edited)"})
                store.record_decision("alice", sid, "edit", edited=edited, before=before)
            else:
                store.record_decision("alice", sid, decision, reason="wrong_answer" if decision == "reject" else "")
        while (sid := store.claim_next("bob")) is not None:
            if sid in (ids[0], ids[5]):
                store.record_decision("bob", sid, "accept")
            else:
                store.skip("bob", sid, "unsure")


def test_review_report_command(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ids = _make_calibration_run(run)
    runner = CliRunner()
    res = runner.invoke(app, ["review-report", str(run)])  # no review.sqlite yet
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1 and "no review decisions" in res.output
    ReviewStore(run, overlap=2).close()
    res = runner.invoke(app, ["review-report", str(run)])  # a store without decisions
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1

    _review(run, ids)
    res = runner.invoke(app, ["review-report", str(run)])
    assert res.exit_code == 0, res.output
    assert "7 samples decided (5 kept, 2 rejected)" in res.output and "rule majority" in res.output
    out = run / "review-report"
    rep = json.loads((out / "report.json").read_text())
    # kept: 0 1 2 3(edit) 6; rejected: 4, 5 (alice rejected, bob kept: a tie); 7 skipped, not counted
    assert (rep["reviewed"], rep["kept"], rep["rejected"], rep["decisions"]) == (7, 5, 2, 9)
    assert (rep["multi_rated"], rep["split"]) == (2, 1)
    assert rep["rule"] == "majority" and "tie counts as rejected" in rep["rule_text"]
    agrees = rep["binary"]["verifier agrees"]
    assert (agrees["tp"], agrees["fp"], agrees["fn"], agrees["tn"]) == (5, 1, 0, 1)
    assert agrees["precision"] == pytest.approx(5 / 6) and agrees["recall"] == 1.0
    reason = rep["binary"]["critic: no thumbnail_solvable"]
    assert reason["precision"] == pytest.approx(4 / 5) and reason["recall"] == pytest.approx(4 / 5)
    # verifier scores 1, 1, .95, .95, .6 (rejected), .2 (rejected), .6: only t=.95 lets no rejected one through
    ver = rep["scores"][VERIFIER]["threshold"]
    assert ver["auto_accept_at_or_above"] == pytest.approx(0.95) and ver["let_through"] == 0
    assert rep["review_time_saved"] == pytest.approx(4 / 7)
    votes = rep["scores"][VOTES]["threshold"]  # shares 1, 2/3, 1, 1/3 | 1/3, 0 rejected | 2/3: t = 2/3
    assert votes["auto_accept_at_or_above"] == pytest.approx(2 / 3) and votes["auto_accepted"] == 4
    assert rep["undecided"] == 1 and rep["uncertain_first"] == [ids[7]]
    with Image.open(out / "reliability.png") as img:
        img.verify()
        assert img.format == "PNG" and img.size[0] > 200

    other = tmp_path / "elsewhere"
    res = runner.invoke(app, ["review-report", str(run), "--out", str(other), "--rule", "any-reject"])
    assert res.exit_code == 0, res.output
    assert json.loads((other / "report.json").read_text())["rule"] == "any-reject"
    assert (other / "reliability.png").is_file()

    with ReviewStore(run) as store:  # the dashboard shows the same figures
        stats = team_stats(store)
    assert stats.calibration is not None and stats.calibration.binary["verifier agrees"].tp == 5
    assert 'id="mifg-calibration"' in render.dashboard_html(stats)


def test_review_report_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["review-report", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"mifg: error: {tmp_path / 'nope'}: run directory not found\n"
    (tmp_path / "run").mkdir()
    assert main(["review-report", str(tmp_path / "run"), "--rule", "unanimous"]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    (tmp_path / "file").write_text("x")
    assert main(["review-report", str(tmp_path / "run"), "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
