"""Real-browser end-to-end tests: Debian chromium + playwright against the app on 127.0.0.1.

They also write the README's screenshots to docs/screenshots/.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from pipeline.shard_store import ShardWriter
from tests.annotation_ui.live_app import USERS, serve
from tests.annotation_ui.photo_samples import photo_sample

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> Which image differs?'


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (make browser)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)  # a loaded 2-core CI box can take seconds per round trip
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield b
        b.close()


def _login(browser, url: str, name: str, shot: str | None = None, size: tuple[int, int] = (1440, 900)):
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = ctx.new_page()
    page.set_default_timeout(15000)
    hosts: set[str] = set()
    page.on("request", lambda r: hosts.add(urlparse(r.url).hostname or r.url.split(":", 1)[0]))
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.get_by_label("username").fill(name)
    page.get_by_label("password").fill(USERS[name])
    if shot:
        page.screenshot(path=str(SHOTS / shot))
    page.get_by_role("button", name="Login").click()
    expect(page.locator("#mifg-images .mifg-img").first).to_be_visible()
    return page, hosts, dialogs


def _settle(page) -> None:
    """Wait until no Gradio progress overlay is showing (so a screenshot is not caught mid-update)."""
    page.wait_for_function(
        "() => ![...document.querySelectorAll('[data-testid=status-tracker]')]"
        ".some(e => !e.classList.contains('hide') && getComputedStyle(e).opacity !== '0')"
    )
    page.wait_for_timeout(150)


def _shown_id(page) -> str:
    return page.locator("#mifg-question .mifg-id").inner_text().strip()


def _reload(page) -> None:
    """Reload the page and wait until a sample's images are shown again."""
    from playwright.sync_api import expect

    page.reload()
    expect(page.locator("#mifg-images .mifg-img").first).to_be_visible()


