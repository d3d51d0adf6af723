// Corral dashboard: polls the worker's JSON once a second and draws the
// members, the partition map and the throughput plot. Everything shown is
// set with textContent, never parsed as HTML.
"use strict";

const state = { cluster: null, samples: [], dead: [], deadNext: "", config: null, jobs: [], jobsNext: "", job: null };
window.corral = state; // for the browser tests and the curious

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

// colorOf gives each worker a color of its own for as long as the page is
// open: the first ten seen (in id order at first sight) get distinct
// colors of a qualitative palette, later ones a hue from a mixed hash.
const palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const colors = new Map();

function noteWorkers(ids) {
  for (const id of [...new Set(ids)].filter(id => id && !colors.has(id)).sort()) {
    if (colors.size < palette.length) {
      colors.set(id, palette[colors.size]);
      continue;
    }
    let h = 2166136261;
    for (const c of id) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
    colors.set(id, "hsl(" + (h % 360) + ", 55%, 42%)");
  }
}

function colorOf(id) {
  if (!id) return "#9e9e9e";
  noteWorkers([id]);
  return colors.get(id);
}

function showTab() {
  const tab = (location.hash || "#cluster").slice(1);
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== tab;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.tab === tab);
  if (tab === "dead" && state.dead.length === 0) loadDead(true);
}

function fmtMs(ms) {
  if (ms <= 0) return "expired";
  return (ms / 1000).toFixed(1) + " s";
}

function renderMembers(v) {
  noteWorkers((v.members || []).map(m => m.id));
  const body = $("members").tBodies[0];
  body.replaceChildren();
  for (const m of v.members || []) {
    const tr = el("tr");
    const id = el("td");
    const sw = el("i");
    sw.style.background = colorOf(m.id);
    sw.style.display = "inline-block";
    sw.style.width = "10px";
    sw.style.height = "10px";
    sw.style.marginRight = "5px";
    id.append(sw, m.id + (m.id === v.self ? " (this worker)" : ""), el("div", m.address, "muted"));
    tr.append(id);
    const health = el("td", m.health, m.health === "ok" ? "health-ok" : (m.health === "unreachable" || m.health === "no lease") ? "health-bad" : "health-warn");
    if (m.error) health.title = m.error;
    tr.append(health);
    tr.append(el("td", m.error ? "?" : fmtMs(m.lease_remaining_ms)));
    tr.append(el("td", m.partitions));
    tr.append(el("td", m.committed + (m.retried || m.dead_lettered ? " (" + m.retried + " retried, " + m.dead_lettered + " dead)" : "")));
    const plugins = el("td");
    for (const p of m.plugins || []) plugins.append(el("div", p.name + (p.version ? "@" + p.version : "") + (p.refused ? " — refused: " + p.refused : "")));
    tr.append(plugins);
    const br = el("td");
    for (const [peer, st] of Object.entries(m.breakers || {})) br.append(el("div", peer + ": " + st, st === "closed" ? "" : "health-warn"));
    tr.append(br);
    body.append(tr);
  }
}

function renderMap(v) {
  const map = $("map");
  const cells = v.cells || [];
  while (map.children.length > cells.length) map.lastChild.remove();
  while (map.children.length < cells.length) map.append(el("div", null, "cell"));
  const owners = {};
  let moving = 0;
  cells.forEach((c, i) => {
    const d = map.children[i];
    d.className = "cell" + (c.owner ? "" : " free") + (c.owner !== c.ring_owner ? " moving" : "");
    if (c.owner !== c.ring_owner) moving++;
    d.dataset.partition = c.partition;
    d.dataset.owner = c.owner;
    d.dataset.epoch = c.epoch;
    d.style.background = colorOf(c.owner);
    d.title = "partition " + c.partition + "\nowner " + (c.owner || "none") + "\nring owner " + (c.ring_owner || "none") +
      "\nepoch " + c.epoch + "\ndepth " + (c.depth < 0 ? "unknown" : c.depth);
    d.replaceChildren(el("b", c.partition), el("div", "e" + c.epoch), el("div", "d" + (c.depth < 0 ? "?" : c.depth)));
    owners[c.owner || ""] = (owners[c.owner || ""] || 0) + 1;
  });
  const legend = $("legend");
  legend.replaceChildren();
  for (const [o, n] of Object.entries(owners).sort()) {
    const s = el("span");
    const sw = el("i");
    sw.style.background = colorOf(o);
    s.append(sw, (o || "unclaimed") + ": " + n);
    legend.append(s);
  }
  $("map-summary").textContent = cells.length + " partitions, " + (v.total_depth || 0) + " jobs waiting" + (moving ? ", " + moving + " moving" : "");
}

