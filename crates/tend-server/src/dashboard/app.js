// tend's dashboard: the public API and its event stream, nothing else.
// The token lives in this tab's sessionStorage and travels only in the
// Authorization header; the address bar never keeps it.
"use strict";

const $ = (sel) => document.querySelector(sel);
const FILTERS = ["status", "name", "label", "since", "job"];
const rows = new Map(); // id -> execution
let token = null;
let stream = null; // AbortController of the event stream
let detail = null; // { id, stream: "stdout"|"stderr", abort }

// ---- token -----------------------------------------------------------

function takeTokenFromAddress() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("tend-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("tend-token");
}

function showSignIn(message) {
  token = null;
  sessionStorage.removeItem("tend-token");
  stopStream();
  $("#app").hidden = true;
  $("#signout").hidden = true;
  $("#signin").hidden = false;
  $("#signin-error").textContent = message || "";
  $("#token-input").focus();
}

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + token };
  if (options.body) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { ...options, headers, cache: "no-store" });
  if (r.status === 401) {
    showSignIn("That token was refused: use the one in tend's home (the file token).");
    throw new Error("unauthorized");
  }
  return r;
}

async function json(path, options) {
  const r = await api(path, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// ---- filters, kept in the address so a view can be bookmarked ----------

function filters() {
  const q = new URLSearchParams(location.search);
  const f = {};
  for (const k of FILTERS) if (q.get(k)) f[k] = q.get(k);
  return f;
}

function showFilters() {
  const f = filters();
  for (const k of FILTERS) $("#f-" + k).value = f[k] || "";
}

function setFilters() {
  const q = new URLSearchParams();
  for (const k of FILTERS) {
    const v = $("#f-" + k).value.trim();
    if (v) q.set(k, v);
  }
  const s = q.toString();
  history.replaceState(null, "", location.pathname + (s ? "?" + s : ""));
  load();
}

function shellWord(w) {
  return /^[A-Za-z0-9_.,:=@%+\/-]+$/.test(w) ? w : "'" + w.replace(/'/g, "'\\''") + "'";
}

function cliLine() {
  const f = filters();
  const words = ["tend", "list"];
  for (const k of FILTERS) if (f[k]) words.push("--" + k, shellWord(f[k]));
  return words.join(" ");
}

// ---- the table -------------------------------------------------------

function ago(ms) {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return Math.floor(s) + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m ago";
  if (s < 86400) return Math.floor(s / 3600) + "h ago";
  return Math.floor(s / 86400) + "d ago";
}

function took(e) {
  if (!e.started_at) return "-";
  const ms = (e.finished_at ? Date.parse(e.finished_at) : Date.now()) - Date.parse(e.started_at);
  return ms < 1000 ? ms + "ms" : (ms / 1000).toFixed(1) + "s";
}

function exitOf(e) {
  if (e.signal != null) return "sig" + e.signal;
  return e.exit_code != null ? String(e.exit_code) : "-";
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function rowFor(e) {
  const tr = document.createElement("tr");
  tr.dataset.id = e.id;
  tr.tabIndex = 0;
  tr.append(
    cell(e.id, "id"),
    cell(e.job ? e.job + "#" + e.job_number + (e.attempt > 1 ? "." + e.attempt : "") : e.name),
    cell(e.status, "status s-" + e.status),
    cell(exitOf(e)),
    cell(ago(Date.parse(e.created_at))),
    cell(took(e)),
    cell(e.command.join(" "), "cmd"),
  );
  tr.addEventListener("click", () => openDetail(e.id));
  tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openDetail(e.id); });
  return tr;
}

function render() {
  const body = $("#executions tbody");
  const sorted = [...rows.values()].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
  body.replaceChildren(...sorted.map(rowFor));
  if (!sorted.length) {
    const tr = document.createElement("tr");
    const td = cell("No executions match.");
    td.colSpan = 7;
    tr.append(td);
    body.append(tr);
  }
}

function globMatches(glob, text) {
  const re = "^" + glob.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$";
  return new RegExp(re).test(text);
}

/// Whether an execution the stream announced belongs in this view.
function matches(e) {
  const f = filters();
  if (f.status && !f.status.split(",").includes(e.status)) return false;
  if (f.name && !globMatches(f.name, e.name)) return false;
  if (f.job && e.job !== f.job) return false;
  if (f.label) {
    const [k, v] = f.label.split("=");
    if ((e.labels || {})[k] !== v) return false;
  }
  return true;
}

async function load() {
  const q = new URLSearchParams({ ...filters(), limit: "200" });
  try {
    const list = await json("/api/v1/executions?" + q);
    rows.clear();
    for (const e of list) rows.set(e.id, e);
    render();
    $("#bulk-result").textContent = "";
  } catch (err) {
    if (err.message !== "unauthorized") $("#bulk-result").textContent = err.message;
  }
}

// ---- the event stream: a streaming fetch, since EventSource cannot send
// the Authorization header -------------------------------------------------

function stopStream() {
  if (stream) stream.abort();
  stream = null;
  $("#live").textContent = "";
}

async function startStream() {
  stopStream();
  const ctl = new AbortController();
  stream = ctl;
  try {
    const r = await fetch("/api/v1/events", {
      headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
      signal: ctl.signal,
      cache: "no-store",
    });
    if (r.status === 401) return showSignIn("That token was refused.");
    $("#live").textContent = "● live";
    const reader = r.body.getReader();
    const text = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += text.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        onEvent(buf.slice(0, end));
        buf = buf.slice(end + 2);
      }
    }
  } catch (err) {
    if (ctl.signal.aborted) return;
  }
  if (stream === ctl) {
    $("#live").textContent = "○ reconnecting";
    setTimeout(() => { if (stream === ctl && !document.hidden) startStream(); }, 2000);
  }
}

