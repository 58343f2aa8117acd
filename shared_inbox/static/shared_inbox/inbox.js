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
    // The list as shown, for j / k on a ticket's page (next / previous conversation).
    function remember() {
      try {
        window.sessionStorage.setItem("si-list", JSON.stringify(rows.map(function (row) {
          var link = row.querySelector("a.si-subject");
          return link ? link.pathname : "";
        })));
        window.sessionStorage.setItem("si-list-url", window.location.pathname + window.location.search);
      } catch (e) { /* storage disabled: j / k stay in the list */ }
    }
    remember();
    // "/" on a ticket's page comes here as #search: the search box is ready to type in.
    if (search && window.location.hash === "#search") { search.focus(); }
    // An in-place bulk action replaces the list: start again from its new rows.
    document.addEventListener("si:replaced", function () {
      rows = Array.prototype.slice.call(document.querySelectorAll("tr.si-ticket-row"));
      search = document.getElementById("si-q");
      current = -1;
      remember();
    });
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
// Ticket page keyboard shortcuts: r focuses the reply, n the internal note, a the assignee,
// e closes the ticket, / goes to the inbox's search, j / k open the next / previous
// conversation of the list the agent came from. Ignored while typing in a field and with any
// modifier key.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var reply = document.getElementById("si-reply-text");
    var note = document.getElementById("si-note-text");
    if (!reply && !note && !document.getElementById("si-assignee") &&
        !document.getElementById("si-status-form")) { return; }
    function focusField(el, e) {
      if (!el) { return; }
      e.preventDefault();
      el.focus();
      if (el.scrollIntoView) { el.scrollIntoView({ block: "center" }); }
    }
    document.addEventListener("keydown", function (e) {
      var t = e.target;
      var tag = (t && t.tagName) || "";
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing ||
          /^(INPUT|TEXTAREA|SELECT|BUTTON)$/.test(tag) || (t && t.isContentEditable)) { return; }
      if (e.key === "r") { focusField(reply, e); }
      else if (e.key === "n") { focusField(note, e); }
      else if (e.key === "a") { focusField(document.getElementById("si-assignee"), e); }
      else if (e.key === "/") {
        // Back to the list the agent came from (folder, filters), else the inbox.
        var inbox = document.querySelector("a.si-brand");
        var back = null;
        try { back = window.sessionStorage.getItem("si-list-url"); } catch (err) { /* */ }
        if (!back && inbox) { back = inbox.getAttribute("href"); }
        if (back) { e.preventDefault(); window.location.href = back + "#search"; }
      }
      else if (e.key === "j" || e.key === "k") {
        var list = [];
        try { list = JSON.parse(window.sessionStorage.getItem("si-list") || "[]"); } catch (err) { /* */ }
        var at = list.indexOf(window.location.pathname);
        var next = at < 0 ? null : list[at + (e.key === "j" ? 1 : -1)];
        if (next) { e.preventDefault(); window.location.href = next; }
      }
      else if (e.key === "e") {
        // Looked up now: an in-place action may have replaced the sidebar since load.
        var statusForm = document.getElementById("si-status-form");
        var status = document.getElementById("si-status");
        if (!statusForm || !status) { return; }
        var closed = status.querySelector("option[value=closed]");
        if (!closed || status.value === "closed") { return; }
        e.preventDefault();
        status.value = "closed";
        // requestSubmit: the in-place handler below sees it (submit() would bypass it).
        if (statusForm.requestSubmit) { statusForm.requestSubmit(); } else { statusForm.submit(); }
      }
    });
  });
})();
// Saved-reply picker above the reply box: search the saved replies of this ticket's mailbox
// (rendered for this ticket by the server) and insert one at the cursor.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var picker = document.getElementById("si-saved-picker");
    if (!picker || !window.fetch) { return; }
    var target = document.getElementById(picker.getAttribute("data-target"));
    var search = document.getElementById("si-saved-q");
    var select = document.getElementById("si-saved-select");
    var button = document.getElementById("si-saved-insert");
    if (!target || !search || !select || !button) { return; }
    var url = picker.getAttribute("data-url");
    var replies = [];
    var seq = 0;
    var timer = null;
    function fill(list) {
      replies = list;
      while (select.firstChild) { select.removeChild(select.firstChild); }
      if (!list.length) {
        var none = document.createElement("option");
        none.value = "";
        none.textContent = "No saved reply matches";
        select.appendChild(none);
      }
      list.forEach(function (r, i) {
        var opt = document.createElement("option");
        opt.value = String(i);
        opt.textContent = r.title;
        opt.title = r.text.slice(0, 300);
        select.appendChild(opt);
      });
      select.disabled = button.disabled = !list.length;
    }
    function load() {
      var mine = ++seq;
      timer = null;
      picker.setAttribute("aria-busy", "true");
      return fetch(url + "?q=" + encodeURIComponent(search.value.trim()), {
        credentials: "same-origin", headers: { "Accept": "application/json" }
      }).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      }).then(function (data) {
        if (mine === seq) { fill(data.saved_replies || []); }
      }).catch(function () {
        if (mine === seq) { fill([]); }
      }).then(function () {
        if (mine === seq) { picker.removeAttribute("aria-busy"); }
      });
    }
    function insert() {
      var r = replies[parseInt(select.value, 10)];
      if (!r) { return; }
      var start = target.selectionStart, end = target.selectionEnd;
      if (typeof start !== "number") { start = end = target.value.length; }
      target.value = target.value.slice(0, start) + r.text + target.value.slice(end);
      target.focus();
      target.selectionStart = target.selectionEnd = start + r.text.length;
      target.dispatchEvent(new Event("input", { bubbles: true }));
    }
    search.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(load, 150);
    });
    search.addEventListener("keydown", function (e) {
      // Enter inserts the first match instead of submitting the reply form.
      if (e.key === "Enter") {
        e.preventDefault();
        if (timer !== null) { clearTimeout(timer); load().then(insert); } else { insert(); }
      }
      else if (e.key === "ArrowDown") { e.preventDefault(); select.focus(); }
    });
    select.addEventListener("keydown", function (e) {
      if (e.key === "Enter") { e.preventDefault(); insert(); }
    });
    button.addEventListener("click", insert);
    picker.hidden = false;
    load();
  });
})();

