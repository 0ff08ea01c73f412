// Draws the dashboard charts from their data-chart attribute (the CSP forbids inline scripts).
// The figures are also in a table next to each chart: without this file nothing is lost.
(function () {
  "use strict";

  var COLOURS = ["#2563eb", "#059669", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

  function draw(canvas) {
    if (!window.Chart || canvas.dataset.drawn) { return; }
    var config;
    try {
      config = JSON.parse(canvas.dataset.chart);
    } catch (error) {
      return;
    }
    canvas.dataset.drawn = "1";
    var datasets = config.datasets.map(function (dataset, index) {
      var colour = COLOURS[index % COLOURS.length];
      return { label: dataset.label, data: dataset.data, backgroundColor: colour, borderColor: colour };
    });
    var locale = document.documentElement.lang || "fr";
    new window.Chart(canvas, {
      type: config.type,
      data: { labels: config.labels, datasets: datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        locale: locale,
        scales: {
          x: { stacked: !!config.stacked },
          y: { stacked: !!config.stacked, beginAtZero: true, ticks: { precision: 0 } }
        },
        plugins: { legend: { position: "bottom" } }
      }
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  // The period switch swaps the section: draw the charts it brought.
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
}());
