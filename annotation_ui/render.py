"""HTML of the review screens. Every text that comes from a sample or a user goes through `esc`.

Images are served by content hash (`annotation_ui.image_route`): the HTML names `mifg/img/<sha256>`
of the display bytes made from the shard, never a file path, and the guard serves those to signed-in
users only.
"""

from __future__ import annotations

import hashlib
import io
from html import escape

from PIL import Image

from annotation_ui.dashboard import TeamStats
from annotation_ui.image_route import IMAGES
from schemas import LETTERS, Sample

_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))
_DISPLAY_MAX_BYTES = 6 * 1024 * 1024
_LOSSLESS_MAX_BYTES = 512 * 1024  # images up to this size are shown as they are
_DISPLAY_MAX_SIDE = 2560


def esc(text: object) -> str:
    """HTML-escape any value (quotes included) so sample text can never become markup or script."""
    return escape(str(text), quote=True)


def _mime(data: bytes) -> str | None:
    for magic, mime in _MIME:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def display_image(data: bytes) -> tuple[bytes, str] | None:
    """Bytes and mime type the browser shows: the original bytes when they are small PNG/JPEG/GIF/WebP,
    else a display copy (the shard keeps the original); None when they do not decode.

    A 1800 x 1350 photo is ~4 MB as PNG: fetching and decoding four of those per keypress took most of
    a second in Chromium. Its display copy is a JPEG at quality 95 without chroma subsampling (~10x
    smaller, no visible loss at the detail sizes reviewed); small images stay lossless.
    """
    mime = _mime(data)
    if mime is not None and len(data) <= _LOSSLESS_MAX_BYTES:
        return data, mime
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception:  # noqa: BLE001 - an undecodable image is shown as a placeholder, never crashes the page
        return None
    if mime == "image/jpeg" and len(data) <= _DISPLAY_MAX_BYTES and max(img.size) <= _DISPLAY_MAX_SIDE:
        return data, mime  # already a JPEG: re-encoding would only lose
    img.thumbnail((_DISPLAY_MAX_SIDE, _DISPLAY_MAX_SIDE))
    buf = io.BytesIO()
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    if img.mode in ("RGB", "L"):
        img.save(buf, format="JPEG", quality=95, subsampling=0)
        return buf.getvalue(), "image/jpeg"
    img.save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def image_url(data: bytes) -> str:
    """The content-addressed URL the review app serves `display_image(data)` under (empty when undecodable).

    The registry is keyed by the shard bytes' hash, so the display copy is made once per image: a
    reload or a second annotator on the same sample costs a hash, not a JPEG encode.
    """
    key = hashlib.sha256(data).hexdigest()
    url = IMAGES.url(key)
    if url is not None:
        return url
    shown = display_image(data)
    return "" if shown is None else IMAGES.register(*shown, key=key)


def prefetch_html(sample: Sample) -> str:
    """Hints that make the browser fetch `sample`'s images while the annotator looks at this one.

    The URLs are content-addressed and immutable, so a prefetched image is taken from the browser's
    cache when that sample comes up, and the next screen waits for its HTML only.
    """
    urls = [u for u in (image_url(img.bytes) for img in sample.images) if u]
    return "".join(f'<link rel="prefetch" as="image" href="{u}">' for u in urls)


def images_html(sample: Sample, prefetch: str = "") -> str:
    """All images side by side at one height, each with its evidence boxes (shown when boxes are on).

    `prefetch`: `prefetch_html` of the sample likely to come next.
    """
    aspects = [m.width / m.height for m in sample.image_meta]
    figs = []
    for i, (img, meta) in enumerate(zip(sample.images, sample.image_meta, strict=True)):
        uri = image_url(img.bytes)
        boxes = "".join(
            f'<div class="mifg-box" style="left:{b.bbox[0] * 100:.3f}%;top:{b.bbox[1] * 100:.3f}%;'
            f'width:{(b.bbox[2] - b.bbox[0]) * 100:.3f}%;height:{(b.bbox[3] - b.bbox[1]) * 100:.3f}%">'
            f"<span>evidence</span></div>"
            for b in sample.evidence
            if b.image_index == i
        )
        pixel = " mifg-pixelated" if meta.width < 400 else ""
        body = (
            f'<img class="mifg-img{pixel}" src="{uri}" alt="Image {i + 1}" draggable="false">'
            if uri
            else '<div class="mifg-img-missing">image cannot be decoded</div>'
        )
        figs.append(
            f'<figure class="mifg-fig" style="flex:{aspects[i]:.4f} 1 0%">'
            f'<div class="mifg-imgwrap" title="Click to compare the images (z)" data-index="{i + 1}">'
            f"{body}{boxes}</div>"
            f"<figcaption><b>Image {i + 1}</b> · {meta.width}×{meta.height}"
            f"{' · ' + str(sum(b.image_index == i for b in sample.evidence)) + ' box(es)' if sample.evidence else ''}"
            f"</figcaption></figure>"
        )
    max_w = f"calc(64vh * {sum(aspects):.4f} + {len(aspects) * 12}px)"
    return f'<div class="mifg-images" style="max-width:{max_w}">{"".join(figs)}{prefetch}</div>'


