// New alerts pushed to every console page (server-sent events): a highlighted banner, and a
// new critical alert puts itself in the tab's title. No framework, no inline code (CSP).
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script || !window.EventSource) return;
  var streamUrl = script.dataset.streamUrl;
  var after = script.dataset.after || "0";
  var originalTitle = document.title;
  var shown = {};
  var unseenCritical = [];
  var panel = null;

  function livePanel() {
    if (panel) return panel;
    panel = document.createElement("section");
    panel.id = "live-alerts";
    panel.className = "live-alerts";
    panel.setAttribute("aria-live", "assertive");
    panel.setAttribute("aria-label", "New alerts");
    var main = document.querySelector("main") || document.body;
    main.insertBefore(panel, main.firstChild);
    return panel;
  }

  function clock(iso) {
    if (!iso) return "";
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
  }

  function retitle() {
    if (!unseenCritical.length) {
      document.title = originalTitle;
      return;
    }
    var newest = unseenCritical[unseenCritical.length - 1];
    document.title = "(" + unseenCritical.length + ") " + newest.label + " — " + (newest.resident || newest.device) + " · " + originalTitle;
  }

  function dismiss(item, alert) {
    item.remove();
    unseenCritical = unseenCritical.filter(function (other) { return other.id !== alert.id; });
    retitle();
  }

  function show(alert) {
    // Already on this page (a list row) or already announced: nothing new to say.
    if (shown[alert.id] || document.querySelector('[data-alert-id="' + alert.id + '"]')) return;
    shown[alert.id] = true;
    var item = document.createElement("div");
    item.className = "live-alert" + (alert.critical ? " critical" : "");
    item.dataset.alertId = alert.id;
    item.setAttribute("role", "alert");
    var link = document.createElement("a");
    link.href = alert.url;
    var what = document.createElement("strong");
    what.textContent = alert.label;
    link.appendChild(what);
    link.appendChild(document.createTextNode(
      [alert.resident, alert.device].filter(Boolean).map(function (part) { return " — " + part; }).join("")
    ));
    item.appendChild(link);
    var when = document.createElement("span");
    when.className = "live-alert-times";
    when.textContent = (alert.happened_at ? "happened " + clock(alert.happened_at) + ", " : "") + "raised " + clock(alert.raised_at);
    item.appendChild(when);
    var close = document.createElement("button");
    close.type = "button";
    close.className = "secondary";
    close.textContent = "Dismiss";
    close.addEventListener("click", function () { dismiss(item, alert); });
    item.appendChild(close);
    // When it reached the screen: the latency bench reads this.
    item.dataset.shownAt = String(Date.now());
    livePanel().insertBefore(item, livePanel().firstChild);
    if (alert.critical) {
      unseenCritical.push(alert);
      retitle();
    }
  }

  // The console owns the notice (one text and place on every page, whichever poller noticed first).
  function sessionExpired(event) {
    source.close();
    var login = null;
    try { login = JSON.parse(event.data).login || null; } catch (error) { /* the console's default */ }
    window.iotConsole.sessionExpired(login);
  }

  // The browser reconnects by itself when a stream ends, continuing after the last event id.
  var source = new EventSource(streamUrl + "?after=" + encodeURIComponent(after));
  source.addEventListener("alert", function (event) {
    try { show(JSON.parse(event.data)); } catch (error) { /* a malformed event is skipped */ }
  });
  source.addEventListener("session-expired", sessionExpired);
})();
