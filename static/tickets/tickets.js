/* Support pages: small comforts on top of forms that work without JavaScript.
   - fragments that come back with errors (4xx) are swapped in, so the message shows where
     the form was (the server marks them with X-Ticket-Fragment; error pages are not);
   - bulk selection in the queue: select all, count, buttons enabled only with a selection;
   - canned replies go straight into the comment box; "Reply" sets the comment's parent. */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status >= 400 && xhr.getResponseHeader("X-Ticket-Fragment")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // --- bulk selection --------------------------------------------------------------------

  function refreshSelection(form) {
    if (!form) return;
    var boxes = form.querySelectorAll('input[type="checkbox"][name="ticket"]');
    var checked = 0;
    boxes.forEach(function (box) {
      var row = box.closest("tr");
      if (row) row.classList.toggle("is-selected", box.checked);
      if (box.checked) checked += 1;
    });
    var count = form.querySelector("[data-selected-count]");
    if (count) count.textContent = String(checked);
    form.classList.toggle("has-selection", checked > 0);
    form.querySelectorAll("[data-bulk-action]").forEach(function (button) {
      button.disabled = checked === 0;
    });
    var all = form.querySelector("[data-select-all]");
    if (all) {
      all.checked = checked > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
  }

  function refreshAll() {
    document.querySelectorAll("[data-bulk-form]").forEach(refreshSelection);
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("[data-select-all]")) {
      var form = target.closest("form");
      form.querySelectorAll('input[type="checkbox"][name="ticket"]').forEach(function (box) {
        box.checked = target.checked;
      });
      refreshSelection(form);
    } else if (target.matches && target.matches('input[type="checkbox"][name="ticket"]')) {
      refreshSelection(target.closest("form"));
    }
  });

  // A click anywhere on a row (outside links and controls) toggles its checkbox.
  document.addEventListener("click", function (event) {
    var cell = event.target.closest && event.target.closest("[data-bulk-form] tbody td");
    if (!cell || event.target.closest("a, button, input, select, label")) return;
    var box = cell.parentElement.querySelector('input[type="checkbox"][name="ticket"]');
    if (!box) return;
    box.checked = !box.checked;
    refreshSelection(box.closest("form"));
  });

  // --- canned replies and threaded replies ---------------------------------------------------

  function insertAtCursor(textarea, text) {
    var start = textarea.selectionStart || 0;
    var end = textarea.selectionEnd || 0;
    var before = textarea.value.slice(0, start);
    var after = textarea.value.slice(end);
    var glue = before && !/\n$/.test(before) ? "\n" : "";
    textarea.value = before + glue + text + after;
    var caret = (before + glue + text).length;
    textarea.focus();
    textarea.setSelectionRange(caret, caret);
  }

  document.addEventListener("change", function (event) {
    var select = event.target;
    if (!(select.matches && select.matches("[data-canned]"))) return;
    var option = select.options[select.selectedIndex];
    var body = option && option.getAttribute("data-body");
    var composer = document.getElementById("composer");
    var textarea = composer && composer.querySelector('textarea[name="body"]');
    if (body && textarea) insertAtCursor(textarea, body);
    select.selectedIndex = 0;
  });

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("[data-reply-to]");
    var cancel = event.target.closest && event.target.closest("[data-cancel-reply]");
    var composer = document.getElementById("composer");
    if (!composer || (!link && !cancel)) return;
    event.preventDefault();
    var parent = composer.querySelector('input[name="parent"]');
    var banner = composer.querySelector("[data-replying-to]");
    if (link) {
      parent.value = link.getAttribute("data-reply-to");
      banner.querySelector("[data-replying-name]").textContent = link.getAttribute("data-reply-name");
      banner.hidden = false;
      composer.querySelector('textarea[name="body"]').focus();
    } else {
      parent.value = "";
      banner.hidden = true;
    }
  });

  document.addEventListener("DOMContentLoaded", refreshAll);
  document.addEventListener("htmx:afterSettle", refreshAll);
  if (document.readyState !== "loading") refreshAll();
})();