// eventText is one cluster event in words, as coordinator status says it.
function eventText(e) {
  const owner = o => o || "(released)";
  switch (true) {
    case e.kind === "member.joined" || e.kind === "member.left":
      return e.kind + " " + e.member;
    case e.kind === "partition.moved":
      return "partition.moved " + e.partition + " from " + owner(e.from) + " to " + e.to + ", epoch " + e.epoch;
    case e.kind === "partition.released":
      return "partition.released " + e.partition + " by " + e.from;
    case (e.kind || "").startsWith("breaker."):
      return e.kind + " on " + e.member + " for peer " + e.to;
    case e.kind === "plugin.restarted":
      return "plugin.restarted " + e.plugin + "@" + e.detail + " on " + e.member;
    case e.kind === "plugin.reloaded":
      return "plugin.reloaded " + e.plugin + " " + e.from + " -> " + e.to + " on " + e.member;
  }
  return JSON.stringify(e);
}

function renderEvents(v) {
  const list = $("events");
  list.replaceChildren();
  const evs = (v.events || []).slice().reverse();
  if (evs.length === 0) list.append(el("li", "none recorded yet", "muted"));
  for (const ev of evs) {
    const li = el("li");
    li.dataset.kind = ev.event.kind || "";
    li.append(el("span", new Date(ev.at_ms).toLocaleTimeString() + " ", "muted"), eventText(ev.event));
    list.append(li);
  }
}

function renderPlot() {
  const W = 800, H = 260, top = 20, bottom = 240;
  const s = state.samples;
  const span = 300; // seconds shown
  const now = s.length ? s[s.length - 1].at_ms : Date.now();
  const from = now - span * 1000;
  const shown = s.filter((x) => x.at_ms >= from);
  const failed = (x) => x.retried + x.dead;
  const maxL = Math.max(1, ...shown.map((x) => Math.max(x.committed, failed(x))));
  const maxR = Math.max(1, ...shown.map((x) => x.depth));
  const X = (t) => ((t - from) / (span * 1000)) * W;
  const Y = (v, max) => bottom - (v / max) * (bottom - top);
  const pts = (f, max) => shown.map((x) => X(x.at_ms).toFixed(1) + "," + Y(f(x), max).toFixed(1)).join(" ");
  $("line-committed").setAttribute("points", pts((x) => x.committed, maxL));
  $("line-failed").setAttribute("points", pts(failed, maxL));
  $("line-depth").setAttribute("points", pts((x) => x.depth, maxR));
  $("ymax-left").textContent = Math.round(maxL) + " jobs/s";
  $("ymax-right").textContent = maxR + " waiting";
  $("xspan").textContent = "last " + span / 60 + " min";
  const grid = $("grid");
  if (!grid.children.length) {
    for (let i = 0; i <= 4; i++) {
      const l = document.createElementNS("http://www.w3.org/2000/svg", "line");
      const y = top + (i * (bottom - top)) / 4;
      l.setAttribute("x1", 0); l.setAttribute("x2", W); l.setAttribute("y1", y); l.setAttribute("y2", y);
      grid.append(l);
    }
  }
  const last = s[s.length - 1];
  if (last) {
    $("now-committed").textContent = last.committed.toFixed(0);
    $("now-failed").textContent = failed(last).toFixed(0);
    $("now-depth").textContent = last.depth;
  }
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()));
  return r.json();
}

async function poll() {
  try {
    const [v, t] = await Promise.all([getJSON("api/cluster"), getJSON("api/throughput")]);
    state.cluster = v;
    state.samples = t.samples || [];
    renderMembers(v);
    renderMap(v);
    renderEvents(v);
    renderPlot();
    $("status").textContent = (v.error ? "stale: " + v.error : "live") + " — via " + v.self + " at " + new Date(v.at_ms).toLocaleTimeString();
  } catch (e) {
    $("status").textContent = "cannot reach the worker: " + e.message;
  }
}

async function loadDead(fresh) {
  if (fresh) { state.dead = []; state.deadNext = ""; }
  try {
    const page = await getJSON("api/dead?limit=50" + (state.deadNext ? "&after=" + encodeURIComponent(state.deadNext) : ""));
    state.dead = state.dead.concat(page.dead);
    state.deadNext = page.next;
  } catch (e) {
    $("status").textContent = "dead letters: " + e.message;
    return;
  }
  const body = $("dead-table").tBodies[0];
  body.replaceChildren();
  if (!state.dead.length) {
    const tr = el("tr");
    const td = el("td", "no dead letters");
    td.colSpan = 8;
    tr.append(td);
    body.append(tr);
  }
  for (const d of state.dead) {
    const tr = el("tr");
    tr.dataset.id = d.id;
    const pick = el("input");
    pick.type = "checkbox";
    pick.className = "dead-pick";
    pick.value = d.id;
    pick.disabled = !actionsOn();
    pick.addEventListener("change", deadSelectionChanged);
    const cell = el("td");
    cell.append(pick);
    const link = el("a", d.id, "dead");
    link.addEventListener("click", () => showDead(d.id));
    const idCell = el("td");
    idCell.append(link);
    tr.append(cell, el("td", new Date(d.dead_at_ms).toLocaleString()), idCell, el("td", d.handler), el("td", d.key),
      el("td", d.partition), el("td", d.attempts), el("td", (d.errors || []).slice(-1)[0] || "", "err"));
    body.append(tr);
  }
  $("dead-all").checked = false;
  $("dead-more").hidden = !state.deadNext;
  deadSelectionChanged();
}

