// Applied in <head> before first paint so a stored theme never flashes the other one.
(function () {
  var stored = null;
  try { stored = localStorage.getItem("llamaman-theme"); } catch (e) { /* storage disabled */ }
  document.documentElement.dataset.theme = stored === "light" ? "light" : "dark";
})();
