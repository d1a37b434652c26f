// FiberJob Web UI: the live dashboard (polls /stats.json) and confirm prompts.
// Everything else works without JavaScript.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });

  var chart = document.getElementById("chart");
  if (!chart) return;

  var WINDOW = 150;           // samples kept: 5 minutes at one every 2 s
  var EVERY = 2000;
  var samples = [];
  var last = null;

  function format(n) {
    return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function draw() {
    var svg = chart.querySelector("svg");
    var max = 1;
    samples.forEach(function (s) { max = Math.max(max, s.processed, s.failed); });
    ["processed", "failed"].forEach(function (key) {
      var points = samples.map(function (s, i) {
        var x = (600 * (i + WINDOW - samples.length)) / (WINDOW - 1);
        var y = 155 - (150 * s[key]) / max;
        return x.toFixed(1) + "," + y.toFixed(1);
      });
      svg.querySelector("polyline." + key).setAttribute("points", points.join(" "));
    });
    var now = samples[samples.length - 1];
    if (now) document.getElementById("rate").textContent =
      format(now.processed) + " processed/s · " + format(now.failed) + " failed/s · max " + format(max) + "/s";
  }

  function update(stats) {
    Object.keys(stats).forEach(function (key) {
      var el = document.querySelector('[data-stat="' + key + '"]');
      if (el) el.textContent = format(stats[key]);
    });
    if (last) {
      var dt = Math.max(stats.time - last.time, 0.001);
      samples.push({
        processed: Math.max(stats.processed - last.processed, 0) / dt,
        failed: Math.max(stats.failed - last.failed, 0) / dt
      });
      if (samples.length > WINDOW) samples.shift();
      draw();
    }
    last = stats;
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
