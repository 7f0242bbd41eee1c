// The LAN UI's script, without a framework. Everything also works without
// it (forms post and redirect back); with it:
// - server-sent events refresh the live part of a page, never under a
//   person who is typing in it;
// - countdowns tick;
// - forms marked data-inline post in place and show their failure next to
//   them, or lead to sign-in when the session has ended;
// - forms marked data-confirm ask once before they post;
// - the staff queue signals a new web order (and beeps, unless switched off);
// - a kiosk clears what a customer left on screen after its idle time.
(function () {
  "use strict";
  var body = document.body;

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-expires]").forEach(function (el) {
      var left = Math.max(0, Math.round((Number(el.dataset.expires) - now) / 1000));
      var m = Math.floor(left / 60), s = left % 60;
      el.textContent = left > 0
        ? m + ":" + (s < 10 ? "0" : "") + s + " " + (body.dataset.left || "")
        : (body.dataset.expiring || "");
    });
  }

  function toSignin() {
    window.location.href = "/signin?expired=1&next=" +
      encodeURIComponent(window.location.pathname + window.location.search);
  }

  function notice(text, kind) {
    var el = document.getElementById("notice");
    if (!el) return;
    el.textContent = text;
    el.className = "notice " + (kind || "good");
    el.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(function () { el.hidden = true; }, 8000);
  }

  // Someone is typing in (or has opened) part of the live region: a refresh
  // now would throw their input away.
  function busy(target) {
    var active = document.activeElement;
    if (active && target.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName)) return true;
    return target.querySelector("details[open]") !== null;
  }

  var pending = false;
  function refresh() {
    var url = body.dataset.live, target = document.getElementById("live");
    if (!url || !target) return;
    if (busy(target)) { pending = true; return; }
    pending = false;
    fetch(url, { credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { toSignin(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null) return;
        target.innerHTML = html;
        tick();
        signalWebOrders();
      })
      .catch(function () {});
  }
  // A refresh put off while someone typed happens once they leave.
  document.addEventListener("focusout", function () { if (pending) setTimeout(refresh, 300); });
  document.addEventListener("toggle", function () { if (pending) setTimeout(refresh, 300); }, true);

  // --- Actions in place ---------------------------------------------------
  function showError(form, text) {
    var el = form.nextElementSibling;
    if (!el || !el.classList.contains("form-error")) {
      el = document.createElement("p");
      el.className = "form-error";
      el.setAttribute("role", "alert");
      form.parentNode.insertBefore(el, form.nextSibling);
    }
    el.textContent = text;
  }

  function post(form) {
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    var data = new URLSearchParams(new FormData(form));
    // The question was asked and answered here.
    if (form.dataset.confirm) data.set("sure", "1");
    fetch(form.action, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "x-requested-with": "fetch" }
    }).then(function (r) {
      if (r.status === 401) { toSignin(); return; }
      return r.text().then(function (text) {
        if (button) button.disabled = false;
        if (!r.ok) { showError(form, text); return; }
        notice(text, "good");
        if (body.dataset.live) refresh(); else window.location.reload();
      });
    }).catch(function () {
      if (button) button.disabled = false;
      showError(form, body.dataset.offline || "The store's server did not answer. Please try again.");
    });
  }

  // Asks `form`'s question in place, with a yes and a no.
  function ask(form) {
    if (form.nextElementSibling && form.nextElementSibling.classList.contains("ask")) return;
    var box = document.createElement("div");
    box.className = "ask";
    box.setAttribute("role", "alertdialog");
    var q = document.createElement("p");
    q.textContent = form.dataset.confirm;
    var yes = document.createElement("button");
    yes.type = "button"; yes.className = "danger"; yes.textContent = form.dataset.yes || "OK";
    var no = document.createElement("button");
    no.type = "button"; no.className = "secondary"; no.textContent = form.dataset.no || "Back";
    var row = document.createElement("div");
    row.className = "row";
    row.appendChild(yes); row.appendChild(no);
    box.appendChild(q); box.appendChild(row);
    form.parentNode.insertBefore(box, form.nextSibling);
    yes.addEventListener("click", function () { box.remove(); post(form); });
    no.addEventListener("click", function () { box.remove(); });
    no.focus();
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute("data-inline")) return;
    event.preventDefault();
    if (form.dataset.confirm) ask(form); else post(form);
  });

  // --- New web orders -----------------------------------------------------
  var SEEN = "edge-seen-web-orders";
  function soundOn() { return localStorage.getItem("edge-sound") !== "off"; }
  function beep() {
    try {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      var ctx = new Ctx(), osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.frequency.value = 880; gain.gain.value = 0.15;
      osc.connect(gain); gain.connect(ctx.destination);
      osc.start(); osc.stop(ctx.currentTime + 0.25);
    } catch (e) { /* no audio on this device */ }
  }
  function signalWebOrders() {
    var live = document.getElementById("live");
    if (!live || !live.dataset.newWebOrder) return;
    var seen = JSON.parse(sessionStorage.getItem(SEEN) || "[]"), fresh = 0;
    live.querySelectorAll("[data-web-order]").forEach(function (row) {
      var id = row.dataset.webOrder;
      if (seen.indexOf(id) < 0) { seen.push(id); fresh++; }
      row.classList.add("fresh");
    });
    sessionStorage.setItem(SEEN, JSON.stringify(seen.slice(-500)));
    if (fresh > 0) {
      notice(live.dataset.newWebOrder, "web");
      if (soundOn()) beep();
    }
  }
  var toggle = document.getElementById("sound-toggle");
  function showSound() {
    if (!toggle) return;
    toggle.textContent = soundOn() ? toggle.dataset.on : toggle.dataset.off;
    toggle.setAttribute("aria-pressed", soundOn() ? "true" : "false");
  }
  if (toggle) {
    toggle.addEventListener("click", function () {
      localStorage.setItem("edge-sound", soundOn() ? "off" : "on");
      showSound();
    });
    showSound();
  }

  // --- Kiosk idle reset ---------------------------------------------------
  var idle = Number(body.dataset.idle || 0);
  if (idle > 0) {
    var timer;
    var left = function () {
      var typed = Array.prototype.some.call(
        document.querySelectorAll("input:not([type=hidden]):not([type=number])"),
        function (input) { return input.value !== ""; });
      var open = document.querySelector("details[open]") !== null;
      if (typed || open || window.location.pathname !== "/kiosk" || window.location.search) {
        window.location.href = "/kiosk";
      } else {
        arm();
      }
    };
    var arm = function () { clearTimeout(timer); timer = setTimeout(left, idle * 1000); };
    ["pointerdown", "keydown", "input", "touchstart"].forEach(function (name) {
      document.addEventListener(name, arm, true);
    });
    arm();
  }

  // --- Live updates -------------------------------------------------------
  if (window.EventSource && body.dataset.events) {
    var source = new EventSource("/events");
    source.addEventListener("change", refresh);
    source.addEventListener("status", function (e) {
      var banner = document.getElementById("banner");
      if (banner) banner.outerHTML = e.data;
    });
    // The stream ends with its session (signed out elsewhere, idle) and the
    // server then refuses it: reload, which leads to the sign-in page with
    // a message, rather than keep showing customers' bookings. (A server
    // that is merely restarting leaves the source reconnecting.)
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) window.location.reload();
    });
  }
  tick();
  signalWebOrders();
  setInterval(tick, 1000);
})();
