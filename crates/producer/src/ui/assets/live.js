// Live updates: every 2 s, while the page is visible and "live" is ticked,
// fetch this same URL's main part (the server answers only that when asked
// with X-Sluice-Fragment) and put it in place. Without JavaScript the pages
// work the same, refreshed by hand.
(function () {
  "use strict";
  var busy = false;
  function refresh() {
    var box = document.getElementById("live");
    var main = document.querySelector("main[data-live]");
    if (busy || !main || !box || !box.checked || document.hidden) return;
    // Never under a user's hands: a field being typed in stays as it is.
    var active = document.activeElement;
    if (active && main.contains(active) && active.tagName === "INPUT") return;
    busy = true;
    fetch(location.href, { headers: { "X-Sluice-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) {
        // Signed out (a token changed): the whole page says so.
        if (r.status === 401) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) { if (html !== null) main.innerHTML = html; })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  setInterval(refresh, 2000);
})();
