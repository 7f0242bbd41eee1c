// Live updates for the LAN UI, without a framework: server-sent events
// refresh the parts of a page that changed, countdowns tick, and forms
// marked data-inline post without leaving the page. Everything also works
// without this script (forms post and redirect back).
(function () {
  "use strict";

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = Math.max(0, Math.round((Number(el.dataset.expires) - now) / 1000));
      var m = Math.floor(left / 60), s = left % 60;
      el.textContent = left > 0 ? m + ":" + (s < 10 ? "0" : "") + s + " left" : "expiring";
    });
  }

  function refresh(id, url) {
    var target = document.getElementById(id);
    if (!target) return;
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { target.innerHTML = html; tick(); } });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute("data-inline")) return;
    event.preventDefault();
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    fetch(form.action, { method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin" })
      .then(function () { var live = document.body.dataset.live; if (live) refresh("live", live); });
  });

  var live = document.body.dataset.live;
  if (window.EventSource && document.body.dataset.events) {
    var source = new EventSource("/events");
    source.addEventListener("change", function () { if (live) refresh("live", live); });
    source.addEventListener("status", function (e) {
      var banner = document.getElementById("banner");
      if (banner) banner.outerHTML = e.data;
    });
    // The stream ends with its session (signed out elsewhere, idle) and the
    // server then refuses it: reload, which leads to the sign-in page,
    // rather than keep showing customers' bookings. (A server that is
    // merely restarting leaves the source reconnecting, not closed.)
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) window.location.reload();
    });
  }
  tick();
  setInterval(tick, 1000);
})();
