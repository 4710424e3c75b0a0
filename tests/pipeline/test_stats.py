"""`mifg stats` figures agree with what the run did."""

from __future__ import annotations

import shutil

from pipeline.run_config import RunConfig
from pipeline.runner import generate
from pipeline.stats import collect_stats, format_stats
from tests.pipeline.agent_doubles import make_agents


def test_stats_count_verdicts_revisions_tokens_and_skips(photo_dir, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(photo_dir, photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (photos / "empty.png").write_bytes(b"")
    out = tmp_path / "run"
    cfg = RunConfig(out=out, n=8, source=f"dir:{photos}", concurrency=2, max_revisions=1, workers=1)
    s = generate(cfg, make_agents("revise"), progress=False)
    st = collect_stats(out)

    assert st["items"] == 8 and st["planned"] == 8
    assert st["outcomes"] == {"accepted": 0, "rejected": 8, "failed": 0}
    critiqued = st["stages"]["critiqued"]
    assert st["critic"]["verdicts"] == {"revise": 2 * critiqued}  # first draft + one revision each
    assert st["critic"]["reasons"]["revise"] == {"option_bias": 2 * critiqued}
    assert st["revisions"] == {"1": critiqued}
    assert st["rejection_reasons"]["revise_limit"] == critiqued
    assert st["verifier"]["agree"] == critiqued and st["verifier"]["disagree"] == 8 - critiqued
    # 4 calls for the first pass, 2 more (writer + verifier) and a critic call per revision
    assert st["tokens"]["calls"] == 4 * 8 - (8 - critiqued) + 3 * critiqued
    assert st["skipped_inputs"] == {"corrupt": 1, "empty_file": 1}
    assert st["shards"]["rejected"]["rows"] == 8 and st["shards"]["accepted"]["rows"] == 0
    assert s.skipped_inputs == 2

    text = format_stats(st)
    assert "critic verdicts: revise" in text and "skipped: corrupt 1, empty_file 1" in text
    assert "acceptance rate 0.0%" in text
