// The browser side of a web call (docs/web-calls.md), shared by the dashboard's "Talk to
// this agent" (talk.js) and the embeddable widget (widget.js). No dependencies, no build.
//
//   const call = await window.glassboxWebCall({
//     ticket,            // {ws_url, sample_rate, ...} from the endpoint that started it
//     workletUrl,        // static/calls/webcall-worklet.js on the platform's origin
//     on: {status(state, text), transcript(line), turn(timeline), phase(name), played(samples)},
//   });
//   call.hangUp();
//
// Microphone: getUserMedia with echo cancellation; an AudioContext at the call's rate
// (the browser resamples), an AudioWorklet framing 20 ms of PCM16 per binary frame.
// Playback: a worklet queue; marks echoed as playback reaches them; `clear` empties it.
(() => {
  function decode(base64) {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const pcm = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
    const samples = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
    return samples;
  }

  async function glassboxWebCall({ ticket, workletUrl, on = {} }) {
    const tell = (name, ...args) => on[name] && on[name](...args);
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const ctx = new AudioContext({ sampleRate: ticket.sample_rate });
    await ctx.audioWorklet.addModule(workletUrl);
    await ctx.resume();
    const source = ctx.createMediaStreamSource(stream);
    const capture = new AudioWorkletNode(ctx, "gb-capture");
    const mute = ctx.createGain();
    mute.gain.value = 0; // keeps the capture node pulled by the graph, silently
    source.connect(capture).connect(mute).connect(ctx.destination);
    const player = new AudioWorkletNode(ctx, "gb-player", { outputChannelCount: [1] });
    player.connect(ctx.destination);

    const ws = new WebSocket(ticket.ws_url);
    ws.binaryType = "arraybuffer";
    let started = false;
    let over = false;
    const send = (obj) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(obj));

    function end(text) {
      if (over) return;
      over = true;
      stream.getTracks().forEach((track) => track.stop());
      ctx.close();
      if (ws.readyState === WebSocket.OPEN) {
        send({ event: "stop" });
        ws.close(1000);
      }
      tell("status", "ended", text);
    }

    ws.onopen = () =>
      send({
        event: "start",
        start: {
          mediaFormat: { encoding: "audio/x-l16", sampleRate: ticket.sample_rate, channels: 1 },
        },
      });
    capture.port.onmessage = (event) => {
      if (started && ws.readyState === WebSocket.OPEN) ws.send(event.data);
    };
    player.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "played") send({ event: "mark", mark: { name: msg.name } });
      else if (msg.type === "progress") tell("played", msg.samples);
    };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      switch (msg.event) {
        case "started":
          started = true;
          tell("status", "connected", "Connected: speak when you like.");
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
          tell("transcript", msg.transcript);
          break;
        case "turn":
          tell("turn", msg.turn);
          break;
        case "phase":
          tell("phase", msg.phase);
          break;
        case "stop":
          end(`The call ended (${msg.stop.reason}).`);
          break;
      }
    };
    ws.onclose = (event) =>
      end(event.code === 1000 ? "The call ended." : `Disconnected (${event.code}).`);
    return { hangUp: () => end("You hung up.") };
  }

  window.glassboxWebCall = glassboxWebCall;
})();
