"use strict";
// Dashboard downloads: the "Download model" dialog (HuggingFace repo/file or llamactl org/model:tag)
// and the job list with progress, speed, ETA, pause/resume/cancel/remove and each job's log.
(() => {
  const { api, h, toast, confirm, bar, fmtBytes, fmtDuration } = LM;
  const root = document.getElementById("downloads-panel");
  if (!root) return;

  const ACTIVE = new Set(["queued", "downloading"]);
  const FAST_MS = 1000;   // while something moves: progress should feel live
  const IDLE_MS = 10000;  // nothing moving: stay cheap, still notice jobs other clients start
  const LOG_LINES = 200;
  const items = new Map(); // job id -> {el, parts, job}
  let timer = null;

  // ---- the dialog -------------------------------------------------------------------------

  function field(label, input, help) {
    return h("label", {}, label, input, help ? h("span", { class: "help", text: help }) : null);
  }

  function fileForm(done) {
    const repo = h("input", { id: "dl-repo", name: "repo_id", required: true, autocomplete: "off",
                              placeholder: "org/model-GGUF", spellcheck: "false" });
    const file = h("input", { id: "dl-file", name: "filename", autocomplete: "off", spellcheck: "false",
                              placeholder: "model-Q4_K_M.gguf" });
    const token = h("input", { id: "dl-token", name: "hf_token", type: "password", autocomplete: "off",
                               placeholder: "hf_… (optional)" });
    const speed = h("input", { id: "dl-speed", name: "speed_limit_mbps", type: "number", min: 0, step: "any",
                               value: 0 });
    const error = h("p", { class: "error", id: "dl-error", role: "alert", hidden: true });
    const form = h("form", { id: "dl-form", class: "modal-body", novalidate: true },
      field("Repository", repo, "A HuggingFace repo id: org/name"),
      field("File", file, "One file (a shard name fetches every shard). Blank = the whole repository."),
      field("Access token", token, "For gated or private repos. Blank uses the stored token (Settings)."),
      field("Speed limit (Mbit/s)", speed, "0 = unlimited (the global limit in Settings still applies)"),
      error,
      h("div", { class: "row end" }, h("button", { type: "submit", id: "dl-submit", text: "Download" })));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = { repo_id: repo.value.trim(), filename: file.value.trim(), speed_limit_mbps: Number(speed.value || 0) };
      if (token.value) body.hf_token = token.value;
      submit(() => api("POST", "/api/downloads", body), error, form, done);
    });
    return form;
  }

  function tagForm(done) {
    const ref = h("input", { id: "dl-ref", name: "repo", required: true, autocomplete: "off", spellcheck: "false",
                             placeholder: "org/model-GGUF:Q4_K_M" });
    const token = h("input", { id: "dl-tag-token", type: "password", autocomplete: "off", placeholder: "hf_… (optional)" });
    const error = h("p", { class: "error", id: "dl-tag-error", role: "alert", hidden: true });
    const form = h("form", { id: "dl-tag-form", class: "modal-body", novalidate: true },
      field("Model", ref, "llamactl style org/model:tag — the tag is a quantization (latest = Q4_K_M or the first GGUF). " +
        "Split parts, the mmproj and preset.ini come along; files land in the llamactl cache."),
      field("Access token", token),
      error,
      h("div", { class: "row end" }, h("button", { type: "submit", id: "dl-tag-submit", text: "Download" })));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = { repo: ref.value.trim() };
      if (token.value) body.hf_token = token.value;
      submit(() => api("POST", "/api/v1/backends/llama-cpp/models/download", body), error, form, done);
    });
    return form;
  }

  /** Send a form; the server's 400 text shows inline and as a toast, success closes the dialog. */
  async function submit(call, errorEl, form, done) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    errorEl.hidden = true;
    try {
      await call();
      toast("Download queued", "ok", 2000);
      done();
      refreshSoon();
    } catch (e) {
      errorEl.textContent = e.message;
      errorEl.hidden = false;
      toast(e.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  /** Two ways to ask for a model, as tabs of one dialog. */
  function openDialog() {
    let dialog = null;
    const close = () => dialog && dialog.close();
    const panes = { file: fileForm(close), tag: tagForm(close) };
    const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Download kind" });
    const select = (kind) => {
      for (const button of tabs.children) button.setAttribute("aria-selected", String(button.dataset.kind === kind));
      for (const [name, pane] of Object.entries(panes)) pane.hidden = name !== kind;
      panes[kind].querySelector("input").focus();
    };
    tabs.append(
      h("button", { type: "button", role: "tab", id: "dl-kind-file", dataset: { kind: "file" }, text: "Repository / file",
                    onclick: () => select("file") }),
      h("button", { type: "button", role: "tab", id: "dl-kind-tag", dataset: { kind: "tag" }, text: "org/model:tag",
                    onclick: () => select("tag") }));
    dialog = LM.modal("Download model", [tabs, panes.file, panes.tag]);
    dialog.el.id = "download-dialog";
    select("file");
  }

  // ---- the job list -----------------------------------------------------------------------

  function title(job) {
    if (job.kind === "tag") return job.repo_id + ":" + (job.tag || "latest");
    return job.repo_id + (job.filename ? " / " + job.filename : " (whole repository)");
  }

  function progressText(job) {
    const done = fmtBytes(job.downloaded_bytes || 0);
    const total = job.total_bytes ? fmtBytes(job.total_bytes) : "?";
    const parts = [done + " / " + total, Math.round(job.progress || 0) + "%"];
    if (job.status === "downloading") {
      parts.push(fmtBytes(job.speed_bps || 0) + "/s (" + LM.fmtNumber(job.speed_mbps || 0, 1) + " Mbit/s)");
      parts.push("ETA " + (job.eta_seconds === null || job.eta_seconds === undefined ? "—" : fmtDuration(job.eta_seconds)));
    }
    if (job.retries) parts.push(job.retries + " retries");
    return parts.join(" · ");
  }

  function action(label, cls, handler) {
    return h("button", { type: "button", class: "small " + cls, text: label, onclick: handler });
  }

  function act(job, verb) {
    const calls = {
      pause: () => api("POST", `/api/downloads/${job.id}/pause`),
      resume: () => api("POST", `/api/downloads/${job.id}/resume`),
      cancel: () => api("DELETE", `/api/downloads/${job.id}`),
      remove: () => api("DELETE", `/api/downloads/${job.id}/remove`),
    };
    return calls[verb]().then(refreshSoon, (e) => toast(e.message, "error"));
  }

  async function guarded(job, verb, message, ok) {
    if (await confirm(message, { ok })) await act(job, verb);
  }

  function actions(job) {
    const name = title(job);
    const list = [];
    if (ACTIVE.has(job.status)) list.push(action("Pause", "secondary dl-pause", () => act(job, "pause")));
    if (job.status === "paused" || job.status === "failed") {
      list.push(action(job.status === "failed" ? "Retry" : "Resume", "dl-resume", () => act(job, "resume")));
    }
    if (ACTIVE.has(job.status) || job.status === "paused") {
      list.push(action("Cancel", "danger dl-cancel", () => guarded(job, "cancel",
        `Cancel the download of ${name}? Its partial files are deleted (finished files stay).`, "Cancel download")));
    } else {
      list.push(action("Remove", "secondary dl-remove", () => guarded(job, "remove",
        `Remove the entry for ${name} and its log? Downloaded model files stay on disk.`, "Remove")));
    }
    return list;
  }

  function detailText(job) {
    if (job.status === "completed") return "Saved to " + (job.dest_path || job.destination || "");
    if (job.current_file && ACTIVE.has(job.status)) return "Current file: " + job.current_file;
    return "Into " + (job.destination || "");
  }

  function buildItem(job) {
    const parts = {
      title: h("span", { class: "dl-title" }),
      badge: h("span", { class: "badge" }),
      actions: h("div", { class: "row dl-actions" }),
      bar: bar(0, "Download progress"),
      progress: h("div", { class: "dl-progress muted" }),
      detail: h("div", { class: "dl-detail help" }),
      error: h("p", { class: "error dl-error", hidden: true }),
      log: h("pre", { class: "log-view dl-log-view", tabindex: 0, "aria-label": "Download log" }),
    };
    const log = h("details", { class: "dl-log" }, h("summary", { text: "Log" }), parts.log);
    log.addEventListener("toggle", () => { if (log.open) loadLog(job.id, parts.log); });
    parts.details = log;
    const el = h("li", { class: "download card", dataset: { id: job.id } },
      h("div", { class: "row dl-head" }, parts.title, parts.badge, h("span", { class: "spacer" }), parts.actions),
      parts.bar, parts.progress, parts.detail, parts.error, log);
    return { el, parts, job };
  }

  /** Move the bar in place (it is the same element for the job's whole life). */
  function setBar(el, pct) {
    const fresh = bar(pct, "Download progress");
    el.className = fresh.className;
    el.setAttribute("aria-valuenow", fresh.getAttribute("aria-valuenow"));
    el.firstChild.style.width = fresh.firstChild.style.width;
  }

  function updateItem(item, job) {
    const { parts } = item;
    const changed = !item.job || item.job.status !== job.status;
    item.job = job;
    item.el.dataset.status = job.status;
    parts.title.textContent = title(job);
    parts.title.title = title(job);
    parts.badge.className = "badge " + job.status;
    parts.badge.textContent = job.status;
    setBar(parts.bar, job.progress || 0);
    parts.progress.textContent = progressText(job);
    parts.detail.textContent = detailText(job);
    parts.error.textContent = job.error || "";
    parts.error.hidden = !job.error;
    if (changed || !parts.actions.childElementCount) parts.actions.replaceChildren(...actions(job));
    if (parts.details.open && (ACTIVE.has(job.status) || changed)) loadLog(job.id, parts.log);
  }

  async function loadLog(id, box) {
    try {
      const data = await api("GET", `/api/downloads/${id}/logs?lines=${LOG_LINES}`);
      const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      box.textContent = data.lines.join("\n") || "(empty)";
      if (atEnd) box.scrollTop = box.scrollHeight;
    } catch (e) {
      if (e.status !== 404) toast(e.message, "error");
    }
  }

  function render(jobs) {
    const list = document.getElementById("download-list");
    const seen = new Set();
    const completedNow = [];
    jobs.forEach((job, index) => {
      seen.add(job.id);
      let item = items.get(job.id);
      if (!item) {
        item = buildItem(job);
        item.job = null;
        items.set(job.id, item);
      } else if (item.job.status !== "completed" && job.status === "completed") {
        completedNow.push(job);
      }
      updateItem(item, job);
      if (list.children[index] !== item.el) list.insertBefore(item.el, list.children[index] || null);
    });
    for (const [id, item] of items) {
      if (!seen.has(id)) { item.el.remove(); items.delete(id); }
    }
    document.getElementById("download-empty").hidden = jobs.length > 0;
    // The library (dashboard.js) listens for this to rescan without waiting for its own poll.
    if (completedNow.length) document.dispatchEvent(new CustomEvent("llamaman:downloads-completed", { detail: completedNow }));
  }

  async function refresh() {
    const jobs = await api("GET", "/api/downloads");
    render(jobs);
    return jobs.some((job) => ACTIVE.has(job.status));
  }

  /** Poll fast while a job moves, slowly when idle; paused while the tab is hidden. */
  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(tick, ms);
  }

  async function tick() {
    if (document.hidden) return schedule(IDLE_MS);
    let busy = false;
    try { busy = await refresh(); } catch (e) { console.warn("downloads refresh failed:", e.message); }
    schedule(busy ? FAST_MS : IDLE_MS);
  }

  function refreshSoon() { schedule(0); }

  root.replaceChildren(
    h("div", { class: "row dl-panel-head" }, h("h2", { text: "Downloads" }), h("span", { class: "spacer" }),
      h("button", { type: "button", id: "download-open", text: "Download model", onclick: openDialog })),
    h("p", { id: "download-empty", class: "empty", text: "No downloads yet. Use “Download model” to fetch a GGUF from HuggingFace." }),
    h("ul", { id: "download-list", class: "download-list", "aria-label": "Download jobs" }));
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshSoon(); });
  LM.downloads = { refresh: refreshSoon };
  tick();
})();
