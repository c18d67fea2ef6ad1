// sinkwatch status page: keep <main> live by fetching the server-rendered /status/main every data-refresh seconds.
// No library, no inline script (the page's Content-Security-Policy allows scripts from this origin only).
"use strict";
(function () {
  const main = document.querySelector("main");
  if (!main) {
    return;
  }
  const period = 1000 * Math.max(5, Number(main.dataset.refresh) || 15);
  async function refresh() {
    try {
      const response = await fetch("/status/main" + window.location.search, { cache: "no-store" });
      if (!response.ok) {
        document.body.dataset.stale = String(response.status);
        return;
      }
      main.innerHTML = await response.text();  // server-rendered, every value escaped there
      document.body.dataset.updated = new Date().toISOString();
      delete document.body.dataset.stale;
    } catch (error) {
      document.body.dataset.stale = "unreachable";  // the service is away: keep the last view, retry next time
    }
  }
  window.setInterval(refresh, period);
})();
