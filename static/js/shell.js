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
    const cpu = info.cpu_percent ?? 0;
    meter("meter-cpu", cpu, Math.round(cpu) + "%", (info.cpu_count ?? "?") + " cores");
    const used = info.memory_used ?? info.ram_used ?? 0;
    const total = info.memory_total ?? info.ram_total ?? 0;
    meter("meter-ram", pct(used, total), fmtBytes(used) + " / " + fmtBytes(total));
  }

  function gpuMeter(gpu) {
    const used = gpu.memory_used ?? gpu.vram_used ?? 0;
    const total = gpu.memory_total ?? gpu.vram_total ?? 0;
    const util = gpu.utilization ?? gpu.utilization_percent;
    return h("span", { class: "meter gpu", title: (gpu.name || "GPU") + (util !== undefined && util !== null ? " · " + util + "% busy" : "") },
      h("span", { class: "meter-label", text: "GPU" + (gpu.index ?? "") }), bar(pct(used, total)),
      h("span", { class: "meter-value", text: fmtBytes(used) + " / " + fmtBytes(total) }));
  }

  async function refreshGpus() {
    const info = await api("GET", "/api/gpu-info");
    const gpus = Array.isArray(info) ? info : (info.gpus || []);
    const box = document.getElementById("meter-gpus");
    if (!gpus.length) {
      box.replaceChildren(h("span", { class: "muted", id: "no-gpu", title: info.reason || "", text: "No GPU detected" }));
      return;
    }
    box.replaceChildren(...gpus.map(gpuMeter));
  }

  LM.poll(() => refreshSystem().catch(() => {}), 5000);
  LM.poll(() => refreshGpus().catch(() => {}), 5000);
})();
