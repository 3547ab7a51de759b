/* The console's little JavaScript. Every page works without it; with it, live regions
   refresh themselves and a report page tells others who is looking at it.

   data-live-events="URL"    a server-sent-events stream; any event means "something changed"
   data-live-rows="URL"      server-rendered HTML that replaces the element's content
   data-viewing="URL"        POSTed every 20 s (with the CSRF header); answers who else looks */
(function () {
  "use strict";
  var token = document.querySelector('meta[name="csrf-token"]');
  var csrf = token ? token.getAttribute("content") : "";

  function refresh(element) {
    var url = element.getAttribute("data-live-rows");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected || response.status === 401) {
          window.location.reload(); // the session ended: show the sign-in page
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) {
          element.innerHTML = html; // trusted: rendered (and escaped) by the server
          element.setAttribute("data-refreshed", String(Date.now()));
          announce(element);
        }
      })
      .catch(function () { /* the stream retries; the next event refreshes again */ });
  }

  // Screen readers hear the one-line summary when it changes, not the whole table.
  function announce(element) {
    var summary = element.querySelector("[data-live-summary]");
    var speaker = document.querySelector("[data-live-announce]");
    if (summary && speaker && speaker.textContent !== summary.textContent) {
      speaker.textContent = summary.textContent;
    }
  }

  function live(element) {
    var pending = null;
    var source = new EventSource(element.getAttribute("data-live-events"));
    function changed() {
      if (pending) { return; }
      pending = setTimeout(function () { pending = null; refresh(element); }, 250);
    }
    ["message", "changed", "report", "report_left", "resync"].forEach(function (name) {
      source.addEventListener(name, changed);
    });
  }

  function viewing(element) {
    var url = element.getAttribute("data-viewing");
    var me = element.getAttribute("data-me");
    var list = element.querySelector("[data-viewers]");
    function beat() {
      fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }
      })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (body) {
          if (!body || !list) { return; }
          var others = body.viewers.filter(function (v) { return v.username !== me; });
          list.textContent = others.length
            ? others.map(function (v) { return v.username; }).join(", ")
            : "nobody else";
        })
        .catch(function () {});
    }
    beat();
    setInterval(beat, 20000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-events]").forEach(live);
    document.querySelectorAll("[data-viewing]").forEach(viewing);
    var summary = document.querySelector(".error-summary[tabindex]");
    if (summary) { summary.focus(); }
  });
})();
