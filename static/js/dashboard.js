"use strict";
// Dashboard: the model library sidebar and the self-updating instance cards.
// Cards are built once per instance and patched in place; only changed text is touched.
window.LMDash = window.LMDash || {};
(() => {
  const { api, h, toast, confirm, bar, fmtBytes, fmtDuration, fmtNumber, copyText } = LM;
  const POLL_MS = 3000;
  const LIBRARY_MS = 30000;
  const ACTIVE = new Set(["starting", "healthy", "sleeping"]);

  // ---- model library ------------------------------------------------------------------

  let models = [];
  let libraryText = "";
  const lib = {};

  function libraryShell() {
    lib.search = h("input", { type: "search", id: "lib-search", placeholder: "Search models", "aria-label": "Search models" });
    lib.filter = h("select", { id: "lib-filter", "aria-label": "Filter models" },
      h("option", { value: "", text: "All models" }), h("option", { value: "chat", text: "With chat template" }),
      h("option", { value: "nochat", text: "Without chat template" }), h("option", { value: "split", text: "Split models" }),
      h("option", { value: "unreadable", text: "Unreadable" }));
    lib.quant = h("select", { id: "lib-quant", "aria-label": "Filter by quantization" }, h("option", { value: "", text: "Any quant" }));
    lib.sort = h("select", { id: "lib-sort", "aria-label": "Sort models" },
      h("option", { value: "name", text: "Name" }), h("option", { value: "size-desc", text: "Largest first" }),
      h("option", { value: "size", text: "Smallest first" }));
    lib.count = h("span", { class: "muted", id: "lib-count" });
    lib.list = h("ul", { class: "model-list", id: "model-list" });
    for (const el of [lib.search, lib.filter, lib.quant, lib.sort]) el.addEventListener("input", applyLibraryView);
    document.getElementById("library").replaceChildren(
      h("div", { class: "row" }, h("h2", { text: "Models" }), h("span", { class: "spacer" }), lib.count),
      lib.search, h("div", { class: "row lib-controls" }, lib.filter, lib.quant, lib.sort), lib.list);
  }

  function modelMeta(m) {
    if (m.type !== "gguf") return [m.repo_id || "HuggingFace folder", fmtBytes(m.size)];
    return [fmtBytes(m.size), m.quant, m.architecture, m.parameter_size,
      m.layers ? m.layers + " layers" : null, m.context_length ? "ctx " + fmtNumber(m.context_length, 0) : null,
      m.shards > 1 ? m.shards + " shards" : null].filter(Boolean);
  }

  function modelEntry(m) {
    const launchable = m.type === "gguf" && !m.unreadable;
    const why = m.unreadable ? "Unreadable: " + (m.reason || "unknown reason") : m.type !== "gguf" ? "Not a GGUF file: cannot be launched" : null;
    const button = h("button", { type: "button", class: "model-entry", disabled: !launchable, title: m.path,
                                 onclick: () => LMDash.openLaunch(m.path) },
      h("span", { class: "model-name", text: m.name }),
      h("span", { class: "model-meta", text: modelMeta(m).join(" · ") }),
      m.has_chat_template ? null : m.type === "gguf" && !m.unreadable ? h("span", { class: "tag", text: "no chat template" }) : null,
      m.incomplete ? h("span", { class: "tag warn", text: "missing shards" }) : null,
      why ? h("span", { class: "model-why" + (m.unreadable ? " error" : " muted"), text: why }) : null);
    const li = h("li", { dataset: { path: m.path } }, button);
    li._model = m;
    li._search = (m.name + " " + m.path + " " + (m.repo_id || "") + " " + (m.architecture || "")).toLowerCase();
    return li;
  }

  function matches(m, search, filter, quant) {
    if (filter === "chat" && !m.has_chat_template) return false;
    if (filter === "nochat" && (m.has_chat_template || m.unreadable)) return false;
    if (filter === "split" && !(m.shards > 1)) return false;
    if (filter === "unreadable" && !m.unreadable) return false;
    return !quant || m.quant === quant;
  }

  function applyLibraryView() {
    const search = lib.search.value.trim().toLowerCase();
    const [filter, quant, sort] = [lib.filter.value, lib.quant.value, lib.sort.value];
    const items = [...lib.list.children];
    let shown = 0;
    for (const li of items) {
      li.hidden = !(matches(li._model, search, filter, quant) && (!search || li._search.includes(search)));
      if (!li.hidden) shown += 1;
    }
    const order = { name: (a, b) => a.name.localeCompare(b.name), size: (a, b) => a.size - b.size, "size-desc": (a, b) => b.size - a.size }[sort];
    const sorted = items.slice().sort((a, b) => order(a._model, b._model));
    if (sorted.some((li, i) => li !== items[i])) lib.list.append(...sorted);
    lib.count.textContent = shown === models.length ? `${models.length}` : `${shown} of ${models.length}`;
    if (!models.length) lib.list.replaceChildren(h("li", { class: "empty", text: "No models in MODELS_DIR yet. Download one below." }));
  }

  function fillQuants() {
    const quants = [...new Set(models.map((m) => m.quant).filter(Boolean))].sort();
    const current = lib.quant.value;
    lib.quant.replaceChildren(h("option", { value: "", text: "Any quant" }), ...quants.map((q) => h("option", { value: q, text: q })));
    lib.quant.value = quants.includes(current) ? current : "";
  }

  async function refreshLibrary() {
    const response = await fetch("/api/models");
    if (!response.ok) throw new Error("model list: HTTP " + response.status);
    const text = await response.text();
    if (text === libraryText) return; // unchanged: keep the DOM
    libraryText = text;
    models = JSON.parse(text);
    lib.list.replaceChildren(...models.map(modelEntry));
    fillQuants();
    applyLibraryView();
    if (!performance.getEntriesByName("library-rendered").length) performance.mark("library-rendered");
  }

  // ---- instance cards -----------------------------------------------------------------

  const cards = new Map(); // id → {record, el, parts}
  let panel;

  function panelShell() {
    const launch = h("button", { type: "button", id: "launch-open", text: "Launch…",
      onclick: () => { const first = models.find((m) => m.type === "gguf" && !m.unreadable); LMDash.openLaunch(first ? first.path : ""); } });
    const importButton = h("button", { type: "button", class: "secondary", id: "import-open", text: "Import…", onclick: () => LMDash.openImport() });
    panel = { grid: h("div", { class: "grid instance-grid", id: "instance-grid" }),
              empty: h("p", { class: "empty", id: "instances-empty", hidden: true, text: "No instances yet: pick a model in the library to launch one." }) };
    document.getElementById("instances-panel").replaceChildren(
      h("div", { class: "row panel-head" }, h("h2", { text: "Instances" }), h("span", { class: "spacer" }), importButton, launch),
      panel.empty, panel.grid);
  }

  function publicUrl(port) { return `${location.protocol}//${location.hostname}:${port}`; }

  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

  function fact(label, key) {
    const value = h("dd", { dataset: { fact: key } });
    return [h("dt", { text: label }), value];
  }

  function buildCard(r) {
    const p = {};
    p.name = h("h3", { class: "inst-name" });
    p.badge = h("span", { class: "badge", role: "status" });
    p.model = h("div", { class: "inst-model mono" });
    p.url = h("a", { class: "inst-url mono", target: "_blank", rel: "noopener" });
    p.copy = h("button", { type: "button", class: "secondary small", "aria-label": "Copy URL", title: "Copy URL", text: "Copy", onclick: () => copyText(p.url.href.replace(/\/$/, "")) });
    p.error = h("details", { class: "inst-error", hidden: true }, h("summary", { class: "error" }), h("pre", { class: "mono" }));
    const facts = [fact("Uptime", "uptime"), fact("Requests", "requests"), fact("CPU", "cpu"), fact("Cores", "cores"),
      fact("RAM", "ram"), fact("GPUs", "gpus")];
    p.facts = h("dl", { class: "inst-facts" }, facts.flat());
    p.actions = h("div", { class: "row inst-actions" });
    const el = h("article", { class: "card inst-card", id: "inst-" + r.id, dataset: { id: r.id }, "aria-label": "Instance" },
      h("div", { class: "row inst-head" }, p.name, h("span", { class: "spacer" }), p.badge), p.model,
      h("div", { class: "row inst-url-row" }, p.url, p.copy), p.error, p.facts, p.actions);
    for (const dd of p.facts.querySelectorAll("dd")) p[dd.dataset.fact] = dd;
    return { el, parts: p, record: null, actionsFor: null, stats: null };
  }

  function actionButtons(card) {
    const r = card.record;
    const run = (label, action, cls) => h("button", { type: "button", class: "small " + (cls || "secondary"), dataset: { action },
                                                    text: label, onclick: () => act(action, card.record) });
    const active = ACTIVE.has(r.status);
    return [run("Logs", "logs"), run("Stats", "stats"), run("Edit", "edit"), run("Export", "export"),
      active ? run("Restart", "restart") : run("Start", "restart", "small"),
      active ? run("Stop", "stop", "danger") : run("Remove", "remove", "danger")];
  }

  function updateCard(card, r) {
    const p = card.parts;
    card.record = r;
    setText(p.name, r.name);
    setText(p.badge, r.status);
    p.badge.className = "badge " + r.status;
    card.el.dataset.status = r.status;
    setText(p.model, r.model_name);
    p.model.title = r.model_path;
    const url = publicUrl(r.port);
    if (p.url.getAttribute("href") !== url) { p.url.href = url; p.url.textContent = url; }
    updateError(p.error, r.status === "failed" ? r.error || "failed" : null);
    setText(p.requests, `${r.active_requests ?? 0} active · ${r.queued_requests ?? 0} queued`);
    if (card.actionsFor !== r.status) { p.actions.replaceChildren(...actionButtons(card)); card.actionsFor = r.status; }
    if (r.status !== "healthy") card.stats = null;
    updateUsage(card);
  }

  function updateError(box, error) {
    box.hidden = !error;
    if (!error) return;
    const [first, ...rest] = String(error).split("\n");
    setText(box.querySelector("summary"), first);
    setText(box.querySelector("pre"), rest.join("\n"));
  }

  function updateUsage(card) {
    const p = card.parts;
    const r = card.record;
    const s = card.stats;
    const up = r.status === "healthy" && r.healthy_at ? Date.now() / 1000 - r.healthy_at : null;
    setText(p.uptime, up === null ? (r.status === "starting" ? "loading…" : "—") : fmtDuration(up));
    meterFact(p.cpu, s && s.cpu_percent !== null ? s.cpu_percent / Math.max(1, s.cpu_quota || 1) : null,
      s && s.cpu_percent !== null ? fmtNumber(s.cpu_percent) + " %" : "—");
    setText(p.cores, s && s.cpu_quota ? fmtNumber(s.cpu_quota, s.cpu_quota % 1 ? 1 : 0) : (r.threads ? String(r.threads) : "—"));
    const ramPct = s && s.mem_used && s.mem_limit ? (100 * s.mem_used) / s.mem_limit : null;
    meterFact(p.ram, ramPct, s && s.mem_used ? fmtBytes(s.mem_used) + (s.mem_limit ? " / " + fmtBytes(s.mem_limit) : "") : "—");
    const gpus = s?.gpus ?? null;
    setText(p.gpus, gpus && gpus.length ? gpus.join(", ") : r.n_gpu_layers === 0 ? "none (CPU)" : "—");
  }

  /** A value with a thin bar under it; the bar only when there is a percentage. */
  function meterFact(dd, pct, text) {
    if (dd._text === text && dd._pct === pct) return;
    dd._text = text;
    dd._pct = pct;
    dd.replaceChildren(...[h("span", { text }), pct === null ? null : bar(pct)].filter(Boolean));
  }

  function renderInstances(list) {
    const seen = new Set();
    for (const r of list) {
      seen.add(r.id);
      let card = cards.get(r.id);
      if (!card) { card = buildCard(r); cards.set(r.id, card); panel.grid.append(card.el); }
      if (!card.record || JSON.stringify(card.record) !== JSON.stringify(r)) updateCard(card, r);
      else updateUsage(card);
    }
    for (const [id, card] of cards) if (!seen.has(id)) { card.el.remove(); cards.delete(id); }
    panel.empty.hidden = cards.size > 0;
  }

  async function refreshStats() {
    const healthy = [...cards.values()].filter((c) => c.record.status === "healthy");
    await Promise.all(healthy.map(async (card) => {
      try {
        card.stats = await api("GET", `/api/instances/${encodeURIComponent(card.record.id)}/stats`);
      } catch (error) { card.stats = null; }
      updateUsage(card);
    }));
  }

  let refreshing = null;
  async function refreshInstances() {
    if (refreshing) return refreshing; // one request at a time, however many callers
    refreshing = (async () => {
      renderInstances(await api("GET", "/api/instances"));
      if (!performance.getEntriesByName("cards-rendered").length) performance.mark("cards-rendered");
      await refreshStats();
    })().finally(() => { refreshing = null; });
    return refreshing;
  }

  /** Refresh after a change: a poll already in flight may predate it, so wait for it, then ask again. */
  async function refreshAfterChange() {
    if (refreshing) await refreshing.catch(() => {});
    return refreshInstances();
  }

  // ---- actions ------------------------------------------------------------------------

  const CONFIRM = {
    stop: (r) => [`Stop ${r.name}? Requests in flight are cut off; the record stays.`, "Stop"],
    restart: (r) => [ACTIVE.has(r.status) ? `Restart ${r.name}? Requests in flight are cut off.` : null, "Restart"],
    remove: (r) => [`Remove ${r.name}? Its record and log are deleted.`, "Remove"],
  };

  async function act(action, r) {
    if (action === "logs") return LMDash.openLogs(r);
    if (action === "stats") return LMDash.openStats(r);
    if (action === "edit") return LMDash.openEdit(r).catch((e) => toast(e.message, "error"));
    if (action === "export") return exportConfig(r);
    const [question, ok] = CONFIRM[action](r);
    if (question && !(await confirm(question, { ok }))) return;
    const id = encodeURIComponent(r.id);
    const call = { stop: ["DELETE", `/api/instances/${id}`], restart: ["POST", `/api/instances/${id}/restart`],
                   remove: ["DELETE", `/api/instances/${id}/remove`] }[action];
    try {
      await api(...call);
      toast(`${ok}: ${r.name}`, "ok", 2000);
    } catch (error) { toast(error.message, "error"); }
    refreshAfterChange().catch((error) => toast(error.message, "error"));
  }

  async function exportConfig(r) {
    try {
      const body = await api("GET", `/api/instances/${encodeURIComponent(r.id)}/export`);
      const url = URL.createObjectURL(new Blob([JSON.stringify(body, null, 2)], { type: "application/json" }));
      const link = h("a", { href: url, download: (r.name || r.id).replace(/[^\w.-]+/g, "_") + ".json" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (error) { toast(error.message, "error"); }
  }

  Object.assign(LMDash, { models: () => models, refreshInstances: refreshAfterChange, refreshLibrary });

  libraryShell();
  panelShell();
  LM.poll(() => refreshLibrary(), LIBRARY_MS);
  // A finished download lands in the library at once (the server rescans on completion).
  document.addEventListener("llamaman:downloads-completed",
    () => refreshLibrary().catch((error) => toast(error.message, "error")));
  LM.poll(() => refreshInstances(), POLL_MS);
})();
