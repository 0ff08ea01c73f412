// Account pages: copy the TOTP secret to the clipboard. External file: the CSP forbids inline scripts.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button || !navigator.clipboard) { return; }
    var source = document.getElementById(button.dataset.copyTarget);
    if (!source) { return; }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = button.dataset.copied || button.textContent;
    });
  });
})();
