"use strict";
// Settings page: application settings and API keys (more tabs to come).
(() => {
  const { api, h, toast, confirm, fmtTime } = LM;
  const root = document.getElementById("settings-page");

  function keyRow(key) {
    const revoke = h("button", { type: "button", class: "danger small", text: "Revoke", onclick: async () => {
      if (!(await confirm(`Revoke the key "${key.name}"? Clients using it stop working at once.`, { ok: "Revoke" }))) return;
      api("DELETE", "/api/api-keys/" + key.id).then(loadKeys, (e) => toast(e.message, "error"));
    } });
    return h("tr", {}, h("td", { text: key.name }), h("td", { class: "mono", text: key.prefix + "…" }),
      h("td", { text: key.scope }), h("td", { text: fmtTime(key.created_at) }), h("td", {}, revoke));
  }

  async function loadKeys() {
    const keys = await api("GET", "/api/api-keys");
    document.getElementById("key-list").replaceChildren(...keys.map(keyRow));
  }

  function keysSection() {
    const name = h("input", { id: "key-name", placeholder: "Key name", maxlength: 255, required: true, "aria-label": "Key name" });
    const scope = h("select", { id: "key-scope", "aria-label": "Scope" },
      h("option", { value: "inference", text: "inference" }), h("option", { value: "admin", text: "admin" }));
    const shown = h("p", { id: "new-key", class: "notice", hidden: true });
    const form = h("form", { id: "key-form", class: "row" }, name, scope, h("button", { type: "submit", text: "Create key" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const key = await api("POST", "/api/api-keys", { name: name.value, scope: scope.value });
        shown.textContent = "New key (shown once): " + key.key;
        shown.hidden = false;
        await loadKeys();
      } catch (e) {
        toast(e.message, "error");
      }
    });
    return h("section", { class: "card" }, h("h2", { text: "API keys" }), form, shown,
      h("table", {}, h("thead", {}, h("tr", {}, ...["Name", "Key", "Scope", "Created", ""].map((t) => h("th", { text: t })))),
        h("tbody", { id: "key-list" })));
  }

  function authSection() {
    const box = h("input", { type: "checkbox", id: "require-auth" });
    box.addEventListener("change", () => api("POST", "/api/settings", { require_auth: box.checked })
      .then(() => toast("Saved", "ok", 1500), (e) => toast(e.message, "error")));
    api("GET", "/api/settings").then((settings) => { box.checked = settings.require_auth; }, (e) => toast(e.message, "error"));
    return h("section", { class: "card" }, h("h2", { text: "Authentication" }),
      h("label", { class: "toggle" }, box, "Require authentication for all endpoints"),
      h("p", { class: "help", text: "On: model endpoints and instance ports need a bearer API key. Management always needs a login or an admin key." }));
  }

  root.replaceChildren(authSection(), keysSection());
  loadKeys().catch((e) => toast(e.message, "error"));
})();
