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
