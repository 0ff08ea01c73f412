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

  // Toasts: a view answers with "HX-Trigger: {"coffre:toast": {"message", "undo"?}}"; the undo
  // is a real form posted by htmx (CSRF from the body's hx-headers), never an inline handler.
  function csrfFromBody() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (error) {
      return "";
    }
  }

  function showToast(detail) {
    if (!detail || !detail.message) { return; }
    var box = document.getElementById("toasts");
    if (!box) {
      box = document.createElement("div");
      box.id = "toasts";
      box.className = "toasts";
      box.setAttribute("aria-live", "polite");
      document.body.appendChild(box);
    }
    var toast = document.createElement("div");
    toast.className = "toast";
    toast.setAttribute("role", "status");
    var text = document.createElement("span");
    text.textContent = detail.message;
    toast.appendChild(text);
    if (detail.undo && detail.undo.url) {
      var form = document.createElement("form");
      form.method = "post";
      form.action = detail.undo.url;
      form.setAttribute("hx-post", detail.undo.url);
      form.setAttribute("hx-target", "#file-list");
      form.setAttribute("hx-swap", "outerHTML");
      var fields = [["csrf_token", csrfFromBody()], ["dossier", detail.undo.dossier || ""]];
      (detail.undo.ids || []).forEach(function (id) { fields.push(["ids", String(id)]); });
      fields.forEach(function (pair) {
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = pair[0];
        input.value = pair[1];
        form.appendChild(input);
      });
      var button = document.createElement("button");
      button.type = "submit";
      button.className = "secondary toast-undo";
      button.textContent = detail.undo.label || "Undo";
      form.appendChild(button);
      // Hidden, not removed: htmx fires the answer's events on this form, which must still be
      // in the document for them to bubble up to the body.
      form.addEventListener("submit", function () { toast.hidden = true; });
      toast.appendChild(form);
      if (window.htmx) { window.htmx.process(form); }
    }
    box.appendChild(toast);
    window.setTimeout(function () { toast.remove(); }, detail.undo ? 10000 : 5000);
  }

  document.body.addEventListener("coffre:toast", function (event) {
    showToast(event.detail);
  });

  // A success message flashed before a redirect (rename, move, restore…) is shown as a toast
  // instead: the flash line is only hidden from sight, so a screen reader still meets it where
  // the page begins; without this script it stays the visible banner.
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("#flashes .flash-success").forEach(function (flash) {
      var undo = null;
      try { undo = flash.dataset.undo ? JSON.parse(flash.dataset.undo) : null; } catch (error) { undo = null; }
      // The undo posts into the file list; a page without one gets the plain message.
      if (undo && !document.getElementById("file-list")) { undo = null; }
      showToast({ message: flash.textContent.trim(), undo: undo });
      flash.classList.add("visually-hidden");
    });
  });

  // Header menus (<details class="dropdown">): Escape closes the open one and gives the focus
  // back to its summary; a click elsewhere closes it. They open without this script too.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    var open = document.querySelector(".site-header details.dropdown[open]");
    if (!open) { return; }
    open.open = false;
    open.querySelector("summary").focus();
  });
  document.addEventListener("click", function (event) {
    document.querySelectorAll(".site-header details.dropdown[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) { menu.open = false; }
    });
  });

  // <button data-print>: print the page (recovery codes); no inline handler under the CSP.
  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-print]")) { window.print(); }
  });

  // <time datetime="…" data-local>: the server writes UTC; show it in the reader's time zone.
  function localTimes(root) {
    var lang = document.documentElement.lang || undefined;
    (root || document).querySelectorAll("time[data-local]").forEach(function (node) {
      var when = new Date(node.getAttribute("datetime"));
      if (isNaN(when.getTime())) { return; }
      node.textContent = when.toLocaleString(lang, { dateStyle: "short", timeStyle: "short" });
      node.title = node.getAttribute("datetime");
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSettle", function (event) { localTimes(event.target); });

  window.Coffre = { showFlash: showFlash, showToast: showToast };
})();
