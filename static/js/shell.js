"use strict";
// The header of every signed-in page: host CPU/RAM, per-GPU VRAM and utilisation, theme switch.
(() => {
  const { api, h, bar, fmtBytes } = LM;

  document.getElementById("theme-toggle").addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "light" ? "dark" : "light";
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem("llamaman-theme", next); } catch (e) { /* storage disabled: this page only */ }
  });

  function meter(id, pct, text, title) {
    const el = document.getElementById(id);
    el.title = title || "";
    el.replaceChildren(h("span", { class: "meter-label", text: el.querySelector(".meter-label").textContent }),
      bar(pct, id), h("span", { class: "meter-value", text }));
  }

  function pct(used, total) { return total ? (100 * used) / total : 0; }

  async function refreshSystem() {
    const info = await api("GET", "/api/system-info");
    if (info.cpu_percent === null || info.cpu_percent === undefined) return;  // first sample pending
    const cpu = info.cpu_percent;
    const quota = info.cpu_quota_cores ? " (quota " + info.cpu_quota_cores + ")" : "";
    meter("meter-cpu", cpu, Math.round(cpu) + "%", (info.cpu_count ?? "?") + " cores" + quota);
    const used = info.ram_used_bytes ?? 0;
    const total = info.ram_total_bytes ?? 0;
    meter("meter-ram", pct(used, total), fmtBytes(used) + " / " + fmtBytes(total),
          info.in_container ? "container memory limit" : "host memory");
  }

  function gpuMeter(gpu) {
    const used = gpu.memory_used_bytes ?? 0;
    const total = gpu.memory_total_bytes ?? 0;
    const details = [gpu.name || "GPU"];
    if (gpu.utilization_pct !== null && gpu.utilization_pct !== undefined) details.push(gpu.utilization_pct + "% busy");
    if (gpu.temperature_c !== null && gpu.temperature_c !== undefined) details.push(gpu.temperature_c + " °C");
    return h("span", { class: "meter gpu", title: details.join(" · ") },
      h("span", { class: "meter-label", text: "GPU" + (gpu.index ?? "") }), bar(pct(used, total)),
      h("span", { class: "meter-value", text: fmtBytes(used) + " / " + fmtBytes(total) }));
  }

  async function refreshGpus() {
    const info = await api("GET", "/api/gpu-info");
    const gpus = info.gpus || [];
    const box = document.getElementById("meter-gpus");
    if (!gpus.length) {
      box.replaceChildren(h("span", { class: "muted", id: "no-gpu", title: info.reason || "", text: "No GPU detected" }));
      return;
    }
    box.replaceChildren(...gpus.map(gpuMeter));
  }

  LM.poll(refreshSystem, 5000);
  LM.poll(refreshGpus, 5000);
})();
