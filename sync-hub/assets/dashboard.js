// The fleet dashboard's live view: the hub sends the fleet fragment each
// second over server-sent events; a lost connection or an ended session is
// said where the operator looks, at the top of the page.
"use strict";
(function () {
  const fleet = document.getElementById("fleet");
  const live = document.getElementById("live");
  if (!fleet || !live) return;
  const say = (text, bad) => {
    live.textContent = text;
    live.classList.toggle("bad", !!bad);
  };
  const source = new EventSource("/events");
  source.addEventListener("fleet", (e) => {
    if (e.data) fleet.innerHTML = e.data;
    say("Live", false);
  });
  source.addEventListener("signed_out", () => {
    source.close();
    window.location.assign("/signin?m=expired");
  });
  source.onerror = () => {
    say("Connection to the hub lost: retrying…", true);
    // A refused live view is usually an ended session: check, and go to
    // sign-in rather than retry forever.
    fetch("/fleet", { credentials: "same-origin" })
      .then((r) => {
        if (r.status === 401) {
          source.close();
          window.location.assign("/signin?m=expired");
        }
      })
      .catch(() => {});
  };
})();
