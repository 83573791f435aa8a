/* SLA countdowns: every element with data-sla-due ticks once a second in the browser, with no
   request to the server. The server renders the same text for a first paint (and for pages
   without JavaScript); this keeps it live and moves the colour at the warning moment
   (data-sla-warn, 80% of the target) and at the deadline:
     sla-ok       more than the warning share left
     sla-warning  past the warning moment
     sla-danger   past due, or the ticket already breached a target (data-sla-breached)
     sla-paused   the clock stands still (pending, on hold): nothing ticks
   Elements swapped in by htmx (queue pages, the ticket header) are picked up on the next tick. */
(function () {
  "use strict";

  var TONES = ["sla-ok", "sla-warning", "sla-danger", "sla-paused"];

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  // 2d 4h · 3h 05m · 12m 09s · 45s
  function format(ms) {
    var total = Math.floor(Math.abs(ms) / 1000);
    var days = Math.floor(total / 86400);
    var hours = Math.floor((total % 86400) / 3600);
    var minutes = Math.floor((total % 3600) / 60);
    var seconds = total % 60;
    if (days) return days + "d " + hours + "h";
    if (hours) return hours + "h " + pad(minutes) + "m";
    if (minutes) return minutes + "m " + pad(seconds) + "s";
    return seconds + "s";
  }

  function setTone(el, tone) {
    TONES.forEach(function (name) { el.classList.toggle(name, name === "sla-" + tone); });
    el.setAttribute("data-sla-tone", tone);
  }

  function tick(el, now) {
    var state = el.getAttribute("data-sla-state");
    if (state !== "running") {
      if (state === "paused") setTone(el, "paused");
      return;
    }
    var due = Date.parse(el.getAttribute("data-sla-due"));
    if (isNaN(due)) return;
    var warnAttr = el.getAttribute("data-sla-warn");
    var warn = warnAttr ? Date.parse(warnAttr) : NaN;
    var breached = el.getAttribute("data-sla-breached") === "true";
    var left = due - now;
    var text;
    var tone;
    if (left < 0) {
      text = format(left) + " over";
      tone = "danger";
    } else {
      text = format(left) + " left";
      tone = !isNaN(warn) && now >= warn ? "warning" : "ok";
    }
    if (breached) {
      tone = "danger";
      if (left >= 0) text = "Breached · " + text;
    }
    setTone(el, tone);
    var target = el.querySelector("[data-sla-text]") || el;
    if (target.textContent !== text) target.textContent = text;
  }

  function tickAll() {
    var now = Date.now();
    document.querySelectorAll("[data-sla-due]").forEach(function (el) { tick(el, now); });
  }

  function start() {
    tickAll();
    // Aligned to the second, so every countdown on the page changes together.
    window.setTimeout(function () {
      tickAll();
      window.setInterval(tickAll, 1000);
    }, 1000 - (Date.now() % 1000));
  }

  document.addEventListener("htmx:afterSettle", tickAll);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