function onEvent(block) {
  const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
  if (!data) return;
  const e = JSON.parse(data);
  if (rows.has(e.id) || matches(e)) {
    rows.set(e.id, e);
    render();
  }
  if (detail && detail.id === e.id) showFields(e);
  if (!["queued", "running"].includes(e.status) && !statsDue) {
    statsDue = setTimeout(() => { statsDue = null; loadStats(); }, 5000);
  }
}
let statsDue = null;

// Paused while the tab is hidden; caught up (one list read, then the
// stream again) when it is shown.
document.addEventListener("visibilitychange", () => {
  if (!token) return;
  if (document.hidden) stopStream();
  else { load(); startStream(); }
});

// ---- the detail --------------------------------------------------------

function showFields(e) {
  $("#detail-title").textContent = e.name + " · " + e.id;
  const dl = $("#fields");
  dl.replaceChildren();
  const add = (k, v) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v == null || v === "" ? "-" : String(v);
    dl.append(dt, dd);
  };
  add("status", e.status);
  add("reason", e.reason);
  add("exit", exitOf(e));
  add("command", e.command.join(" "));
  add("cwd", e.cwd);
  add("created", e.created_at);
  add("started", e.started_at);
  add("finished", e.finished_at);
  add("duration", took(e));
  add("pid", e.pid);
  add("tier", e.tier);
  add("host", e.host);
  add("key", e.key);
  add("labels", Object.entries(e.labels || {}).map(([k, v]) => k + "=" + v).join(" "));
  if (e.job) add("job", e.job + "#" + e.job_number + " attempt " + e.attempt);
  add("kill grace", e.kill_grace_ms + "ms");
  add("kill", e.kill_method ? e.kill_method + " in " + e.kill_duration_ms + "ms, " + e.processes_signalled + " signalled" : "");
  add("progress", e.progress);
  $("#kill").hidden = ["succeeded", "failed", "timed_out", "killed", "lost", "cancelled"].includes(e.status);
  $("#kill").dataset.grace = e.kill_grace_ms;
  loadEvents(e.id);
}

async function loadEvents(id) {
  try {
    const events = await json("/api/v1/executions/" + id + "/events");
    $("#events").replaceChildren(...events.map((ev) => {
      const li = document.createElement("li");
      li.textContent = ev.at + "  " + ev.kind + "  by " + ev.actor + "  " + JSON.stringify(ev.details);
      return li;
    }));
  } catch (_) { /* shown by the next event */ }
}

