// Documents: drag-and-drop upload with one request and one progress bar per file.
// The form works without this script (a normal multipart POST); this only enhances it.
(function () {
  "use strict";

  function csrfToken(form) {
    var field = form.querySelector("input[name=csrf_token]");
    return field ? field.value : "";
  }

  // DOMParser gives an inert document: nothing in the response runs or loads.
  function parse(html) {
    return new DOMParser().parseFromString(html || "", "text/html").body;
  }

  function textOf(html) {
    var body = parse(html);
    var detail = body.querySelector("p");
    return (detail ? detail.textContent : body.textContent).trim();
  }

  function addRow(list, name) {
    var item = document.createElement("li");
    item.className = "upload-item";
    var label = document.createElement("span");
    label.className = "upload-name";
    label.textContent = name;
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    var status = document.createElement("span");
    status.className = "upload-status";
    status.setAttribute("role", "status");
    item.appendChild(label);
    item.appendChild(bar);
    item.appendChild(status);
    list.appendChild(item);
    return { item: item, bar: bar, status: status };
  }

  function uploadOne(form, list, file) {
    var row = addRow(list, file.name);
    var max = parseInt(form.dataset.maxBytes || "0", 10);
    if (max && file.size > max) {
      row.item.classList.add("upload-failed");
      row.status.textContent = form.dataset.tooLarge;
      return;
    }
    var data = new FormData();
    data.append("csrf_token", csrfToken(form));
    data.append("file", file, file.name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRFToken", csrfToken(form));
    // Asks the server for the result fragment instead of a redirect.
    xhr.setRequestHeader("HX-Request", "true");
    xhr.upload.onprogress = function (event) {
      if (event.lengthComputable) {
        row.bar.value = Math.round((event.loaded / event.total) * 100);
      }
    };
    xhr.onload = function () {
      if (xhr.status === 201) {
        row.bar.value = 100;
        row.item.classList.add("upload-done");
        var link = parse(xhr.responseText).querySelector("a");
        row.status.textContent = "";
        if (link) {
          var a = document.createElement("a");
          a.href = link.getAttribute("href");
          a.textContent = form.dataset.success + " : " + link.textContent;
          row.status.appendChild(a);
        } else {
          row.status.textContent = form.dataset.success;
        }
        document.body.dispatchEvent(new CustomEvent("files-changed"));
      } else {
        row.item.classList.add("upload-failed");
        row.status.textContent = textOf(xhr.responseText) || form.dataset.errorGeneric;
      }
    };
    xhr.onerror = function () {
      row.item.classList.add("upload-failed");
      row.status.textContent = document.body.dataset.errorNetwork || form.dataset.errorGeneric;
    };
    xhr.send(data);
  }

  function uploadAll(form, files) {
    var list = document.getElementById("upload-results");
    for (var i = 0; i < files.length; i += 1) {
      uploadOne(form, list, files[i]);
    }
  }

  function init() {
    var form = document.getElementById("upload-form");
    var zone = document.getElementById("upload-zone");
    if (!form || !zone) { return; }
    var input = document.getElementById("upload-input");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (input.files.length) {
        uploadAll(form, input.files);
        input.value = "";
      }
    });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    zone.addEventListener("dragleave", function () { zone.classList.remove("dragging"); });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("dragging");
      if (event.dataTransfer && event.dataTransfer.files.length) {
        uploadAll(form, event.dataTransfer.files);
      }
    });
    // One refresh at a time: htmx drops a request aimed at a target that already has one in
    // flight, so a file finishing during a refresh would otherwise never appear in the list.
    var refreshing = false;
    var refreshAgain = false;
    function refreshList() {
      if (!document.getElementById("file-list") || !window.htmx) { return; }
      if (refreshing) { refreshAgain = true; return; }
      refreshing = true;
      var url = window.location.pathname + window.location.search;
      window.htmx.ajax("GET", url, { target: "#file-list", swap: "outerHTML" }).then(function () {
        refreshing = false;
        if (refreshAgain) { refreshAgain = false; refreshList(); }
      });
    }
    document.body.addEventListener("files-changed", refreshList);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

