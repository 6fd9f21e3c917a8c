// A newly issued device key: <button data-copy-target="id"> copies that element's text.
(function () {
  "use strict";

  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    var outcome = button.parentElement.querySelector(".copy-outcome");
    button.addEventListener("click", function () {
      var text = document.getElementById(button.dataset.copyTarget).textContent.trim();
      navigator.clipboard.writeText(text).then(
        function () { if (outcome) outcome.textContent = "Copied."; },
        function () { if (outcome) outcome.textContent = "Could not copy: select the key and copy it by hand."; }
      );
    });
  });
})();