async function followLog() {
  if (detail.abort) detail.abort.abort();
  const ctl = new AbortController();
  detail.abort = ctl;
  const pre = $("#log");
  pre.textContent = "";
  const q = new URLSearchParams({ stream: detail.stream, follow: "true" });
  try {
    const r = await api("/api/v1/executions/" + detail.id + "/logs?" + q, { signal: ctl.signal });
    const reader = r.body.getReader();
    const text = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pre.textContent += text.decode(value, { stream: true });
      pre.scrollTop = pre.scrollHeight;
    }
  } catch (_) { /* closed, or the detail changed */ }
}

async function openDetail(id) {
  if (detail && detail.abort) detail.abort.abort();
  detail = { id, stream: "stdout", abort: null };
  $("#detail").hidden = false;
  $("#show-stdout").setAttribute("aria-pressed", "true");
  $("#show-stderr").setAttribute("aria-pressed", "false");
  try {
    showFields(await json("/api/v1/executions/" + id));
  } catch (err) {
    $("#detail-title").textContent = err.message;
  }
  followLog();
}

function pickStream(name) {
  detail.stream = name;
  $("#show-stdout").setAttribute("aria-pressed", String(name === "stdout"));
  $("#show-stderr").setAttribute("aria-pressed", String(name === "stderr"));
  followLog();
}

// ---- kills -------------------------------------------------------------

function ask(text, offerForce) {
  return new Promise((done) => {
    const d = $("#confirm");
    $("#confirm-text").textContent = text;
    $("#confirm-force").hidden = !offerForce;
    d.onclose = () => done(d.returnValue);
    d.returnValue = "cancel";
    d.showModal();
  });
}

async function killOne() {
  const grace = $("#kill").dataset.grace;
  const choice = await ask("Kill " + detail.id + "? Its whole tree gets SIGTERM, then SIGKILL after a grace of " + grace + "ms.", true);
  if (choice === "cancel") return;
  const body = JSON.stringify({ force: choice === "force", reason: "from the dashboard" });
  try {
    const k = await json("/api/v1/executions/" + detail.id + "/kill", { method: "POST", body });
    rows.set(k.id, k);
    render();
    showFields(k);
  } catch (err) {
    $("#bulk-result").textContent = err.message;
  }
}

async function bulkKill() {
  const f = filters();
  const sel = {};
  if (f.name) sel.name = f.name;
  if (f.label) sel.label = f.label;
  if (!sel.name && !sel.label) sel.all = true;
  try {
    const dry = await json("/api/v1/executions/kill", { method: "POST", body: JSON.stringify({ ...sel, dry_run: true }) });
    if (!dry.matched.length) { $("#bulk-result").textContent = "No live execution matches."; return; }
    const choice = await ask("Kill " + dry.matched.length + " live execution(s): " + dry.matched.map((e) => e.id).join(", ") + "?", false);
    if (choice !== "ok") return;
    const done = await json("/api/v1/executions/kill", { method: "POST", body: JSON.stringify({ ...sel, dry_run: false, reason: "bulk kill from the dashboard" }) });
    $("#bulk-result").textContent = done.killed.map((k) => k.id + " " + k.status + " (" + k.kill_method + ")").join("; ");
    load();
  } catch (err) {
    $("#bulk-result").textContent = err.message;
  }
}

// ---- jobs and health ---------------------------------------------------