// In-place actions: a form marked data-si-inplace (assign, tags, status, snooze on a ticket;
// bulk actions in the list) is posted with fetch instead of loading a new page. The server
// answers as it always does (redirect to the page, flash message); we take the regions marked
// data-si-region from that page, swap them into this one, and announce its flash messages in
// the aria-live region #si-live. Without JavaScript the same forms post and redirect.
(function () {
  "use strict";
  if (!window.fetch || !window.DOMParser || !window.FormData) { return; }
  var busy = false;

  function announce(messages) {
    var live = document.getElementById("si-live");
    if (!live) { return; }
    while (live.firstChild) { live.removeChild(live.firstChild); }
    messages.forEach(function (m) {
      var p = document.createElement("p");
      p.className = "si-flash si-flash-" + m.category;
      p.textContent = m.text;
      live.appendChild(p);
    });
  }

  function swapRegions(doc) {
    var swapped = 0;
    document.querySelectorAll("[data-si-region]").forEach(function (old) {
      var fresh = old.id && doc.getElementById(old.id);
      if (fresh) {
        old.parentNode.replaceChild(document.importNode(fresh, true), old);
        swapped += 1;
      }
    });
    return swapped;
  }

  function refocus(form, focusId, focusName) {
    // Keyboard users stay where they were: the same control if it still exists, else the
    // first control of the region the form was in.
    var target = (focusId && document.getElementById(focusId)) || null;
    if (!target && focusName) {
      var region = document.getElementById(focusName);
      if (region) { target = region.querySelector("select, input:not([type=hidden]), button"); }
    }
    if (target && target.focus) { target.focus({ preventScroll: true }); }
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form || !form.hasAttribute || !form.hasAttribute("data-si-inplace") || e.defaultPrevented) {
      return;
    }
    e.preventDefault();
    if (busy) { return; }
    busy = true;
    var body = new FormData(form);
    if (e.submitter && e.submitter.name) { body.append(e.submitter.name, e.submitter.value); }
    var active = document.activeElement;
    var focusId = active && active.id && form.contains(active) ? active.id : null;
    var region = form.closest("[data-si-region]");
    var regionId = region ? region.id : null;
    form.setAttribute("aria-busy", "true");
    // getAttribute: a control named "action" (the bulk form has one) shadows form.action.
    fetch(form.getAttribute("action") || window.location.href, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "text/html", "X-Requested-With": "fetch" }
    }).then(function (r) {
      return r.text().then(function (html) { return { ok: r.ok, status: r.status, html: html }; });
    }).then(function (res) {
      var doc = new DOMParser().parseFromString(res.html, "text/html");
      var flashes = [];
      doc.querySelectorAll(".si-app > p.si-flash[role=status]").forEach(function (p) {
        var category = (p.className.match(/si-flash-(\w+)/) || [])[1] || "info";
        flashes.push({ category: category, text: p.textContent.trim() });
      });
      if (!res.ok) {
        flashes.push({ category: "error", text: "That did not work (HTTP " + res.status + "). " +
          "Reload the page and try again." });
      } else if (!swapRegions(doc)) {
        // The answer is another page (e.g. the ticket was merged): go there.
        window.location.reload();
        return;
      }
      announce(flashes);
      refocus(form, focusId, regionId);
      document.dispatchEvent(new CustomEvent("si:replaced"));
    }).catch(function () {
      announce([{ category: "error", text: "The server could not be reached; nothing changed. Try again." }]);
    }).then(function () {
      busy = false;
      form.removeAttribute("aria-busy");
    });
  });
})();
