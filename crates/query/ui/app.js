// Cairn's query page: a PromQL box with autocomplete, a table of instant results, a graph of
// range results, and the stores page. Plain JavaScript over the Prometheus HTTP API that
// `cairn query` serves; state lives in the URL (?expr=&tab=&range=&end=&step=&dedup=&
// partial_response=&max_source_resolution=) so a page can be bookmarked, shared, and tested in a headless browser.
"use strict";

const FUNCTIONS = [
  "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
  "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
  "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
  "delta", "deriv", "double_exponential_smoothing", "exp", "floor", "histogram_quantile",
  "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time",
  "ln", "log10", "log2", "max_over_time", "min_over_time", "minute", "month", "pi",
  "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round",
  "scalar", "sgn", "sin", "sinh", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc",
  "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time",
  "timestamp", "vector", "year",
  "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk",
  "quantile", "count_values", "by", "without", "on", "ignoring", "group_left", "group_right",
  "offset", "bool", "and", "or", "unless",
];
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];

const $ = (id) => document.getElementById(id);

function parseDuration(s) {
  const re = /(\d+(?:\.\d+)?)(ms|y|w|d|h|m|s)/g;
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
  let total = 0, matched = "", m;
  while ((m = re.exec(s)) !== null) {
    total += parseFloat(m[1]) * unit[m[2]];
    matched += m[0];
  }
  if (matched !== s.trim() || total <= 0) return null;
  return total;
}

function seriesName(metric) {
  const name = metric.__name__ || "";
  const labels = Object.keys(metric).filter((k) => k !== "__name__").sort()
    .map((k) => `${k}=${JSON.stringify(metric[k])}`);
  return labels.length ? `${name}{${labels.join(", ")}}` : (name || "{}");
}

async function api(path, params, post) {
  const body = new URLSearchParams(params);
  const resp = post
    ? await fetch(path, { method: "POST", body, headers: { "Content-Type": "application/x-www-form-urlencoded" } })
    : await fetch(`${path}?${body}`);
  let json;
  try {
    json = await resp.json();
  } catch (e) {
    throw new Error(`HTTP ${resp.status}: not JSON`);
  }
  if (json.status !== "success") {
    throw new Error(`${json.errorType || "error"}: ${json.error || resp.status}`);
  }
  return json;
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "status error" : "status";
}

function showWarnings(warnings) {
  const ul = $("warnings");
  ul.innerHTML = "";
  for (const w of warnings || []) {
    const li = document.createElement("li");
    li.textContent = w;
    ul.appendChild(li);
  }
}

function formState() {
  return {
    expr: $("expr").value,
    tab: $("tab").value,
    range: $("range").value || "1h",
    end: $("end").value,
    step: $("step").value,
    dedup: $("dedup").checked ? "true" : "false",
    partial_response: $("partial").checked ? "true" : "false",
    max_source_resolution: $("resolution").value,
  };
}

function endSeconds(end) {
  if (!end) return Date.now() / 1000;
  const n = Number(end);
  if (!Number.isNaN(n)) return n;
  const t = Date.parse(end);
  return Number.isNaN(t) ? Date.now() / 1000 : t / 1000;
}

function renderTable(data) {
  const tbody = $("results").querySelector("tbody");
  tbody.innerHTML = "";
  const add = (name, value) => {
    const tr = document.createElement("tr");
    tr.className = "result";
    const a = document.createElement("td");
    a.textContent = name;
    const b = document.createElement("td");
    b.textContent = value;
    tr.append(a, b);
    tbody.appendChild(tr);
  };
  switch (data.resultType) {
    case "vector":
      for (const s of data.result) add(seriesName(s.metric), s.value[1]);
      break;
    case "matrix":
      for (const s of data.result) add(seriesName(s.metric), s.values.map((v) => `${v[1]} @${v[0]}`).join("\n"));
      break;
    case "scalar":
    case "string":
      add(data.resultType, data.result[1]);
      break;
  }
  return tbody.children.length;
}

