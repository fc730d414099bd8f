// Pipelines page: draw each pipeline's charts from its JSON series (uPlot, vendored).
// No inline script anywhere (the Content-Security-Policy allows only these files).
"use strict";
(function () {
  function chart(box, title, x, ys, labels, opts) {
    var wrap = document.createElement("div");
    wrap.className = "chart";
    var h = document.createElement("h3");
    h.textContent = title; // text, never HTML: names come from stored data
    wrap.appendChild(h);
    box.appendChild(wrap);
    var colors = ["#1f883d", "#0969da", "#cf222e", "#9a6700", "#8250df", "#57606a"];
    var series = [{}];
    for (var i = 0; i < ys.length; i++) {
      series.push({ label: labels[i], stroke: colors[i % colors.length], width: 2, points: { show: true }, spanGaps: true });
    }
    var o = { width: 420, height: 200, series: series, scales: opts && opts.scales ? opts.scales : {}, axes: [{}, { size: 60 }] };
    new uPlot(o, [x].concat(ys), wrap);
  }
  function draw(box, data) {
    var d = data.daily;
    chart(box, "Success rate (finished runs, per day)", d.t, [d.success], ["success rate"], { scales: { y: { range: [0, 1] } } });
    chart(box, "Duration p50 / p95 (s, per day)", d.t, [d.p50, d.p95], ["p50", "p95"]);
    chart(box, "Runs per day", d.t, [d.runs], ["runs"]);
    var names = Object.keys(data.scores);
    for (var i = 0; i < names.length; i++) {
      var pts = data.scores[names[i]];
      chart(box, "Score: " + names[i], pts.map(function (p) { return p[0]; }), [pts.map(function (p) { return p[1]; })], ["score"], { scales: { y: { range: [0, 1] } } });
    }
  }
  document.querySelectorAll(".charts[data-series]").forEach(function (box) {
    fetch(box.getAttribute("data-series"), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) { draw(box, data); box.setAttribute("data-drawn", "true"); })
      .catch(function (e) { box.textContent = "charts unavailable: " + e; });
  });
})();