def question_html(sample: Sample) -> str:
    """Task, question, options with the proposed answer marked, and what each agent said."""
    prov = sample.provenance
    v, c = prov.verifier, prov.critic
    opts = []
    for i, opt in enumerate(sample.options):
        letter = LETTERS[i]
        tags = []
        if letter == sample.answer:
            tags.append('<span class="mifg-tag mifg-tag-answer">proposed answer</span>')
        if v.answer and letter == v.answer.strip().upper():
            tags.append('<span class="mifg-tag mifg-tag-verifier">verifier</span>')
        cls = "mifg-opt mifg-opt-answer" if letter == sample.answer else "mifg-opt"
        opts.append(f'<li class="{cls}"><span class="mifg-letter">{letter}</span>{esc(opt)}{"".join(tags)}</li>')
    v_ok = "mifg-good" if v.agrees else "mifg-bad"
    verifier = (
        f'<div class="mifg-agent"><div class="mifg-agent-name">Verifier</div>'
        f'<div>answered <b>{esc(v.answer or "—")}</b> · <span class="{v_ok}">'
        f"{'agrees ✓' if v.agrees else 'disagrees ✗'}</span>"
        f"{' · ' + esc(v.method) if v.method else ''}"
        f"{f' · confidence {v.confidence:.2f}' if v.confidence else ''}</div>"
        f"{'<div class=mifg-muted>' + esc(v.notes) + '</div>' if v.notes else ''}</div>"
    )
    c_cls = {"accept": "mifg-good", "reject": "mifg-bad"}.get(c.verdict, "mifg-warn")
    reasons = "".join(f'<span class="mifg-chip">{esc(r)}</span>' for r in c.reasons)
    critic = (
        f'<div class="mifg-agent"><div class="mifg-agent-name">Critic</div>'
        f'<div><span class="{c_cls}">{esc(c.verdict)}</span> · {prov.revisions} revision(s) {reasons}</div>'
        f"{'<div class=mifg-muted>' + esc(c.feedback) + '</div>' if c.feedback else ''}</div>"
    )
    rationale = (
        f'<details class="mifg-rationale"><summary>Writer\'s rationale</summary>{esc(sample.rationale)}</details>'
        if sample.rationale
        else ""
    )
    return (
        f'<div class="mifg-qcard">'
        f'<div class="mifg-meta"><span class="mifg-chip">{esc(sample.task_type.value)}</span>'
        f'<span class="mifg-chip">{esc(sample.domain.value)}</span>'
        f'<span class="mifg-id" title="sample id">{esc(sample.id[:12])}</span></div>'
        f'<div class="mifg-question">{esc(sample.question)}</div>'
        f'<ol class="mifg-opts">{"".join(opts)}</ol>'
        f'<div class="mifg-agents">{verifier}{critic}</div>{rationale}</div>'
    )


def done_html(annotator: str) -> str:
    """Shown when an annotator's queue is empty."""
    return (
        f'<div class="mifg-empty"><div class="mifg-empty-big">All done 🎉</div>'
        f"<div>Nothing left in the queue for <b>{esc(annotator)}</b>. "
        f"Samples come back here if another annotator's lease expires.</div></div>"
    )


def progress_html(annotator: str, counts: dict[str, int]) -> str:
    """The annotator's own progress: decisions so far and what is still open to them."""
    done, left = counts["done"], counts["open"]
    total = done + left
    pct = 100.0 * done / total if total else 100.0
    return (
        f'<div class="mifg-progress"><div class="mifg-progress-text"><b>{esc(annotator)}</b> · '
        f'<span class="mifg-num" id="mifg-done-count">{done}</span> reviewed · {left} open '
        f'<span class="mifg-muted">({counts["accept"]} accepted, {counts["edit"]} edited, '
        f"{counts['reject']} rejected)</span></div>"
        f'<div class="mifg-bar"><div style="width:{pct:.1f}%"></div></div></div>'
    )