function actionsOn() { return !!(state.config && state.config.actions); }

function selectedDead() {
  return Array.from(document.querySelectorAll(".dead-pick:checked")).map((c) => c.value);
}

function deadSelectionChanged() {
  const n = selectedDead().length;
  $("dead-replay").disabled = $("dead-purge").disabled = !actionsOn() || n === 0;
  $("dead-replay").textContent = "Replay selected" + (n ? " (" + n + ")" : "");
  $("dead-purge").textContent = "Purge selected" + (n ? " (" + n + ")" : "");
}

// askDead shows the confirmation of an action on the selected letters;
// nothing is sent until it is confirmed.
function askDead(action) {
  const ids = selectedDead();
  if (!ids.length) return;
  state.pending = { action, ids };
  const what = action === "replay" ? "Replay (submit again with fresh attempts)" : "Purge (delete for good)";
  $("dead-confirm-text").textContent = what + " " + ids.length + " dead letter" + (ids.length > 1 ? "s" : "") + ": " + ids.join(", ") + "?";
  $("dead-confirm").hidden = false;
}

async function confirmDead() {
  const p = state.pending;
  $("dead-confirm").hidden = true;
  state.pending = null;
  if (!p) return;
  try {
    const r = await fetch("api/dead/" + p.action, {
      method: "POST", cache: "no-store",
      headers: { "Content-Type": "application/json", "X-Corral-Action": p.action },
      body: JSON.stringify({ ids: p.ids }),
    });
    if (!r.ok) throw new Error(r.status + " " + (await r.text()));
    const res = await r.json();
    $("dead-message").textContent = (p.action === "replay" ? "replayed " : "purged ") + res.count + " of " + p.ids.length;
  } catch (e) {
    $("dead-message").textContent = p.action + " failed: " + e.message;
  }
  $("dead-detail").hidden = true;
  loadDead(true);
}

function fieldRows(tbody, rows) {
  tbody.replaceChildren();
  for (const [k, v] of rows) {
    if (v === undefined || v === null || v === "") continue;
    const tr = el("tr");
    tr.append(el("th", k), el("td", v));
    tbody.append(tr);
  }
}

async function showDead(id) {
  try {
    const d = await getJSON("api/dead/show?id=" + encodeURIComponent(id));
    $("dead-detail-id").textContent = d.id;
    fieldRows($("dead-fields").tBodies[0], [["handler", d.handler], ["key", d.key], ["partition", d.partition],
      ["attempts", d.attempts], ["dead at", new Date(d.dead_at_ms).toLocaleString()], ["payload", d.payload_bytes + " bytes"]]);
    $("dead-errors").replaceChildren(...(d.errors || []).map((e) => el("li", e, "err")));
    $("dead-detail").hidden = false;
  } catch (e) {
    $("dead-message").textContent = e.message;
  }
}

function fmtTime(ms) { return ms > 0 ? new Date(ms).toLocaleString() : ""; }

