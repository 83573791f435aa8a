/* Light/dark theme. Loaded synchronously in <head> (it is tiny) so the stored choice is applied
   before the first paint: no flash of the wrong theme. Without a stored choice the page follows
   the operating system (prefers-color-scheme), and keeps following it when that changes. */
(function () {
  "use strict";
  // The same key Django's model admin (/admin/data/) keeps its choice under ("auto", "light"
  // or "dark"), so the console and the model admin always show the same theme.
  var KEY = "theme";
  var root = document.documentElement;
  var media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function stored() {
    try {
      var value = window.localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : null;
    } catch (e) {
      return null; // storage disabled: follow the system
    }
  }

  function current() {
    return stored() || (media && media.matches ? "dark" : "light");
  }

  function label() {
    var next = root.dataset.theme === "dark" ? "light" : "dark";
    var buttons = document.querySelectorAll("[data-theme-toggle]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].setAttribute("aria-label", "Switch to " + next + " theme");
      buttons[i].setAttribute("title", "Switch to " + next + " theme");
      buttons[i].setAttribute("aria-pressed", root.dataset.theme === "dark" ? "true" : "false");
    }
  }

  function apply(theme) {
    root.dataset.theme = theme;
    label();
  }

  // Switch instantly: without this, every element with a colour transition fades on its own
  // schedule and the page looks half-switched for a moment.
  function switchTo(theme) {
    root.classList.add("theme-switching");
    apply(theme);
    window.requestAnimationFrame(function () {
      window.requestAnimationFrame(function () {
        root.classList.remove("theme-switching");
      });
    });
  }

  apply(current());

  if (media && media.addEventListener) {
    media.addEventListener("change", function () {
      if (!stored()) switchTo(current());
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-theme-toggle]");
    if (!button) return;
    var next = root.dataset.theme === "dark" ? "light" : "dark";
    try {
      window.localStorage.setItem(KEY, next);
    } catch (e) {
      /* not remembered, but still switched for this page */
    }
    switchTo(next);
  });

  document.addEventListener("DOMContentLoaded", label);
})();
