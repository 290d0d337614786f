// Live calls: keeps the "Calls in progress" panel (#live-calls) current through the
// dashboard's WebSocket (/ws/live/; the protocol is in docs/dashboard.md#live-updates).
// Whenever the socket (re)opens, the panel is fetched again from the page's own view (an
// htmx-style fragment request), so nothing is missed while the socket was closed; then
// each message adds, updates or removes one row. Without JavaScript the page still shows
// the calls that were in progress when it was rendered.
(() => {
  const PANEL = "live-calls";
  if (!document.getElementById(PANEL)) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socketUrl = `${scheme}://${location.host}/ws/live/`;
  let retryMs = 1000;
  let queued = null; // messages that arrive while the panel is being fetched

  function fill(row, call) {
    row.dataset.callId = call.id;
    row.querySelectorAll("[data-field]").forEach((el) => {
      const name = el.dataset.field;
      if (name === "link") {
        el.href = call.url;
        el.textContent = (call.started_at || "").slice(11, 19);
      } else {
        el.textContent = call[name] || "—";
      }
    });
  }

  function apply(call) {
    const panel = document.getElementById(PANEL);
    if (!panel) return;
    const body = panel.querySelector("tbody");
    const row = body.querySelector(`tr[data-call-id="${call.id}"]`);
    if (!call.live) {
      if (row) row.remove();
    } else if (row) {
      fill(row, call);
    } else {
      const template = panel.querySelector("template[data-live-row]");
      const fresh = template.content.firstElementChild.cloneNode(true);
      fill(fresh, call);
      body.prepend(fresh);
    }
    const count = body.rows.length;
    panel.querySelector("[data-live-count]").textContent = count;
    panel.querySelector("[data-live-empty]").hidden = count > 0;
    panel.querySelector("[data-live-table]").hidden = count === 0;
    // The same call elsewhere on the page (the call list's table): keep its status current.
    document.querySelectorAll(`[data-call-status="${call.id}"]`).forEach((el) => {
      el.textContent = call.status;
    });
  }

  async function refresh() {
    queued = [];
    try {
      const response = await fetch(location.pathname + location.search, {
        headers: { "HX-Request": "true", "HX-Target": PANEL },
        credentials: "same-origin",
      });
      const panel = document.getElementById(PANEL);
      if (response.ok && panel) panel.outerHTML = await response.text();
    } finally {
      const pending = queued;
      queued = null;
      pending.forEach(apply);
      document.documentElement.dataset.live = "connected";
    }
  }

  function connect() {
    const socket = new WebSocket(socketUrl);
    socket.addEventListener("open", () => {
      retryMs = 1000;
      refresh();
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "call") return;
      if (queued) queued.push(message.call);
      else apply(message.call);
    });
    socket.addEventListener("close", (event) => {
      document.documentElement.dataset.live = "disconnected";
      // 4401/4403: logged out or no organization; retrying would not help.
      if (event.code >= 4000 && event.code < 5000) return;
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  }

  connect();
})();
