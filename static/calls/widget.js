// Glassbox's embeddable widget: a "Talk to us" button for a tenant's own page.
//
//   <script src="https://HOST/static/calls/widget.js" data-key="wk_..." async></script>
//
// The key is public and works only from the origins its tenant listed. Pressing the
// button asks HOST/widget/v1/web-calls/ for a call ticket, then runs the call with
// webcall-client.js (loaded from HOST). docs/web-calls.md#the-widget.
(() => {
  const script = document.currentScript;
  if (!script || !script.dataset.key) return;
  const platform = new URL(script.src).origin;
  const label = script.dataset.label || "Talk to us";

  function load(src) {
    return new Promise((resolve, reject) => {
      if (window.glassboxWebCall) return resolve();
      const tag = document.createElement("script");
      tag.src = src;
      tag.onload = resolve;
      tag.onerror = () => reject(new Error("could not load the call client"));
      document.head.append(tag);
    });
  }

  const box = document.createElement("div");
  box.className = "glassbox-widget";
  box.style.cssText =
    "position:fixed;right:1rem;bottom:1rem;z-index:2147483000;font:16px/1.4 sans-serif;" +
    "background:#fff;border:1px solid #b1b4b6;padding:.75rem;max-width:20rem";
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.style.cssText = "font:inherit;padding:.5rem 1rem;background:#00703c;color:#fff;border:0";
  const status = document.createElement("p");
  status.setAttribute("role", "status");
  status.style.margin = ".5rem 0 0";
  box.append(button, status);
  let call = null;

  async function start() {
    button.disabled = true;
    status.textContent = "Connecting…";
    try {
      const response = await fetch(`${platform}/widget/v1/web-calls/`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key: script.dataset.key }),
      });
      const ticket = await response.json();
      if (!response.ok) throw new Error(ticket.error ? ticket.error.message : response.status);
      await load(`${platform}/static/calls/webcall-client.js`);
      call = await window.glassboxWebCall({
        ticket,
        workletUrl: `${platform}/static/calls/webcall-worklet.js`,
        on: {
          status(state, text) {
            status.textContent = text;
            box.dataset.state = state;
            button.disabled = false;
            button.textContent = state === "connected" ? "Hang up" : label;
            if (state === "ended") call = null;
          },
          transcript(line) {
            if (line.role !== "user") status.textContent = line.text;
          },
        },
      });
    } catch (e) {
      status.textContent = `Sorry, the call could not start: ${e.message}`;
      button.disabled = false;
    }
  }

  button.addEventListener("click", () => (call ? call.hangUp() : start()));
  document.body.append(box);
})();