async function searchJobs(fresh) {
  if (fresh) { state.jobs = []; state.jobsNext = ""; }
  const q = new URLSearchParams({ state: $("jobs-state").value, limit: "50" });
  if ($("jobs-handler").value.trim()) q.set("handler", $("jobs-handler").value.trim());
  if ($("jobs-key").value.trim()) q.set("key", $("jobs-key").value.trim());
  if (state.jobsNext) q.set("after", state.jobsNext);
  const body = $("jobs-table").tBodies[0];
  try {
    const page = await getJSON("api/jobs?" + q.toString());
    // A job finished twice (dead, then replayed and done) is in the
    // finish log twice: show it once.
    const seen = new Set(state.jobs.map((j) => j.id));
    state.jobs = state.jobs.concat(page.jobs.filter((j) => !seen.has(j.id) && seen.add(j.id)));
    state.jobsNext = page.next;
    if ((page.unreachable || []).length) $("status").textContent = "could not ask " + page.unreachable.join(", ") + " which jobs they run";
  } catch (e) {
    body.replaceChildren();
    const tr = el("tr");
    const td = el("td", e.message, "err");
    td.colSpan = 8;
    tr.append(td);
    body.append(tr);
    return;
  }
  body.replaceChildren();
  if (!state.jobs.length) {
    const tr = el("tr");
    const td = el("td", "no " + $("jobs-state").value + " jobs");
    td.colSpan = 8;
    tr.append(td);
    body.append(tr);
  }
  for (const j of state.jobs) {
    const tr = el("tr");
    tr.dataset.id = j.id;
    const idCell = el("td");
    const link = el("a", j.id, "job");
    link.addEventListener("click", () => showJob(j.id));
    idCell.append(link);
    const when = j.next_run_ms || j.finished_at_ms || j.submitted_at_ms;
    tr.append(idCell, el("td", j.state), el("td", j.handler), el("td", j.key), el("td", j.partition >= 0 ? j.partition : ""),
      el("td", j.attempts), el("td", fmtTime(when)), el("td", [j.note, j.state !== "done" ? j.error : ""].filter(Boolean).join("; ")));
    body.append(tr);
  }
  $("jobs-more").hidden = !state.jobsNext;
}

async function showJob(id) {
  $("job-id").value = id;
  const panel = $("job-detail");
  try {
    const v = await getJSON("api/job?id=" + encodeURIComponent(id));
    state.job = v;
    const j = v.job;
    $("job-detail-id").textContent = j.id;
    fieldRows($("job-fields").tBodies[0], [["state", j.state + (j.cancel_requested ? " (a cancel waits to be applied)" : "")],
      ["handler", j.handler], ["key", j.key], ["partition", j.partition >= 0 ? j.partition : ""], ["attempts", j.attempts],
      ["next run", fmtTime(j.next_run_ms)], ["submitted", fmtTime(j.submitted_at_ms)], ["finished", fmtTime(j.finished_at_ms)],
      ["worker", j.worker], ["note", j.note], ["error", j.error], ["payload", j.payload_bytes ? j.payload_bytes + " bytes" : ""]]);
    $("job-errors").replaceChildren(...(j.errors || []).map((e) => el("li", e, "err")));
    if (!(j.errors || []).length) $("job-errors").append(el("li", "none", "muted"));
    $("job-result").textContent = j.result === undefined ? "(none)" : JSON.stringify(j.result, null, 2);
    const body = $("job-emitted").tBodies[0];
    body.replaceChildren();
    for (const e of v.emitted || []) {
      const tr = el("tr");
      const idCell = el("td");
      const link = el("a", e.id, "job");
      link.addEventListener("click", () => showJob(e.id));
      idCell.append(link);
      tr.append(idCell, el("td", e.state), el("td", e.handler), el("td", e.key), el("td", e.attempts));
      body.append(tr);
    }
    if (!(v.emitted || []).length) {
      const tr = el("tr");
      const td = el("td", "none known");
      td.colSpan = 5;
      tr.append(td);
      body.append(tr);
    }
  } catch (e) {
    $("job-detail-id").textContent = id;
    fieldRows($("job-fields").tBodies[0], [["not found", e.message]]);
    $("job-errors").replaceChildren();
    $("job-result").textContent = "";
    $("job-emitted").tBodies[0].replaceChildren();
  }
  panel.hidden = false;
}

async function loadConfig() {
  try {
    state.config = await getJSON("api/config");
  } catch (e) {
    state.config = { actions: false, actions_off: e.message };
  }
  if (!actionsOn()) {
    $("dead-actions").hidden = true;
    $("dead-help").textContent = "Oldest first. " + (state.config.actions_off || "Replay and purge are off here.");
  }
  deadSelectionChanged();
}

window.addEventListener("hashchange", showTab);
$("dead-refresh").addEventListener("click", () => loadDead(true));
$("dead-more").addEventListener("click", () => loadDead(false));
$("dead-replay").addEventListener("click", () => askDead("replay"));
$("dead-purge").addEventListener("click", () => askDead("purge"));
$("dead-confirm-yes").addEventListener("click", confirmDead);
$("dead-confirm-no").addEventListener("click", () => { $("dead-confirm").hidden = true; state.pending = null; });
$("dead-all").addEventListener("change", () => {
  for (const c of document.querySelectorAll(".dead-pick")) c.checked = $("dead-all").checked && !c.disabled;
  deadSelectionChanged();
});
$("jobs-search").addEventListener("submit", (e) => { e.preventDefault(); searchJobs(true); });
$("jobs-more").addEventListener("click", () => searchJobs(false));
$("job-find").addEventListener("submit", (e) => { e.preventDefault(); if ($("job-id").value.trim()) showJob($("job-id").value.trim()); });
loadConfig().then(showTab);
poll();
setInterval(poll, 1000);
