// mifg review: the set viewer, made for finding a small detail across the images of one sample.
// Every image of the set in its own pane, all showing the same region: zoom (wheel, click, + / −) keeps
// the point under the pointer where it is in every pane, dragging pans them all, `0` fits, `1` shows
// native pixels (one image pixel per screen pixel), `x` flickers two images in one pane (`[` / `]` pick
// the second, space swaps by hand), `g` goes to the next evidence box, `b` toggles the boxes, Esc closes.
// The view is held in image-relative units (the point at the pane's centre as a share of the image's
// width and height, and a zoom over the fitted size), so images of slightly different sizes, as the
// nuisance views are, still show the same region.
(() => {
  if (window.__mifgViewer) return;
  const MAX_ZOOM = 16;
  const FLICKER_MS = 600;
  let v = null; // {root, panes, zoom, cx, cy, flicker, partner, timer, showB, drag}

  function wraps() {
    return [...document.querySelectorAll("#mifg-images .mifg-imgwrap")];
  }

  function pane(wrap, label) {
    const el = document.createElement("div");
    el.className = "mifg-cmp-pane";
    const copy = wrap.cloneNode(true);
    copy.removeAttribute("title");
    copy.classList.add("mifg-cmp-wrap");
    const tag = document.createElement("div");
    tag.className = "mifg-cmp-label";
    tag.textContent = label;
    el.append(copy, tag);
    return el;
  }

  function natural(wrap) {
    const img = wrap.querySelector("img");
    return img && img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null;
  }

  // the fitted scale of one image in one pane: the whole image visible
  function fitScale(paneEl, size) {
    return Math.min(paneEl.clientWidth / size[0], paneEl.clientHeight / size[1]);
  }

  function place(paneEl, wrap) {
    const size = natural(wrap);
    if (!size) return;
    const s = v.native ? 1 : fitScale(paneEl, size) * v.zoom;
    const tx = paneEl.clientWidth / 2 - v.cx * size[0] * s;
    const ty = paneEl.clientHeight / 2 - v.cy * size[1] * s;
    wrap.style.width = size[0] + "px";
    wrap.style.height = size[1] + "px";
    wrap.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`;
    wrap.dataset.scale = String(s);
    wrap.style.setProperty("--mifg-inv", String(1 / s)); // boxes keep their screen size at any zoom
  }

  function layout() {
    if (!v) return;
    for (const p of v.panes) for (const w of p.querySelectorAll(".mifg-cmp-wrap")) place(p, w);
    const first = v.panes[0] && v.panes[0].querySelector(".mifg-cmp-wrap");
    const s = first ? Number(first.dataset.scale || 1) : 1;
    v.root.querySelector(".mifg-cmp-zoom").textContent = (v.native ? "1:1" : s.toFixed(2) + "×") + (v.flicker ? " · flicker" : "");
  }

  // the image-relative point under a client position in a pane, with the scale used there
  function pointAt(paneEl, clientX, clientY) {
    const wrap = paneEl.querySelector(".mifg-cmp-wrap");
    const size = wrap && natural(wrap);
    if (!size) return null;
    const r = paneEl.getBoundingClientRect();
    const s = Number(wrap.dataset.scale || 1);
    const px = clientX - r.left - paneEl.clientWidth / 2;
    const py = clientY - r.top - paneEl.clientHeight / 2;
    return { x: v.cx + px / (size[0] * s), y: v.cy + py / (size[1] * s), px, py, size, s };
  }

  // zoom by `factor` keeping the image point under (clientX, clientY) of `paneEl` fixed, in every pane
  function zoomAt(paneEl, clientX, clientY, factor) {
    const p = pointAt(paneEl, clientX, clientY);
    if (!p) return;
    const fit = fitScale(paneEl, p.size);
    const current = v.native ? p.s / fit : v.zoom; // leaving 1:1 starts from its scale
    v.native = false;
    v.zoom = Math.min(MAX_ZOOM, Math.max(1, current * factor));
    const s = fit * v.zoom;
    v.cx = p.x - p.px / (p.size[0] * s);
    v.cy = p.y - p.py / (p.size[1] * s);
    if (v.zoom === 1) { v.cx = 0.5; v.cy = 0.5; }
    layout();
  }

  function setFlicker(on) {
    clearInterval(v.timer);
    v.flicker = on;
    v.root.classList.toggle("mifg-cmp-flicker", on);
    const all = v.panes.length;
    v.panes.forEach((p, i) => { p.style.display = !on || i === 0 ? "" : "none"; });
    const first = v.panes[0];
    first.querySelectorAll(".mifg-cmp-wrap.mifg-cmp-b").forEach((el) => el.remove());
    if (on && all > 1) {
      const b = v.panes[v.partner].querySelector(".mifg-cmp-wrap").cloneNode(true);
      b.classList.add("mifg-cmp-b");
      first.appendChild(b);
      v.showB = false;
      v.timer = setInterval(() => swap(), FLICKER_MS);
    }
    showFlickerFrame();
    layout();
  }

  function showFlickerFrame() {
    const first = v.panes[0];
    const a = first.querySelector(".mifg-cmp-wrap:not(.mifg-cmp-b)");
    const b = first.querySelector(".mifg-cmp-b");
    if (a) a.style.visibility = v.flicker && v.showB && b ? "hidden" : "visible";
    if (b) b.style.visibility = v.showB ? "visible" : "hidden";
    first.querySelector(".mifg-cmp-label").textContent =
      v.flicker && v.showB ? "Image " + (v.partner + 1) : v.flicker ? "Image 1 ⇄ " + (v.partner + 1) : "Image 1";
    first.dataset.showing = String(v.flicker && v.showB ? v.partner + 1 : 1);
  }

  function swap() {
    if (!v || !v.flicker) return;
    v.showB = !v.showB;
    showFlickerFrame();
  }

  function open() {
    close();
    const ws = wraps();
    if (!ws.length) return;
    const root = document.createElement("div");
    root.className = "mifg-lightbox mifg-cmp";
    root.setAttribute("role", "dialog");
    root.innerHTML =
      '<div class="mifg-lb-bar"><b>Compare ' + ws.length + ' images</b><span class="mifg-cmp-zoom">1×</span>' +
      '<span class="mifg-lb-help">wheel / click zoom at the pointer · drag pans all · <kbd>0</kbd> fit · <kbd>1</kbd> 1:1 · ' +
      '<kbd>x</kbd> flicker (<kbd>[</kbd> <kbd>]</kbd> partner, <kbd>space</kbd> swap) · <kbd>g</kbd> go to box · <kbd>b</kbd> boxes · <kbd>Esc</kbd> close</span>' +
      '<button type="button" class="mifg-lb-close" aria-label="Close">×</button></div>';
    const stage = document.createElement("div");
    stage.className = "mifg-cmp-stage mifg-cmp-n" + Math.min(ws.length, 4);
    const panes = ws.map((w, i) => pane(w, "Image " + (i + 1)));
    stage.append(...panes);
    root.appendChild(stage);
    document.body.appendChild(root);
    v = { root, panes, zoom: 1, cx: 0.5, cy: 0.5, native: false, flicker: false, partner: Math.min(1, ws.length - 1),
          timer: null, showB: false, drag: null };
    root.querySelector(".mifg-lb-close").addEventListener("click", close);
    for (const p of panes) {
      const img = p.querySelector("img");
      if (img && !img.complete) img.addEventListener("load", layout);
      p.addEventListener("wheel", (ev) => { ev.preventDefault(); zoomAt(p, ev.clientX, ev.clientY, ev.deltaY < 0 ? 1.25 : 0.8); },
                         { passive: false });
      p.addEventListener("pointerdown", (ev) => {
        v.drag = { x: ev.clientX, y: ev.clientY, cx: v.cx, cy: v.cy, pane: p, moved: false };
        p.setPointerCapture(ev.pointerId);
      });
      p.addEventListener("pointermove", (ev) => {
        const d = v && v.drag;
        if (!d || d.pane !== p) return;
        const dx = ev.clientX - d.x, dy = ev.clientY - d.y;
        if (!d.moved && Math.hypot(dx, dy) < 4) return;
        d.moved = true;
        const wrap = p.querySelector(".mifg-cmp-wrap");
        const size = natural(wrap);
        const s = Number(wrap.dataset.scale || 1);
        if (!size) return;
        v.cx = d.cx - dx / (size[0] * s);
        v.cy = d.cy - dy / (size[1] * s);
        layout();
      });
      p.addEventListener("pointerup", (ev) => {
        const d = v && v.drag;
        if (v) v.drag = null;
        if (d && !d.moved) zoomAt(p, ev.clientX, ev.clientY, ev.shiftKey ? 0.5 : 2);
      });
    }
    layout();
  }

  // `g`: centre the next evidence box (of any image) in every pane, zoomed so that it fills about a
  // quarter of the pane's width, and show the boxes: a box of a few pixels is then plain to see
  function goToBox() {
    const boxes = [];
    v.panes.forEach((p) => p.querySelectorAll(".mifg-cmp-wrap:not(.mifg-cmp-b) .mifg-box").forEach((b) => boxes.push([p, b])));
    if (!boxes.length) return;
    v.box = ((v.box ?? -1) + 1) % boxes.length;
    const [p, b] = boxes[v.box];
    const pct = (name) => parseFloat(b.style[name]) / 100;
    const size = natural(p.querySelector(".mifg-cmp-wrap"));
    if (!size) return;
    const bw = Math.max(pct("width") * size[0], 1), bh = Math.max(pct("height") * size[1], 1);
    const fit = fitScale(p, size);
    v.native = false;
    v.zoom = Math.min(MAX_ZOOM, Math.max(1, Math.min((p.clientWidth / 4) / (bw * fit), (p.clientHeight / 4) / (bh * fit))));
    v.cx = pct("left") + pct("width") / 2;
    v.cy = pct("top") + pct("height") / 2;
    document.body.classList.add("mifg-show-boxes");
    layout();
  }

  function close() {
    if (!v) return;
    clearInterval(v.timer);
    v.root.remove();
    v = null;
  }

  function key(ev) {
    if (!v) return false;
    const k = ev.key;
    const centre = () => {
      const r = v.panes[0].getBoundingClientRect();
      return [r.left + r.width / 2, r.top + r.height / 2];
    };
    if (k === "Escape") close();
    else if (k === "+" || k === "=") zoomAt(v.panes[0], ...centre(), 2);
    else if (k === "-" || k === "_") zoomAt(v.panes[0], ...centre(), 0.5);
    else if (k === "0") { v.native = false; v.zoom = 1; v.cx = 0.5; v.cy = 0.5; layout(); }
    else if (k === "1") { v.native = true; layout(); }
    else if (k === "x") setFlicker(!v.flicker);
    else if ((k === "]" || k === "[") && v.panes.length > 1) {
      const n = v.panes.length;
      do { v.partner = (v.partner + (k === "]" ? 1 : n - 1)) % n; } while (v.partner === 0);
      if (v.flicker) setFlicker(true);
    }
    else if (k === " " && v.flicker) { clearInterval(v.timer); v.timer = null; swap(); }
    else if (k.startsWith("Arrow")) {
      const step = 0.1 / (v.native ? 1 : v.zoom);
      if (k === "ArrowLeft") v.cx -= step; else if (k === "ArrowRight") v.cx += step;
      else if (k === "ArrowUp") v.cy -= step; else v.cy += step;
      layout();
    }
    else if (k === "g") goToBox();
    else if (k === "b") return "boxes";
    else return false;
    return true;
  }

  window.addEventListener("resize", layout);
  window.__mifgViewer = { open, close, key, isOpen: () => !!v, state: () => v && { zoom: v.zoom, cx: v.cx, cy: v.cy,
    native: v.native, flicker: v.flicker, partner: v.partner + 1, box: v.box ?? null } };
})();
