// Console behaviour: live panels, JSON check before submit, select-all. No framework.
(function () {
  "use strict";

  // <div data-refresh-url="..." data-refresh-seconds="5">: replaced in place, no page reload.
  document.querySelectorAll("[data-refresh-url]").forEach(function (panel) {
    var seconds = Number(panel.dataset.refreshSeconds || 5);
    function refresh() {
      fetch(panel.dataset.refreshUrl, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          // Redirected to the login page: the session has ended. Show the whole page's login,
          // not a login form inside the panel.
          if (response.redirected && response.url.indexOf("/login/") !== -1) {
            window.location.reload();
            return Promise.reject("session ended");
          }
          return response.ok ? response.text() : Promise.reject(response.status);
        })
        .then(function (html) { panel.innerHTML = html; panel.dataset.refreshedAt = new Date().toISOString(); })
        .catch(function () { /* keep the last good panel; try again next tick */ });
    }
    setInterval(refresh, seconds * 1000);
  });

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
})();
