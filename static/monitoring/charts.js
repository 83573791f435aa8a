/* Draws the monitoring charts from the JSON the server embeds (json_script): on load, and after
   every htmx swap of the #live (dashboard) or #result (explorer) fragment. Each chart shows the
   min..max band of its buckets, the average and the p95. */
(function () {
  "use strict";

  function readJSON(id) {
    var node = document.getElementById(id);
    if (!node) return null;
    try { return JSON.parse(node.textContent); } catch (e) { return null; }
  }

  function layoutFor(el, unit) {
    var style = getComputedStyle(document.body);
    var text = style.color || "#444";
    return {
      margin: { l: 48, r: 12, t: 8, b: 32 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { size: 11, color: text },
      showlegend: el.classList.contains("mon-chart-wide"),
      legend: { orientation: "h", y: -0.2 },
      xaxis: { type: "date", gridcolor: "rgba(128,128,128,0.15)" },
      yaxis: { title: { text: unit || "" }, gridcolor: "rgba(128,128,128,0.15)", rangemode: "tozero" },
      hovermode: "x unified"
    };
  }

  function traces(chart) {
    return [
      { x: chart.t, y: chart.min, name: "min", type: "scatter", mode: "lines",
        line: { width: 0 }, hoverinfo: "skip", showlegend: false },
      { x: chart.t, y: chart.max, name: "min–max", type: "scatter", mode: "lines",
        line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(59,130,246,0.18)" },
      { x: chart.t, y: chart.avg, name: "avg", type: "scatter", mode: "lines",
        line: { width: 2, color: "rgb(37,99,235)" } },
      { x: chart.t, y: chart.p95, name: "p95", type: "scatter", mode: "lines",
        line: { width: 1.5, dash: "dot", color: "rgb(234,88,12)" } }
    ];
  }

  function draw(chart) {
    if (!chart || !window.Plotly) return;
    var selector = '[data-chart="' + String(chart.name).replace(/"/g, "") + '"]';
    document.querySelectorAll(selector).forEach(function (el) {
      window.Plotly.react(el, traces(chart), layoutFor(el, chart.unit),
        { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] });
      el.setAttribute("data-drawn", String(chart.t.length));
    });
  }

  function render() {
    var charts = readJSON("monitoring-data");
    if (Array.isArray(charts)) charts.forEach(draw);
    var one = readJSON("explorer-data");
    if (one && one.name) draw(one);
  }

  document.addEventListener("DOMContentLoaded", render);
  document.addEventListener("htmx:afterSettle", render);
})();
