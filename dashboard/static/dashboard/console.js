// Console behaviour: time zone and ages, live panels, navigation, form checks. No framework.
// Other scripts may use window.iotConsole (formatInstant, describeAge, refreshAges, sessionExpired).
(function () {
  "use strict";

  var root = document.documentElement;
  root.classList.add("js");

  // --- One time policy -------------------------------------------------------------------
  // The viewer reads times in the browser's zone or in UTC. The choice is a cookie holding the
  // IANA zone name: the server renders every <time> in it and reads typed filter times in it.
  var ZONE_COOKIE = "console_tz";
  var ONE_YEAR = 365 * 24 * 3600;

  function readCookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? match[1] : null;
  }

  function browserZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (error) { return "UTC"; }
  }

  function writeZone(zone) {
    document.cookie = ZONE_COOKIE + "=" + zone + "; path=/; max-age=" + ONE_YEAR + "; samesite=lax";
  }

  function pad(number) { return (number < 10 ? "0" : "") + number; }

  // "2026-11-24 09:03:07 EST": the same shape the server writes (dashboard/timezones.py).
  function formatInstant(date, zone) {
    var parts = {};
    new Intl.DateTimeFormat("en-US", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short",
    }).formatToParts(date).forEach(function (part) { parts[part.type] = part.value; });
    var zoneName = zone === "UTC" ? "UTC" : parts.timeZoneName;
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute + ":" + parts.second + " " + zoneName;
  }

  // "3 min ago" / "in 20 s": the same words as describe_age() on the server.
  function describeAge(date, now) {
    var seconds = Math.round(((now || new Date()) - date) / 1000);
    var future = seconds < 0;
    seconds = Math.abs(seconds);
    if (seconds < 5) return "just now";
    var amount = seconds < 60 ? seconds + " s"
      : seconds < 3600 ? Math.floor(seconds / 60) + " min"
      : seconds < 86400 ? Math.floor(seconds / 3600) + " h"
      : Math.floor(seconds / 86400) + " d";
    return future ? "in " + amount : amount + " ago";
  }

  function rewriteTimes(zone, scope) {
    (scope || document).querySelectorAll("time[data-console-time]").forEach(function (element) {
      element.textContent = formatInstant(new Date(element.getAttribute("datetime")), zone);
    });
    (scope || document).querySelectorAll("time[data-console-age]").forEach(function (element) {
      element.title = formatInstant(new Date(element.getAttribute("datetime")), zone);
    });
    document.querySelectorAll("[data-zone-name]").forEach(function (element) { element.textContent = zone; });
    root.dataset.zone = zone;
  }

  function refreshAges(scope) {
    var now = new Date();
    (scope || document).querySelectorAll("time[data-console-age]").forEach(function (element) {
      element.textContent = describeAge(new Date(element.getAttribute("datetime")), now);
    });
  }

  var chosen = readCookie(ZONE_COOKIE);
  var wantsUtc = chosen === "UTC";
  var wanted = wantsUtc ? "UTC" : browserZone();
  if (chosen !== wanted) writeZone(wanted);
  // First visit (or a browser that moved zone): this page was written in another zone. A page
  // that says the server refused the zone stays in UTC, as it says.
  var zoneRefused = document.getElementById("zone-problem") !== null;
  if (!zoneRefused && root.dataset.zone && root.dataset.zone !== wanted) rewriteTimes(wanted);

  document.querySelectorAll("[data-time-toggle]").forEach(function (button) {
    var action = button.querySelector("[data-time-toggle-action]");
    if (action) action.textContent = "· show " + (wantsUtc ? "browser time" : "UTC");
    button.addEventListener("click", function () {
      writeZone(wantsUtc ? browserZone() : "UTC");
      // Reloaded so that every time, chart and filter on the page follows the new zone at once.
      window.location.reload();
    });
  });
  refreshAges();
  setInterval(refreshAges, 10000);

  // --- Session ---------------------------------------------------------------------------
  function sessionExpired(loginUrl) {
    if (document.getElementById("session-expired")) return;
    var target = (loginUrl || root.dataset.loginUrl || "/console/login/").split("?")[0];
    var notice = document.createElement("div");
    notice.id = "session-expired";
    notice.className = "session-expired";
    notice.setAttribute("role", "alert");
    notice.appendChild(document.createTextNode("Session expired — "));
    var link = document.createElement("a");
    link.href = target + "?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    link.textContent = "sign in again";
    notice.appendChild(link);
    notice.appendChild(document.createTextNode(". What is shown below is no longer updated."));
    var main = document.querySelector("main") || document.body;
    main.insertBefore(notice, main.firstChild);
  }

  // --- Live panels -----------------------------------------------------------------------
  // Brings `current` to look like `fresh` while keeping every node that did not change, so the
  // element that has focus (or is being read by a screen reader) is never replaced.
  function sameNode(current, fresh) {
    return current.nodeType === fresh.nodeType && current.nodeName === fresh.nodeName &&
      (current.nodeType !== 1 || current.id === fresh.id);
  }

  function morphAttributes(current, fresh) {
    Array.prototype.slice.call(current.attributes).forEach(function (attribute) {
      if (!fresh.hasAttribute(attribute.name)) current.removeAttribute(attribute.name);
    });
    Array.prototype.slice.call(fresh.attributes).forEach(function (attribute) {
      // An input's typed value is not overwritten while the operator may be using it.
      if (attribute.name === "value" && current === document.activeElement) return;
      if (current.getAttribute(attribute.name) !== attribute.value) current.setAttribute(attribute.name, attribute.value);
    });
  }

  function morphChildren(current, fresh) {
    var currentNodes = Array.prototype.slice.call(current.childNodes);
    var freshNodes = Array.prototype.slice.call(fresh.childNodes);
    freshNodes.forEach(function (freshNode, index) {
      var currentNode = currentNodes[index];
      if (!currentNode) {
        current.appendChild(freshNode);
      } else if (!sameNode(currentNode, freshNode)) {
        current.replaceChild(freshNode, currentNode);
      } else if (currentNode.nodeType === 1 && currentNode.hasAttribute("data-chart")) {
        // A chart draws its own children (charts.js): it is kept while its data is the same
        // and swapped whole when it changed, so that charts.js mounts the new one.
        var changed = Array.prototype.some.call(freshNode.attributes, function (attribute) {
          return currentNode.getAttribute(attribute.name) !== attribute.value;
        });
        if (changed) {
          current.replaceChild(freshNode, currentNode);
        }
      } else if (currentNode.nodeType === 1) {
        morphAttributes(currentNode, freshNode);
        morphChildren(currentNode, freshNode);
      } else if (currentNode.nodeValue !== freshNode.nodeValue) {
        currentNode.nodeValue = freshNode.nodeValue;
      }
    });
    currentNodes.slice(freshNodes.length).forEach(function (extra) { current.removeChild(extra); });
  }

  // The page writes a panel inside its own indentation and the fragment comes without it.
  // Whitespace at either end of a panel is not content; left in, it pairs every node with the
  // one before it, so the first refresh would replace them all (focus and hover lost).
  function trimBlankEnds(element) {
    var blank = function (node) { return node && node.nodeType === 3 && !node.nodeValue.trim(); };
    while (blank(element.firstChild)) element.removeChild(element.firstChild);
    while (blank(element.lastChild)) element.removeChild(element.lastChild);
  }

  // <div data-refresh-url="..." data-refresh-seconds="5">: updated in place, no page reload.
  // A fragment holding [data-refresh-done] (a finished job) ends the polling and says so.
  document.querySelectorAll("[data-refresh-url]").forEach(function (panel) {
    var seconds = Number(panel.dataset.refreshSeconds || 5);
    trimBlankEnds(panel);
    var refreshedAt = new Date();
    var failure = "";
    if (!panel.hasAttribute("aria-live")) panel.setAttribute("aria-live", "polite");

    var status = document.createElement("p");
    status.className = "muted refresh-status";
    status.id = (panel.id || "panel") + "-updated";
    panel.parentNode.insertBefore(status, panel);
    function showStatus() {
      var age = describeAge(refreshedAt).replace("just now", "0 s ago");
      status.textContent = failure ? failure + " Showing what was fetched " + age + "." : "Updated " + age + ".";
      status.classList.toggle("error-text", Boolean(failure));
    }
    showStatus();
    var statusTimer = setInterval(showStatus, 1000);
    var refreshTimer;

    function stop() {
      clearInterval(refreshTimer);
      clearInterval(statusTimer);
      panel.dataset.polling = "stopped";
    }

    function refresh() {
      // "manual": a redirect (to a login page) is never followed into the panel.
      fetch(panel.dataset.refreshUrl, { credentials: "same-origin", redirect: "manual", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (response.status === 401 || response.status === 403 || response.type === "opaqueredirect") {
            stop();
            status.textContent = "Not updated since " + formatInstant(refreshedAt, root.dataset.zone || "UTC") + ".";
            return response.json().catch(function () { return {}; }).then(function (body) {
              sessionExpired(body.login_url);
              return Promise.reject("session expired");
            });
          }
          return response.ok ? response.text() : Promise.reject("Refresh failed (HTTP " + response.status + ").");
        })
        .then(function (html) {
          var fresh = document.createElement("div");
          fresh.innerHTML = html;
          trimBlankEnds(fresh);
          morphChildren(panel, fresh);
          refreshAges(panel);
          refreshedAt = new Date();
          failure = "";
          panel.dataset.refreshedAt = refreshedAt.toISOString();
          showStatus();
          if (panel.querySelector("[data-refresh-done]")) {
            stop();
            status.textContent = "Finished: no longer updated.";
          }
        })
        .catch(function (reason) {
          if (reason === "session expired") return;
          // Keep the last good panel and say how old it is; try again next tick.
          failure = typeof reason === "string" ? reason : "Refresh failed (no answer from the server).";
          showStatus();
        });
    }
    if (panel.querySelector("[data-refresh-done]")) {
      stop();  // finished before the page was even shown
      status.textContent = "Finished: no longer updated.";
      return;
    }
    panel.dataset.polling = "running";
    refreshTimer = setInterval(refresh, seconds * 1000);
  });

  // --- Navigation on a phone -------------------------------------------------------------
  document.querySelectorAll("[data-nav-toggle]").forEach(function (button) {
    button.addEventListener("click", function () {
      button.setAttribute("aria-expanded", button.getAttribute("aria-expanded") === "true" ? "false" : "true");
    });
    // Escape folds an open menu and puts the keyboard back on its button.
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape" || button.getAttribute("aria-expanded") !== "true") return;
      button.setAttribute("aria-expanded", "false");
      button.focus();
    });
  });

  // --- Forms -----------------------------------------------------------------------------
  // <form data-json-field="body">: refuse to submit a body that is not valid JSON.
  document.querySelectorAll("form[data-json-field]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var field = form.elements[form.dataset.jsonField];
      var report = form.querySelector(".json-error");
      try {
        JSON.parse(field.value);
        if (report) report.textContent = "";
      } catch (error) {
        event.preventDefault();
        if (report) report.textContent = "Not valid JSON: " + error.message;
      }
    });
  });

  // <input type="checkbox" data-select-all="ids">: toggles every checkbox named "ids".
  document.querySelectorAll("[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      document.querySelectorAll('input[name="' + box.dataset.selectAll + '"]').forEach(function (item) { item.checked = box.checked; });
    });
  });

  // <form data-confirm="...">: ask before large or irreversible actions.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  window.iotConsole = {
    formatInstant: formatInstant,
    describeAge: describeAge,
    refreshAges: refreshAges,
    rewriteTimes: rewriteTimes,
    sessionExpired: sessionExpired,
    zone: function () { return root.dataset.zone || "UTC"; },
  };
})();
