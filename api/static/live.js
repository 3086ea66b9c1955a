// Keeps the status page current without a reload: asks the server for the page's live
// part every few seconds (a conditional request, answered 304 while nothing changed) and
// swaps it in. Without JavaScript the page is the same, as of when it was loaded.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var live = document.getElementById("live");
  if (!live || !window.fetch) return;
  var url = live.getAttribute("data-live-url");
  var every = Number(live.getAttribute("data-refresh-ms")) || 5000;
  var etag = live.getAttribute("data-etag");
  var shown = document.getElementById("refreshed");
  var announce = document.getElementById("announce");
  var busy = false;

  function summary() {
    var s = live.querySelector("[data-summary]");
    return s ? s.textContent.replace(/\s+/g, " ").trim() : "";
  }

  function stamp(text) {
    if (shown) shown.textContent = text;
  }

  function poll() {
    if (busy || document.hidden) return;
    busy = true;
    var headers = etag ? { "If-None-Match": etag } : {};
    // a request that hangs (a loaded server) must not stop the polling
    var abort = window.AbortController ? new AbortController() : null;
    var timer = abort ? setTimeout(function () { abort.abort(); }, every * 2) : 0;
    fetch(url, {
      headers: headers,
      cache: "no-store",
      credentials: "same-origin",
      signal: abort ? abort.signal : undefined,
    })
      .then(function (r) {
        if (r.status === 304) return null;
        if (!r.ok) throw new Error("HTTP " + r.status);
        etag = r.headers.get("ETag");
        return r.text();
      })
      .then(function (html) {
        var time = new Date().toISOString().slice(11, 19);
        if (html !== null) {
          var before = summary();
          live.innerHTML = html;
          var after = summary();
          // screen readers hear what changed, not the whole table
          if (announce && after !== before) announce.textContent = after;
          live.setAttribute("data-updated", time);
        }
        stamp("Checked at " + time + " UTC.");
      })
      .catch(function (err) {
        stamp("Could not refresh (" + err.message + "); retrying.");
      })
      .then(function () {
        clearTimeout(timer);
        busy = false;
      });
  }

  setInterval(poll, every);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) poll();
  });
})();
