// Charts drawn with uPlot (vendor/uplot, served from this origin). No inline script: every
// chart is an element with data-chart, mounted when it appears (page load, panel refresh).
//   data-chart="readings"  a resident's or device's metric over a window, fetched as JSON
//   data-chart="line"      a series given in data-chart-times / data-chart-values (overview)
//   data-chart="sparkline" the same, tiny and without axes (failure-group trends)
(function () {
  "use strict";
  if (window.consoleCharts || !window.uPlot) return;

  var COLOURS = ["#0f6e6e", "#6941c6", "#b54708", "#175cd3", "#c11574", "#3b7c0f"];
  var mounted = new Map(); // element -> { plot(): its uPlot or null, draw(), destroy() }

  // The zone of every tick and tooltip: <html data-zone="UTC"> (or any IANA zone);
  // absent, empty or "browser" means the browser's own. Changing it redraws every chart.
  function chartTimeZone() {
    var zone = document.documentElement.getAttribute("data-zone");
    return zone && zone !== "browser" ? zone : null;
  }

  function zoneLabel() {
    var zone = chartTimeZone();
    return zone || Intl.DateTimeFormat().resolvedOptions().timeZone + " (browser time)";
  }

  function tzDate() {
    var zone = chartTimeZone();
    if (!zone) return function (seconds) { return new Date(seconds * 1000); };
    return function (seconds) { return uPlot.tzDate(new Date(seconds * 1000), zone); };
  }

  // The wall-clock parts of an instant in the chart's zone.
  function wallParts(date) {
    var parts = {};
    new Intl.DateTimeFormat("en-GB", {
      timeZone: chartTimeZone() || undefined, hourCycle: "h23",
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(date).forEach(function (part) { parts[part.type] = part.value; });
    return parts;
  }

  function formatTime(seconds) {
    var p = wallParts(new Date(seconds * 1000));
    return p.year + "-" + p.month + "-" + p.day + " " + p.hour + ":" + p.minute;
  }

  // "2026-11-24T07:00" typed in the chart's zone -> the instant, with its offset, in ISO 8601.
  function wallTimeToIso(value) {
    if (!value || isNaN(new Date(value + "Z").getTime())) return value;  // the server names the field
    if (!chartTimeZone()) return new Date(value).toISOString();
    var asUtc = new Date(value + "Z");
    var p = wallParts(asUtc);
    var offset = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - asUtc.getTime();
    return new Date(asUtc.getTime() - offset).toISOString();
  }

  function isoToWallTime(iso) {
    var p = wallParts(new Date(iso));
    return p.year + "-" + p.month + "-" + p.day + "T" + p.hour + ":" + p.minute;
  }

  // Time ticks in the console's format (24 h clock, ISO dates), in the chart's zone: the
  // date is written under the first tick and wherever the day changes.
  function timeTicks(plot, splits, axisIndex, space, increment) {
    var previousDay = null, previousYear = null;
    return splits.map(function (seconds) {
      var p = wallParts(new Date(seconds * 1000));
      var day = p.year + "-" + p.month + "-" + p.day;
      var changed = day !== previousDay, newYear = p.year !== previousYear;
      previousDay = day; previousYear = p.year;
      if (increment >= 86400) return newYear ? day : p.month + "-" + p.day;
      var clock = p.hour + ":" + p.minute + (increment < 60 ? ":" + p.second : "");
      return changed ? clock + "\n" + day : clock;
    });
  }

  var TIME_AXIS = { values: timeTicks, space: 60 };

  function formatValue(value) {
    return value === null || value === undefined ? "–" : String(Number(value.toFixed(2)));
  }

  function formatBucket(seconds) {
    if (seconds % 86400 === 0) return seconds / 86400 + " d";
    if (seconds % 3600 === 0) return seconds / 3600 + " h";
    if (seconds % 60 === 0) return seconds / 60 + " min";
    return seconds + " s";
  }

  // Empty buckets between readings of a device that reports less often than one bucket are
  // bridged (undefined: uPlot joins across them); a longer silence stays a gap (null).
  function bridgeShortGaps(values) {
    var runs = [], run = 0, seen = false;
    values.forEach(function (value) {
      if (value === null) { run += 1; return; }
      if (seen && run) runs.push(run);
      seen = true; run = 0;
    });
    runs.sort(function (a, b) { return a - b; });
    var typical = runs.length ? runs[Math.floor(runs.length / 2)] : 0;
    var longest = Math.max(3, typical * 3);
    var bridged = values.slice(), start = -1;
    for (var index = 0; index <= values.length; index += 1) {
      var empty = index < values.length && values[index] === null;
      if (empty && start < 0) start = index;
      if (!empty && start >= 0) {
        if (start > 0 && index < values.length && index - start <= longest) {
          for (var inside = start; inside < index; inside += 1) bridged[inside] = undefined;
        }
        start = -1;
      }
    }
    return bridged;
  }

  // A tooltip beside the cursor: the time and each visible series' value.
  function tooltipPlugin(describe) {
    var tip;
    return {
      hooks: {
        init: function (plot) {
          tip = document.createElement("div");
          tip.className = "chart-tooltip";
          tip.hidden = true;
          plot.over.appendChild(tip);
        },
        setCursor: function (plot) {
          var index = plot.cursor.idx;
          if (index === null || index === undefined || plot.cursor.left < 0) { tip.hidden = true; return; }
          tip.replaceChildren();
          describe(plot, index).forEach(function (line, number) {
            var row = document.createElement(number === 0 ? "strong" : "div");
            row.textContent = line;
            tip.appendChild(row);
          });
          tip.hidden = false;
          var width = plot.over.clientWidth;
          var left = plot.cursor.left + 12;
          if (left + tip.offsetWidth > width) left = plot.cursor.left - tip.offsetWidth - 12;
          tip.style.left = Math.max(0, left) + "px";
          tip.style.top = Math.max(0, (plot.cursor.top || 0) - tip.offsetHeight - 8) + "px";
        },
      },
    };
  }

  // The width inside the element's padding: a chart as wide as the element itself would
  // overflow it, widen its grid column, and (through keepWidth) grow again and again.
  function widthOf(element, fallback) {
    var style = window.getComputedStyle(element);
    var inner = element.clientWidth - parseFloat(style.paddingLeft || 0) - parseFloat(style.paddingRight || 0);
    return Math.max(120, Math.floor(inner > 0 ? inner : fallback));
  }

  function keepWidth(element, plot) {
    if (!window.ResizeObserver) return null;
    var observer = new ResizeObserver(function () {
      var width = widthOf(element, plot.width);
      if (width !== plot.width) plot.setSize({ width: width, height: plot.height });
    });
    observer.observe(element);
    return observer;
  }

  // --- overview lines and sparklines: data in attributes -------------------------------

  function mountInline(element, compact) {
    // Sparklines of one table share their time axis, given once on an ancestor.
    var timesSource = element.dataset.chartTimes ? element : element.closest("[data-chart-times]");
    var times = JSON.parse((timesSource && timesSource.dataset.chartTimes) || "[]");
    var values = JSON.parse(element.dataset.chartValues || "[]");
    var label = element.dataset.chartLabel || "value";
    var plot = null, observer = null;

    function draw() {
      if (plot) plot.destroy();
      if (observer) observer.disconnect();
      var options = {
        width: compact ? Number(element.dataset.chartWidth || 160) : widthOf(element, 600),
        height: compact ? Number(element.dataset.chartHeight || 36) : Number(element.dataset.chartHeight || 170),
        tzDate: tzDate(),
        legend: { show: !compact, live: true },
        cursor: { y: false, points: { size: compact ? 5 : 7 }, drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
        series: [
          { value: function (u, seconds) { return seconds === null ? "–" : formatTime(seconds); } },
          { label: label, stroke: COLOURS[0], width: compact ? 1.5 : 2, fill: "rgba(15, 110, 110, 0.08)",
            value: function (u, value) { return formatValue(value); }, points: { show: false } },
        ],
        axes: compact
          ? [{ show: false }, { show: false }]
          : [TIME_AXIS, { size: 48, values: function (u, splits) { return splits.map(formatValue); } }],
        plugins: [tooltipPlugin(function (u, index) {
          return [formatTime(u.data[0][index]), formatValue(u.data[1][index]) + " " + label];
        })],
      };
      plot = new uPlot(options, [times, values], element);
      if (!compact) observer = keepWidth(element, plot);
      element.dataset.chartPoints = String(times.length);
      mounted.set(element, { plot: function () { return plot; }, draw: draw, destroy: destroy });
    }

    function destroy() {
      if (observer) observer.disconnect();
      if (plot) plot.destroy();
      plot = null;
    }

    draw();
  }

  // --- a resident's or device's readings: fetched, with controls ----------------------

  function mountReadings(section) {
    var form = section.querySelector(".chart-controls");
    var metricSelect = form.elements.metric;
    var windowSelect = form.elements.window;
    var status = section.querySelector(".chart-status");
    var area = section.querySelector(".chart-plot");
    var stats = section.querySelector(".chart-stats");
    var zone = section.querySelector(".chart-zone");
    var plot = null, observer = null, payload = null;

    function showCustom() {
      section.querySelectorAll(".chart-custom").forEach(function (label) {
        label.hidden = windowSelect.value !== "custom";
      });
    }

    function query() {
      var params = new URLSearchParams();
      if (metricSelect.value) params.set("metric", metricSelect.value);
      params.set("window", windowSelect.value);
      if (windowSelect.value === "custom") {
        params.set("since", wallTimeToIso(form.elements.since.value));
        params.set("until", wallTimeToIso(form.elements.until.value));
      }
      return params;
    }

    function clear() {
      if (observer) observer.disconnect();
      if (plot) plot.destroy();
      plot = null; observer = null;
      area.hidden = true; stats.hidden = true;
      section.dataset.chartPoints = "0";
    }

    function say(text, isError) {
      status.textContent = text;
      status.classList.toggle("error-text", Boolean(isError));
      status.setAttribute("role", isError ? "alert" : "status");
    }

    function load(params) {
      section.dataset.chartState = "loading";
      var url = section.dataset.chartUrl + "?" + params.toString();
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json", "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (response.redirected && response.url.indexOf("/login/") !== -1) {
            throw new Error("Your session has expired: sign in again to see the chart.");
          }
          return response.json().then(function (body) {
            if (!response.ok) throw new Error(body.error || "The chart could not be loaded (" + response.status + ").");
            return body;
          }, function () { throw new Error("The chart could not be loaded (" + response.status + ")."); });
        })
        .then(function (body) {
          payload = body;
          if (section.hasAttribute("data-chart-sync-location")) {
            window.history.replaceState(null, "", "?" + params.toString());
          }
          render();
        })
        .catch(function (error) {
          clear();
          section.dataset.chartState = "error";
          say(error.message, true);
        });
    }

    function fillControls() {
      metricSelect.replaceChildren();
      payload.metrics.forEach(function (metric) {
        var option = document.createElement("option");
        option.value = metric; option.textContent = metric;
        option.selected = metric === payload.metric;
        metricSelect.appendChild(option);
      });
      metricSelect.disabled = payload.metrics.length === 0;
      windowSelect.value = payload.window;
      if (payload.window === "custom") {
        form.elements.since.value = isoToWallTime(payload.since);
        form.elements.until.value = isoToWallTime(payload.until);
      }
      showCustom();
    }

    function fillStats(unit) {
      var body = stats.querySelector("tbody");
      body.replaceChildren();
      payload.series.forEach(function (one) {
        var row = document.createElement("tr");
        row.dataset.device = one.device;
        [["device", one.device], ["readings", String(one.readings)], ["min", formatValue(one.low)],
         ["max", formatValue(one.high)], ["avg", formatValue(one.mean)]].forEach(function (cell, index) {
          var td = document.createElement("td");
          td.dataset.stat = cell[0];
          if (index) td.className = "num";
          td.textContent = cell[1];
          row.appendChild(td);
        });
        body.appendChild(row);
      });
      stats.querySelector(".chart-unit").textContent = unit ? "(" + unit + ")" : "";
      stats.hidden = false;
    }

    function render() {
      clear();
      fillControls();
      zone.textContent = "Times in " + zoneLabel() + ".";
      if (!payload.metrics.length) {
        section.dataset.chartState = "empty";
        say("No data: " + payload.subject + " has no readings yet.");
        return;
      }
      var span = formatTime(Date.parse(payload.since) / 1000) + " to " + formatTime(Date.parse(payload.until) / 1000);
      if (!payload.readings) {
        section.dataset.chartState = "empty";
        say("No data: no " + payload.metric + " readings from " + span + ".");
        return;
      }
      section.dataset.chartState = "drawn";
      say(payload.readings + " " + payload.metric + " readings from " + span + ", one point per " +
          formatBucket(payload.bucket_seconds) + " (average, with the min–max band).");
      var unit = payload.unit ? " " + payload.unit : "";
      var several = payload.series.length > 1;
      var data = [payload.times];
      var series = [{ value: function (u, seconds) { return seconds === null ? "–" : formatTime(seconds); } }];
      var bands = [];
      payload.series.forEach(function (one, number) {
        var colour = COLOURS[number % COLOURS.length];
        var prefix = several ? one.device + " " : "";
        var show = function (u, value) { return formatValue(value) + (value === null || value === undefined ? "" : unit); };
        data.push(bridgeShortGaps(one.max), bridgeShortGaps(one.min), bridgeShortGaps(one.avg));
        series.push(
          { label: prefix + "max", stroke: colour, width: 1, alpha: 0.5, value: show, points: { show: false } },
          { label: prefix + "min", stroke: colour, width: 1, alpha: 0.5, value: show, points: { show: false } },
          { label: prefix + "average", stroke: colour, width: 2, value: show }
        );
        bands.push({ series: [data.length - 3, data.length - 2], fill: colour + "22" });
      });
      area.hidden = false;
      // The canvas says nothing to a screen reader: the chart's summary does.
      area.setAttribute("role", "img");
      area.setAttribute("aria-label", payload.metric + " of " + payload.subject + " from " + span + ": " +
        payload.series.map(function (one) {
          return (several ? one.device + " " : "") + "min " + formatValue(one.low) + ", max " +
            formatValue(one.high) + ", average " + formatValue(one.mean) + unit;
        }).join("; "));
      plot = new uPlot({
        width: widthOf(area, 800),
        height: 320,
        tzDate: tzDate(),
        cursor: { drag: { x: true, y: false } },
        scales: { x: { time: true } },
        series: series,
        bands: bands,
        axes: [TIME_AXIS, { size: 60, label: payload.metric + (payload.unit ? " (" + payload.unit + ")" : ""),
                     values: function (u, splits) { return splits.map(formatValue); } }],
        plugins: [tooltipPlugin(function (u, index) {
          var lines = [formatTime(u.data[0][index])];
          payload.series.forEach(function (one, number) {
            var avg = u.data[3 * number + 3][index];
            if (avg === null || avg === undefined) return;
            lines.push((several ? one.device + ": " : "") + formatValue(avg) + unit + " (min " +
                       formatValue(u.data[3 * number + 2][index]) + ", max " + formatValue(u.data[3 * number + 1][index]) + ")");
          });
          if (lines.length === 1) lines.push("no readings");
          return lines;
        })],
      }, data, area);
      observer = keepWidth(area, plot);
      section.dataset.chartPoints = String(payload.times.length);
      fillStats(payload.unit);
    }

    metricSelect.addEventListener("change", function () { load(query()); });
    windowSelect.addEventListener("change", function () {
      showCustom();
      if (windowSelect.value !== "custom") load(query());
    });
    form.addEventListener("submit", function (event) { event.preventDefault(); load(query()); });

    var draw = function () { if (payload) render(); };
    mounted.set(section, { plot: function () { return plot; }, draw: draw, destroy: clear });
    load(new URLSearchParams(section.dataset.chartQuery || ""));
  }

  function mount(element) {
    if (mounted.has(element)) return;
    var kind = element.dataset.chart;
    if (kind === "readings") mountReadings(element);
    else if (kind === "line") mountInline(element, false);
    else if (kind === "sparkline") mountInline(element, true);
  }

  function mountWithin(root) {
    if (root.matches && root.matches("[data-chart]")) mount(root);
    if (root.querySelectorAll) root.querySelectorAll("[data-chart]").forEach(mount);
  }

  function init() {
    mountWithin(document);
    // Live panels replace their HTML: removed charts are let go, new ones mounted, and a
    // chart being hovered keeps its cursor and tooltip across the refresh (same element id).
    new MutationObserver(function (changes) {
      var cursors = {};
      mounted.forEach(function (chart, element) {
        if (element.isConnected) return;
        var plot = chart.plot();
        if (element.id && plot && plot.cursor.left >= 0) {
          cursors[element.id] = { left: plot.cursor.left, top: plot.cursor.top };
        }
        chart.destroy();
        mounted.delete(element);
      });
      changes.forEach(function (change) { change.addedNodes.forEach(mountWithin); });
      Object.keys(cursors).forEach(function (id) {
        var element = document.getElementById(id);
        var plot = element && mounted.has(element) ? mounted.get(element).plot() : null;
        // After the new chart's first draw (uPlot draws on a microtask): its scales exist then.
        if (plot) window.requestAnimationFrame(function () { plot.setCursor(cursors[id]); });
      });
    }).observe(document.body, { childList: true, subtree: true });
    new MutationObserver(function () {
      mounted.forEach(function (chart) { chart.draw(); });
    }).observe(document.documentElement, { attributes: true, attributeFilter: ["data-zone"] });
  }

  window.consoleCharts = {
    timeZone: chartTimeZone,
    redraw: function () { mounted.forEach(function (chart) { chart.draw(); }); },
    // The uPlot drawing an element with data-chart (for tests and the console's own scripts).
    plotOf: function (element) { var chart = mounted.get(element); return chart ? chart.plot() : null; },
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