def _wait_for(condition, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _wait_msg(page, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#mifg-message .mifg-msg")).to_contain_text(text)


def test_annotator_keyboard_flow_survives_reload(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    run = tmp_path / "demo-run"
    ShardWriter(run, "main").write(
        [photo_sample(0), photo_sample(1, n_images=3), photo_sample(2), photo_sample(3, question=XSS), photo_sample(4)]
    )
    with serve(run, overlap=1) as (url, store):
        page, hosts, dialogs = _login(browser, url, "alice", shot="login.png")
        first = _shown_id(page)
        assert store.refs()[0].id.startswith(first)

        # evidence boxes are drawn on demand
        box = page.locator("#mifg-images .mifg-box").first
        expect(box).to_be_hidden()
        page.keyboard.press("b")
        expect(box).to_be_visible()
        _settle(page)
        page.screenshot(path=str(SHOTS / "review.png"))

        # the next sample's images are fetched while this one is on screen ...
        hinted = page.eval_on_selector_all("#mifg-images link[rel=prefetch]", "ls => ls.map(l => l.href)")
        assert hinted
        page.wait_for_function(
            "(urls) => urls.every(u => performance.getEntriesByName(u).length > 0)", arg=hinted, timeout=10_000
        )

        # accept by keyboard
        page.keyboard.press("a")
        _wait_msg(page, "Accepted")
        assert [(d.annotator, d.decision) for d in store.decisions()] == [("alice", "accept")]
        # ... and are the ones shown next
        shown = page.eval_on_selector_all("#mifg-images img.mifg-img", "is => is.map(i => i.src)")
        assert set(shown) == set(hinted)

        # reject with a reason: r, 1, Enter
        page.keyboard.press("r")
        expect(page.locator("#mifg-reject-panel").first).to_be_visible()
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        _wait_msg(page, "Rejected")
        assert store.decisions()[-1].reason == "Wrong answer"

        # edit: typing letters in a field must not trigger shortcuts; a box out of range is refused whole
        page.keyboard.press("e")
        expect(page.locator("#mifg-edit-panel").first).to_be_visible()
        q = page.locator("#mifg-e-question textarea")
        q.fill("")
        q.press_sequentially("Which image has a recoloured area? answer carefully")
        page.locator("#mifg-e-evidence textarea").fill("1: 0.2 0.2 1.5 0.3")
        page.keyboard.press("Control+Enter")
        _wait_msg(page, "Edit not saved")
        assert len(store.decisions()) == 2
        _settle(page)
        page.screenshot(path=str(SHOTS / "edit.png"), full_page=True)
        page.locator("#mifg-e-evidence textarea").fill("1: 0.2 0.2 0.4 0.4")
        page.keyboard.press("Control+Enter")
        _wait_msg(page, "Edited and accepted")
        (*_, edit) = store.decisions(with_edits=True)
        assert edit.decision == "edit" and edit.edited.question.startswith("Which image has a recoloured area?")
        assert [b.bbox for b in edit.edited.evidence] == [(0.2, 0.2, 0.4, 0.4)]

        # the next sample's question tries to inject markup: it is shown as text and never runs
        expect(page.locator("#mifg-question .mifg-question")).to_contain_text("<script>window.__pwned = 1</script>")
        assert page.evaluate("window.__pwned") is None and dialogs == []
        current = _shown_id(page)

        # reload: the work is kept and the same sample comes back
        _reload(page)
        assert _shown_id(page) == current
        expect(page.locator("#mifg-done-count")).to_have_text("3")

        # click an image to open it full size; Esc closes
        page.locator("#mifg-images .mifg-imgwrap").first.click()
        expect(page.locator(".mifg-lightbox")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator(".mifg-lightbox")).to_have_count(0)

        assert [d.decision for d in store.decisions()] == ["accept", "reject", "edit"]
        assert hosts <= {"127.0.0.1", "data"}, f"outside requests: {hosts}"
        page.context.close()


_PANES = """() => [...document.querySelectorAll('.mifg-cmp-pane')].filter(p => p.style.display !== 'none').map(p => {
  const w = p.querySelector('.mifg-cmp-wrap'), r = p.getBoundingClientRect(), q = w.getBoundingClientRect();
  return {left: r.left, top: r.top, pw: r.width, ph: r.height, x: q.left, y: q.top, w: q.width, h: q.height,
          showing: p.dataset.showing || ''};
})"""


def _image_point(pane: dict, cx: float, cy: float) -> tuple[float, float]:
    """The image-relative point drawn at client position (cx, cy) of a pane."""
    return (cx - pane["x"]) / pane["w"], (cy - pane["y"]) / pane["h"]


def test_set_viewer_zooms_every_image_at_the_pointer_and_flickers(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    run = tmp_path / "viewer-run"
    ShardWriter(run, "main").write([photo_sample(1, n_images=3)])
    with serve(run, overlap=1) as (url, store):
        page, _, _ = _login(browser, url, "alice")
        page.keyboard.press("z")
        expect(page.locator(".mifg-cmp-pane")).to_have_count(3)
        page.wait_for_function("() => [...document.querySelectorAll('.mifg-cmp-wrap img')].every(i => i.naturalWidth)")
        first = page.evaluate(_PANES)[0]
        # the pointer at 30% / 60% of the first pane: that image point must stay under it after zooming
        px, py = first["left"] + 0.3 * first["pw"], first["top"] + 0.6 * first["ph"]
        before = _image_point(first, px, py)
        page.mouse.move(px, py)
        for _ in range(4):
            page.mouse.wheel(0, -100)
        page.wait_for_function("() => window.__mifgViewer.state().zoom > 2")
        panes = page.evaluate(_PANES)
        after = _image_point(panes[0], px, py)
        assert abs(after[0] - before[0]) < 0.01 and abs(after[1] - before[1]) < 0.01, (before, after)
        assert panes[0]["w"] > 2 * first["w"]  # it did zoom
        page.keyboard.press("b")
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "compare.png"))
        page.keyboard.press("b")
        # ... and every pane shows the same region: the same image point at the same place in its pane
        for p in panes[1:]:
            q = _image_point(p, p["left"] + 0.3 * p["pw"], p["top"] + 0.6 * p["ph"])
            assert abs(q[0] - before[0]) < 0.02 and abs(q[1] - before[1]) < 0.02, (p, q)
        # dragging pans them all alike
        page.mouse.move(px, py)
        page.mouse.down()
        page.mouse.move(px - 80, py - 40, steps=4)
        page.mouse.up()
        panned = page.evaluate(_PANES)
        shifts = {(round(p["x"] - o["x"]), round(p["y"] - o["y"])) for p, o in zip(panned, panes, strict=True)}
        assert shifts == {(-80, -40)}, shifts
        # 1:1 shows one image pixel per screen pixel; 0 fits again
        page.keyboard.press("1")
        size = page.evaluate("() => document.querySelector('.mifg-cmp-wrap img').naturalWidth")
        assert abs(page.evaluate(_PANES)[0]["w"] - size) < 1
        page.keyboard.press("0")
        assert page.evaluate("() => window.__mifgViewer.state()")["zoom"] == 1
        # flicker: one pane, alternating between Image 1 and its partner
        page.keyboard.press("x")
        page.wait_for_function("() => window.__mifgViewer.state().flicker")
        assert len(page.evaluate(_PANES)) == 1
        seen = set()
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.add(page.evaluate(_PANES)[0]["showing"])
            page.wait_for_timeout(100)
        assert seen == {"1", "2"}, seen
        page.keyboard.press("]")
        assert page.evaluate("() => window.__mifgViewer.state()")["partner"] == 3
        # g centres an evidence box and shows the boxes
        page.keyboard.press("x")
        page.keyboard.press("g")
        state = page.evaluate("() => window.__mifgViewer.state()")
        assert state["box"] == 0 and state["zoom"] > 1
        assert page.evaluate("() => document.body.classList.contains('mifg-show-boxes')")
        # keys go to the viewer while it is open: 'a' does not accept behind it
        page.keyboard.press("a")
        page.wait_for_timeout(300)
        assert store.decisions() == []
        page.keyboard.press("Escape")
        expect(page.locator(".mifg-cmp")).to_have_count(0)
        page.context.close()


_IN_VIEW = """(sel) => {
  const e = [...document.querySelectorAll(sel)]
    .find(x => x.offsetParent !== null || getComputedStyle(x).position === 'fixed');
  if (!e) return false;
  const r = e.getBoundingClientRect();
  return r.top >= 0 && r.bottom <= innerHeight + 1 && r.height > 0;
}"""


def test_panels_and_messages_are_in_view_on_a_small_laptop_screen(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    run = tmp_path / "small-screen-run"
    ShardWriter(run, "main").write([photo_sample(i) for i in range(2)])
    with serve(run, overlap=1) as (url, store):
        page, _, _ = _login(browser, url, "alice", size=(1366, 768))
        for key, panel, confirm in (
            ("r", "#mifg-reject-panel", "#mifg-confirm-reject"),
            ("s", "#mifg-skip-panel", "#mifg-confirm-skip"),
            ("e", "#mifg-edit-panel", "#mifg-save-edit"),
        ):
            page.keyboard.press(key)
            expect(page.locator(panel).first).to_be_visible()
            page.wait_for_function(_IN_VIEW, arg=confirm, timeout=10_000)  # scrolled into view, not below the fold
            if key != "e":
                page.keyboard.press("Escape")
                expect(page.locator(panel).first).to_be_hidden()
        # a refused edit says so where the annotator is looking (the page is scrolled down to the panel)
        page.locator("#mifg-e-evidence textarea").fill("1: 0.2 0.2 1.5 0.3")
        page.keyboard.press("Control+Enter")
        _wait_msg(page, "Edit not saved")
        assert page.evaluate("() => scrollY") > 0
        assert page.evaluate(_IN_VIEW, "#mifg-message .mifg-msg")
        assert store.decisions() == []
        page.context.close()


def test_typed_reasons_and_edits_survive_a_reload_and_cancel_forgets_them(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    run = tmp_path / "drafts-run"
    ShardWriter(run, "main").write([photo_sample(i) for i in range(2)])
    with serve(run, overlap=1) as (url, store):
        page, _, _ = _login(browser, url, "alice")
        first = _shown_id(page)
        note = page.locator("#mifg-note textarea")
        page.keyboard.press("r")
        expect(note).to_be_visible()
        page.keyboard.press("2")
        note.fill("the box is on the wrong image")
        _reload(page)
        assert _shown_id(page) == first
        page.keyboard.press("r")
        expect(note).to_have_value("the box is on the wrong image")
        checked = page.locator("#mifg-reason input[type=radio]").nth(1)
        expect(checked).to_be_checked()
        page.keyboard.press("Escape")  # cancel forgets the draft
        expect(note).to_be_hidden()
        _reload(page)
        page.keyboard.press("r")
        expect(note).to_be_visible()
        page.wait_for_timeout(400)
        expect(note).to_have_value("")
        page.keyboard.press("Escape")
        # an edit in progress comes back too, and is what gets saved
        page.keyboard.press("e")
        q = page.locator("#mifg-e-question textarea")
        expect(q).to_be_visible()
        q.fill("Which image shows the recoloured patch?")
        _reload(page)
        page.keyboard.press("e")
        expect(q).to_have_value("Which image shows the recoloured patch?")
        page.keyboard.press("Control+Enter")
        _wait_msg(page, "Edited and accepted")
        (edit,) = store.decisions(with_edits=True)
        assert edit.sample_id.startswith(first) and edit.edited.question == "Which image shows the recoloured patch?"
        page.context.close()


def test_keys_mean_the_same_after_mouse_clicks(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    run = tmp_path / "mouse-run"
    ShardWriter(run, "main").write([photo_sample(i) for i in range(3)])
    with serve(run, overlap=1) as (url, store):
        page, _, _ = _login(browser, url, "alice")
        first = _shown_id(page)
        page.locator("#mifg-accept").click()  # by mouse
        _wait_msg(page, "Accepted")
        _wait_for(lambda: _shown_id(page) != first, "the next sample")
        page.keyboard.press("Enter")  # must not accept the next sample through the focused button
        page.wait_for_timeout(600)
        assert [d.decision for d in store.decisions()] == ["accept"]
        page.locator("#mifg-reject").click()  # by mouse; then the keys pick a reason and confirm
        expect(page.locator("#mifg-reject-panel").first).to_be_visible()
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        _wait_msg(page, "Rejected")
        assert [d.decision for d in store.decisions()] == ["accept", "reject"]
        page.context.close()


def test_two_annotators_overlap_two_and_agreement(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    run = tmp_path / "team-run"
    ShardWriter(run, "main").write([photo_sample(i) for i in range(4)])
    with serve(run, overlap=2) as (url, store):
        alice, _, _ = _login(browser, url, "alice")
        bob, _, _ = _login(browser, url, "bob")
        # alice: keep, reject, keep; bob: keep, reject, reject -> on the same three samples
        plan = [("a", "a"), ("r", "r"), ("a", "r")]
        for a_key, b_key in plan:
            assert _shown_id(alice) == _shown_id(bob)  # overlap 2: both get the same sample
            for page, key in ((alice, a_key), (bob, b_key)):
                committed = len(store.decisions())
                page.keyboard.press(key)
                if key == "r":
                    expect(page.locator("#mifg-reject-panel").first).to_be_visible()
                    page.keyboard.press("3")
                    page.keyboard.press("Enter")
                    _wait_msg(page, "Rejected")
                else:
                    _wait_msg(page, "Accepted")
                # The message may still be the previous decision's ("Rejected" twice in a row):
                # wait for this decision to be committed, not for the text.
                _wait_for(lambda n=committed: len(store.decisions()) > n, "the decision to be committed")
        per_sample = {}
        for d in store.decisions():
            per_sample.setdefault(d.sample_id, set()).add(d.annotator)
        assert list(per_sample.values()) == [{"alice", "bob"}] * 3

        alice.get_by_role("tab", name="Team dashboard").click()
        dash = alice.locator("#mifg-dashboard")
        expect(dash.locator("#mifg-agreement")).to_be_visible()
        # hand-computed: Cohen's kappa 0.4 (p_o 2/3, p_e 4/9); Fleiss' kappa 1/3 (P_bar 2/3, P_e 1/2)
        expect(dash.locator("#mifg-fleiss")).to_have_text("0.333")
        expect(dash).to_contain_text("alice × bob")
        expect(dash).to_contain_text("0.400")
        _settle(alice)
        alice.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
        alice.context.close()
        bob.context.close()


def test_login_lockout_is_explained_and_skip_moves_on(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    run = tmp_path / "skip-run"
    ShardWriter(run, "main").write([photo_sample(i) for i in range(3)])
    with serve(run, overlap=1) as (url, store):
        # five wrong passwords lock bob out; the page says so and the right password is refused too
        ctx = browser.new_context(viewport={"width": 1366, "height": 768})
        page = ctx.new_page()
        page.goto(url)

        def attempt(password: str) -> int:
            page.get_by_label("username").fill("bob")
            page.get_by_label("password").fill(password)
            with page.expect_response(lambda r: r.url.rstrip("/").endswith("/login")) as answer:
                page.get_by_role("button", name="Login").click()
            return answer.value.status

        statuses = [attempt(f"wrong-{i}") for i in range(4)]
        # the 5th failure locks the name out (test_security checks the exact count over plain HTTP); in a
        # loaded browser the page may answer that try before the lock is visible, so allow one more
        statuses += [attempt("wrong-4")]
        if statuses[-1] != 429:
            statuses += [attempt("wrong-5")]
        assert statuses[:4] == [400, 400, 400, 400] and statuses[-1] == 429, statuses
        banner = page.locator("#mifg-login-msg")
        expect(banner).to_contain_text("Too many failed sign-ins for this user")
        assert attempt(USERS["bob"]) == 429
        expect(banner).to_contain_text("try again in")
        page.wait_for_timeout(500)
        assert page.locator("#mifg-images").count() == 0  # still on the login page
        ctx.close()

        # alice is not locked: she skips her first sample with a reason, by keyboard
        alice, _, _ = _login(browser, url, "alice")
        first = _shown_id(alice)
        alice.keyboard.press("s")
        expect(alice.locator("#mifg-skip-panel").first).to_be_visible()
        alice.keyboard.press("2")
        alice.keyboard.press("Enter")
        _wait_msg(alice, "Skipped")
        assert _shown_id(alice) != first
        assert store.skip_reasons() == {"Needs expertise I do not have": 1}
        expect(alice.locator("#mifg-skip-panel").first).to_be_hidden()
        alice.context.close()
