/* aupguard review console: keyboard shortcuts, reveal / blur, copy. Served by the console
   (CSP script-src 'self': no inline script runs). Every action stays a real form or link, so
   the console works without this file; the shortcut hints are shown only when it runs. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function typing(el) {
    return !!el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-item]")); }
  var current = -1;
  function select(i) {
    var all = rows();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, i));
    all.forEach(function (r, n) { r.classList.toggle("current", n === current); });
    var link = all[current].querySelector("a.button");
    if (link) link.focus();
  }
  function currentRow() { var all = rows(); return current >= 0 ? all[current] : null; }

  function toggleReveal(box) {
    if (!box) return;
    var on = box.classList.toggle("revealed");
    var button = box.querySelector("[data-reveal]");
    if (button) { button.setAttribute("aria-pressed", on ? "true" : "false"); button.textContent = on ? "Blur" : "Reveal"; }
  }

  document.addEventListener("click", function (e) {
    var reveal = e.target.closest("[data-reveal]");
    if (reveal) { toggleReveal(reveal.closest(".sensitive-box")); return; }
    var copy = e.target.closest("[data-copy]");
    if (copy) {
      var done = function () { copy.textContent = "Copied"; setTimeout(function () { copy.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard) navigator.clipboard.writeText(copy.getAttribute("data-copy")).then(done, function () {});
      return;
    }
    if (e.target.closest("[data-shortcuts]")) { var s = document.getElementById("shortcuts"); if (s) s.hidden = !s.hidden; }
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    if (typing(document.activeElement)) {
      if (e.key === "Escape") document.activeElement.blur();
      return;
    }
    var key = e.key;
    var row = currentRow();
    if (key === "j") { select(current + 1); }
    else if (key === "k") { select(current - 1); }
    else if (key === "o" && row) { var a = row.querySelector("a.button"); if (a) a.click(); }
    else if (key === "x" && row) { var box = row.querySelector("input[type=checkbox]"); if (box) box.checked = !box.checked; }
    else if (key === "v") { toggleReveal(row ? row.querySelector(".sensitive-box") : document.querySelector(".sensitive-box")); }
    else if (key === "?") { var s = document.getElementById("shortcuts"); if (s) s.hidden = !s.hidden; }
    else {
      var target = null;
      document.querySelectorAll("[data-key]").forEach(function (el) { if (!target && el.getAttribute("data-key") === key) target = el; });
      if (!target) return;
      if (typing(target)) target.focus(); else target.click();
    }
    e.preventDefault();
  });
})();
