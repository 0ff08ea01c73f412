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

  // Copy buttons: <button data-copy-text="…"> or <button data-copy-target="element id">.
  // Over plain HTTP on another host than localhost the clipboard API does not exist (it needs
  // a secure context): a selected, off-screen text area and execCommand stand in for it.
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var done = document.execCommand("copy");
    document.body.removeChild(area);
    return done ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-text], [data-copy-target]");
    if (!button) { return; }
    var text = button.dataset.copyText;
    if (text === undefined) {
      var source = document.getElementById(button.dataset.copyTarget);
      if (!source) { return; }
      text = source.textContent.trim();
    }
    copyText(text).then(function () {
      button.textContent = button.dataset.copied || button.textContent;
    }, function () {
      window.prompt("", text);
    });
  });

  window.Coffre = { showFlash: showFlash };
})();
