/* The impersonation banner's countdown. The server enforces the time limit whatever this
   shows; at zero the page is loaded again (GET), and the server ends the session. */
(function () {
  "use strict";
  var banner = document.querySelector("[data-impersonation-banner]");
  if (!banner) return;
  var output = banner.querySelector("[data-time-left]");
  // From the server's count, so a wrong clock in the browser changes nothing.
  var deadline = Date.now() + parseInt(banner.getAttribute("data-seconds-left"), 10) * 1000;

  function tick() {
    var left = deadline - Date.now();
    if (left <= 0) {
      output.textContent = "time is up";
      window.location.assign(window.location.href);
      return;
    }
    var minutes = Math.ceil(left / 60000);
    output.textContent = left < 60000 ? "less than a minute left" : minutes + " min left";
    if (minutes <= 5) banner.classList.add("is-ending");
    window.setTimeout(tick, Math.min(left, left < 60000 ? 1000 : 15000));
  }
  tick();
})();
