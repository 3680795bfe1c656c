"use strict";
// Logging page: summary tiles, a tokens/s + TTFT chart, recent conversations and their turns,
// all scoped by one 24h / 7d / 30d / All selector. Reads /api/request-log/* only.
(() => {
  const { api, h, toast, fmtNumber, fmtTime, fmtDuration } = LM;
  const root = document.getElementById("logging-page");
  const WINDOWS = [["24h", 24], ["7d", 168], ["30d", 720], ["All", 0]];
  const REFRESH_MS = 15000;
  const SVG = "http://www.w3.org/2000/svg";
  let hours = windowFromHash();

  function windowFromHash() {
    const match = /window=(\d+)/.exec(location.hash);
    const value = match ? Number(match[1]) : 24;
    return WINDOWS.some(([, h2]) => h2 === value) ? value : 24;
  }

  function query() { return hours ? "window_hours=" + hours : ""; }

  // ---- window selector --------------------------------------------------------------------

  function selector() {
    const group = h("div", { class: "segmented", role: "group", id: "window-select", "aria-label": "Time window" });
    for (const [label, value] of WINDOWS) {
      group.append(h("button", { type: "button", class: "secondary", dataset: { hours: value }, "aria-pressed": String(value === hours),
                                 text: label, onclick: () => choose(value) }));
    }
    return group;
  }

  function choose(value) {
    hours = value;
    history.replaceState(null, "", "#window=" + value);
    for (const button of document.querySelectorAll("#window-select button")) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.hours) === value));
    }
    refresh();
  }

  // ---- tiles ------------------------------------------------------------------------------

  function ms(value) {
    if (value === null || value === undefined) return "—";
    return value >= 1000 ? fmtNumber(value / 1000, 2) + " s" : fmtNumber(value, 0) + " ms";
  }

  function tile(key, label, value, sub) {
    return h("div", { class: "tile", dataset: { key } }, h("div", { class: "tile-label", text: label }),
      h("div", { class: "tile-value", text: value }), sub ? h("div", { class: "tile-sub help", text: sub }) : null);
  }

  function renderTiles(stats) {
    const n = (v) => (v === null || v === undefined ? "—" : Number(v).toLocaleString());
    document.getElementById("tiles").replaceChildren(
      tile("requests", "Requests", n(stats.turn_count),
           stats.active_span_s ? "over " + fmtDuration(stats.active_span_s) : null),
      tile("tokens", "Tokens", n(stats.total_tokens), n(stats.prompt_tokens) + " in · " + n(stats.completion_tokens) + " out"),
      tile("avg-tps", "Avg tokens/s", fmtNumber(stats.avg_tokens_per_sec, 1)),
      tile("peak-tps", "Peak tokens/s", fmtNumber(stats.max_tokens_per_sec, 1)),
      tile("ttft", "Avg TTFT", ms(stats.avg_ttft_ms)),
      tile("latency", "Avg latency", ms(stats.avg_duration_ms)),
      tile("errors", "Errors", n(stats.error_count)),
      tile("streamed", "Streamed", n(stats.streamed_count)));
  }

  function renderRecordingState(stats) {
    document.getElementById("recording-badge").replaceChildren(stats.recording
      ? h("span", { class: "badge completed", text: "recording " + stats.recording_mode.replace("_", " ") })
      : h("span", { class: "badge", text: "recording off" }));
    const box = document.getElementById("recording-notice");
    if (stats.recording) {
      box.replaceChildren();
      return;
    }
    box.replaceChildren(h("div", { class: "card notice", id: "recording-off", role: "status" },
      h("strong", { text: "Request recording is off." }), " Nothing new is logged. Turn it on in ",
      h("a", { href: "/settings#application", text: "Settings → Application → Request recording" }),
      " (per request or per conversation), or with the API: ",
      h("code", { text: 'POST /api/settings {"request_recording_mode": "per_conversation"}' }), "."));
  }

  // ---- chart (hand-made SVG: two series, each on its own axis) ------------------------------

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return el;
  }

  // Drawn at the box's own pixel width so labels keep their size at 390 px and at 1280 px.
  const CHART = { w: 720, h: 240, left: 48, right: 60, top: 14, bottom: 28 };
  let lastSeries = null;

  function shortTime(iso) {
    const date = new Date(iso);
    return isNaN(date) ? "" : date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  function scale(values) {
    const max = Math.max(0, ...values.filter((v) => v !== null && v !== undefined));
    return max > 0 ? max * 1.1 : 1;
  }

  function line(points, key, max, cls, x0, x1, fmt) {
    const spanX = CHART.w - CHART.left - CHART.right;
    const spanY = CHART.h - CHART.top - CHART.bottom;
    const xs = (t) => CHART.left + (x1 > x0 ? ((t - x0) / (x1 - x0)) * spanX : spanX / 2);
    const ys = (v) => CHART.top + spanY - (v / max) * spanY;
    const usable = points.filter((p) => p[key] !== null && p[key] !== undefined);
    const group = svg("g", { class: "series " + cls });
    if (usable.length > 1) {
      group.append(svg("polyline", { points: usable.map((p) => xs(p.ts) + "," + ys(p[key])).join(" ") }));
    }
    for (const p of usable) {
      // Dots for tokens/s, hollow squares for TTFT: with one bucket both can sit on the same spot.
      const title = svg("title", {}, fmtTime(p.ts) + ": " + fmt(p[key]) + " (" + p.turn_count + " requests)");
      const x = xs(p.ts), y = ys(p[key]);
      group.append(cls === "ttft" ? svg("rect", { x: x - 5, y: y - 5, width: 10, height: 10, class: "marker" }, title)
                                  : svg("circle", { cx: x, cy: y, r: 3, class: "marker" }, title));
    }
    return group;
  }

  function axis(max, side, fmt) {
    const x = side === "left" ? CHART.left - 6 : CHART.w - CHART.right + 6;
    const anchor = side === "left" ? "end" : "start";
    const spanY = CHART.h - CHART.top - CHART.bottom;
    const group = svg("g", { class: "axis " + side });
    for (const f of [0, 0.5, 1]) {
      const y = CHART.top + spanY - f * spanY;
      group.append(svg("text", { x, y: y + 4, "text-anchor": anchor }, fmt(max * f)));
      if (side === "left") group.append(svg("line", { x1: CHART.left, x2: CHART.w - CHART.right, y1: y, y2: y, class: "grid" }));
    }
    return group;
  }

  function renderChart(series) {
    const box = document.getElementById("chart");
    const points = series.points || [];
    lastSeries = series;
    CHART.w = Math.max(300, Math.round(box.clientWidth || 720));
    if (!points.length) {
      box.replaceChildren(h("p", { class: "empty", text: "No requests in this window yet." }));
      return;
    }
    const x0 = Date.parse(series.start) / 1000;
    const x1 = Date.parse(series.end) / 1000;
    const tpsMax = scale(points.map((p) => p.avg_tokens_per_sec));
    const ttftMax = scale(points.map((p) => p.avg_ttft_ms));
    const chart = svg("svg", { viewBox: `0 0 ${CHART.w} ${CHART.h}`, role: "img", class: "chart-svg",
                               "aria-label": "Average tokens per second and time to first token over time" },
      axis(tpsMax, "left", (v) => fmtNumber(v, 0)), axis(ttftMax, "right", ms),
      svg("text", { x: CHART.left, y: CHART.h - 6, class: "tick" }, shortTime(series.start)),
      svg("text", { x: CHART.w - CHART.right, y: CHART.h - 6, "text-anchor": "end", class: "tick" }, shortTime(series.end)),
      line(points, "avg_tokens_per_sec", tpsMax, "tps", x0, x1, (v) => fmtNumber(v, 1) + " tok/s"),
      line(points, "avg_ttft_ms", ttftMax, "ttft", x0, x1, (v) => "TTFT " + ms(v)));
    box.replaceChildren(chart, h("div", { class: "legend row" },
      h("span", { class: "key tps", text: "tokens/s (left)" }), h("span", { class: "key ttft", text: "TTFT (right)" }),
      h("span", { class: "help", text: "one point per " + fmtDuration(series.bucket_s) })));
  }

  // ---- conversations ----------------------------------------------------------------------

  function conversationItem(c) {
    const open = () => openConversation(c);
    const label = c.title || "(no prompt text)";
    return h("li", { class: "conversation", dataset: { id: c.conversation_id }, onclick: open },
      h("button", { type: "button", class: "conv-open link", text: label, title: label,
                    onclick: (event) => { event.stopPropagation(); open(); } }),
      h("div", { class: "conv-meta help" },
        [c.model || "—", c.turn_count + (c.turn_count === 1 ? " turn" : " turns"),
         Number(c.total_tokens || 0).toLocaleString() + " tokens", fmtTime(c.last_seen_at)].join(" · "),
        c.error_count ? h("span", { class: "badge failed", text: c.error_count + " errors" }) : null));
  }

  function renderConversations(list) {
    const box = document.getElementById("conversations");
    if (!list.length) {
      box.replaceChildren(h("p", { class: "empty", text: "No conversations recorded in this window." }));
      return;
    }
    box.replaceChildren(h("ul", { class: "conversation-list" }, ...list.map(conversationItem)));
  }

  /** The new prompt of a turn: the last user message (chat), else the prompt; raw text if unparsable. */
  function promptOf(turn) {
    let body;
    try { body = JSON.parse(turn.request_body); } catch (e) { return { text: turn.request_body, system: null }; }
    const messages = Array.isArray(body && body.messages) ? body.messages : null;
    if (!messages) return { text: textOf(body && (body.prompt ?? body.input)), system: textOf(body && body.system) || null };
    const users = messages.filter((m) => m && m.role === "user");
    const system = messages.find((m) => m && (m.role === "system" || m.role === "developer"));
    return { text: users.length ? textOf(users[users.length - 1].content) : "", system: system ? textOf(system.content) : null };
  }

  function textOf(content) {
    if (content === null || content === undefined) return "";
    if (typeof content === "string") return content;
    if (Array.isArray(content)) return content.map((p) => (p && typeof p.text === "string" ? p.text : "")).join("");
    return JSON.stringify(content);
  }

  function metric(label, value) { return [h("dt", { text: label }), h("dd", { text: value })]; }

  function turnView(turn, index) {
    const prompt = promptOf(turn);
    const metrics = h("dl", { class: "metrics" },
      metric("When", fmtTime(turn.created_at)), metric("Endpoint", turn.endpoint || "—"),
      metric("Model", turn.model || "—"), metric("Instance", turn.inst_id || "—"),
      metric("Status", turn.status_code ?? "—"), metric("Streamed", turn.streamed ? "yes" : "no"),
      metric("Latency", ms(turn.duration_ms)), metric("TTFT", ms(turn.ttft_ms)), metric("Queue wait", ms(turn.queue_wait_ms)),
      metric("Prompt tokens", turn.prompt_tokens ?? "—"), metric("Completion tokens", turn.completion_tokens ?? "—"),
      metric("Tokens/s", fmtNumber(turn.tokens_per_sec, 1)));
    return h("article", { class: "turn card", dataset: { id: turn.id } },
      h("h3", { text: "Turn " + (index + 1) }),
      index === 0 && prompt.system ? h("div", { class: "msg system" }, h("div", { class: "who", text: "System" }),
        h("div", { class: "say", text: prompt.system })) : null,
      h("div", { class: "msg user" }, h("div", { class: "who", text: "Prompt" }),
        h("div", { class: "say prompt", text: prompt.text || "(empty)" })),
      h("div", { class: "msg assistant" }, h("div", { class: "who", text: "Response" + (turn.response_truncated ? " (truncated)" : "") }),
        h("div", { class: "say response", text: turn.response_body || "(empty)" })),
      turn.error ? h("p", { class: "error turn-error", text: turn.error }) : null,
      h("details", { class: "turn-metrics" }, h("summary", { text: "Metrics and request body" }), metrics,
        h("pre", { class: "log-view raw", text: turn.request_body + (turn.request_truncated ? "\n… (truncated)" : "") })));
  }

  async function openConversation(c) {
    try {
      const data = await api("GET", "/api/request-log/conversations/" + encodeURIComponent(c.conversation_id));
      const dialog = LM.modal(c.title || "Conversation", h("div", { class: "conversation-detail" },
        h("p", { class: "help", text: (c.model || "") + " · " + data.turns.length + " turns" }),
        ...data.turns.map(turnView)), { wide: true });
      dialog.el.id = "conversation-detail";
    } catch (e) {
      toast(e.message, "error");
    }
  }

  // ---- page -------------------------------------------------------------------------------

  let inflight = 0;
  async function refresh() {
    const mine = ++inflight;  // a window change while a refresh runs: only the newest one renders
    try {
      const q = query();
      const [stats, series, conversations] = await Promise.all([
        api("GET", "/api/request-log/stats?" + q),
        api("GET", "/api/request-log/series?buckets=48&" + q),
        api("GET", "/api/request-log/conversations?limit=100&" + q)]);
      if (mine !== inflight) return;
      root.dataset.window = String(hours);
      renderRecordingState(stats);
      renderTiles(stats);
      renderChart(series);
      renderConversations(conversations);
    } catch (e) {
      toast(e.message, "error");
    }
  }

  root.replaceChildren(
    h("div", { class: "row logging-head" }, h("h1", { text: "Logging" }), h("span", { id: "recording-badge" }),
      h("span", { class: "spacer" }), selector()),
    h("div", { id: "recording-notice" }),
    h("div", { class: "tiles", id: "tiles" }),
    h("section", { class: "card" }, h("h2", { text: "Tokens/s and time to first token" }), h("div", { id: "chart" })),
    h("section", { class: "card" }, h("h2", { text: "Recent conversations" }), h("div", { id: "conversations" })));
  refresh();
  // Redrawn in the same frame as a width change (a ResizeObserver runs before paint).
  new ResizeObserver(() => {
    const width = Math.max(300, Math.round(document.getElementById("chart").clientWidth || 720));
    if (lastSeries && width !== CHART.w) renderChart(lastSeries);
  }).observe(document.getElementById("chart"));
  // Slow background refresh so new traffic shows up; the API reads are cheap roll-ups.
  setInterval(() => { if (!document.hidden && !document.querySelector(".backdrop")) refresh(); }, REFRESH_MS);
})();
