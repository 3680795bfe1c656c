"use strict";
// Settings page: tabs for application settings (auth, eviction, recording, metrics, backup),
// downloads, the HuggingFace token, API keys, Docker images and cleanup. Each section saves
// on its own through POST /api/settings (or its own route); the last tab lives in location.hash.
(() => {
  const { api, h, toast, confirm, fmtTime, fmtBytes, bar } = LM;
  const root = document.getElementById("settings-page");
  const fillers = []; // (settings) => void, re-run after every load and save
  let current = {};

  // ---- building blocks --------------------------------------------------------------------

  function checkbox(id, label, help, key) {
    const box = h("input", { type: "checkbox", id, name: key });
    fillers.push((s) => { box.checked = Boolean(pick(s, key)); });
    return [h("label", { class: "toggle", for: id }, box, label), help ? h("p", { class: "help", text: help }) : null];
  }

  function number(id, label, help, key, attrs) {
    const input = h("input", { type: "number", id, name: key, ...attrs });
    fillers.push((s) => { const v = pick(s, key); input.value = v === null || v === undefined ? "" : v; });
    return h("label", { for: id }, label, input, help ? h("span", { class: "help", text: help }) : null);
  }

  /** A setting by dotted key ("cleanup.downloads_enabled"). */
  function pick(settings, key) {
    return key.split(".").reduce((v, k) => (v === null || v === undefined ? v : v[k]), settings);
  }

  function value(id) {
    const el = document.getElementById(id);
    if (el.type === "checkbox") return el.checked;
    if (el.type === "number") return el.value === "" ? null : Number(el.value);
    return el.value;
  }

  function fill(settings) {
    current = settings;
    for (const f of fillers) f(settings);
  }

  /** A form that saves one section; collect() builds the patch (or throws a message). */
  function section(id, title, children, collect, options = {}) {
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const save = h("button", { type: "submit", id: "save-" + id, text: "Save" });
    const form = h("form", { class: "card settings-section", id: "section-" + id, novalidate: true },
      h("h2", { text: title }), options.intro ? h("p", { class: "help", text: options.intro }) : null,
      ...children, error, h("div", { class: "row end" }, save));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.hidden = true;
      save.disabled = true;
      try {
        const patch = collect();
        if (options.before && !(await options.before(patch))) return;
        const saved = await (options.send || ((p) => api("POST", "/api/settings", p)))(patch);
        if (saved && !options.send) fill(saved);
        toast(title + ": saved", "ok", 2000);
        if (options.after) options.after(saved);
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
        toast(e.message, "error");
      } finally {
        save.disabled = false;
      }
    });
    return form;
  }

  function emptyState(id, text) { return h("div", { class: "empty card", id, text }); }

  // ---- Application ------------------------------------------------------------------------

  function accessSection() {
    return section("access", "Access", [
      ...checkbox("require-auth", "Require authentication for all endpoints", "On: model endpoints (/api/chat, /v1/…) " +
        "and instance ports need a bearer API key. Management always needs a login or an admin key.", "require_auth"),
      ...checkbox("metrics-open", "Open /metrics without credentials", "For a Prometheus scraper on a trusted network; " +
        "off: /metrics needs a login or an admin key.", "metrics_open"),
    ], () => ({ require_auth: value("require-auth"), metrics_open: value("metrics-open") }), {
      before: (patch) => patch.require_auth || !current.require_auth || confirm(
        "Turn authentication off? Model endpoints and instance ports will answer anyone who can reach them.",
        { ok: "Turn off" }),
    });
  }

  function evictionSection() {
    return section("eviction", "Model cap (LLAMAMAN_MAX_MODELS)", [
      ...checkbox("enforce-max-models", "Enforce the cap for launches from this UI",
        "On: a launch over the cap evicts without asking (API-launched models first). Off: the UI asks first.",
        "admin_ui_enforce_max_models"),
      ...checkbox("ollama-evict-admin", "Allow the Ollama API to evict admin-launched models",
        "Off: Ollama requests only evict models that the API itself loaded.", "allow_ollama_api_override_admin"),
    ], () => ({ admin_ui_enforce_max_models: value("enforce-max-models"),
                allow_ollama_api_override_admin: value("ollama-evict-admin") }),
    { intro: "These two apply to this node only." });
  }

  function recordingSection() {
    const mode = h("select", { id: "recording-mode", name: "request_recording_mode" },
      h("option", { value: "off", text: "Off" }), h("option", { value: "per_request", text: "Per request" }),
      h("option", { value: "per_conversation", text: "Per conversation" }));
    fillers.push((s) => { mode.value = s.request_recording_mode; });
    return section("recording", "Request recording", [
      h("div", { class: "form-grid" },
        h("label", { for: "recording-mode" }, "Mode", mode,
          h("span", { class: "help", text: "Per conversation groups turns by system prompt and first message." })),
        number("retention-days", "Retention (days)", "0 = keep forever; older records are pruned hourly.",
          "request_recording_retention_days", { min: 0, max: 36500, step: 1 })),
      h("p", { class: "help" }, "Recorded requests show on the ", h("a", { href: "/logging", text: "Logging page" }), "."),
    ], () => ({ request_recording_mode: mode.value, request_recording_retention_days: value("retention-days") }));
  }

  function reportList(title, entries, describe) {
    return h("div", { class: "report-group", dataset: { kind: title.toLowerCase() } },
      h("h3", { text: `${title}: ${entries.length}` }),
      entries.length ? h("ul", {}, ...entries.map((e) => h("li", { text: describe(e) }))) : null);
  }

  function showReport(report) {
    document.getElementById("restore-report").replaceChildren(
      reportList("Merged", report.merged, (e) => e.path + (e.preset ? " (preset merged)" : "")),
      reportList("Queued", report.queued, (e) => `${e.path} ← ${e.repo_id}/${e.filename} (download ${e.job_id})`),
      reportList("Unrestorable", report.unrestorable, (e) => `${e.path}: ${e.reason}`),
      reportList("Failed", report.failed, (e) => `${e.path}: ${e.reason}`));
  }

  async function restore(file, button) {
    let document_;
    try {
      document_ = JSON.parse(await file.text());
    } catch (e) {
      toast("That file is not JSON: " + e.message, "error");
      return;
    }
    button.disabled = true;
    try {
      showReport(await api("POST", "/api/models/restore", document_));
      toast("Restore finished", "ok", 2000);
    } catch (e) {
      toast(e.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  function backupSection() {
    const file = h("input", { type: "file", id: "restore-file", accept: ".json,application/json" });
    const button = h("button", { type: "button", id: "restore-submit", class: "secondary", text: "Restore" });
    button.addEventListener("click", () => {
      if (!file.files.length) { toast("Choose an exported JSON file first", "error"); return; }
      restore(file.files[0], button);
    });
    return h("section", { class: "card", id: "section-backup" }, h("h2", { text: "Backup and restore" }),
      h("p", { class: "help", text: "The backup lists every model with its preset and HuggingFace source (no tokens, no settings)." }),
      h("div", { class: "row" }, h("a", { class: "button", id: "backup-download", href: "/api/models/export", download: "",
                                          text: "Download models JSON" })),
      h("label", { for: "restore-file" }, "Restore from an exported JSON", file,
        h("span", { class: "help", text: "Present models get the preset merged (existing values win); missing ones with a source are downloaded." })),
      h("div", { class: "row" }, button),
      h("div", { id: "restore-report", class: "restore-report", "aria-live": "polite" }));
  }

  function applicationTab() {
    return [accessSection(), evictionSection(), recordingSection(), backupSection()];
  }

  // ---- Downloads and token ----------------------------------------------------------------

  function downloadsTab() {
    return [section("downloads", "Downloads", [
      ...checkbox("auto-retry", "Retry failed downloads automatically",
        "Network errors, dropped connections, 5xx and 429 are retried with backoff, resuming from the bytes on disk.",
        "auto_retry_failed_downloads"),
      h("div", { class: "form-grid" },
        number("retry-count", "Retries per download", "1–100; used while auto-retry is on.", "retry_count_per_failed_download",
          { min: 1, max: 100, step: 1 }),
        number("speed-limit", "Global speed limit (Mbit/s)", "Shared by all downloads together; 0 = unlimited.",
          "download_speed_limit_mbps", { min: 0, step: "any" })),
    ], () => ({ auto_retry_failed_downloads: value("auto-retry"), retry_count_per_failed_download: value("retry-count"),
                download_speed_limit_mbps: value("speed-limit") }))];
  }

  function tokenTab() {
    const input = h("input", { type: "password", id: "hf-token", name: "hf_token", autocomplete: "off", spellcheck: "false",
                               placeholder: "hf_…" });
    const state = h("p", { id: "hf-token-state", class: "help" });
    fillers.push((s) => {
      input.value = s.hf_token || "";
      state.textContent = s.hf_token ? "A token is stored: " + s.hf_token + " (only its ends are shown)." : "No token is stored.";
    });
    const clear = h("button", { type: "button", class: "danger", id: "hf-token-clear", text: "Remove token", onclick: async () => {
      if (!(await confirm("Remove the stored HuggingFace token? Gated downloads then need a token of their own.", { ok: "Remove" }))) return;
      api("POST", "/api/settings", { hf_token: "" }).then((s) => { fill(s); toast("Token removed", "ok", 2000); },
        (e) => toast(e.message, "error"));
    } });
    return [section("hf-token", "HuggingFace token", [state,
      h("label", { for: "hf-token" }, "Token", input,
        h("span", { class: "help", text: "Used by downloads that bring no token of their own. Never shown in full again; saving the masked value keeps it." })),
      h("div", { class: "row" }, clear)],
    () => ({ hf_token: input.value.trim() }))];
  }

  // ---- API keys ---------------------------------------------------------------------------

  function keyRow(key) {
    const revoke = h("button", { type: "button", class: "danger small key-revoke", text: "Revoke", onclick: async () => {
      if (!(await confirm(`Revoke the key "${key.name}"? Clients using it stop working at once.`, { ok: "Revoke" }))) return;
      api("DELETE", "/api/api-keys/" + key.id).then(() => { toast("Key revoked", "ok", 2000); return loadKeys(); },
        (e) => toast(e.message, "error"));
    } });
    return h("tr", { dataset: { id: key.id } }, h("td", { text: key.name }), h("td", { class: "mono", text: key.prefix + "…" }),
      h("td", { text: key.scope }), h("td", { text: fmtTime(key.created_at) }), h("td", {}, revoke));
  }

  async function loadKeys() {
    const keys = await api("GET", "/api/api-keys");
    document.getElementById("key-list").replaceChildren(...keys.map(keyRow));
    document.getElementById("key-empty").hidden = keys.length > 0;
  }

  function keysTab() {
    const name = h("input", { id: "key-name", placeholder: "e.g. open-webui", maxlength: 255, required: true });
    const scope = h("select", { id: "key-scope" },
      h("option", { value: "inference", text: "inference — model endpoints and instance ports" }),
      h("option", { value: "admin", text: "admin — also management endpoints" }));
    const shown = h("p", { id: "new-key", class: "notice mono", hidden: true });
    const copy = h("button", { type: "button", class: "secondary", id: "copy-key", hidden: true, text: "Copy key" });
    let secret = "";
    copy.addEventListener("click", () => LM.copyText(secret));
    const form = h("form", { id: "key-form", class: "row" },
      h("label", { for: "key-name" }, "Name", name), h("label", { for: "key-scope" }, "Scope", scope),
      h("button", { type: "submit", text: "Create key" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const key = await api("POST", "/api/api-keys", { name: name.value, scope: scope.value });
        secret = key.key;
        shown.textContent = "New key (shown once): " + key.key;
        shown.hidden = copy.hidden = false;
        name.value = "";
        await loadKeys();
      } catch (e) {
        toast(e.message, "error");
      }
    });
    loadKeys().catch((e) => toast(e.message, "error"));
    return [h("section", { class: "card" }, h("h2", { text: "API keys" }),
      h("p", { class: "help", text: "Clients send a key as “Authorization: Bearer llm-…”. The full key is shown once, right after creation." }),
      form, h("div", { class: "row new-key-row" }, shown, copy),
      h("div", { class: "table-scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ...["Name", "Key", "Scope", "Created", ""].map((t) => h("th", { text: t })))),
        h("tbody", { id: "key-list" }))),
      h("p", { id: "key-empty", class: "empty", text: "No API keys yet.", hidden: true }))];
  }

  // ---- Docker images ----------------------------------------------------------------------

  const IMAGE_POLL_MS = 1000;
  let lastPull = null; // the newest pull this page followed: stays shown when the list reloads

  function imageRow(image, reload) {
    const facts = [image.present === false ? "not pulled" : fmtBytes(image.size), image.created ? fmtTime(image.created) : null]
      .filter(Boolean).join(" · ");
    const remove = h("button", { type: "button", class: "danger small image-delete", text: "Delete", disabled: image.active,
      title: image.active ? "The active LLAMA_IMAGE cannot be deleted" : null, onclick: async () => {
        if (!(await confirm(`Delete the image ${image.name} from Docker and the tracked list?`, { ok: "Delete" }))) return;
        api("DELETE", "/api/images", { image: image.name }).then(() => { toast("Image deleted", "ok", 2000); reload(); },
          (e) => toast(e.message, "error"));
      } });
    return h("tr", { class: "image", dataset: { name: image.name } },
      h("td", { class: "mono" }, image.name, image.active ? h("span", { class: "badge healthy", text: "active" }) : null),
      h("td", { text: facts }), h("td", { text: (image.used_by || []).join(", ") || "—" }), h("td", {}, remove));
  }

  function pullProgress(job) {
    const pct = job.progress && job.progress.percent;
    return h("div", { class: "pull-job", dataset: { id: job.id, status: job.status } },
      h("div", { class: "row" }, h("span", { class: "mono", text: job.image }),
        h("span", { class: "badge " + (job.status === "done" ? "completed" : job.status === "error" ? "failed" : "downloading"),
                    text: job.status })),
      bar(job.status === "done" ? 100 : pct || 0, "Pull progress"),
      h("div", { class: "help", text: job.message || "" }));
  }

  async function followPull(jobId, box, reload) {
    for (;;) {
      let job;
      try { job = await api("GET", "/api/images/pulls/" + encodeURIComponent(jobId)); } catch (e) { toast(e.message, "error"); return; }
      lastPull = job;
      box.replaceChildren(pullProgress(job));
      if (job.status !== "pulling") {
        toast(job.status === "done" ? "Pulled " + job.image : "Pull failed: " + (job.error || job.message), job.status === "done" ? "ok" : "error");
        reload();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, IMAGE_POLL_MS));
    }
  }

  function imagesBody(data, reload) {
    const name = h("input", { id: "image-name", placeholder: "ghcr.io/ggml-org/llama.cpp:server-cuda", spellcheck: "false",
                              autocomplete: "off" });
    const progress = h("div", { id: "image-pull-progress" }, lastPull ? pullProgress(lastPull) : null);
    const pull = h("form", { id: "image-pull-form", class: "row" }, h("label", { for: "image-name", class: "grow" }, "Image", name),
      h("button", { type: "submit", id: "image-pull", text: "Pull" }));
    pull.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const started = await api("POST", "/api/images/pull", { image: name.value.trim() });
        followPull(started.job_id, progress, reload);
      } catch (e) {
        toast(e.message, "error");
      }
    });
    const auto = section("images-auto", "Auto-update", [
      ...checkbox("image-auto-update", "Pull the active image on a schedule", null, "auto_update_enabled"),
      number("image-interval", "Interval (hours)", "1 to 8760", "auto_update_interval_hours", { min: 1, max: 8760, step: 1 }),
      h("p", { class: "help", text: "Last check: " + fmtTime(data.auto_update_last_check_at) +
        (data.auto_update_last_result ? " · " + JSON.stringify(data.auto_update_last_result) : "") }),
    ], () => ({ auto_update_enabled: value("image-auto-update"), auto_update_interval_hours: value("image-interval") }),
    { send: (p) => api("POST", "/api/images/settings", p) });
    for (const f of fillers.splice(-2)) f(data);  // these two fill from the images answer, not /api/settings
    return [h("section", { class: "card" }, h("h2", { text: "Docker images" }),
      h("p", { class: "help" }, "New instances start from the active image ", h("code", { text: data.active_image || "—" }), "."),
      pull, progress,
      h("div", { class: "table-scroll" }, h("table", { id: "image-table" },
        h("thead", {}, h("tr", {}, ...["Image", "Size · created", "Used by", ""].map((t) => h("th", { text: t })))),
        h("tbody", { id: "image-list" }, ...(data.images || []).map((i) => imageRow(i, reload)))))), auto];
  }

  function imagesTab() {
    const box = h("div", { id: "images-tab" }, h("p", { class: "muted", text: "Loading…" }));
    const load = async () => {
      try {
        box.replaceChildren(...imagesBody(await api("GET", "/api/images"), load));
      } catch (e) {
        // 404: this server has no image routes; 409: they need the Docker runtime. Both say why.
        if (e.status === 404) box.replaceChildren(emptyState("images-empty", "Image management is not available on this server."));
        else if (e.status === 409 || e.status === 503) box.replaceChildren(emptyState("images-empty", e.message));
        else toast(e.message, "error");
      }
    };
    load();
    return [box];
  }

  // ---- Cleanup ----------------------------------------------------------------------------

  function lastRun(key) {
    const el = h("span", { class: "help last-run", id: "last-" + key.replace(/[._]/g, "-") });
    fillers.push((s) => { const v = pick(s, key); el.textContent = "Last run: " + (v ? fmtTime(v) : "never"); });
    return el;
  }

  function cleanupTab() {
    const group = (title, flag, flagLabel, num, numLabel, key, attrs, stamp, help) => h("fieldset", { class: "cleanup-group" },
      h("legend", { text: title }), ...checkbox(flag, flagLabel, help, "cleanup." + key[0]),
      number(num, numLabel, null, "cleanup." + key[1], attrs), lastRun("cleanup." + stamp));
    return [section("cleanup", "Cleanup", [
      group("Downloads", "cleanup-downloads", "Remove finished download entries", "cleanup-downloads-hours", "Older than (hours)",
        ["downloads_enabled", "downloads_max_age_hours"], { min: 1, step: 1 }, "downloads_last_run_at",
        "Completed, failed or cancelled entries and their logs; downloaded files stay."),
      group("Stopped instances", "cleanup-instances", "Remove stopped instance records", "cleanup-instances-hours", "Older than (hours)",
        ["instances_enabled", "instances_max_age_hours"], { min: 1, step: 1 }, "instances_last_run_at",
        "Stopped or failed records; running instances are never touched."),
      group("Stale records", "cleanup-stale", "Mark records stopped when their server is gone", "cleanup-stale-interval",
        "Check every (minutes)", ["stale_records_enabled", "stale_records_interval_min"], { min: 1, max: 10080, step: 1 },
        "stale_records_last_run_at", "Compares starting/healthy/sleeping records with the runtime."),
    ], () => ({ cleanup: {
      downloads_enabled: value("cleanup-downloads"), downloads_max_age_hours: value("cleanup-downloads-hours"),
      instances_enabled: value("cleanup-instances"), instances_max_age_hours: value("cleanup-instances-hours"),
      stale_records_enabled: value("cleanup-stale"), stale_records_interval_min: value("cleanup-stale-interval"),
    } }), { intro: "These remove or update records only; model files are never deleted." })];
  }

  // ---- tabs -------------------------------------------------------------------------------

  const TABS = [
    ["application", "Application", applicationTab],
    ["downloads", "Downloads", downloadsTab],
    ["hf-token", "HuggingFace token", tokenTab],
    ["api-keys", "API keys", keysTab],
    ["images", "Docker images", imagesTab],
    ["cleanup", "Cleanup", cleanupTab],
  ];

  let loaded = false;

  /** Build a tab's content on first view (the images tab asks the engine; nothing else needs to). */
  function ensurePanel(panel) {
    if (panel.dataset.built) return;
    panel.dataset.built = "1";
    const [, , make] = TABS.find(([name]) => name === panel.dataset.tab);
    const start = fillers.length;
    panel.append(...make());
    if (loaded) for (const f of fillers.slice(start)) f(current);
  }

  function selectTab(id, focus) {
    if (!TABS.some(([name]) => name === id)) id = TABS[0][0];
    for (const button of document.querySelectorAll("#settings-tabs [role=tab]")) {
      const on = button.dataset.tab === id;
      button.setAttribute("aria-selected", String(on));
      button.tabIndex = on ? 0 : -1;
      if (on && focus) button.focus();
    }
    for (const panel of document.querySelectorAll(".settings-panel")) {
      panel.hidden = panel.dataset.tab !== id;
      if (!panel.hidden) ensurePanel(panel);
    }
    if (location.hash.slice(1) !== id) history.replaceState(null, "", "#" + id);
  }

  function onTabKey(event) {
    const names = TABS.map(([name]) => name);
    const at = names.indexOf(event.target.dataset.tab);
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: names.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    selectTab(names[(moves[event.key] + names.length) % names.length], true);
  }

  function build() {
    const tabs = h("div", { class: "tabs", role: "tablist", id: "settings-tabs", "aria-label": "Settings sections" },
      ...TABS.map(([name, label]) => h("button", { type: "button", role: "tab", id: "tab-" + name, dataset: { tab: name },
        "aria-controls": "panel-" + name, text: label, onclick: () => selectTab(name), onkeydown: onTabKey })));
    const panels = TABS.map(([name]) => h("div", { class: "settings-panel", role: "tabpanel", id: "panel-" + name,
      dataset: { tab: name }, "aria-labelledby": "tab-" + name, hidden: true }));
    root.replaceChildren(h("h1", { text: "Settings" }), tabs, ...panels);
    selectTab(location.hash.slice(1));
    window.addEventListener("hashchange", () => selectTab(location.hash.slice(1)));
  }

  build();
  api("GET", "/api/settings").then((settings) => {
    loaded = true;
    fill(settings);
    root.dataset.loaded = "1";
  }, (e) => toast(e.message, "error"));
})();
