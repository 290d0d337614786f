// A running call's live view on its page (#call-live): phase, transcript and the latest
// turn, streamed over /ws/calls/<id>/live/ from whichever process holds the call
// (docs/web-calls.md#live-state). The socket sends the stored state first, then each change;
// "ended" (or "idle": not running) stops it, and the page is reloaded for the record.
(() => {
  const panel = document.getElementById("call-live");
  if (!panel) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}${panel.dataset.socketPath}`;
  const $ = (sel) => panel.querySelector(sel);
  let retryMs = 1000;
  let over = false;

  function render(state) {
    $("[data-live-phase]").textContent = state.phase;
    panel.dataset.state = state.phase;
    const list = $("[data-live-transcript]");
    list.replaceChildren(
      ...state.transcript.map((line) => {
        const item = document.createElement("li");
        item.className = `transcript-entry role-${line.role}`;
        item.dataset.role = line.role;
        const who = document.createElement("strong");
        who.textContent = line.role === "user" ? "Caller" : "Agent";
        const text = document.createElement("span");
        text.className = "transcript-text";
        text.textContent = ` ${line.text}${line.interrupted ? " (interrupted)" : ""}`;
        item.append(who, text);
        return item;
      }),
    );
    const turn = state.last_turn;
    $("[data-live-turn]").textContent =
      turn && turn.voice_to_voice_ms !== null && turn.voice_to_voice_ms !== undefined
        ? `last turn: ${Math.round(turn.voice_to_voice_ms)} ms voice-to-voice`
        : "";
  }

  function connect() {
    const socket = new WebSocket(url);
    socket.onopen = () => {
      retryMs = 1000;
      panel.dataset.connected = "true";
    };
    socket.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "idle") {
        $("[data-live-phase]").textContent = "not running";
        panel.dataset.state = "idle";
      } else if (msg.type === "state") {
        render(msg.state);
        if (msg.state.phase === "ended") {
          over = true;
          socket.close();
          setTimeout(() => location.reload(), 1500);
        }
      }
    };
    socket.onclose = (event) => {
      panel.dataset.connected = "false";
      if (over || (event.code >= 4000 && event.code < 5000)) return;
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    };
  }

  connect();
})();
