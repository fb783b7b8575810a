// The console's live parts: every element with data-live="<url>" follows that
// Server-Sent Events stream and shows the HTML of each `update` event. htmx (hx-boost)
// swaps whole pages, so streams are opened on each page load and closed before a swap.
(function () {
  "use strict";
  const streams = [];

  function closeAll() {
    while (streams.length) streams.pop().close();
  }

  function follow(root) {
    root.querySelectorAll("[data-live]").forEach(function (element) {
      const source = new EventSource(element.dataset.live);
      source.addEventListener("update", function (event) {
        element.innerHTML = event.data;
        if (window.htmx) window.htmx.process(element);
        element.dispatchEvent(new CustomEvent("console:updated", { bubbles: true }));
      });
      streams.push(source);
    });
  }

  function start() {
    closeAll();
    follow(document);
  }

  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("htmx:beforeSwap", closeAll);
  document.addEventListener("htmx:afterSettle", start);
  window.addEventListener("pagehide", closeAll);
})();
