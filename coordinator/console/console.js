// The Weir console: polls the coordinator's JSON API once a second and renders the jobs,
// the task managers, and one job's graph, vertices, source partitions, checkpoints and
// partition commits. Rates come from the difference between two polls.
"use strict";

const STATES = ["UNSPECIFIED", "SCHEDULING", "RUNNING", "FINISHED", "FAILED", "CANCELLED", "RESTARTING"];
const POLL_MS = 1000;
const previous = new Map(); // job id -> {at, vertices}
let timer = null;

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function td(value, cls) {
  return el("td", cls ? { class: cls } : {}, value);
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function num(n, digits = 1) {
  if (!isFinite(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(digits) + "G";
  if (a >= 1e6) return (n / 1e6).toFixed(digits) + "M";
  if (a >= 1e3) return (n / 1e3).toFixed(digits) + "k";
  return n.toFixed(a >= 100 || Number.isInteger(n) ? 0 : digits);
}

function bytes(n) {
  return num(n) + "B";
}

function pct(x) {
  return isFinite(x) ? Math.round(x * 100) + "%" : "–";
}

function time(ms) {
  if (ms === undefined || ms === null || ms < -1e17 || ms > 1e17) return "–";
  return new Date(ms).toISOString().replace("T", " ").replace(".000Z", "Z");
}

async function api(path, options = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...options });
  if (r.status === 401) {
    window.location = "/login";
    throw new Error("not signed in");
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok && r.status !== 422) throw new Error(body.error || `${path}: HTTP ${r.status}`);
  return { status: r.status, body };
}

function showError(e) {
  $("#error").textContent = e ? String(e.message || e) : "";
}

async function renderOverview() {
  const [{ body: list }, { body: tms }] = await Promise.all([api("/api/jobs"), api("/api/taskmanagers")]);
  $("#leader").textContent = `leader ${list.leader}`;
  const used = new Map();
  for (const job of list.jobs) {
    if (STATES[job.state] !== "RUNNING") continue;
    for (const p of job.placement) used.set(p.task_manager, (used.get(p.task_manager) ?? 0) + 1);
  }
  fill(
    $("#jobs tbody"),
    [...list.jobs]
      .sort((a, b) => b.submitted_at_ms - a.submitted_at_ms)
      .map((job) =>
        el(
          "tr",
          { class: "job-row", "data-job": job.job_id, onclick: () => (window.location.hash = `#/jobs/${job.job_id}`) },
          td(job.job_id),
          td(job.name),
          td(STATES[job.state], `state-${STATES[job.state]}`),
          td(job.attempt, "num"),
          td(time(job.submitted_at_ms)),
        ),
      ),
  );
  fill(
    $("#task-managers tbody"),
    tms.task_managers.map((tm) =>
      el(
        "tr",
        { "data-task-manager": tm.task_manager_id },
        td(tm.task_manager_id),
        td(tm.address),
        td(tm.slots, "num"),
        td(used.get(tm.task_manager_id) ?? 0, "num"),
        td(tm.alive ? "alive" : "lost", tm.alive ? "" : "error"),
        td(`${tm.last_heartbeat_ms_ago} ms ago`),
      ),
    ),
  );
}

/// Longest distance from a source, per vertex: the column it is drawn in.
function depths(job) {
  const depth = job.vertices.map(() => 0);
  for (let changed = true, rounds = 0; changed && rounds < job.vertices.length; rounds++) {
    changed = false;
    for (const e of job.edges) {
      if (depth[e.to] < depth[e.from] + 1) {
        depth[e.to] = depth[e.from] + 1;
        changed = true;
      }
    }
  }
  return depth;
}

function vertexFigures(job) {
  const p = previous.get(job.job_id);
  const secs = p ? (Date.now() - p.at) / 1000 : 0;
  return job.vertices.map((v) => {
    const before = p?.vertices[v.name];
    const rate = (f) => (before && secs > 0 ? (v[f] - before[f]) / secs : NaN);
    const share = (f) => (before && secs > 0 ? (v[f] - before[f]) / (secs * 1e9 * Math.max(v.parallelism, 1)) : NaN);
    return {
      inRate: rate("records_in"),
      outRate: rate("records_out"),
      busy: share("busy_ns"),
      backpressure: share("backpressured_ns"),
    };
  });
}

const BOX_W = 250;
const BOX_H = 80;
const GAP_X = 70;
const GAP_Y = 24;

function renderGraph(job, figures) {
  const svg = $("#graph");
  const NS = "http://www.w3.org/2000/svg";
  const depth = depths(job);
  const rowOf = [];
  const perColumn = new Map();
  job.vertices.forEach((_, i) => {
    const n = perColumn.get(depth[i]) ?? 0;
    rowOf[i] = n;
    perColumn.set(depth[i], n + 1);
  });
  const pos = job.vertices.map((_, i) => ({ x: 10 + depth[i] * (BOX_W + GAP_X), y: 10 + rowOf[i] * (BOX_H + GAP_Y) }));
  const width = 20 + (Math.max(...depth, 0) + 1) * (BOX_W + GAP_X);
  const height = 20 + Math.max(...perColumn.values(), 1) * (BOX_H + GAP_Y);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const s = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const defs = s("defs", {});
  const marker = s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" });
  marker.append(s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a93a6" }));
  defs.append(marker);
  const nodes = [defs];
  for (const e of job.edges) {
    const a = pos[e.from];
    const b = pos[e.to];
    const x1 = a.x + BOX_W, y1 = a.y + BOX_H / 2, x2 = b.x, y2 = b.y + BOX_H / 2;
    nodes.push(s("path", { class: "edge", d: `M${x1},${y1} C${x1 + 35},${y1} ${x2 - 35},${y2} ${x2},${y2}` }));
    nodes.push(s("text", { class: "edge-label", x: (x1 + x2) / 2 - 20, y: (y1 + y2) / 2 - 4 }, e.partitioning));
  }
  job.vertices.forEach((v, i) => {
    const f = figures[i];
    const bp = f.backpressure;
    const g = s("g", {
      class: "vertex" + (bp > 0.5 ? " bp-high" : bp > 0.1 ? " bp-mid" : ""),
      "data-vertex": v.name,
      transform: `translate(${pos[i].x},${pos[i].y})`,
    });
    g.append(s("rect", { width: BOX_W, height: BOX_H }));
    g.append(s("text", { class: "title", x: 8, y: 16 }, `${v.name}  ·  ${v.kind} ×${v.parallelism}`));
    g.append(s("text", { class: "rates", x: 8, y: 34, "data-in": f.inRate, "data-out": f.outRate }, `in ${num(f.inRate)}/s   out ${num(f.outRate)}/s`));
    g.append(s("text", { class: "load", x: 8, y: 51, "data-backpressure": bp }, `busy ${pct(f.busy)}   backpressured ${pct(bp)}`));
    g.append(s("text", { class: "watermark", x: 8, y: 68 }, `watermark ${time(v.watermark)}`));
    nodes.push(g);
  });
  svg.replaceChildren(...nodes);
}

async function renderJob(id) {
  const { body: job } = await api(`/api/jobs/${encodeURIComponent(id)}`);
  const state = STATES[job.state];
  $("#job-name").textContent = job.name;
  $("#job-id").textContent = job.job_id;
  $("#job-state").textContent = state;
  $("#job-state").className = `state-${state}`;
  $("#job-attempt").textContent = job.attempt;
  $("#job-failure").textContent = job.failure;
  $("#cancel").disabled = !["RUNNING", "SCHEDULING", "RESTARTING"].includes(state);
  const figures = vertexFigures(job);
  renderGraph(job, figures);
  fill(
    $("#vertices tbody"),
    job.vertices.map((v, i) =>
      el(
        "tr",
        { "data-vertex": v.name },
        td(v.name),
        td(v.kind),
        td(v.parallelism, "num"),
        td(num(figures[i].inRate), "num in-rate"),
        td(num(figures[i].outRate), "num out-rate"),
        td(pct(figures[i].busy), "num"),
        td(pct(figures[i].backpressure), "num"),
        td(v.kind === "source" ? "–" : pct(v.input_fill), "num"),
        td(time(v.watermark)),
        td(v.dead_letters, "num"),
        td(v.late_records, "num"),
        td(v.errors, "num"),
      ),
    ),
  );
  const partitions = job.vertices.flatMap((v) => v.partitions.map((p) => ({ source: v.name, ...p })));
  fill(
    $("#partitions tbody"),
    partitions.map((p) =>
      el(
        "tr",
        { class: p.paused ? "throttled" : "", "data-partition": p.name },
        td(p.source),
        td(p.subtask, "num"),
        td(p.name),
        td(time(p.watermark)),
        td(p.lag < 0 ? "–" : p.lag, "num"),
        td(p.paused ? "throttled (ran ahead)" : "reading"),
      ),
    ),
  );
  fill(
    $("#alignment tbody"),
    job.alignment.map((g) =>
      el(
        "tr",
        {},
        td(g.group),
        td(time(g.global_watermark)),
        td(time(g.allowed)),
        td(`${g.subtasks_reporting}/${g.subtasks}`),
        td(g.throttled.join(" ") || "none"),
      ),
    ),
  );
  fill(
    $("#checkpoints tbody"),
    [...job.checkpoints].reverse().map((c) =>
      el(
        "tr",
        { "data-checkpoint": c.id },
        td(c.id, "num"),
        td(c.attempt, "num"),
        td(time(c.completed_at_ms)),
        td(`${c.duration_ms} ms`, "num"),
        td(bytes(c.state_bytes), "num"),
        td(bytes(c.uploaded_bytes), "num"),
        td(`${c.alignment_ms} ms`, "num"),
      ),
    ),
  );
  fill(
    $("#commits tbody"),
    job.commits.flatMap((s) =>
      [...s.recent].reverse().map((c) =>
        el(
          "tr",
          {},
          td(s.sink),
          td(c.partition),
          td(c.files, "num"),
          td(c.rows, "num"),
          td(bytes(c.bytes), "num"),
          td(c.notified ? "sent" : "–"),
          td(time(c.committed_at_ms)),
        ),
      ),
    ),
  );
  previous.set(job.job_id, { at: Date.now(), vertices: Object.fromEntries(job.vertices.map((v) => [v.name, v])) });
}

function route() {
  const m = window.location.hash.match(/^#\/jobs\/(.+)$/);
  $("#overview").hidden = !!m;
  $("#job").hidden = !m;
  return m ? decodeURIComponent(m[1]) : null;
}

async function tick() {
  clearTimeout(timer);
  try {
    const id = route();
    if (id) await renderJob(id);
    else await renderOverview();
    showError(null);
  } catch (e) {
    showError(e);
  }
  timer = setTimeout(tick, POLL_MS);
}

$("#submit").addEventListener("click", async () => {
  const errors = $("#submit-errors");
  errors.replaceChildren();
  try {
    const { status, body } = await api("/api/jobs", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: $("#spec").value,
    });
    if (status === 422) {
      errors.replaceChildren(...body.errors.map((e) => el("li", {}, `${e.path}: ${e.message}`)));
      return;
    }
    window.location.hash = `#/jobs/${body.job_id}`;
  } catch (e) {
    errors.replaceChildren(el("li", {}, e.message));
  }
});

$("#cancel").addEventListener("click", async () => {
  const id = route();
  if (!id || !window.confirm(`Cancel job ${id}?`)) return;
  try {
    await api(`/api/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST", headers: { "x-weir-console": "1" } });
    tick();
  } catch (e) {
    showError(e);
  }
});

window.addEventListener("hashchange", tick);
tick();
