// mifg review: keyboard shortcuts; the set viewer itself is viewer.js.
// Shortcuts never fire while the annotator is typing in a text field (Escape leaves the field).
(() => {
  if (window.__mifgReview) return;
  window.__mifgReview = true;
  const byId = (id) => document.getElementById(id);
  const shown = (el) => !!el && el.offsetParent !== null;
  const NOT_TEXT = new Set(["radio", "checkbox", "button", "submit", "reset", "range", "color", "file"]);

  function isTyping(el) {
    if (!el || el === document.body) return false;
    if (el.isContentEditable) return true;
    if (el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    if (el.tagName === "INPUT") return !NOT_TEXT.has((el.type || "text").toLowerCase());
    return false;
  }

  function press(id) {
    const el = byId(id);
    const button = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (button && shown(button) && !button.disabled) {
      button.click();
      return true;
    }
    return false;
  }

  function pickReason(n, panel) {
    const radios = document.querySelectorAll("#" + panel + " input[type=radio]");
    if (radios[n - 1]) radios[n - 1].click();
  }

  function toggleBoxes() {
    const box = document.querySelector("#mifg-boxes-toggle input[type=checkbox]");
    if (box) box.click();
  }

  // ---- the set viewer (viewer.js): click an image, or press z --------------------------------
  const viewer = () => window.__mifgViewer;
  document.addEventListener("click", (ev) => {
    const wrap = ev.target.closest ? ev.target.closest(".mifg-imgwrap") : null;
    if (wrap && !wrap.closest(".mifg-lightbox") && viewer()) viewer().open();
  });

  // ---- panels in view ------------------------------------------------------------------------
  // On a 1366 x 768 screen the reject / edit / skip panels open below the fold: bring each into view
  // once Gradio has shown it (it does so after a round trip), whether opened by key or by mouse.
  const PANELS = { "mifg-reject": "mifg-reject-panel", "mifg-edit": "mifg-edit-panel", "mifg-skip": "mifg-skip-panel" };

  function reveal(id) {
    const t0 = performance.now();
    const step = () => {
      const el = byId(id);
      if (shown(el)) {
        el.scrollIntoView({ block: "nearest" });
        return;
      }
      if (performance.now() - t0 < 5000) requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  }

  document.addEventListener("click", (ev) => {
    // a mouse click leaves the focus on the button, where Enter would press it again (accepting the next
    // sample) and the shortcuts would not reach their panel: after a click the keys mean what they mean
    const clicked = ev.target.closest && ev.target.closest("button");
    if (clicked && ev.detail > 0 && clicked.closest("#mifg-actions, #mifg-reject-panel, #mifg-skip-panel, #mifg-edit-panel")) {
      clicked.blur();
    }
    for (const [button, panel] of Object.entries(PANELS)) {
      if (ev.target.closest && ev.target.closest("#" + button)) reveal(panel);
    }
  });

  // ---- keyboard ---------------------------------------------------------------------------
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || ev.isComposing) return;
    const k = ev.key;
    if (viewer() && viewer().isOpen()) {
      const done = viewer().key(ev);
      if (done === "boxes") toggleBoxes();
      if (done) ev.preventDefault();
      return; // nothing behind the viewer reacts while it is open
    }
    const active = document.activeElement;
    const editOpen = shown(byId("mifg-edit-panel"));
    const rejectOpen = shown(byId("mifg-reject-panel"));
    const skipOpen = shown(byId("mifg-skip-panel"));
    if (k === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      if (editOpen || rejectOpen || skipOpen) {
        ev.preventDefault();
        if (active && active.blur) active.blur();
        press(editOpen ? "mifg-save-edit" : skipOpen ? "mifg-confirm-skip" : "mifg-confirm-reject");
      }
      return;
    }
    if (isTyping(active)) {
      if (k === "Escape") active.blur();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (active && active.tagName === "BUTTON" && (k === "Enter" || k === " ")) return; // the button's own click
    if (!shown(byId("mifg-accept"))) return; // not on the review tab
    let handled = true;
    if (k === "a") press("mifg-accept");
    else if (k === "r") press("mifg-reject");
    else if (k === "e") press("mifg-edit");
    else if (k === "s") press("mifg-skip");
    else if (k === "b") toggleBoxes();
    else if (k === "z" && viewer()) viewer().open();
    else if (k === "Escape") press(editOpen ? "mifg-cancel-edit" : skipOpen ? "mifg-cancel-skip" : "mifg-cancel-reject");
    else if (k === "Enter" && skipOpen) press("mifg-confirm-skip");
    else if (k === "Enter" && rejectOpen) press("mifg-confirm-reject");
    else if (skipOpen && /^[1-9]$/.test(k)) pickReason(Number(k), "mifg-skip-reason");
    else if (rejectOpen && /^[1-9]$/.test(k)) pickReason(Number(k), "mifg-reason");
    else handled = false;
    if (handled) ev.preventDefault();
  });
})();