def message_html(text: str, kind: str = "info") -> str:
    """A status line (info | ok | error)."""
    if not text:
        return ""
    return f'<div class="mifg-msg mifg-msg-{esc(kind)}" role="status">{esc(text)}</div>'


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _rate_rows(rates: dict) -> str:
    if not rates:
        return '<tr><td colspan="3" class="mifg-muted">no decisions yet</td></tr>'
    return "".join(
        f"<tr><td>{esc(k)}</td><td class='mifg-r'>{r.n}</td><td class='mifg-r'>"
        f"<div class='mifg-minibar'><div style='width:{100 * (r.rate or 0):.0f}%'></div></div>{_pct(r.rate)}</td></tr>"
        for k, r in rates.items()
    )


def dashboard_html(s: TeamStats) -> str:
    """The team dashboard: progress cards, per-annotator table, acceptance rates, agreement."""
    pct = 100.0 * s.decisions / s.target if s.target else 0.0
    cards = "".join(
        f'<div class="mifg-stat"><div class="mifg-stat-num">{v}</div><div class="mifg-stat-label">{esc(k)}</div></div>'
        for k, v in (
            ("samples", s.samples),
            (f"decisions of {s.target} ({pct:.0f}%)", s.decisions),
            (f"complete (≥{s.overlap} reviews)", s.complete),
            ("verified", s.verified),
        )
    )
    people = (
        "".join(
            f"<tr><td>{esc(name)}</td><td class='mifg-r'>{sum(c.values())}</td><td class='mifg-r'>{c['accept']}</td>"
            f"<td class='mifg-r'>{c['edit']}</td><td class='mifg-r'>{c['reject']}</td>"
            f"<td class='mifg-r'>{_pct((c['accept'] + c['edit']) / max(1, sum(c.values())))}</td></tr>"
            for name, c in s.per_annotator.items()
        )
        or '<tr><td colspan="6" class="mifg-muted">no decisions yet</td></tr>'
    )
    reasons = (
        "".join(f"<tr><td>{esc(k)}</td><td class='mifg-r'>{n}</td></tr>" for k, n in s.reasons.items())
        or '<tr><td colspan="2" class="mifg-muted">no rejections yet</td></tr>'
    )
    if s.overlap > 1 or s.multi_rated:
        pairs = (
            "".join(
                f"<tr><td>{esc(p['raters'][0])} × {esc(p['raters'][1])}</td><td class='mifg-r'>{p['items']}</td>"
                f"<td class='mifg-r'>{_pct(p['agreement'])}</td><td class='mifg-r'>{_num(p['kappa'])}</td></tr>"
                for p in s.pairs
            )
            or '<tr><td colspan="4" class="mifg-muted">no shared samples yet</td></tr>'
        )
        agreement = (
            f'<section class="mifg-panel" id="mifg-agreement"><h3>Inter-annotator agreement</h3>'
            f'<p class="mifg-muted">On keep (accept / edit) vs reject, over samples reviewed by ≥ 2 annotators.</p>'
            f'<div class="mifg-kpis"><div><span class="mifg-kpi" id="mifg-fleiss">{_num(s.fleiss)}</span>'
            f" Fleiss' κ ({s.fleiss_items} samples × {max(2, s.overlap)} raters)</div>"
            f'<div><span class="mifg-kpi">{_pct(s.unanimous)}</span> unanimous ({s.multi_rated} samples)</div></div>'
            f"<table class='mifg-table'><thead><tr><th>pair</th><th>shared</th><th>agreement</th>"
            f"<th>Cohen's κ</th></tr></thead><tbody>{pairs}</tbody></table></section>"
        )
    else:
        agreement = (
            '<section class="mifg-panel"><h3>Inter-annotator agreement</h3>'
            '<p class="mifg-muted">Start the app with --overlap 2 (or more) to measure agreement.</p></section>'
        )
    return (
        f'<div class="mifg-dash"><div class="mifg-stats">{cards}</div>'
        f'<div class="mifg-grid">'
        f'<section class="mifg-panel"><h3>Annotators</h3><table class="mifg-table"><thead><tr><th>annotator</th>'
        f"<th>reviewed</th><th>accepted</th><th>edited</th><th>rejected</th><th>keep rate</th></tr></thead>"
        f"<tbody>{people}</tbody></table></section>{agreement}"
        f'<section class="mifg-panel"><h3>Acceptance by task type</h3><table class="mifg-table"><thead><tr>'
        f"<th>task type</th><th>decisions</th><th>kept</th></tr></thead><tbody>{_rate_rows(s.by_task)}</tbody>"
        f"</table></section>"
        f'<section class="mifg-panel"><h3>Acceptance by agents\' verdict</h3><table class="mifg-table"><thead><tr>'
        f"<th>verdict</th><th>decisions</th><th>kept</th></tr></thead><tbody>{_rate_rows(s.by_verdict)}</tbody>"
        f"</table></section>"
        f'<section class="mifg-panel"><h3>Reject reasons</h3><table class="mifg-table"><thead><tr><th>reason</th>'
        f"<th>count</th></tr></thead><tbody>{reasons}</tbody></table></section>"
        f"{_skips_panel(s)}{_calibration_panel(s)}{_quarantine_panel(s)}"
        f"</div></div>"
    )