function renderGraph(data, start, end) {
  const svg = $("graph");
  const legend = $("legend");
  svg.innerHTML = "";
  legend.innerHTML = "";
  const W = 960, H = 360, L = 60, R = 10, T = 10, B = 25;
  const series = data.resultType === "matrix" ? data.result : [];
  let lo = Infinity, hi = -Infinity;
  for (const s of series) {
    for (const [, v] of s.values) {
      const f = parseFloat(v);
      if (Number.isFinite(f)) { lo = Math.min(lo, f); hi = Math.max(hi, f); }
    }
  }
  if (lo === Infinity) { lo = 0; hi = 1; }
  if (lo === hi) { lo -= 1; hi += 1; }
  const x = (t) => L + ((t - start) / Math.max(end - start, 1e-9)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  el("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B });
  el("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B });
  el("text", { x: 2, y: T + 10 }, hi.toPrecision(4));
  el("text", { x: 2, y: H - B }, lo.toPrecision(4));
  el("text", { x: L, y: H - 5 }, new Date(start * 1000).toISOString());
  el("text", { x: W - R - 150, y: H - 5 }, new Date(end * 1000).toISOString());
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    let d = "", prev = null;
    for (const [t, v] of s.values) {
      const f = parseFloat(v);
      if (!Number.isFinite(f)) { prev = null; continue; }
      d += `${prev === null ? "M" : "L"}${x(t).toFixed(1)},${y(f).toFixed(1)} `;
      prev = t;
    }
    const p = el("path", { class: "series", d: d.trim(), stroke: color });
    p.dataset.series = seriesName(s.metric);
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = color;
    li.append(sw, document.createTextNode(seriesName(s.metric)));
    legend.appendChild(li);
  });
  return series.length;
}

async function execute() {
  const st = formState();
  const params = new URLSearchParams(st);
  history.replaceState(null, "", `?${params}`);
  $("query-form").dataset.resolution = st.max_source_resolution || "raw";
  $("table-view").hidden = st.tab !== "table";
  $("graph-view").hidden = st.tab !== "graph";
  if (!st.expr.trim()) {
    setStatus("Enter an expression.", false);
    return;
  }
  setStatus("Loading…", false);
  const started = performance.now();
  const end = endSeconds(st.end);
  try {
    let json, n;
    const common = { query: st.expr, dedup: st.dedup, partial_response: st.partial_response };
    // Downsampled data only when asked for (the server reads raw samples otherwise).
    if (st.max_source_resolution) common.max_source_resolution = st.max_source_resolution;
    if (st.tab === "table") {
      json = await api("api/v1/query", { ...common, time: end });
      n = renderTable(json.data);
    } else {
      const range = parseDuration(st.range) || 3600;
      const start = end - range;
      const step = parseDuration(st.step || "") || Math.max(1, Math.round(range / 250));
      json = await api("api/v1/query_range", { ...common, start, end, step }, true);
      n = renderGraph(json.data, start, end);
    }
    showWarnings(json.warnings);
    const ms = Math.round(performance.now() - started);
    setStatus(`${n} series, ${json.data.resultType}, ${ms} ms`, false);
    document.body.dataset.state = "done";
  } catch (e) {
    setStatus(String(e.message || e), true);
    document.body.dataset.state = "error";
  }
}

// --- autocomplete ---------------------------------------------------------------------------

const cache = new Map();
async function cached(path) {
  if (!cache.has(path)) {
    cache.set(path, api(path, {}).then((j) => j.data).catch(() => []));
  }
  return cache.get(path);
}

// What the cursor is in: a metric/function name, a label name inside braces, or a label value.
function context(text, pos) {
  const before = text.slice(0, pos);
  const open = before.lastIndexOf("{");
  const close = before.lastIndexOf("}");
  if (open > close) {
    const inside = before.slice(open + 1);
    const value = inside.match(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/);
    if (value) return { kind: "value", label: value[1], prefix: value[3] };
    const name = inside.match(/([a-zA-Z_][a-zA-Z0-9_]*)?$/);
    return { kind: "label", prefix: name[1] || "" };
  }
  const word = before.match(/[a-zA-Z_:][a-zA-Z0-9_:]*$/);
  return { kind: "metric", prefix: word ? word[0] : "" };
}

async function candidates(ctx) {
  let all;
  if (ctx.kind === "value") all = await cached(`api/v1/label/${encodeURIComponent(ctx.label)}/values`);
  else if (ctx.kind === "label") all = (await cached("api/v1/labels")).filter((l) => l !== "__name__");
  else {
    if (!ctx.prefix) return [];
    all = (await cached("api/v1/label/__name__/values")).concat(FUNCTIONS);
  }
  const p = ctx.prefix.toLowerCase();
  return [...new Set(all)].filter((c) => c.toLowerCase().startsWith(p) && c !== ctx.prefix).sort().slice(0, 20);
}

let active = -1;
async function suggest() {
  const box = $("expr");
  const ctx = context(box.value, box.selectionStart);
  const list = await candidates(ctx);
  const ul = $("suggestions");
  ul.innerHTML = "";
  active = -1;
  for (const c of list) {
    const li = document.createElement("li");
    li.textContent = c;
    li.setAttribute("role", "option");
    li.addEventListener("mousedown", (ev) => { ev.preventDefault(); accept(c); });
    ul.appendChild(li);
  }
  ul.hidden = list.length === 0;
  document.body.dataset.suggestions = String(list.length);
}

function accept(choice) {
  const box = $("expr");
  const pos = box.selectionStart;
  const ctx = context(box.value, pos);
  const start = pos - ctx.prefix.length;
  box.value = box.value.slice(0, start) + choice + box.value.slice(pos);
  box.selectionStart = box.selectionEnd = start + choice.length;
  $("suggestions").hidden = true;
  box.focus();
}

function onKey(ev) {
  const ul = $("suggestions");
  const items = [...ul.children];
  if (ev.key === "Enter" && !ev.shiftKey && (ul.hidden || active < 0)) {
    ev.preventDefault();
    ul.hidden = true;
    execute();
    return;
  }
  if (ul.hidden || !items.length) return;
  if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    ev.preventDefault();
    active = (active + (ev.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
    items.forEach((li, i) => li.classList.toggle("active", i === active));
  } else if ((ev.key === "Enter" || ev.key === "Tab") && active >= 0) {
    ev.preventDefault();
    accept(items[active].textContent);
  } else if (ev.key === "Escape") {
    ul.hidden = true;
  }
}

// --- stores page ----------------------------------------------------------------------------

function fmtTime(ms) {
  if (ms === undefined || ms === null) return "";
  if (ms <= -9e15 || ms >= 9e15) return ms < 0 ? "-∞" : "+∞";
  return new Date(ms).toISOString();
}

async function stores() {
  const tbody = $("stores").querySelector("tbody");
  try {
    const json = await api("api/v1/stores", {});
    const list = Array.isArray(json.data) ? json.data : Object.values(json.data).flat();
    tbody.innerHTML = "";
    for (const s of list) {
      const tr = document.createElement("tr");
      tr.className = "store";
      const healthy = s.health === "up" || s.healthy === true || s.up === true;
      const sets = (s.labelSets || s.label_sets || []).map((ls) =>
        Array.isArray(ls) ? `{${ls.map((l) => `${l.name}="${l.value}"`).join(", ")}}` : seriesName(ls));
      const cells = [s.name || s.address || s.endpoint, healthy ? "up" : "down", sets.join(" "),
        fmtTime(s.minTime ?? s.min_time), fmtTime(s.maxTime ?? s.max_time), s.lastError || s.last_error || ""];
      cells.forEach((c, i) => {
        const td = document.createElement("td");
        td.textContent = c;
        if (i === 1) td.className = healthy ? "health-up" : "health-down";
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    }
    document.body.dataset.state = "done";
  } catch (e) {
    setStatus(String(e.message || e), true);
    document.body.dataset.state = "error";
  }
}

// --- start ------------------------------------------------------------------------------------

function start() {
  if (location.pathname.endsWith("/stores")) {
    $("page-query").hidden = true;
    $("page-stores").hidden = false;
    stores();
    return;
  }
  const q = new URLSearchParams(location.search);
  $("expr").value = q.get("expr") || "";
  $("tab").value = q.get("tab") === "graph" ? "graph" : "table";
  if (q.get("range")) $("range").value = q.get("range");
  if (q.get("end")) $("end").value = q.get("end");
  if (q.get("step")) $("step").value = q.get("step");
  $("dedup").checked = q.get("dedup") !== "false";
  $("partial").checked = q.get("partial_response") !== "false";
  $("resolution").value = ["auto", "5m", "1h"].includes(q.get("max_source_resolution"))
    ? q.get("max_source_resolution") : "";
  $("resolution").addEventListener("change", execute);
  $("query-form").addEventListener("submit", (ev) => { ev.preventDefault(); execute(); });
  $("tab").addEventListener("change", execute);
  $("expr").addEventListener("input", suggest);
  $("expr").addEventListener("keydown", onKey);
  $("expr").addEventListener("blur", () => setTimeout(() => { $("suggestions").hidden = true; }, 100));
  if (q.has("suggest")) {
    // Place the cursor at the end and show what would be suggested (used by the page test).
    const box = $("expr");
    box.focus();
    box.selectionStart = box.selectionEnd = box.value.length;
    suggest();
  } else if ($("expr").value) {
    execute();
  }
}

start();
