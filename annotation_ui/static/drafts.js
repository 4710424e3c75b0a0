// mifg review: what an annotator has typed or picked in the reject / skip / edit panels survives a reload.
// Kept in this tab's sessionStorage per sample (never sent anywhere): when the panel opens again on the
// same sample, the text and the picked reason come back. Cancel forgets them; a decision moves to another
// sample, and the drafts of every other sample are dropped.
(() => {
  if (window.__mifgDrafts) return;
  window.__mifgDrafts = true;
  const PREFIX = "mifg-draft:";
  const FIELDS = ["mifg-note", "mifg-skip-note", "mifg-e-question", "mifg-e-options", "mifg-e-evidence"];
  const CHOICES = ["mifg-reason", "mifg-skip-reason", "mifg-e-answer"];
  const PANEL_OF = { "mifg-reject-panel": ["mifg-note", "mifg-reason"], "mifg-skip-panel": ["mifg-skip-note", "mifg-skip-reason"],
                     "mifg-edit-panel": ["mifg-e-question", "mifg-e-options", "mifg-e-evidence", "mifg-e-answer"] };
  const CANCELS = { "mifg-cancel-reject": "mifg-reject-panel", "mifg-cancel-skip": "mifg-skip-panel", "mifg-cancel-edit": "mifg-edit-panel" };

  const sampleId = () => {
    const el = document.querySelector("#mifg-question .mifg-id");
    return el ? el.textContent.trim() : "";
  };
  const key = (field) => PREFIX + sampleId() + ":" + field;
  const fieldOf = (el) => {
    const box = el.closest && el.closest("[id^='mifg-']");
    return box ? box.id : "";
  };

  function forgetOthers() {
    const mine = PREFIX + sampleId() + ":";
    for (let i = sessionStorage.length - 1; i >= 0; i--) {
      const k = sessionStorage.key(i);
      if (k && k.startsWith(PREFIX) && !k.startsWith(mine)) sessionStorage.removeItem(k);
    }
  }

  document.addEventListener("input", (ev) => {
    const t = ev.target;
    const f = fieldOf(t);
    if (!sampleId()) return;
    if (FIELDS.includes(f) && (t.tagName === "TEXTAREA" || t.tagName === "INPUT")) sessionStorage.setItem(key(f), t.value);
    else if (CHOICES.includes(f) && t.type === "radio" && t.checked) sessionStorage.setItem(key(f), t.value);
  }, true);
  document.addEventListener("click", (ev) => {
    for (const [button, panel] of Object.entries(CANCELS)) {
      if (ev.target.closest && ev.target.closest("#" + button)) for (const f of PANEL_OF[panel]) sessionStorage.removeItem(key(f));
    }
  }, true);

  // put a panel's drafts back once Gradio has shown it (and filled it with the sample's own values)
  function restore(panel) {
    for (const f of PANEL_OF[panel]) {
      const saved = sessionStorage.getItem(key(f));
      if (saved === null) continue;
      const box = document.getElementById(f);
      if (!box) continue;
      if (CHOICES.includes(f)) {
        const radio = [...box.querySelectorAll("input[type=radio]")].find((r) => r.value === saved);
        if (radio && !radio.checked) radio.click();
      } else {
        const input = box.querySelector("textarea, input[type=text]");
        if (input && input.value !== saved) {
          input.value = saved;
          input.dispatchEvent(new Event("input", { bubbles: true })); // Gradio takes the value from this event
        }
      }
    }
  }

  const visible = {};
  let lastSample = "";
  new MutationObserver(() => {
    const sid = sampleId();
    if (sid && sid !== lastSample) {
      lastSample = sid;
      forgetOthers();
    }
    for (const panel of Object.keys(PANEL_OF)) {
      const el = document.getElementById(panel);
      const now = !!el && el.offsetParent !== null;
      // restored a moment after it shows: Gradio fills the edit fields in the same update that shows the panel
      if (now && !visible[panel]) setTimeout(() => restore(panel), 150);
      visible[panel] = now;
    }
  }).observe(document.documentElement, { subtree: true, childList: true, attributes: true, attributeFilter: ["class", "style"] });
})();