def _skips_panel(s: TeamStats) -> str:
    rows = (
        "".join(f"<tr><td>{esc(k)}</td><td class='mifg-r'>{n}</td></tr>" for k, n in s.skips.items())
        or '<tr><td colspan="2" class="mifg-muted">no skips yet</td></tr>'
    )
    return (
        '<section class="mifg-panel" id="mifg-skips"><h3>Skip reasons</h3><table class="mifg-table"><thead><tr>'
        f"<th>reason</th><th>count</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _calibration_panel(s: TeamStats) -> str:
    """Agent calibration, compact: precision / recall per verdict, the auto-accept threshold, the caveats."""
    cal = s.calibration
    if cal is None or not cal.reviewed:
        body = '<p class="mifg-muted">No decisions yet.</p>'
    else:
        rows = "".join(
            f"<tr><td>{esc(name)}</td><td class='mifg-r'>{pr.tp + pr.fp} / {pr.n}</td>"
            f"<td class='mifg-r'>{_pct(pr.precision)}</td><td class='mifg-r'>{_pct(pr.recall)}</td></tr>"
            for name, pr in cal.binary.items()
        )
        scores = "".join(
            f"<li>{esc(name)}: auto-accept ≥ {rep.threshold.threshold:.2f} saves {_pct(rep.threshold.saved)} of "
            f"reviews, lets through {rep.threshold.let_through} of {rep.threshold.rejected} rejected</li>"
            if rep.threshold is not None
            else f"<li>{esc(name)}: {esc(rep.note or 'n/a')}</li>"
            for name, rep in cal.scores.items()
            if rep.n
        )
        notes = "".join(f"<li>{esc(n)}</li>" for n in cal.notes)
        body = (
            f'<p class="mifg-muted">{cal.reviewed} decided samples, {cal.kept} kept. '
            "Full report and reliability plot: <code>mifg review-report RUN</code>.</p>"
            "<table class='mifg-table'><thead><tr><th>agent says good</th><th>good / n</th><th>precision</th>"
            f"<th>recall</th></tr></thead><tbody>{rows}</tbody></table><ul>{scores}</ul>"
            f'<ul class="mifg-muted">{notes}</ul>'
        )
    return f'<section class="mifg-panel" id="mifg-calibration"><h3>Agent calibration</h3>{body}</section>'


def _quarantine_panel(s: TeamStats, shown: int = 50) -> str:
    """Rows set aside at import (or when they could not be shown): never assigned, each with its reason."""
    if not s.quarantined:
        return ""
    rows = "".join(
        f"<tr><td>{esc(q.shard)}</td><td class='mifg-r'>{q.row}</td><td><code>{esc(q.sample_id[:16])}</code></td>"
        f"<td>{esc(q.reason)}</td></tr>"
        for q in s.quarantined[:shown]
    )
    more = f'<p class="mifg-muted">… and {len(s.quarantined) - shown} more.</p>' if len(s.quarantined) > shown else ""
    return (
        f'<section class="mifg-panel" id="mifg-quarantine"><h3>Quarantined rows ({len(s.quarantined)})</h3>'
        '<p class="mifg-muted">Never assigned to anyone. Fix the shard and re-run generation, or leave them out.</p>'
        f"<table class='mifg-table'><thead><tr><th>shard</th><th>row</th><th>id</th><th>reason</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{more}</section>"
    )
