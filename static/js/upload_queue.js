/* The upload queue of templates/documents/_upload_zone.html.
 *
 * Each file goes through tus (vendored tus-js-client) to /envois/: sent in parts, so a cut
 * connection resumes from what the server sealed instead of from zero (tus-js-client retries
 * by itself; "Réessayer" resumes after it gave up). Before a file starts, the server is
 * asked whether its name is taken in the folder; if so a dialog offers new version / keep
 * both / cancel. Files dropped on the zone, on the file list or on an element with
 * data-drop-folder-id go into that folder ("" = the armoire's root).
 */
(function () {
  "use strict";

  var zone;
  var list;

  function text(name) { return zone.dataset["text" + name] || ""; }

  function csrfToken() {
    var field = zone.querySelector("input[name=csrf_token]");
    return field ? field.value : "";
  }

  function formatSpeed(bytesPerSecond) {
    var units = (document.documentElement.lang || "fr").indexOf("fr") === 0
      ? ["o/s", "Kio/s", "Mio/s", "Gio/s"] : ["B/s", "KiB/s", "MiB/s", "GiB/s"];
    var value = bytesPerSecond;
    var unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return value.toLocaleString(document.documentElement.lang || "fr", { maximumFractionDigits: 1 }) + " " + units[unit];
  }

  function element(tag, className, content) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (content) { node.textContent = content; }
    return node;
  }

  function makeRow(file) {
    var item = element("li", "upload-item");
    var name = element("span", "upload-name", file.name);
    var bar = element("progress");
    bar.max = 100;
    bar.value = 0;
    var percent = element("span", "upload-percent", "0 %");
    var speed = element("span", "upload-speed muted");
    var status = element("span", "upload-status", text("Waiting"));
    var cancel = element("button", "secondary outline upload-cancel", text("Cancel"));
    cancel.type = "button";
    var retry = element("button", "secondary upload-retry", text("Retry"));
    retry.type = "button";
    retry.hidden = true;
    [name, bar, percent, speed, status, cancel, retry].forEach(function (node) { item.appendChild(node); });
    list.appendChild(item);
    return { item: item, bar: bar, percent: percent, speed: speed, status: status, cancel: cancel, retry: retry };
  }

  /* Ask the server whether the name is taken; resolves to "refuse" (free), a choice, or null (cancelled). */
  function askConflict(file, folderId) {
    var url = zone.dataset.conflictUrl + "?nom=" + encodeURIComponent(file.name) +
      (folderId ? "&dossier=" + encodeURIComponent(folderId) : "");
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (response) {
      if (response.status !== 200) { return "refuse"; }
      return response.text().then(function (html) { return showDialog(html); });
    }, function () { return "refuse"; });
  }

  /* Dialogs are shown one at a time, in the order files were added. */
  var dialogs = Promise.resolve();

  function showDialog(html) {
    var shown = dialogs.then(function () {
      return new Promise(function (resolve) {
        var holder = document.getElementById("upload-queue-dialog");
        holder.innerHTML = html;
        var dialog = holder.querySelector("dialog");
        function choose(choice) {
          dialog.close();
          holder.innerHTML = "";
          resolve(choice === "cancel" ? null : choice);
        }
        dialog.addEventListener("cancel", function (event) { event.preventDefault(); choose("cancel"); });
        holder.querySelectorAll("[data-choice]").forEach(function (button) {
          button.addEventListener("click", function () { choose(button.dataset.choice); });
        });
        dialog.showModal();
        var first = dialog.querySelector("[data-choice]");
        if (first) { first.focus(); }
      });
    });
    dialogs = shown.then(function () {}, function () {});
    return shown;
  }

  // One list refresh at a time: a second one asked while the first is in flight would be queued
  // on the element the first swaps out, and its answer (with the later upload) would land in a
  // detached node. It is run again once the first has swapped, against the new list.
  var refreshing = false;
  var refreshAgain = false;

  function refreshList() {
    document.body.dispatchEvent(new CustomEvent("files-changed", { bubbles: true }));
    if (!document.getElementById("file-list") || !window.htmx) { return; }
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    var url = window.location.pathname + window.location.search;
    var done = function () {
      refreshing = false;
      if (refreshAgain) {
        refreshAgain = false;
        refreshList();
      }
    };
    window.htmx.ajax("GET", url, { target: "#file-list", swap: "outerHTML" }).then(done, done);
  }

  function start(file, folderId, onConflict, row) {
    var lastBytes = 0;
    var lastTime = Date.now();
    row.retry.hidden = true;
    row.cancel.hidden = false;
    row.item.classList.remove("upload-failed");
    var upload = new window.tus.Upload(file, {
      endpoint: zone.dataset.endpoint,
      chunkSize: parseInt(zone.dataset.chunkSize, 10),
      retryDelays: [0, 1000, 3000, 5000, 10000],
      headers: { "X-CSRFToken": csrfToken() },
      metadata: {
        filename: file.name,
        armoire_id: zone.dataset.armoireId,
        folder_id: folderId || "",
        on_conflict: onConflict
      },
      // Resuming after a reload of the page finds the upload again (localStorage fingerprint).
      storeFingerprintForResuming: true,
      removeFingerprintOnSuccess: true,
      onShouldRetry: function (error, retryAttempt, options) {
        var status = error.originalResponse ? error.originalResponse.getStatus() : 0;
        if (status === 409 && !error.originalResponse.getHeader("Upload-Offset")) { return false; }
        row.status.textContent = text("Retrying");
        return status === 0 || status === 409 || status === 423 || status >= 500;
      },
      onProgress: function (sent, total) {
        var percent = total ? Math.floor((sent / total) * 100) : 100;
        row.bar.value = percent;
        row.percent.textContent = percent + " %";
        var now = Date.now();
        if (now - lastTime >= 500) {
          row.speed.textContent = formatSpeed(((sent - lastBytes) * 1000) / (now - lastTime));
          lastBytes = sent;
          lastTime = now;
        }
        row.status.textContent = "";
      },
      onSuccess: function (payload) {
        var response = payload && payload.lastResponse;
        var fileId = response ? response.getHeader("Coffre-File-Id") : null;
        var version = response ? response.getHeader("Coffre-Version") : null;
        row.bar.value = 100;
        row.percent.textContent = "100 %";
        row.speed.textContent = "";
        row.cancel.hidden = true;
        row.item.classList.add("upload-done");
        row.status.textContent = "";
        var link = element("a", null, version && version !== "1" ? text("Version") : text("Done"));
        link.href = fileId ? "/fichiers/" + encodeURIComponent(fileId) : "#";
        row.status.appendChild(link);
        refreshList();
      },
      onError: function (error) {
        var response = error.originalResponse;
        if (response && response.getStatus() === 409 && !response.getHeader("Upload-Offset")) {
          // The name was taken meanwhile (decided at the end): ask, then send again.
          var body = {};
          try { body = JSON.parse(response.getBody() || "{}"); } catch (ignored) { body = {}; }
          if (body.existing_file_id) {
            askConflict(file, folderId).then(function (choice) {
              if (choice === null) { cancelled(row); return; }
              start(file, folderId, choice === "refuse" ? "rename" : choice, row);
            });
            return;
          }
        }
        row.item.classList.add("upload-failed");
        row.speed.textContent = "";
        var detail = "";
        if (response) {
          try { detail = JSON.parse(response.getBody() || "{}").detail || ""; } catch (ignored) { detail = ""; }
        }
        row.status.textContent = detail || text("Failed");
        row.retry.hidden = false;
      }
    });
    row.cancel.onclick = function () {
      // Terminate on the server too: the partial upload is removed there.
      upload.abort(true).then(function () { cancelled(row); }, function () { cancelled(row); });
    };
    row.retry.onclick = function () {
      row.retry.hidden = true;
      row.item.classList.remove("upload-failed");
      row.status.textContent = text("Retrying");
      upload.start();
    };
    upload.findPreviousUploads().then(function (previous) {
      if (previous.length) { upload.resumeFromPreviousUpload(previous[0]); }
      upload.start();
    }, function () { upload.start(); });
  }

  function cancelled(row) {
    row.item.classList.add("upload-failed");
    row.status.textContent = text("Cancelled");
    row.speed.textContent = "";
    row.cancel.hidden = true;
    row.retry.hidden = true;
  }

  function enqueue(files, folderId) {
    var maxBytes = parseInt(zone.dataset.maxBytes, 10);
    Array.prototype.forEach.call(files, function (file) {
      var row = makeRow(file);
      if (maxBytes && file.size > maxBytes) {
        row.item.classList.add("upload-failed");
        row.status.textContent = text("TooLarge");
        row.cancel.hidden = true;
        return;
      }
      askConflict(file, folderId).then(function (choice) {
        if (choice === null) { cancelled(row); return; }
        start(file, folderId, choice, row);
      });
    });
  }

  function hasFiles(event) {
    var types = event.dataTransfer ? event.dataTransfer.types : null;
    return !!types && Array.prototype.indexOf.call(types, "Files") !== -1;
  }

  /* Where a drop lands: a folder row, the zone or the file list (the current folder), or nothing. */
  function dropTarget(node) {
    var folder = node.closest ? node.closest("[data-drop-folder-id]") : null;
    if (folder) { return { node: folder, folderId: folder.dataset.dropFolderId }; }
    var area = node.closest ? node.closest("#upload-queue, #file-list") : null;
    if (area) { return { node: area, folderId: zone.dataset.folderId }; }
    return null;
  }

  function init() {
    zone = document.getElementById("upload-queue");
    if (!zone || !window.tus || !window.tus.isSupported) { return; }
    list = document.getElementById("upload-queue-list");
    var form = document.getElementById("upload-queue-form");
    var input = document.getElementById("upload-queue-input");
    // The queue asks per file (askConflict): the no-JS form's choice would be ignored.
    var choice = document.getElementById("upload-conflict-choice");
    if (choice) { choice.hidden = true; }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (input.files.length) {
        enqueue(input.files, zone.dataset.folderId);
        input.value = "";
      }
    });
    var highlighted = null;
    function highlight(node) {
      if (highlighted === node) { return; }
      if (highlighted) { highlighted.classList.remove("dragging"); }
      highlighted = node;
      if (node) { node.classList.add("dragging"); }
    }
    ["dragenter", "dragover"].forEach(function (name) {
      document.addEventListener(name, function (event) {
        if (!hasFiles(event)) { return; }
        var target = dropTarget(event.target);
        if (!target) { highlight(null); return; }
        event.preventDefault();
        highlight(target.node);
      });
    });
    document.addEventListener("dragleave", function (event) {
      if (event.target === highlighted) { highlight(null); }
    });
    document.addEventListener("drop", function (event) {
      if (!hasFiles(event)) { return; }
      var target = dropTarget(event.target);
      highlight(null);
      if (!target) { return; }
      event.preventDefault();
      enqueue(event.dataTransfer.files, target.folderId);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
