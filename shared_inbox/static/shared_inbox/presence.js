// shared_inbox collision safety on a ticket's page: a heartbeat every data-interval seconds
// (and at once when the agent starts typing a reply) tells the server this agent is
// "viewing" or "replying"; its answer updates, in place, who else is here and whether a
// message arrived since the page was opened. Without JavaScript the page still shows who was
// here when it loaded, and sending still refuses a reply written against an old thread.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("si-presence");
    if (!box || !window.fetch) { return; }
    var url = box.getAttribute("data-url");
    var csrf = box.getAttribute("data-csrf");
    var seen = box.getAttribute("data-seen") || "0";
    var interval = Math.max(0.2, parseFloat(box.getAttribute("data-interval")) || 15) * 1000;
    var othersLine = document.getElementById("si-presence-others");
    var notice = document.getElementById("si-new-messages");
    var noticeText = notice && notice.querySelector(".si-new-messages-text");
    var timer = null;
    var inFlight = false;
    var again = false;
    var lastOthers = othersLine ? othersLine.textContent : "";

    function replyBox() { return document.getElementById("si-reply-text"); }
    function currentState() {
      var reply = replyBox();
      return reply && reply.value.trim() ? "replying" : "viewing";
    }

    function showOthers(others) {
      if (!othersLine) { return; }
      var text = others.map(function (p) { return p.text; }).join(", ");
      if (text === lastOthers) { return; }  // unchanged: screen readers hear nothing new
      lastOthers = text;
      while (othersLine.firstChild) { othersLine.removeChild(othersLine.firstChild); }
      others.forEach(function (p) {
        var item = document.createElement("span");
        item.className = "si-presence-item si-presence-" + (p.state === "replying" ? "replying" : "viewing");
        item.textContent = p.text;
        othersLine.appendChild(item);
      });
      othersLine.hidden = !others.length;
    }

    function showNotice(data) {
      if (!notice || !noticeText) { return; }
      if (data.new_messages > 0) {
        if (noticeText.textContent !== data.notice) { noticeText.textContent = data.notice; }
        notice.hidden = false;
      } else {
        notice.hidden = true;
      }
    }

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(beat, interval);
    }

    function beat() {
      if (inFlight) { again = true; return; }
      inFlight = true;
      clearTimeout(timer);
      fetch(url, {
        method: "POST", credentials: "same-origin",
        headers: { "Accept": "application/json", "Content-Type": "application/json",
                   "X-CSRFToken": csrf },
        body: JSON.stringify({ state: currentState(), seen_message_id: seen })
      }).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      }).then(function (data) {
        showOthers(data.others || []);
        showNotice(data);
      }).catch(function () { /* try again at the next beat */ }).then(function () {
        inFlight = false;
        if (again) { again = false; beat(); } else { schedule(); }
      });
    }

    // "Reload to read" must not lose what the agent is writing: the reply and note drafts
    // survive the reload in sessionStorage (this tab only) and are put back once.
    var draftKey = "si-drafts:" + url;
    var fields = ["si-reply-text", "si-note-text"];
    try {
      var saved = JSON.parse(window.sessionStorage.getItem(draftKey) || "null");
      window.sessionStorage.removeItem(draftKey);
      if (saved) {
        fields.forEach(function (id) {
          var el = document.getElementById(id);
          if (el && !el.value && saved[id]) { el.value = saved[id]; }
        });
      }
    } catch (e) { /* storage disabled: nothing was saved */ }
    var reloadLink = notice && notice.querySelector("a");
    if (reloadLink) {
      reloadLink.addEventListener("click", function () {
        var drafts = {};
        fields.forEach(function (id) {
          var el = document.getElementById(id);
          if (el && el.value.trim()) { drafts[id] = el.value; }
        });
        try { window.sessionStorage.setItem(draftKey, JSON.stringify(drafts)); } catch (e) { /* */ }
      });
    }

    // Typing the first character of a reply (or clearing it) is news for the others now.
    var wasReplying = currentState() === "replying";
    document.addEventListener("input", function (e) {
      if (e.target !== replyBox()) { return; }
      var replying = currentState() === "replying";
      if (replying !== wasReplying) { wasReplying = replying; beat(); }
    });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { beat(); }
    });
    if (wasReplying) { beat(); } else { schedule(); }
  });
})();
