// shared_inbox: small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  // Size each sandboxed HTML mail to its content. The frame runs no script itself; we read
  // its height from outside (same origin, scripts disabled inside).
  function fit(frame) {
    try {
      var doc = frame.contentDocument;
      if (doc && doc.body) {
        frame.style.height = Math.min(doc.documentElement.scrollHeight + 8, 4000) + "px";
      }
    } catch (e) { /* leave the default height */ }
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("iframe.si-html").forEach(function (frame) {
      frame.addEventListener("load", function () { fit(frame); });
      fit(frame);
    });
  });
})();
// Inbox list keyboard shortcuts: j / k move between conversations, Enter (or o) opens
// the current one, x toggles its checkbox, / focuses the search. Ignored while typing.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr.si-ticket-row"));
    var search = document.getElementById("si-q");
    if (!rows.length && !search) { return; }
    var current = -1;
    function select(i) {
      if (!rows.length) { return; }
      i = Math.max(0, Math.min(rows.length - 1, i));
      if (current >= 0) { rows[current].classList.remove("si-current"); }
      current = i;
      rows[i].classList.add("si-current");
      var link = rows[i].querySelector("a.si-subject");
      if (link) { link.focus({ preventScroll: true }); }
      rows[i].scrollIntoView({ block: "nearest" });
    }
    document.addEventListener("keydown", function (e) {
      var tag = (e.target && e.target.tagName) || "";
      if (e.ctrlKey || e.metaKey || e.altKey || /^(INPUT|TEXTAREA|SELECT)$/.test(tag) ||
          (e.target && e.target.isContentEditable)) { return; }
      if (e.key === "/" && search) { e.preventDefault(); search.focus(); search.select(); }
      else if (e.key === "j") { e.preventDefault(); select(current + 1); }
      else if (e.key === "k") { e.preventDefault(); select(current < 0 ? 0 : current - 1); }
      else if ((e.key === "o" || e.key === "Enter") && current >= 0 && tag !== "A") {
        var link = rows[current].querySelector("a.si-subject");
        if (link) { window.location.href = link.href; }
      } else if (e.key === "x" && current >= 0) {
        var box = rows[current].querySelector("input[type=checkbox]");
        if (box) { box.checked = !box.checked; }
      }
    });
  });
})();
