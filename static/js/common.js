"use strict";
// Shared helpers of every page: the API client, safe element building, toasts, dialogs, formats.
// Every string from the server or a model goes through text nodes (h), never innerHTML.

const LM = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  class ApiError extends Error {
    constructor(message, status, data) { super(message); this.status = status; this.data = data; }
  }

  /** Call our REST API; resolves to the JSON body, rejects with ApiError(server's message). */
  async function api(method, path, body, options = {}) {
    const response = await fetch(path, {
      method,
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: options.signal,
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(data.error || response.statusText || "request failed", response.status, data);
    return data;
  }

  /** Build an element: attrs may hold class, text, dataset, on<event> handlers and plain attributes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else if (value === true) el.setAttribute(key, "");
      else el.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function toast(message, kind = "info", ms = 5000) {
    const box = document.getElementById("toasts");
    const item = h("div", { class: "toast toast-" + kind, role: kind === "error" ? "alert" : "status" }, message);
    box.append(item);
    setTimeout(() => item.remove(), kind === "error" ? ms * 2 : ms);
    return item;
  }

  /** Show a dialog; returns {el, body, close}. Escape and the backdrop close it. */
  function modal(title, content, options = {}) {
    const body = h("div", { class: "modal-body" }, content);
    const closeButton = h("button", { type: "button", class: "icon", "aria-label": "Close", text: "×" });
    const dialog = h("div", { class: "modal" + (options.wide ? " wide" : ""), role: "dialog", "aria-modal": "true",
                               "aria-label": title },
      h("div", { class: "modal-head" }, h("h2", { text: title }), closeButton), body);
    const backdrop = h("div", { class: "backdrop" }, dialog);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      backdrop.remove();
      document.removeEventListener("keydown", onKey);
      if (options.onClose) options.onClose();
    };
    const onKey = (event) => { if (event.key === "Escape") close(); };
    closeButton.addEventListener("click", close);
    backdrop.addEventListener("mousedown", (event) => { if (event.target === backdrop) close(); });
    document.addEventListener("keydown", onKey);
    document.body.append(backdrop);
    const focusable = dialog.querySelector("input, select, textarea, button:not(.icon)");
    (focusable || closeButton).focus();
    return { el: dialog, body, close };
  }

  /** Ask before a destructive action; resolves true only when the person confirms. */
  function confirm(message, options = {}) {
    return new Promise((resolve) => {
      let answer = false;
      const ok = h("button", { type: "button", class: options.danger === false ? "" : "danger", id: "confirm-ok",
                               text: options.ok || "Confirm" });
      const cancel = h("button", { type: "button", class: "secondary", id: "confirm-cancel", text: "Cancel" });
      const dialog = modal(options.title || "Are you sure?", [h("p", { text: message }),
        h("div", { class: "row end" }, cancel, ok)], { onClose: () => resolve(answer) });
      ok.addEventListener("click", () => { answer = true; dialog.close(); });
      cancel.addEventListener("click", () => dialog.close());
      cancel.focus();
    });
  }

  /** Run fn now and every ms while the tab is visible; returns a stop function. */
  function poll(fn, ms) {
    let timer = null;
    let stopped = false;
    const tick = async () => {
      timer = null;
      if (stopped) return;
      if (!document.hidden) {
        try { await fn(); } catch (error) { console.warn("poll failed:", error.message); }
      }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    tick();
    return () => { stopped = true; if (timer) clearTimeout(timer); };
  }

  function fmtBytes(n) {
    if (n === null || n === undefined || isNaN(n)) return "—";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let value = Number(n);
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return (unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)) + " " + units[unit];
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  /** A timestamp (epoch seconds or ISO string) as local date and time. */
  function fmtTime(value) {
    if (value === null || value === undefined || value === "") return "—";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return isNaN(date) ? String(value) : date.toLocaleString();
  }

  function fmtNumber(value, digits = 1) {
    if (value === null || value === undefined || isNaN(value)) return "—";
    return Number(value).toFixed(digits);
  }

  /** A thin progress bar; pct is clamped to 0..100. */
  function bar(pct, label) {
    const clamped = Math.max(0, Math.min(100, Number(pct) || 0));
    const level = clamped >= 90 ? " high" : clamped >= 70 ? " mid" : "";
    return h("div", { class: "bar" + level, role: "progressbar", "aria-valuenow": Math.round(clamped),
                      "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": label || null },
      h("span", { style: "width:" + clamped + "%" }));
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      toast("Copied", "ok", 1500);
    } catch (error) {
      toast("Copy failed: " + error.message, "error");
    }
  }

  return { csrf, api, ApiError, h, toast, modal, confirm, poll, fmtBytes, fmtDuration, fmtTime, fmtNumber, bar,
           copyText };
})();
