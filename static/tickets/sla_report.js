/* The SLA report's charts: grouped bars of first-response and resolution compliance (% on
   time) per priority, agent, category and week, from the JSON the page embeds (json_script;
   no inline script under the CSP). The period select submits itself. */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  function readJSON(id) {
    var node = document.getElementById(id);
    if (!node) return null;
    try { return JSON.parse(node.textContent); } catch (e) { return null; }
  }

  function draw(chart) {
    var el = document.querySelector('[data-sla-chart="' + String(chart.name).replace(/"/g, "") + '"]');
    if (!el || !window.Plotly) return;
    var text = getComputedStyle(document.body).color || "#444";
    var hover = "%{x}: %{y:.1f}% on time<extra>%{fullData.name}</extra>";
    var traces = [
      { type: "bar", name: "First response", x: chart.labels, y: chart.first,
        marker: { color: "rgb(37,99,235)" }, hovertemplate: hover },
      { type: "bar", name: "Resolution", x: chart.labels, y: chart.resolution,
        marker: { color: "rgb(22,163,74)" }, hovertemplate: hover }
    ];
    var layout = {
      barmode: "group",
      margin: { l: 44, r: 8, t: 8, b: 56 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { size: 11, color: text },
      legend: { orientation: "h", y: 1.12 },
      yaxis: { range: [0, 100], ticksuffix: "%", gridcolor: "rgba(128,128,128,0.15)" },
      xaxis: { type: "category", automargin: true },
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 95, y1: 95,
                 line: { color: "rgba(234,88,12,0.7)", width: 1, dash: "dot" } }]
    };
    window.Plotly.react(el, traces, layout,
      { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] });
    el.setAttribute("data-drawn", String(chart.labels.length));
  }

  function render() {
    var charts = readJSON("sla-report-data");
    if (Array.isArray(charts)) charts.forEach(draw);
  }

  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.matches && select.matches("[data-autosubmit]") && select.form) select.form.submit();
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", render);
  else render();
})();
