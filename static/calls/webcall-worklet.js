// AudioWorklet processors for web calls (static/calls/talk.js; docs/web-calls.md).
// The AudioContext runs at the call's sample rate, so the browser resamples the
// microphone and the agent's audio for us; these only frame and queue samples.

// gb-capture: the microphone, as 20 ms frames of 16-bit little-endian PCM (ArrayBuffers
// posted to the page, which sends each as one binary WebSocket frame).
class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(Math.round(sampleRate / 50));
    this.used = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const s = Math.max(-1, Math.min(1, channel[i]));
      this.frame[this.used++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.used === this.frame.length) {
        const out = this.frame.slice();
        this.port.postMessage(out.buffer, [out.buffer]);
        this.used = 0;
      }
    }
    return true;
  }
}

// gb-player: the agent's voice. Messages in: {type: "audio", samples: Float32Array},
// {type: "mark", name}, {type: "clear"}. Out: {type: "played", name} when playback
// reaches a mark (at once, for every queued mark, on clear: barge-in empties the queue),
// and {type: "progress", samples} with the total samples played so far.
class PlayerProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // Float32Array chunks and {mark} entries, in order
    this.offset = 0; // read position in queue[0] when it is audio
    this.played = 0;
    this.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === "audio") this.queue.push(msg.samples);
      else if (msg.type === "mark") this.queue.push({ mark: msg.name });
      else if (msg.type === "clear") {
        for (const item of this.queue) {
          if (item.mark !== undefined) this.port.postMessage({ type: "played", name: item.mark });
        }
        this.queue = [];
        this.offset = 0;
      }
    };
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    let written = 0;
    while (written < out.length && this.queue.length) {
      const head = this.queue[0];
      if (head.mark !== undefined) {
        this.port.postMessage({ type: "played", name: head.mark });
        this.queue.shift();
        continue;
      }
      const n = Math.min(out.length - written, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), written);
      written += n;
      this.offset += n;
      if (this.offset === head.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    out.fill(0, written);
    // Marks right after the last audio: that audio has been handed to the output.
    while (this.queue.length && this.queue[0].mark !== undefined) {
      this.port.postMessage({ type: "played", name: this.queue.shift().mark });
    }
    if (written) {
      this.played += written;
      this.port.postMessage({ type: "progress", samples: this.played });
    }
    return true;
  }
}

registerProcessor("gb-capture", CaptureProcessor);
registerProcessor("gb-player", PlayerProcessor);
