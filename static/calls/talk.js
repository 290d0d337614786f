// "Talk to this agent": a web call from the dashboard (docs/web-calls.md). Starts the
// call (POST to the panel's data-talk-url: a ticket), opens the microphone with echo
// cancellation, and speaks the web-call protocol over /ws/web/<token>/: microphone frames
// out as binary PCM16, the agent's audio into a playback queue that `clear` empties at
// once (barge-in), marks echoed as playback reaches them, and the live transcript and
// turn latencies shown as the call sends them.
(() => {
  const panel = document.getElementById("talk");
  if (!panel) return;
  const $ = (sel) => panel.querySelector(sel);
  const startButton = $("[data-talk-start]");
  const stopButton = $("[data-talk-stop]");
  if (!startButton) return;
  let call = null; // {ws, ctx, stream}

  function status(text, state) {
    $("[data-talk-status]").textContent = text;
    if (state) panel.dataset.state = state;
  }

  function csrfToken() {
    const headers = document.body.getAttribute("hx-headers");
    try {
      return JSON.parse(headers)["X-CSRFToken"];
    } catch (e) {
      return "";
    }
  }

  function decode(base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const pcm = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
    return samples;
  }

  function ms(value) {
    return value === null || value === undefined ? "—" : `${Math.round(value)} ms`;
  }

  function addTranscript(line) {
    const item = document.createElement("li");
    item.className = `transcript-entry role-${line.role}`;
    item.dataset.role = line.role;
    const who = document.createElement("strong");
    who.textContent = line.role === "user" ? "You" : "Agent";
    const text = document.createElement("span");
    text.className = "transcript-text";
    text.textContent = ` ${line.text}${line.interrupted ? " (interrupted)" : ""}`;
    item.append(who, text);
    $("[data-talk-transcript]").append(item);
  }

  function addTurn(turn) {
    const row = document.createElement("tr");
    row.dataset.turn = turn.turn_index;
    for (const value of [
      turn.turn_index,
      turn.kind,
      ms(turn.voice_to_voice_ms),
      ms(turn.llm_ttft_ms),
      ms(turn.tts_ttfb_ms),
      turn.interrupted_at_ms === null ? "no" : "yes",
    ]) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    $("[data-talk-turns]").append(row);
  }

  function finish(text) {
    if (!call) return;
    const { ws, ctx, stream } = call;
    call = null;
    stream.getTracks().forEach((track) => track.stop());
    ctx.close();
    if (ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ event: "stop" }));
      ws.close(1000);
    }
    status(text, "ended");
    startButton.hidden = false;
    stopButton.hidden = true;
  }

  async function start() {
    startButton.hidden = true;
    status("Starting the call…", "starting");
    let ticket;
    try {
      const response = await fetch(panel.dataset.talkUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      });
      ticket = await response.json();
      if (!response.ok) throw new Error((ticket.error && ticket.error.message) || response.status);
    } catch (e) {
      status(`The call could not start: ${e.message}`, "failed");
      startButton.hidden = false;
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (e) {
      status(`No microphone: ${e.message}`, "failed");
      startButton.hidden = false;
      return;
    }
    const ctx = new AudioContext({ sampleRate: ticket.sample_rate });
    await ctx.audioWorklet.addModule(panel.dataset.workletUrl);
    await ctx.resume();
    const source = ctx.createMediaStreamSource(stream);
    const capture = new AudioWorkletNode(ctx, "gb-capture");
    const mute = ctx.createGain();
    mute.gain.value = 0; // keeps the capture node pulled by the graph, silently
    source.connect(capture).connect(mute).connect(ctx.destination);
    const player = new AudioWorkletNode(ctx, "gb-player", { outputChannelCount: [1] });
    player.connect(ctx.destination);

    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}${ticket.ws_path}`);
    ws.binaryType = "arraybuffer";
    call = { ws, ctx, stream };
    const link = $("[data-talk-call]");
    link.href = ticket.call_url;
    link.hidden = false;
    panel.dataset.callId = ticket.call;
    let started = false;

    ws.onopen = () => {
      ws.send(
        JSON.stringify({
          event: "start",
          start: {
            mediaFormat: { encoding: "audio/x-l16", sampleRate: ticket.sample_rate, channels: 1 },
          },
        }),
      );
    };
    capture.port.onmessage = (event) => {
      if (started && ws.readyState === WebSocket.OPEN) ws.send(event.data);
    };
    player.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "played" && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ event: "mark", mark: { name: msg.name } }));
      } else if (msg.type === "progress") {
        panel.dataset.playedSamples = msg.samples;
      }
    };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      switch (msg.event) {
        case "started":
          started = true;
          status("Connected: speak when you like.", "connected");
          stopButton.hidden = false;
          break;
        case "media":
          player.port.postMessage({ type: "audio", samples: decode(msg.media.payload) });
          break;
        case "mark":
          player.port.postMessage({ type: "mark", name: msg.mark.name });
          break;
        case "clear":
          player.port.postMessage({ type: "clear" });
          break;
        case "transcript":
          addTranscript(msg.transcript);
          break;
        case "turn":
          addTurn(msg.turn);
          break;
        case "phase": {
          const phase = $("[data-talk-phase]");
          phase.textContent = msg.phase;
          phase.hidden = false;
          break;
        }
        case "stop":
          finish(`The call ended (${msg.stop.reason}).`);
          break;
      }
    };
    ws.onclose = (event) => {
      if (call) finish(event.code === 1000 ? "The call ended." : `Disconnected (${event.code}).`);
    };
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", () => finish("You hung up."));
})();
