// A bulk job's page follows the job until it finishes, then stops asking (the controls,
// part of the refreshed fragment, go away with it: a finished job has no Cancel).
(function () {
  "use strict";

  var panel = document.querySelector("[data-job-url]");
  if (!panel) return;
  var seconds = Number(panel.dataset.jobRefreshSeconds || 1);
  var timer = null;

  function finished() {
    return panel.querySelector("[data-job-finished]") !== null;
  }

  function stop() {
    if (timer !== null) window.clearInterval(timer);
    timer = null;
    panel.dataset.polling = "stopped";
  }

  function refresh() {
    fetch(panel.dataset.jobUrl, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (response.redirected && response.url.indexOf("/login/") !== -1) {
          stop();
          window.location.reload();
          return Promise.reject("session ended");
        }
        return response.ok ? response.text() : Promise.reject(response.status);
      })
      .then(function (html) {
        panel.innerHTML = html;
        panel.dataset.refreshedAt = new Date().toISOString();
        if (finished()) stop();
      })
      .catch(function () { /* keep the last good state; try again next tick */ });
  }

  if (finished()) {
    stop();
  } else {
    panel.dataset.polling = "running";
    timer = window.setInterval(refresh, seconds * 1000);
  }
})();
