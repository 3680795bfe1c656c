"use strict";
// Launch dialog: every launch setting with default, range and help; presets; the model-cap
// confirmation; parse a llama-server command line; import an exported configuration.
window.LMDash = window.LMDash || {};
(() => {
  const { api, h, toast, modal, confirm, ApiError } = LM;

  // [name, label, kind, default, help, extra]; kind: int | float | text | bool.
  // `optional` numbers may stay blank (server default); ranges mirror the API's validation.
  const GROUPS = [
    ["Instance", [
      ["name", "Name", "text", "", "Label on the card; blank = the model's file name.", { maxlength: 64 }],
      ["port", "Public port", "int", null, "Port clients connect to; blank = the next free one.", { min: 1, max: 65535, optional: true }],
    ]],
    ["llama-server (needs a relaunch to change)", [
      ["n_gpu_layers", "GPU layers", "int", -1, "Layers offloaded to the GPU; -1 = all, 0 = CPU only.", { min: -1, max: 100000, relaunch: true }],
      ["ctx_size", "Context size", "int", 4096, "Tokens of context (0 = the model's own) up to 16M.", { min: 0, max: 16777216, relaunch: true }],
      ["parallel", "Parallel slots", "int", null, "Requests llama-server decodes at once; blank = its default.", { min: 1, max: 256, optional: true, relaunch: true }],
      ["threads", "CPU threads", "int", null, "CPU threads / core quota; blank = automatic.", { min: 1, max: 1024, optional: true, relaunch: true }],
      ["memory_limit", "Memory limit", "text", "", "Cap on memory, e.g. 32g or 8192m (at least 6m); blank = none.", { placeholder: "none", relaunch: true }],
      ["gpu_devices", "GPU devices", "text", "", "Comma-separated GPU indices, e.g. 0,1; blank = all.", { placeholder: "all", relaunch: true }],
      ["embedding", "Embedding model", "bool", false, "Serve embeddings (--embeddings); never counts toward the model cap.", { relaunch: true }],
      ["spec_decoding", "Speculative decoding", "bool", false, "Draft tokens ahead to speed up generation.", { relaunch: true }],
      ["draft_n_max", "Draft tokens", "int", 2, "Most tokens drafted per step.", { min: 1, max: 64, optional: true, relaunch: true }],
      ["extra_args", "Extra arguments", "text", "", "More llama-server flags, e.g. --flash-attn on (not --host/--port/--api-key/--model).", { relaunch: true, wide: true }],
    ]],
    ["Proxy and queue (live)", [
      ["idle_timeout_min", "Idle timeout (min)", "float", 0, "Sleep after this many idle minutes; the next request wakes it. 0 = never.", { min: 0, max: 525600, step: "any" }],
      ["max_concurrent", "Max concurrent", "int", 0, "Requests in flight at once (FIFO gate); 0 = no gate.", { min: 0, max: 4096 }],
      ["max_queue_depth", "Max queue depth", "int", 200, "Requests waiting beyond this get 429.", { min: 0, max: 100000 }],
      ["share_queue", "Share queue", "bool", false, "Pool with other instances of this model: one FIFO queue."],
    ]],
    ["Sampling override (live)", [
      ["proxy_sampling_override_enabled", "Override sampling", "bool", false, "Replace the clients' sampling parameters with these."],
      ["proxy_sampling_temperature", "Temperature", "float", 0.8, "Higher is more random.", { min: 0, max: 2, step: "any" }],
      ["proxy_sampling_top_k", "Top-k", "int", 40, "Sample from the k likeliest tokens (0 = off).", { min: 0, max: 1000000 }],
      ["proxy_sampling_top_p", "Top-p", "float", 0.95, "Nucleus sampling: keep the likeliest tokens up to this probability.", { min: 0.01, max: 1, step: "any" }],
      ["proxy_sampling_presence_penalty", "Presence penalty", "float", 0, "Positive values favour new topics.", { min: -2, max: 2, step: "any" }],
      ["proxy_sampling_repeat_penalty", "Repeat penalty", "float", 0, "Penalise repeated tokens; 0 = not injected.", { min: 0, max: 2, step: "any" }],
    ]],
    ["Crash recovery (live)", [
      ["auto_restart", "Auto restart", "bool", true, "Relaunch after a crash."],
      ["max_restarts", "Max restarts", "int", 3, "Attempts before the instance is marked failed.", { min: 0, max: 100 }],
      ["restart_delay", "Restart delay (s)", "float", 5, "First wait before a relaunch; doubles each time.", { min: 0, max: 3600, step: "any" }],
    ]],
  ];
  const FIELDS = GROUPS.flatMap(([, fields]) => fields);
  const PRESET_SKIP = new Set(["name", "port"]); // per instance, not per model

  /** One labelled input for a field spec; its id is `<prefix>-<name>`. */
  function fieldInput(spec, prefix) {
    const [name, label, kind, dflt, help, extra = {}] = spec;
    const id = prefix + "-" + name;
    const helpId = id + "-help";
    const attrs = { id, name, "aria-describedby": helpId, dataset: { kind } };
    let input;
    if (kind === "bool") {
      input = h("input", { ...attrs, type: "checkbox" });
      input.checked = Boolean(dflt);
    } else {
      input = h("input", { ...attrs, type: kind === "text" ? "text" : "number", min: extra.min, max: extra.max,
                          step: extra.step, maxlength: extra.maxlength, placeholder: extra.placeholder ?? (dflt === null ? "auto" : null) });
      input.value = dflt === null || dflt === undefined ? "" : String(dflt);
    }
    const range = extra.min !== undefined ? ` Range ${extra.min}–${extra.max}.` : "";
    const dText = dflt === null || dflt === "" ? "blank" : String(dflt);
    const helpText = help + range + " Default: " + dText + ".";
    const tag = extra.relaunch ? h("span", { class: "relaunch-tag", title: "Changing this needs a relaunch", text: "relaunch" }) : null;
    const labelBox = kind === "bool"
      ? h("label", { class: "toggle", for: id }, input, label, tag)
      : h("label", { for: id }, h("span", {}, label, tag), input);
    return h("div", { class: "field" + (extra.wide ? " wide" : ""), dataset: { field: name } }, labelBox,
      h("span", { class: "help", id: helpId, text: helpText }));
  }

  function fieldSets(prefix, filter = () => true) {
    return GROUPS.map(([title, fields]) => {
      const shown = fields.filter(filter);
      if (!shown.length) return null;
      return h("fieldset", { class: "form-group" }, h("legend", { text: title }),
        h("div", { class: "form-grid" }, shown.map((spec) => fieldInput(spec, prefix))));
    });
  }

  /** Read the form's values into a launch body (blank optional numbers → null). */
  function readForm(root, prefix, names) {
    const body = {};
    for (const [name, , kind, , , extra = {}] of FIELDS) {
      if (names && !names.includes(name)) continue;
      const input = root.querySelector("#" + prefix + "-" + name);
      if (!input) continue;
      if (kind === "bool") body[name] = input.checked;
      else if (kind === "text") {
        const value = input.value.trim();
        if (name === "memory_limit") body[name] = value || null;
        else if (name !== "name" || value) body[name] = value;
      } else if (input.value.trim() === "") {
        if (extra.optional && name !== "port") body[name] = null;
      } else body[name] = Number(input.value);
    }
    return body;
  }

  /** Put values (a preset, an export, a parsed command) into the form; returns the names set. */
  function fillForm(root, prefix, values) {
    const set = [];
    for (const [name, , kind] of FIELDS) {
      if (!(name in values)) continue;
      const input = root.querySelector("#" + prefix + "-" + name);
      if (!input) continue;
      const value = values[name];
      if (kind === "bool") input.checked = Boolean(value);
      else input.value = value === null || value === undefined ? "" : String(value);
      set.push(name);
    }
    return set;
  }

  function markInvalid(root, prefix, error) {
    root.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    const field = error?.data?.field;
    const input = field && root.querySelector("#" + prefix + "-" + field);
    if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
  }

  /** URL of a model's preset; path segments escaped, the leading slash kept. */
  function presetUrl(path) {
    return "/api/presets/" + path.split("/").map(encodeURIComponent).join("/");
  }

  /** POST a launch; over the model cap ask first, and re-post with confirm_evict on yes. */
  /** Launch (or import); over the model cap ask first and re-send with confirm_evict. */
  async function postLaunch(body, path = "/api/instances") {
    try {
      return await api("POST", path, body);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 409 || !error.data?.confirm_required) throw error;
      const yes = await confirm(error.message, { title: "Model limit reached", ok: "Evict and launch" });
      if (!yes) return null;
      return api("POST", path, { ...body, confirm_evict: true });
    }
  }

  function modelOptions(models, selected) {
    const launchable = models.filter((m) => m.type === "gguf" && !m.unreadable);
    if (selected && !launchable.some((m) => m.path === selected)) launchable.unshift({ path: selected, name: selected });
    return launchable.map((m) => h("option", { value: m.path, selected: m.path === selected, text: m.name + " — " + m.path }));
  }

  /** The launch dialog for a model path (chosen in the library, or the first model). */
  function openLaunch(modelPath) {
    const models = LMDash.models ? LMDash.models() : [];
    const picker = h("select", { id: "launch-model_path", name: "model_path", "aria-describedby": "launch-model-help" },
      modelOptions(models, modelPath));
    const layersTotal = h("span", { id: "layers-total", class: "muted", "aria-live": "polite" });
    const presetNote = h("p", { id: "preset-note", class: "help" });
    const form = h("form", { id: "launch-form", class: "launch-form", novalidate: true },
      h("div", { class: "field wide" }, h("label", { for: "launch-model_path" }, "Model", picker),
        h("span", { class: "help", id: "launch-model-help", text: "A GGUF file of the library (split models: the first shard)." })),
      fieldSets("launch"), presetNote);
    form.querySelector('[data-field="n_gpu_layers"] label span').append(" ", layersTotal);
    const tools = toolsRow(form, picker, presetNote);
    const submit = h("button", { type: "submit", id: "launch-submit", form: "launch-form", text: "Launch" });
    const dialog = modal("Launch a model", [tools, form, h("div", { class: "row end" }, submit)], { wide: true });
    form.addEventListener("submit", (event) => { event.preventDefault(); submitLaunch(form, picker, submit, dialog); });
    const refreshModel = () => { loadLayers(picker.value, layersTotal); applyStoredPreset(form, picker.value, presetNote); };
    picker.addEventListener("change", refreshModel);
    refreshModel();
    api("GET", "/api/next-port").then((r) => { form.querySelector("#launch-port").placeholder = r.port ? "next free: " + r.port : "none free"; }, () => {});
    return dialog;
  }

  async function submitLaunch(form, picker, submit, dialog) {
    if (!form.reportValidity()) return;
    submit.disabled = true;
    try {
      const created = await postLaunch({ model_path: picker.value, ...readForm(form, "launch") });
      if (!created) return; // cap confirmation cancelled: nothing changed
      toast(`Launching ${created.name} on port ${created.port}`, "ok");
      dialog.close();
      if (LMDash.refreshInstances) LMDash.refreshInstances();
    } catch (error) {
      markInvalid(form, "launch", error);
      toast(error.message, "error");
    } finally {
      submit.disabled = false;
    }
  }

  async function loadLayers(path, target) {
    target.textContent = "";
    const known = LMDash.models ? LMDash.models().some((m) => m.path === path) : false;
    if (!known) return; // a parsed path outside the library: the API would refuse it
    try {
      const info = await api("GET", "/api/model-layers?path=" + encodeURIComponent(path));
      target.textContent = info.layers ? "/ " + info.layers : "";
      target.title = info.layers ? `The model has ${info.layers} layers` : "";
    } catch (error) { target.textContent = ""; }
  }

  /** The model's stored preset from the presets (keyed by model path; no 404 for models without one). */
  async function findPreset(path) {
    const presets = await api("GET", "/api/presets");
    return Object.prototype.hasOwnProperty.call(presets, path) ? presets[path] : null;
  }

  /** Fill the form with the model's preset, unless something newer (another model choice, a
   *  parsed command) has filled it while the preset was being fetched. */
  async function applyStoredPreset(form, path, note) {
    const turn = supersedePresetLoads(form);
    const preset = await findPreset(path).catch(() => null);
    if (turn !== form.presetTurn) return;
    if (preset) fillForm(form, "launch", preset);
    note.textContent = preset ? "Loaded this model's saved preset." : "No preset saved for this model: defaults shown.";
  }

  function supersedePresetLoads(form) {
    form.presetTurn = (form.presetTurn || 0) + 1;
    return form.presetTurn;
  }

  function toolsRow(form, picker, note) {
    const save = h("button", { type: "button", class: "secondary", id: "preset-save", text: "Save preset", onclick: async () => {
      if (!form.reportValidity()) return;
      const body = readForm(form, "launch");
      for (const key of PRESET_SKIP) delete body[key];
      try {
        const result = await api("PUT", presetUrl(picker.value), body);
        const relaunch = result.needs_relaunch?.length ? ` · ${result.needs_relaunch.length} running instance(s) need a relaunch` : "";
        note.textContent = "Preset saved" + relaunch + ".";
        toast("Preset saved" + relaunch, "ok");
      } catch (error) { markInvalid(form, "launch", error); toast(error.message, "error"); }
    } });
    const load = h("button", { type: "button", class: "secondary", id: "preset-load", text: "Load preset", onclick: async () => {
      try {
        const preset = await findPreset(picker.value);
        if (!preset) { toast("No preset saved for this model", "info"); return; }
        fillForm(form, "launch", preset);
        note.textContent = "Preset loaded.";
      } catch (error) { toast(error.message, "error"); }
    } });
    const parse = h("button", { type: "button", class: "secondary", id: "parse-open", text: "Parse command…",
                                onclick: () => openParse(form, picker, note) });
    return h("div", { class: "row" }, load, save, h("span", { class: "spacer" }), parse);
  }

  function openParse(form, picker, note) {
    const text = h("textarea", { id: "parse-command", rows: 4, placeholder: "llama-server -m /models/model.gguf -c 8192 -ngl 99 --flash-attn on" });
    const go = h("button", { type: "button", id: "parse-apply", text: "Fill the form" });
    const dialog = modal("Parse a llama-server command", [
      h("label", { for: "parse-command" }, "Command line", text),
      h("p", { class: "help", text: "Known flags fill the form; the rest go to Extra arguments. --host, --port and --api-key are managed by llamaman." }),
      h("div", { class: "row end" }, go)]);
    go.addEventListener("click", async () => {
      try {
        const parsed = await api("POST", "/api/instances/parse-command", { command: text.value });
        if (parsed.model_path) selectModel(picker, parsed.model_path);
        supersedePresetLoads(form); // the pasted command wins over a preset still loading
        const set = fillForm(form, "launch", parsed);
        const ignored = parsed.ignored?.length ? "; ignored: " + parsed.ignored.join(", ") : "";
        note.textContent = `Filled from the command: ${set.join(", ") || "nothing"}${ignored}.`;
        dialog.close();
      } catch (error) { toast(error.message, "error"); }
    });
  }

  function selectModel(picker, path) {
    if (![...picker.options].some((o) => o.value === path)) picker.append(h("option", { value: path, text: path }));
    picker.value = path;
    picker.dispatchEvent(new Event("change"));
  }

  /** Import dialog: an exported configuration from a file or pasted JSON. */
  function openImport() {
    const file = h("input", { type: "file", id: "import-file", accept: "application/json,.json" });
    const text = h("textarea", { id: "import-json", rows: 8, placeholder: '{"model_path": "…", "ctx_size": 4096, …}' });
    const go = h("button", { type: "button", id: "import-submit", text: "Import and launch" });
    file.addEventListener("change", async () => { if (file.files[0]) text.value = await file.files[0].text(); });
    const dialog = modal("Import a configuration", [
      h("label", { for: "import-file" }, "Exported file", file),
      h("label", { for: "import-json" }, "…or paste its JSON", text),
      h("p", { class: "help", text: "A configuration saved with Export on an instance card. A free port is chosen." }),
      h("div", { class: "row end" }, go)]);
    go.addEventListener("click", async () => {
      let body;
      try { body = JSON.parse(text.value); } catch (error) { toast("Not valid JSON: " + error.message, "error"); return; }
      try {
        const created = await postLaunch(body, "/api/instances/import");
        if (!created) return; // cap confirmation cancelled: nothing changed
        toast(`Imported ${created.name} on port ${created.port}`, "ok");
        dialog.close();
        if (LMDash.refreshInstances) LMDash.refreshInstances();
      } catch (error) { toast(error.message, "error"); }
    });
  }

  Object.assign(LMDash, { FIELDS, GROUPS, fieldSets, readForm, fillForm, markInvalid, postLaunch, openLaunch, openImport });
})();
