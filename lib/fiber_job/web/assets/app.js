// FiberJob Web UI: the live dashboard (polls /stats.json: totals for the cards and the
// last 5 minutes of throughput, in 10-second windows, for the chart) and confirm
// prompts. Everything else works without JavaScript.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  var chart = document.getElementById("chart");
  if (!chart) return;

  var EVERY = 2000;

  function format(n) {
    var s = n >= 100 || n === Math.round(n) ? String(Math.round(n)) : n.toFixed(1);
    return s.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function draw(windows) {
    var svg = chart.querySelector("svg");
    var max = 1;
    windows.forEach(function (w) { max = Math.max(max, w.processed, w.failed); });
    ["processed", "failed"].forEach(function (key) {
      var points = windows.map(function (w, i) {
        var x = windows.length > 1 ? (600 * i) / (windows.length - 1) : 600;
        var y = 155 - (150 * w[key]) / max;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      svg.querySelector("polyline." + key).setAttribute("points", points.join(" "));
    });
    var now = windows[windows.length - 1];
    if (now) document.getElementById("rate").textContent =
      format(now.processed) + " processed/s · " + format(now.failed) + " failed/s · peak " + format(max) + "/s";
  }

  function update(stats) {
    Object.keys(stats).forEach(function (key) {
      var el = document.querySelector('[data-stat="' + key + '"]');
      if (el) el.textContent = format(stats[key]);
    });
    if (stats.throughput) draw(stats.throughput);
  }

  function poll() {
    fetch(chart.getAttribute("data-src"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (stats) { if (stats) update(stats); })
      .catch(function () { /* Redis or the server is away; try again */ })
      .then(function () { setTimeout(poll, EVERY); });
  }
  poll();
})();
