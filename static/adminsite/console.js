/* Small behaviours of the console shell. Everything works without it; it only adds comfort. */
(function () {
  "use strict";

  // Dismissable messages.
  document.addEventListener("click", function (event) {
    var close = event.target.closest && event.target.closest("[data-dismiss]");
    if (!close) return;
    var message = close.closest(".message");
    if (message) message.remove();
  });

  // A dashboard panel that fails to refresh keeps its last content and says so, instead of
  // silently showing stale numbers.
  document.addEventListener("htmx:responseError", function (event) {
    var panel = event.target.closest && event.target.closest("[data-panel]");
    if (panel) panel.classList.add("is-stale");
  });
  document.addEventListener("htmx:sendError", function (event) {
    var panel = event.target.closest && event.target.closest("[data-panel]");
    if (panel) panel.classList.add("is-stale");
  });
})();