// File manager list: "select all", the selection count and the bulk buttons' state.
// The list is swapped by htmx, so everything is delegated from the document.
(function () {
  "use strict";

  function refresh(list) {
    if (!list) { return; }
    var boxes = list.querySelectorAll("input[name=ids][type=checkbox]");
    var checked = list.querySelectorAll("input[name=ids][type=checkbox]:checked").length;
    var count = list.querySelector(".bulk-count");
    if (count) {
      if (!count.dataset.idle) { count.dataset.idle = count.textContent; }
      count.textContent = checked ? count.dataset.template.replace("{n}", checked) : count.dataset.idle;
    }
    list.querySelectorAll("[data-bulk]").forEach(function (button) { button.disabled = checked === 0; });
    var all = list.querySelector(".select-all");
    if (all) {
      all.checked = boxes.length > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
  }

  document.addEventListener("change", function (event) {
    var list = event.target.closest("#file-list");
    if (!list) { return; }
    if (event.target.classList.contains("select-all")) {
      list.querySelectorAll("input[name=ids][type=checkbox]").forEach(function (box) { box.checked = event.target.checked; });
    }
    refresh(list);
  });

  function init() { refresh(document.getElementById("file-list")); }
  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:afterSettle", init);

  // Row dialogs (rename, move, new version): htmx puts a <dialog data-modal> into #fm-dialog;
  // it opens modal (focus moves to its autofocus field), Escape or "Annuler" closes it and
  // focus goes back to the row's menu. An error answer replaces the dialog (shown again);
  // a success replaces the list behind it, and the dialog closes.
  var opener = null;

  function menuButtonFor(fileId) {
    var row = fileId && document.querySelector("#file-list tr[data-file-id='" + fileId + "']");
    return row ? row.querySelector(".row-menu summary") : null;
  }

  function closeDialog(holder) {
    var dialog = holder.querySelector("dialog");
    if (dialog && dialog.open) { dialog.close(); }
    holder.innerHTML = "";
    var back = (opener && document.contains(opener)) ? opener : menuButtonFor(holder.dataset.fileId);
    if (back) { back.focus(); }
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var link = event.detail.elt;
    if (link && link.closest && link.closest(".row-menu")) {
      var row = link.closest("tr");
      var holder = document.getElementById("fm-dialog");
      if (holder && row) { holder.dataset.fileId = row.dataset.fileId || ""; }
      var menu = link.closest("details");
      opener = menu ? menu.querySelector("summary") : null;
      if (menu) { menu.open = false; }
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var holder = document.getElementById("fm-dialog");
    if (!holder) { return; }
    if (event.detail.target === holder) {
      var dialog = holder.querySelector("dialog[data-modal]");
      if (!dialog) { return; }
      dialog.addEventListener("close", function () {
        if (holder.contains(dialog)) { closeDialog(holder); }
      });
      if (!dialog.open) { dialog.showModal(); }
      var field = dialog.querySelector("[aria-invalid=true]") || dialog.querySelector("[autofocus]");
      if (field) { field.focus(); if (field.select && field.type === "text") { field.select(); } }
    } else if (event.detail.target && event.detail.target.id === "file-list" && holder.querySelector("dialog")) {
      opener = null;
      closeDialog(holder);
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-close-dialog]");
    if (!button) { return; }
    var dialog = button.closest("dialog");
    if (dialog) { dialog.close(); }
  });

  // Row menu links to "#renommer", "#deplacer"…: open that section of the file page.
  function openTarget() {
    var id = window.location.hash.slice(1);
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  document.addEventListener("DOMContentLoaded", openTarget);
  window.addEventListener("hashchange", openTarget);
})();
