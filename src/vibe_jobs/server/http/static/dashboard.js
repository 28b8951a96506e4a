// vibe-jobs dashboard: live updates over Server-Sent Events and the cancel confirmation.
// The pages are complete without this script; it only keeps them current. No polling: one EventSource.
"use strict";
(function () {
  const FINISHED = ["completed", "failed", "cancelled"];
  const sparks = {};
  let leaving = false;  // a form was sent: its answer is a new page, a live reload must not abort it

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
      });
    });
    document.querySelectorAll("form[method=post]").forEach(function (form) {
      form.addEventListener("submit", function (ev) { if (!ev.defaultPrevented) leaving = true; });
    });
  }

  function setProgress(box, ev) {
    const bar = box.querySelector("progress");
    if (bar && ev.progress !== null && ev.progress !== undefined) {
      bar.value = ev.progress;
      bar.textContent = Math.round(ev.progress) + "%";
      const pct = box.querySelector(".pct");
      if (pct) pct.textContent = Math.round(ev.progress) + "%";
    }
    const stage = box.querySelector(".stage");
    if (stage && ev.stage) stage.textContent = ev.stage;
    const msg = box.querySelector(".msg");
    if (msg && ev.message) msg.textContent = ev.message;
  }

  function setStatus(holder, status) {
    holder.dataset.status = status;
    const badge = holder.querySelector(".status");
    if (badge) { badge.textContent = status; badge.className = "status " + status; }
  }

  function newRow(ev) {
    const row = document.createElement("tr");
    row.dataset.job = ev.jobId;
    const cells = ["", "", "", "", "", ""].map(function () { return document.createElement("td"); });
    cells[0].innerHTML = '<span class="status"></span>';
    const link = document.createElement("a");
    link.href = "/jobs/" + encodeURIComponent(ev.jobId);
    link.textContent = ev.toolName;
    cells[1].appendChild(link);
    cells[3].className = "progress";
    cells[3].innerHTML = '<progress max="100" value="0" aria-label="progress">0%</progress> ' +
      '<span class="pct">0%</span> <span class="stage"></span> <span class="msg"></span>';
    cells[4].textContent = "just now";
    cells[5].className = "attempt";
    if (ev.priority) cells[2].textContent = ev.priority;
    cells.forEach(function (c) { row.appendChild(c); });
    return row;
  }

  function setAttempt(row, ev) {
    const cell = row.querySelector("td.attempt");
    if (cell && ev.attempt !== null && ev.attempt !== undefined) cell.textContent = String(ev.attempt);
  }

  function onJob(ev) {
    const page = document.getElementById("job");
    if (page) {
      if (page.dataset.job !== ev.jobId) return;
      setProgress(page, ev);
      const was = page.dataset.status;
      setStatus(page, ev.status);
      if (FINISHED.indexOf(ev.status) >= 0 && was !== ev.status && !leaving) window.location.reload();  // result, actions
      return;
    }
    const table = document.getElementById("jobs");
    if (!table) return;
    let row = table.querySelector('tr[data-job="' + CSS.escape(ev.jobId) + '"]');
    if (!row && ev.type === "created" && table.dataset.liveInsert === "1") {
      const body = table.tBodies[0];
      const empty = body.querySelector("tr.empty");
      if (empty) empty.remove();
      row = newRow(ev);
      body.insertBefore(row, body.firstChild);
    }
    if (!row) return;
    setProgress(row, ev);
    setStatus(row, ev.status);
    setAttempt(row, ev);
  }

  function drawSpark(key, value) {
    const svg = document.getElementById("spark-" + key);
    if (!svg) return;
    const points = (sparks[key] = (sparks[key] || []).concat([value]).slice(-60));
    const top = Math.max.apply(null, points.concat([1]));
    const coords = points.map(function (v, i) { return (i * 60 / 59).toFixed(1) + "," + (19 - 18 * v / top).toFixed(1); });
    svg.innerHTML = '<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="' + coords.join(" ") + '"/>';
  }

  function onStats(s) {
    const shown = { queue: s.queue, running: s.running, throughput: s.throughput,
                    errors: s.errors === null ? "–" : Math.round(100 * s.errors) + "%" };
    Object.keys(shown).forEach(function (key) {
      const fig = document.getElementById("fig-" + key);
      if (fig) fig.textContent = shown[key];
      drawSpark(key, key === "errors" ? (s.errors || 0) : shown[key]);
    });
    const banner = document.getElementById("health");
    const reasons = s.reasons.join("; ") || "queue and error rate within limits";
    // a live region (role=status): written only when the health changes, or a screen reader says it every 2 s
    if (banner && banner.textContent !== "Health: " + s.health + " — " + reasons) {
      banner.className = "health " + s.health;
      banner.innerHTML = "Health: <b></b> — <span></span>";
      banner.querySelector("b").textContent = s.health;
      banner.querySelector("span").textContent = reasons;
    }
  }

  function listen() {
    const page = document.getElementById("job");
    const url = page ? "/events?job=" + encodeURIComponent(page.dataset.job) : "/events";
    const source = new EventSource(url);
    source.addEventListener("job", function (m) { onJob(JSON.parse(m.data)); });
    source.addEventListener("stats", function (m) { onStats(JSON.parse(m.data)); });
    let heard = false;
    source.addEventListener("hello", function () {
      // a second hello is a reconnection (the server restarted): what changed while the stream was down was
      // never sent, and the new stream starts from the store as it is now, so the page is rendered again
      if (heard && !leaving) window.location.reload();
      heard = true;
      document.body.dataset.live = "1";
    });
    source.addEventListener("error", function () { document.body.dataset.live = "0"; });  // retrying
    // A page left for another stays in the browser's back/forward cache with its stream open: one of the six
    // connections a browser keeps to a host, and one of the server's event streams. Six page views in a tab
    // and the next page never loaded. Closed when the page is left; a page shown again from the cache reloads
    // (what changed meanwhile was not heard).
    window.addEventListener("pagehide", function () { source.close(); });
    window.addEventListener("pageshow", function (e) { if (e.persisted) window.location.reload(); });
  }

  confirmForms();
  if (window.EventSource) listen();
})();
