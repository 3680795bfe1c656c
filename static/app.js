"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function showError(message) {
  const el = document.getElementById("key-error");
  el.textContent = message;
  el.hidden = !message;
}

function keyRow(key) {
  const row = document.createElement("tr");
  const created = key.created_at ? new Date(key.created_at * 1000).toLocaleString() : "";
  for (const text of [key.name, key.prefix + "…", key.scope, created]) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.appendChild(cell);
  }
  const cell = document.createElement("td");
  const revoke = document.createElement("button");
  revoke.className = "danger";
  revoke.textContent = "Revoke";
  revoke.onclick = () => api("DELETE", "/api/api-keys/" + key.id).then(loadKeys, (e) => showError(e.message));
  cell.appendChild(revoke);
  row.appendChild(cell);
  return row;
}

async function loadKeys() {
  const keys = await api("GET", "/api/api-keys");
  document.getElementById("key-list").replaceChildren(...keys.map(keyRow));
}

async function loadSettings() {
  const settings = await api("GET", "/api/settings");
  const box = document.getElementById("require-auth");
  box.checked = settings.require_auth;
  box.onchange = () => api("POST", "/api/settings", { require_auth: box.checked }).catch((e) => showError(e.message));
}

document.getElementById("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const key = await api("POST", "/api/api-keys", {
      name: document.getElementById("key-name").value,
      scope: document.getElementById("key-scope").value,
    });
    const shown = document.getElementById("new-key");
    shown.textContent = "New key (shown once): " + key.key;
    shown.hidden = false;
    showError("");
    await loadKeys();
  } catch (e) {
    showError(e.message);
  }
});

loadKeys().catch((e) => showError(e.message));
loadSettings().catch((e) => showError(e.message));
