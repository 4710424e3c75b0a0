// mifg review: keyboard shortcuts and the full-size image viewer.
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

  // ---- full-size viewer -------------------------------------------------------------------
  let viewer = null;
  let zoom = 1;

  function layoutViewer() {
    if (!viewer) return;
    const wrap = viewer.querySelector(".mifg-imgwrap");
    const img = wrap && wrap.querySelector("img");
    if (!img || !img.naturalWidth) return;
    const fit = Math.min((window.innerWidth * 0.94) / img.naturalWidth, (window.innerHeight * 0.86) / img.naturalHeight);
    wrap.style.width = Math.round(img.naturalWidth * fit * zoom) + "px";
    viewer.querySelector(".mifg-lb-zoom").textContent = zoom + "×";
  }

  function openViewer(wrap) {
    closeViewer();
    zoom = 1;
    viewer = document.createElement("div");
    viewer.className = "mifg-lightbox";
    viewer.setAttribute("role", "dialog");
    const bar = document.createElement("div");
    bar.className = "mifg-lb-bar";
    bar.innerHTML =
      '<b>Image ' + (wrap.dataset.index || "") + '</b><span class="mifg-lb-zoom">1×</span>' +
      '<span class="mifg-lb-help">click or <kbd>+</kbd>/<kbd>−</kbd> to zoom · <kbd>b</kbd> boxes · <kbd>Esc</kbd> close</span>' +
      '<button type="button" class="mifg-lb-close" aria-label="Close">×</button>';
    const stage = document.createElement("div");
    stage.className = "mifg-lb-stage";
    const copy = wrap.cloneNode(true);
    copy.removeAttribute("title");
    stage.appendChild(copy);
    viewer.append(bar, stage);
    document.body.appendChild(viewer);
    const img = copy.querySelector("img");
    if (img) img.complete ? layoutViewer() : img.addEventListener("load", layoutViewer);
    bar.querySelector(".mifg-lb-close").addEventListener("click", closeViewer);
    stage.addEventListener("click", (ev) => {
      if (ev.target === stage) return closeViewer();
      zoom = zoom >= 4 ? 1 : zoom * 2;
      layoutViewer();
    });
  }

  function closeViewer() {
    if (viewer) viewer.remove();
    viewer = null;
  }

  window.addEventListener("resize", layoutViewer);
  document.addEventListener("click", (ev) => {
    const wrap = ev.target.closest ? ev.target.closest(".mifg-imgwrap") : null;
    if (wrap && !wrap.closest(".mifg-lightbox")) openViewer(wrap);
  });

  // ---- keyboard ---------------------------------------------------------------------------
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || ev.isComposing) return;
    const k = ev.key;
    if (viewer) {
      if (k === "Escape") closeViewer();
      else if (k === "+" || k === "=") { zoom = Math.min(8, zoom * 2); layoutViewer(); }
      else if (k === "-" || k === "_") { zoom = Math.max(1, zoom / 2); layoutViewer(); }
      else if (k === "b") toggleBoxes();
      else return;
      ev.preventDefault();
      return;
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
    else if (k === "Escape") press(editOpen ? "mifg-cancel-edit" : skipOpen ? "mifg-cancel-skip" : "mifg-cancel-reject");
    else if (k === "Enter" && skipOpen) press("mifg-confirm-skip");
    else if (k === "Enter" && rejectOpen) press("mifg-confirm-reject");
    else if (skipOpen && /^[1-9]$/.test(k)) pickReason(Number(k), "mifg-skip-reason");
    else if (rejectOpen && /^[1-9]$/.test(k)) pickReason(Number(k), "mifg-reason");
    else handled = false;
    if (handled) ev.preventDefault();
  });
})();
