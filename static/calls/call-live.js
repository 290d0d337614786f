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

// Listen-in (docs/web-calls.md#listen-in): "Listen" opens /ws/calls/<id>/listen/ and plays
// the caller and the agent as two sources through the web call's AudioWorklet player
// (webcall-worklet.js), in an AudioContext at the call's sample rate. A chunk flagged
// "clear" (the agent was cut off) empties the agent's queue first. Pressing it again stops.
// data-played-caller / data-played-agent count the samples each side has played.
(() => {
  const box = document.querySelector("#call-live [data-listen-path]");
  if (!box) return;
  const button = box.querySelector("[data-listen]");
  const status = box.querySelector("[data-listen-status]");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let session = null;

  function decode(base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const pcm = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
    return samples;
  }

  function show(state, text) {
    box.dataset.listen = state;
    status.textContent = text;
    button.textContent = state === "listening" || state === "connecting" ? "Stop listening" : "Listen";
    button.setAttribute("aria-pressed", String(state === "listening" || state === "connecting"));
  }

  function start() {
    const ws = new WebSocket(`${scheme}://${location.host}${box.dataset.listenPath}`);
    const me = { ws, ctx: null, players: null, pending: [], played: { caller: 0, agent: 0 } };
    session = me;
    box.dataset.playedCaller = "0";
    box.dataset.playedAgent = "0";
    show("connecting", "Connecting…");

    async function open(rate) {
      const ctx = new AudioContext({ sampleRate: rate });
      me.ctx = ctx;
      await ctx.audioWorklet.addModule(box.dataset.workletUrl);
      await ctx.resume();
      const players = {};
      for (const side of ["caller", "agent"]) {
        const node = new AudioWorkletNode(ctx, "gb-player", { outputChannelCount: [1] });
        node.connect(ctx.destination);
        node.port.onmessage = (event) => {
          if (event.data.type !== "progress") return;
          me.played[side] = event.data.samples;
          box.dataset[side === "caller" ? "playedCaller" : "playedAgent"] = String(event.data.samples);
        };
        players[side] = node;
      }
      me.players = players;
      me.pending.splice(0).forEach(play);
    }

    function play(msg) {
      if (msg.clear) me.players.agent.port.postMessage({ type: "clear" });
      for (const side of ["caller", "agent"]) {
        if (msg[side]) me.players[side].port.postMessage({ type: "audio", samples: decode(msg[side]) });
      }
    }

    ws.onopen = () => show("listening", "Listening: the caller and the agent.");
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "ended") {
        stop("The call ended.");
      } else if (msg.type === "audio") {
        if (me.players) play(msg);
        else {
          me.pending.push(msg);
          if (!me.ctx) open(msg.sample_rate).catch((err) => stop(`Cannot play audio: ${err}`));
        }
      }
    };
    ws.onclose = (event) => {
      if (session === me) stop(event.code === 1000 ? "The call ended." : `Disconnected (${event.code}).`);
    };
  }

  function stop(text) {
    const me = session;
    session = null;
    if (me) {
      if (me.ws.readyState <= WebSocket.OPEN) me.ws.close(1000);
      if (me.ctx) me.ctx.close();
    }
    show("stopped", text);
  }

  button.addEventListener("click", () => (session ? stop("Stopped.") : start()));
})();
