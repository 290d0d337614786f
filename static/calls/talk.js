// "Talk to this agent" on the agent page (#talk): starts a web call (POST to the panel's
// data-talk-url answers with a ticket) and runs it with webcall-client.js, showing the
// live transcript and the turn latencies as the call sends them (docs/web-calls.md).
(() => {
  const panel = document.getElementById("talk");
  if (!panel) return;
  const $ = (sel) => panel.querySelector(sel);
  const startButton = $("[data-talk-start]");
  const stopButton = $("[data-talk-stop]");
  if (!startButton) return;
  let call = null;

  function status(state, text) {
    $("[data-talk-status]").textContent = text;
    panel.dataset.state = state;
    startButton.hidden = !["idle", "failed", "ended"].includes(state);
    stopButton.hidden = state !== "connected";
  }

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"];
    } catch (e) {
      return "";
    }
  }

  const ms = (value) => (value === null || value === undefined ? "—" : `${Math.round(value)} ms`);

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

  async function start() {
    status("starting", "Starting the call…");
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
      status("failed", `The call could not start: ${e.message}`);
      return;
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    ticket.ws_url = `${scheme}://${location.host}${ticket.ws_path}`;
    const link = $("[data-talk-call]");
    link.href = ticket.call_url;
    link.hidden = false;
    panel.dataset.callId = ticket.call;
    try {
      call = await window.glassboxWebCall({
        ticket,
        workletUrl: panel.dataset.workletUrl,
        on: {
          status,
          transcript: addTranscript,
          turn: addTurn,
          phase(name) {
            const phase = $("[data-talk-phase]");
            phase.textContent = name;
            phase.hidden = false;
          },
          played(samples) {
            panel.dataset.playedSamples = samples;
          },
        },
      });
    } catch (e) {
      status("failed", `No microphone: ${e.message}`);
    }
  }

  startButton.addEventListener("click", start);
  stopButton.addEventListener("click", () => call && call.hangUp());
})();
