"""`mifg generate --images DIR` over bad files mixed with good photos: exit 0, each bad file reported once."""

from __future__ import annotations

import pytest

from bench.bench_bad_inputs import run_bad_inputs

pytestmark = pytest.mark.slow


def test_bad_files_are_each_reported_once_with_their_reason(tmp_path):
    r = run_bad_inputs(tmp_path, n=8)
    assert r["problems"] == []
    assert r["exit_status"] == 0
    # 15 unusable files; 14 where root cannot drop its file-read override (no setpriv): chmod 000 then reads
    assert r["bad_files"] >= 14 + r["file_modes_apply"] and r["kinds_of_bad"] >= 9
    for name, v in r["per_file"].items():
        assert v["reported"] == [v["expected"]], name
    assert len(r["awkward_but_usable"]) >= 10  # CMYK, 16-bit, palette+alpha, animated, EXIF, odd names: used
    assert r["pool_photos"] >= 20
    assert r["ok"]
