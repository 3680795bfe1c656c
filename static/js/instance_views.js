"use strict";
// Instance dialogs: the live log viewer (SSE), the stats modal, and editing live options.
window.LMDash = window.LMDash || {};
(() => {
  const { api, h, toast, modal, confirm, fmtNumber, fmtDuration, fmtTime, copyText } = LM;
  const MAX_LINES = 2000; // kept in the viewer; older lines scroll away

  /** Live tail of an instance log. Event ids are byte offsets: a line whose id is not past the
   *  last one shown is a duplicate (EventSource resends Last-Event-ID on reconnect). */
  function openLogs(instance) {
    const view = h("pre", { class: "log-view", id: "log-view", tabindex: 0, "aria-label": "Log lines", "aria-live": "off" });
    const state = h("span", { class: "muted", id: "log-state", text: "connecting…" });
    const pause = h("button", { type: "button", class: "secondary", id: "log-pause", "aria-pressed": "false", text: "Pause" });
    const copy = h("button", { type: "button", class: "secondary", id: "log-copy", text: "Copy" });
    const lines = [];
    const held = [];
    let lastId = -1;
    let paused = false;
    let source = null;

    const show = (batch) => {
      const stick = view.scrollTop + view.clientHeight >= view.scrollHeight - 8;
      view.append(document.createTextNode(batch.join("\n") + "\n"));
      while (view.childNodes.length > 200) view.firstChild.remove(); // bounded DOM
      if (stick) view.scrollTop = view.scrollHeight;
    };
    const onLine = (event) => {
      const id = Number(event.lastEventId);
      if (Number.isFinite(id) && id <= lastId) return;
      if (Number.isFinite(id)) lastId = id;
      lines.push(event.data);
      if (lines.length > MAX_LINES) lines.splice(0, lines.length - MAX_LINES);
      if (paused) held.push(event.data); else pending.push(event.data);
      schedule();
    };
    // Lines arriving together (the backlog) are drawn in one frame.
    const pending = [];
    let frame = 0;
    const schedule = () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; if (pending.length) show(pending.splice(0)); }); };

    const connect = () => {
      const resume = lastId >= 0 ? "&last_event_id=" + lastId : "";
      source = new EventSource(`/api/instances/${encodeURIComponent(instance.id)}/logs/stream?lines=200${resume}`);
      source.onmessage = onLine;
      source.onopen = () => { state.textContent = paused ? "paused" : "live"; };
      source.onerror = () => {
        state.textContent = "reconnecting…";
        // A closed source (the server refused) is reopened by hand from the last offset.
        if (source.readyState === EventSource.CLOSED) setTimeout(() => { if (source) connect(); }, 2000);
      };
    };
    pause.addEventListener("click", () => {
      paused = !paused;
      pause.textContent = paused ? "Resume" : "Pause";
      pause.setAttribute("aria-pressed", String(paused));
      state.textContent = paused ? "paused" : "live";
      if (!paused && held.length) { pending.push(...held.splice(0)); schedule(); }
    });
    copy.addEventListener("click", () => copyText(lines.join("\n")));
    modal(`Logs · ${instance.name}`, [h("div", { class: "row" }, pause, copy, h("span", { class: "spacer" }), state), view],
      { wide: true, onClose: () => { const s = source; source = null; if (s) s.close(); } });
    connect();
  }

  function tile(label, value, id) {
    return h("div", { class: "stat-tile" }, h("span", { class: "stat-label", text: label }),
      h("span", { class: "stat-value", dataset: { stat: id }, text: value }));
  }

  function ms(value) { return value === null || value === undefined ? "—" : fmtNumber(value, 0) + " ms"; }

  function statsTiles(s) {
    return h("div", { class: "stat-grid", id: "stats-tiles" },
      tile("Requests", String(s.turn_count), "requests"), tile("Errors", String(s.error_count), "errors"),
      tile("Avg tokens/s", fmtNumber(s.avg_tokens_per_sec), "avg_tps"), tile("Peak tokens/s", fmtNumber(s.max_tokens_per_sec), "peak_tps"),
      tile("Avg TTFT", ms(s.avg_ttft_ms), "ttft"), tile("Avg latency", ms(s.avg_duration_ms), "latency"),
      tile("Prompt tokens", String(s.prompt_tokens), "prompt_tokens"), tile("Completion tokens", String(s.completion_tokens), "completion_tokens"),
      tile("Total tokens", String(s.total_tokens), "total_tokens"), tile("Streamed", String(s.streamed_count), "streamed"),
      tile("Active span", fmtDuration(s.active_span_s), "span"), tile("Last request", fmtTime(s.last_seen_at), "last"));
  }

  function statsEmpty(s) {
    if (!s.recording) {
      return h("div", { class: "empty", id: "stats-empty" },
        h("p", { text: "Request recording is off, so there is nothing to show yet." }),
        h("p", {}, "Turn it on under ", h("a", { href: "/settings", text: "Settings" }),
          " (Request recording: per request or per conversation), or POST ",
          h("code", { text: '{"request_recording_mode": "per_request"}' }), " to /api/settings; then send requests to this instance."));
    }
    return h("div", { class: "empty", id: "stats-empty" },
      h("p", { text: `Recording is on (${s.recording_mode}); no request has reached this instance yet.` }));
  }

  async function openStats(instance) {
    const body = h("div", { id: "stats-body" }, h("p", { class: "muted", text: "Loading…" }));
    const dialog = modal(`Stats · ${instance.name}`, body, { wide: true });
    try {
      const s = await api("GET", "/api/request-log/stats?inst_id=" + encodeURIComponent(instance.id));
      body.replaceChildren(s.turn_count ? statsTiles(s) : statsEmpty(s),
        h("p", { class: "help", text: `Recording: ${s.recording_mode}. Figures cover every recorded request served by this instance.` }));
    } catch (error) {
      body.replaceChildren(h("p", { class: "error", text: error.message }));
    }
    return dialog;
  }

  /** Edit dialog: live fields PATCH at once; changed relaunch fields need "apply and restart",
   *  which relaunches the configuration on the same port as a new instance. */
  async function openEdit(instance) {
    const exported = await api("GET", `/api/instances/${encodeURIComponent(instance.id)}/export`);
    const form = h("form", { id: "edit-form", novalidate: true }, LMDash.fieldSets("edit", (spec) => spec[0] !== "port"));
    LMDash.fillForm(form, "edit", exported);
    const relaunchNames = LMDash.FIELDS.filter((f) => f[5]?.relaunch || f[0] === "name").map((f) => f[0]);
    const liveNames = LMDash.FIELDS.filter((f) => !relaunchNames.includes(f[0]) && f[0] !== "port").map((f) => f[0]);
    const original = JSON.stringify(LMDash.readForm(form, "edit", relaunchNames));
    const apply = h("button", { type: "submit", id: "edit-apply", form: "edit-form", text: "Apply" });
    const restart = h("button", { type: "button", class: "secondary", id: "edit-restart", text: "Apply and restart" });
    const note = h("p", { class: "help", id: "edit-note", text: "Fields marked “relaunch” only change with Apply and restart." });
    const dialog = modal(`Edit · ${instance.name}`, [form, note, h("div", { class: "row end" }, restart, apply)], { wide: true });
    const changedRelaunch = () => JSON.stringify(LMDash.readForm(form, "edit", relaunchNames)) !== original;
    form.addEventListener("input", () => { apply.disabled = changedRelaunch(); note.classList.toggle("error", changedRelaunch()); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      try {
        await api("PATCH", `/api/instances/${encodeURIComponent(instance.id)}`, LMDash.readForm(form, "edit", liveNames));
        toast("Live options applied", "ok");
        dialog.close();
        LMDash.refreshInstances();
      } catch (error) { LMDash.markInvalid(form, "edit", error); toast(error.message, "error"); }
    });
    restart.addEventListener("click", () => applyAndRestart(instance, exported, form, dialog));
  }

  async function applyAndRestart(instance, exported, form, dialog) {
    if (!form.reportValidity()) return;
    const body = { ...exported, ...LMDash.readForm(form, "edit") };
    if (!(await confirm(`Restart ${instance.name} with the new settings? Requests in flight are cut off.`, { ok: "Apply and restart" }))) return;
    const id = encodeURIComponent(instance.id);
    try {
      if (["starting", "healthy", "sleeping"].includes(instance.status)) await api("DELETE", `/api/instances/${id}`);
      const created = await LMDash.postLaunch(body);
      if (!created) return;
      await api("DELETE", `/api/instances/${id}/remove`);
      toast(`Relaunched ${created.name} on port ${created.port}`, "ok");
      dialog.close();
    } catch (error) {
      toast(error.message, "error");
    }
    LMDash.refreshInstances();
  }

  Object.assign(LMDash, { openLogs, openStats, openEdit });
})();
