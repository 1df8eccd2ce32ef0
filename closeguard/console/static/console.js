// closeguard console: keep a page's live section current without reloading the page.
// Polls /api/digest/<view> and, when it changes, fetches the section again; typed
// comments survive the swap. No framework, no network beyond this site.
(function () {
  "use strict";
  var section = document.querySelector("[data-live]");
  if (!section) return;
  var view = section.getAttribute("data-live");
  var period = parseInt(section.getAttribute("data-poll"), 10) || 1500;

  function swap(html) {
    var kept = {};
    section.querySelectorAll("textarea[data-keep]").forEach(function (t) {
      if (t.value) kept[t.getAttribute("data-keep")] = t.value;
    });
    var box = document.createElement("div");
    box.innerHTML = html;
    var fresh = box.querySelector("[data-live]");
    if (!fresh) return;
    fresh.querySelectorAll("textarea[data-keep]").forEach(function (t) {
      var value = kept[t.getAttribute("data-keep")];
      if (value) t.value = value;
    });
    section.replaceWith(fresh);
    section = fresh;
  }

  function tick() {
    fetch("/api/digest/" + view, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || data.digest === section.getAttribute("data-digest")) return null;
        return fetch(location.pathname + "?partial=1", { credentials: "same-origin", cache: "no-store" })
          .then(function (r) { return r.ok ? r.text() : null; })
          .then(function (html) { if (html) swap(html); });
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, period); });
  }
  setTimeout(tick, period);
})();