async function loadJobs() {
  const box = $("#jobs");
  const jobs = await json("/api/v1/jobs");
  if (!jobs.length) { box.textContent = "No stored jobs yet (tend job add)."; return; }
  const table = document.createElement("table");
  table.setAttribute("aria-label", "Jobs");
  const head = document.createElement("tr");
  for (const h of ["Job", "Schedule", "Next fire", "Runs", "", ""]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.append(th);
  }
  table.append(head);
  for (const j of jobs) {
    const tr = document.createElement("tr");
    tr.append(
      cell(j.name),
      cell((j.schedule || "(run by hand)") + (j.schedule ? " " + j.timezone : "")),
      cell(j.paused ? "paused" : (j.next_fires[0] || "-")),
      cell(String(j.next_number - 1)),
    );
    const act = (label, path) => {
      const td = document.createElement("td");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.setAttribute("aria-label", label + " " + j.name);
      b.addEventListener("click", async () => {
        try {
          await json("/api/v1/jobs/" + encodeURIComponent(j.name) + path, { method: "POST", body: "{}" });
        } catch (err) {
          $("#bulk-result").textContent = err.message;
        }
        loadJobs();
      });
      td.append(b);
      return td;
    };
    tr.append(act("Run now", "/run"), j.paused ? act("Resume", "/resume") : act("Pause", "/pause"));
    table.append(tr);
  }
  box.replaceChildren(table);
}

async function loadHealth() {
  try {
    const r = await api("/api/v1/health");
    const h = await r.json();
    const badge = $("#health");
    badge.textContent = h.status;
    badge.className = "badge h-" + h.status;
    $("#checks").replaceChildren(...(h.checks || []).map((c) => {
      const li = document.createElement("li");
      li.textContent = (c.ok ? "ok  " : "warn ") + c.name + ": " + c.detail;
      li.className = c.ok ? "ok" : "warn";
      return li;
    }));
  } catch (_) { /* signed out */ }
}

function fmtMs(ms) {
  return ms < 1000 ? ms + "ms" : (ms / 1000).toFixed(1) + "s";
}

/// The last day from GET /api/v1/stats (aggregates the ledger computes):
/// totals, failure rate, run-time percentiles, and a bar per hour.
async function loadStats() {
  try {
    const s = await json("/api/v1/stats?since=1d");
    const rate = s.failure_rate == null ? "-" : (s.failure_rate * 100).toFixed(1) + "%";
    const d = s.duration_ms;
    $("#stats-summary").textContent = s.total + " executions · failure rate " + rate +
      (d ? " · run time p50 " + fmtMs(d.p50) + ", p95 " + fmtMs(d.p95) + ", max " + fmtMs(d.max) : "");
    const top = Math.max(1, ...s.per_hour.map((h) => h.created));
    $("#per-hour").replaceChildren(...s.per_hour.map((h) => {
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.title = h.start + ": " + h.created + " created, " + h.failed + " failed";
      bar.style.height = Math.round((h.created / top) * 100) + "%";
      const bad = document.createElement("div");
      bad.className = "bad";
      bad.style.height = h.created ? Math.round((h.failed / h.created) * 100) + "%" : "0";
      bar.append(bad);
      return bar;
    }));
  } catch (_) { /* signed out */ }
}

// ---- start ---------------------------------------------------------------

async function signIn(t) {
  token = t;
  sessionStorage.setItem("tend-token", t);
  const r = await fetch("/api/v1/health", { headers: { Authorization: "Bearer " + t }, cache: "no-store" });
  if (r.status === 401) return showSignIn("That token was refused: use the one in tend's home (the file token).");
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#signout").hidden = false;
  showFilters();
  await load();
  startStream();
  loadHealth();
  loadStats();
  loadJobs().catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn($("#token-input").value.trim());
  });
  $("#signout").addEventListener("click", () => showSignIn(""));
  $("#filters").addEventListener("change", setFilters);
  $("#filters").addEventListener("submit", (ev) => { ev.preventDefault(); setFilters(); });
  $("#copy-cli").addEventListener("click", () => {
    const line = cliLine();
    $("#cli-line").textContent = line;
    $("#cli-line").hidden = false;
    if (navigator.clipboard) navigator.clipboard.writeText(line).catch(() => {});
  });
  $("#bulk-kill").addEventListener("click", bulkKill);
  $("#kill").addEventListener("click", killOne);
  $("#detail-close").addEventListener("click", () => {
    if (detail && detail.abort) detail.abort.abort();
    detail = null;
    $("#detail").hidden = true;
  });
  $("#show-stdout").addEventListener("click", () => pickStream("stdout"));
  $("#show-stderr").addEventListener("click", () => pickStream("stderr"));
  const t = takeTokenFromAddress();
  if (t) signIn(t); else showSignIn("");
});
