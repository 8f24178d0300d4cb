// autocall console: live counters over Server-Sent Events, and confirmations.
// No inline scripts anywhere (the Content-Security-Policy forbids them): behaviour
// lives here, keyed on data- attributes the templates set.
(function () {
  "use strict";

  function setText(root, key, value) {
    root.querySelectorAll('[data-counter="' + key + '"]').forEach(function (el) {
      el.textContent = value === null || value === undefined ? "" : String(value);
    });
  }

  function showOutcomes(list, outcomes) {
    while (list.firstChild) { list.removeChild(list.firstChild); }
    var keys = Object.keys(outcomes);
    if (keys.length === 0) {
      var none = document.createElement("li");
      none.className = "empty";
      none.textContent = "none yet";
      list.appendChild(none);
      return;
    }
    keys.forEach(function (k) {
      var li = document.createElement("li");
      var name = document.createElement("span");
      name.className = "outcome";
      name.textContent = k;
      var count = document.createElement("b");
      count.textContent = String(outcomes[k]);
      li.appendChild(name);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(count);
      list.appendChild(li);
    });
  }

  // Charts are redrawn by the server from the store; ask again when calls have ended,
  // at most every CHART_EVERY ms (matplotlib is not free).
  var CHART_EVERY = 5000;
  var charts = { shown: null, wanted: null, at: 0, timer: null };

  function drawCharts() {
    charts.timer = null;
    document.querySelectorAll("img[data-chart]").forEach(function (img) {
      var base = img.getAttribute("src").split("?")[0];
      img.setAttribute("src", base + "?v=" + charts.wanted);
    });
    charts.shown = charts.wanted;
    charts.at = Date.now();
  }

  function refreshCharts(data) {
    charts.wanted = data.dialed + "-" + data.done;
    if (charts.shown === null) {  // the page has just drawn them
      charts.shown = charts.wanted;
      charts.at = Date.now();
      return;
    }
    if (charts.wanted === charts.shown || charts.timer !== null) { return; }
    var wait = Math.max(0, charts.at + CHART_EVERY - Date.now());
    charts.timer = window.setTimeout(drawCharts, wait);  // the last change is drawn too
  }

  function apply(data) {
    var root = document;
    ["state", "state_reason", "done", "contacts", "dialed", "ringing", "talking",
     "answered", "calls_per_second", "channels_busy", "channels", "dialers"
    ].forEach(function (k) { setText(root, k, data[k]); });
    root.querySelectorAll('[data-counter="state"]').forEach(function (el) {
      el.className = "state state-" + data.state;
    });
    root.querySelectorAll("progress[data-progress]").forEach(function (el) {
      el.value = data.progress;
    });
    root.querySelectorAll("[data-outcomes]").forEach(function (el) {
      showOutcomes(el, data.outcomes || {});
    });
    root.querySelectorAll("form[data-verb]").forEach(function (form) {
      form.hidden = (data.verbs || []).indexOf(form.getAttribute("data-verb")) < 0;
    });
    refreshCharts(data);
  }

  function live() {
    var badge = document.getElementById("live");
    if (!badge || !window.EventSource) { return; }
    var source = new EventSource(badge.getAttribute("data-events"));
    source.addEventListener("counters", function (event) {
      apply(JSON.parse(event.data));
      badge.textContent = "live";
      badge.className = "live on";
      badge.setAttribute("data-updates", String(Number(badge.getAttribute("data-updates") || 0) + 1));
    });
    source.addEventListener("problem", function (event) {
      badge.textContent = JSON.parse(event.data).detail;
      badge.className = "live off";
    });
    source.onerror = function () {
      badge.textContent = "reconnecting…";
      badge.className = "live off";
    };
  }

  function confirmations() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      var question = form.getAttribute && form.getAttribute("data-confirm");
      if (question && !window.confirm(question)) { event.preventDefault(); }
    }, true);
  }

  document.addEventListener("DOMContentLoaded", function () {
    confirmations();
    live();
  });
})();
