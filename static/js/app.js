// Coffre's client-side glue. Loaded as an external file: the CSP forbids inline scripts.
(function () {
  "use strict";

  function showFlash(message) {
    var box = document.getElementById("flashes");
    if (!box) { return; }
    var p = document.createElement("p");
    p.className = "flash flash-error";
    p.setAttribute("role", "alert");
    p.textContent = message;
    box.appendChild(p);
  }

  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    // 4xx bodies are swapped in by the htmx-config responseHandling; 5xx are not.
    if (status >= 500) {
      showFlash(document.body.dataset.errorServer);
    }
  });

  document.addEventListener("htmx:sendError", function () {
    showFlash(document.body.dataset.errorNetwork);
  });

  // Confirmation dialogs without inline handlers: <button data-confirm="…">.
  document.addEventListener("submit", function (event) {
    var submitter = event.submitter;
    var message = (submitter && submitter.dataset.confirm) || event.target.dataset.confirm;
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  }, true);

  window.Coffre = { showFlash: showFlash };
})();
