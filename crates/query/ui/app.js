// Cairn's query page: a PromQL box with autocomplete and history, a sortable table of instant
// results (native histograms as count, sum and a bucket table), a graph of range results (uPlot,
// vendored; native histograms as count lines plus bucket heatmaps on a canvas), the stores page
// and the cluster page. Plain JavaScript
// over the Prometheus HTTP API that `cairn query` serves; state lives in the URL (?expr=&tab=&
// range=&end=&step=&dedup=&partial_response=&max_source_resolution=&stacked=&utc=&sort=) so a page
// can be bookmarked, shared, and tested in a headless browser; #hover=FRACTION moves the mouse
// over the graph once it is drawn, for tests.
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

// --- number and time formatting ------------------------------------------------------------

const SI = [[1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"],
  [1e-6, "µ"], [1e-9, "n"]];

// 1500 -> "1.5k", 0.002 -> "2m": the y axis of the graph, as Grafana's "short" unit does.
function fmtSI(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v === 0) return "0";
  const a = Math.abs(v);
  for (const [f, p] of SI) {
    if (a >= f) return `${parseFloat((v / f).toPrecision(digits))}${p}`;
  }
  return v.toExponential(digits - 1);
}

function pad(n, w = 2) { return String(n).padStart(w, "0"); }

function fmtDateTime(sec, utc) {
  const d = new Date(sec * 1000);
  if (utc) return `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
  const off = -d.getTimezoneOffset();
  const zone = `${off >= 0 ? "+" : "-"}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zone}`;
}

// 24-hour tick labels; the date is added under the first tick and wherever the day changes.
function timeTicks(splits, incr, utc) {
  let lastDay = "";
  return splits.map((sec) => {
    const d = new Date(sec * 1000);
    const get = utc
      ? [d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
      : [d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
    const [mo, day, h, mi, se] = get;
    const date = `${pad(mo)}-${pad(day)}`;
    const time = incr < 60 ? `${pad(h)}:${pad(mi)}:${pad(se)}` : `${pad(h)}:${pad(mi)}`;
    const label = incr >= 86400 ? date : (date !== lastDay ? `${time}\n${date}` : time);
    lastDay = date;
    return label;
  });
}

function fmtDuration(sec) {
  const units = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  let out = "", rest = Math.round(sec);
  for (const [u, n] of units) {
    if (rest >= n) { out += `${Math.floor(rest / n)}${u}`; rest %= n; }
  }
  return out || `${sec}s`;
}

// --- table ----------------------------------------------------------------------------------

let tableRows = [];
let tableSort = { key: "", dir: 1 };

function labelChips(metric) {
  const frag = document.createDocumentFragment();
  const name = document.createElement("span");
  name.className = "metric-name";
  name.textContent = metric.__name__ || "";
  frag.appendChild(name);
  for (const k of Object.keys(metric).filter((k) => k !== "__name__").sort()) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = `${k}=${JSON.stringify(metric[k])}`;
    frag.appendChild(chip);
  }
  return frag;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (e) {
    // Plain http (not localhost) has no clipboard API; the old way still works there.
    const ta = document.createElement("textarea");
    ta.value = text;
    document.body.appendChild(ta);
    ta.select();
    const ok = document.execCommand("copy");
    ta.remove();
    return ok;
  }
}

function copyButton(selector) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "copy";
  b.title = `Copy ${selector}`;
  b.textContent = "Copy";
  b.addEventListener("click", async () => {
    b.textContent = (await copyText(selector)) ? "Copied" : "Copy failed";
    setTimeout(() => { b.textContent = "Copy"; }, 1500);
  });
  return b;
}

function drawTable() {
  const tbody = $("results").querySelector("tbody");
  tbody.innerHTML = "";
  const rows = tableRows.slice();
  if (tableSort.key === "value") {
    // A histogram sorts by its count of observations.
    const num = (r) => {
      const f = parseFloat(r.histogram ? r.histogram.count : r.value);
      return Number.isNaN(f) ? -Infinity : f;
    };
    rows.sort((a, b) => tableSort.dir * (num(a) - num(b)));
  } else if (tableSort.key === "series") {
    rows.sort((a, b) => tableSort.dir * a.selector.localeCompare(b.selector));
  }
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.className = "result";
    tr.dataset.selector = r.selector;
    const a = document.createElement("td");
    a.className = "series";
    if (r.metric) {
      a.appendChild(labelChips(r.metric));
      a.appendChild(copyButton(r.selector));
    } else {
      a.textContent = r.selector;
    }
    const b = document.createElement("td");
    b.className = "value";
    if (r.histogram) {
      b.classList.add("histogram");
      b.appendChild(histogramView(r.histogram));
    } else {
      b.textContent = r.value;
    }
    tr.append(a, b);
    tbody.appendChild(tr);
  }
  for (const th of $("results").querySelectorAll("th.sortable")) {
    const on = th.dataset.sort === tableSort.key;
    th.dataset.dir = on ? (tableSort.dir > 0 ? "asc" : "desc") : "";
  }
}

// --- native histograms ------------------------------------------------------------------------

// A bucket's bounds as Prometheus' page writes them: "(0.5 -> 1]". The boundary rule says which
// ends are inclusive: 0 (lower open), 1 (upper open), 2 (both open), 3 (both closed).
function bucketRange(b) {
  const [rule, lower, upper] = b;
  const left = rule === 3 || rule === 1 ? "[" : "(";
  const right = rule === 3 || rule === 0 ? "]" : ")";
  return `${left}${lower} -> ${upper}${right}`;
}

// One line for a histogram sample: "count 12, sum 3.5, 4 buckets".
function histogramSummary(h) {
  const n = (h.buckets || []).length;
  return `count ${h.count}, sum ${h.sum}, ${n} bucket${n === 1 ? "" : "s"}`;
}

// The table cell of a histogram: its count and sum, then one row per bucket with a bar
// showing the bucket's count against the largest.
function histogramView(h) {
  const wrap = document.createElement("div");
  wrap.className = "histogram";
  const head = document.createElement("div");
  head.className = "hist-summary";
  for (const [cls, name, v] of [["hist-count", "Count", h.count], ["hist-sum", "Sum", h.sum]]) {
    const span = document.createElement("span");
    span.className = cls;
    span.append(`${name}: `);
    const b = document.createElement("b");
    b.textContent = v;
    span.appendChild(b);
    head.appendChild(span);
  }
  wrap.appendChild(head);
  const buckets = h.buckets || [];
  if (!buckets.length) {
    const none = document.createElement("div");
    none.className = "hist-empty";
    none.textContent = "no populated buckets";
    wrap.appendChild(none);
    return wrap;
  }
  const max = buckets.reduce((m, b) => Math.max(m, parseFloat(b[3]) || 0), 0);
  const scroll = document.createElement("div");
  scroll.className = "hist-scroll";
  const table = document.createElement("table");
  table.className = "hist-buckets";
  const hr = document.createElement("tr");
  for (const t of ["Bucket range", "Count"]) {
    const th = document.createElement("th");
    th.textContent = t;
    hr.appendChild(th);
  }
  table.createTHead().appendChild(hr);
  const tbody = table.createTBody();
  for (const b of buckets) {
    const tr = document.createElement("tr");
    tr.className = "bucket";
    const range = document.createElement("td");
    range.className = "range";
    range.textContent = bucketRange(b);
    const count = document.createElement("td");
    count.className = "count";
    count.textContent = b[3];
    const pct = max > 0 ? (100 * (parseFloat(b[3]) || 0)) / max : 0;
    count.style.setProperty("--frac", `${pct.toFixed(1)}%`);
    tr.append(range, count);
    tbody.appendChild(tr);
  }
  scroll.appendChild(table);
  wrap.appendChild(scroll);
  return wrap;
}

function renderTable(data) {
  tableRows = [];
  switch (data.resultType) {
    case "vector":
      for (const s of data.result) {
        if (s.histogram) {
          tableRows.push({ metric: s.metric, selector: seriesName(s.metric),
            value: histogramSummary(s.histogram[1]), histogram: s.histogram[1] });
        } else {
          tableRows.push({ metric: s.metric, selector: seriesName(s.metric), value: s.value[1] });
        }
      }
      break;
    case "matrix":
      for (const s of data.result) {
        // Float samples and histogram samples of one series, in time order.
        const points = (s.values || []).map((v) => [Number(v[0]), `${v[1]} @${v[0]}`])
          .concat((s.histograms || []).map((v) => [Number(v[0]), `${histogramSummary(v[1])} @${v[0]}`]))
          .sort((x, y) => x[0] - y[0]);
        tableRows.push({ metric: s.metric, selector: seriesName(s.metric),
          value: points.map((p) => p[1]).join("\n") });
      }
      break;
    case "scalar":
    case "string":
      tableRows.push({ metric: null, selector: data.resultType, value: data.result[1] });
      break;
  }
  drawTable();
  return tableRows.length;
}

function sortBy(key) {
  // Values sort largest first on the first click, as one usually looks for the top series.
  if (tableSort.key === key) tableSort.dir = -tableSort.dir;
  else tableSort = { key, dir: key === "value" ? -1 : 1 };
  const q = new URLSearchParams(location.search);
  q.set("sort", `${tableSort.dir < 0 ? "-" : ""}${key}`);
  history.replaceState(null, "", `?${q}${location.hash}`);
  drawTable();
}

// --- graph ----------------------------------------------------------------------------------

let plot = null;
let graphState = null; // { series, raw, stacked, utc, start, end, step }
let isolated = -1;

function alpha(hex, a) {
  return hex + Math.round(a * 255).toString(16).padStart(2, "0");
}

// The step grid of a range query: every series' timestamps fall on start + k * step.
function alignData(series, start, end, step) {
  const xs = [];
  const n = Math.floor((end - start) / step + 1e-9);
  for (let k = 0; k <= n; k++) xs.push(Math.round(start * 1000 + k * step * 1000) / 1000);
  const index = new Map(xs.map((t, i) => [t.toFixed(3), i]));
  const ys = series.map((s) => {
    const col = new Array(xs.length).fill(null);
    for (const [t, v] of s.values) {
      const i = index.get(Number(t).toFixed(3));
      const f = parseFloat(v);
      if (i !== undefined && Number.isFinite(f)) col[i] = f;
    }
    return col;
  });
  return [xs, ys];
}

function stack(ys, shown) {
  const acc = new Array(ys.length ? ys[0].length : 0).fill(0);
  return ys.map((col, i) => {
    if (!shown[i]) return col.slice();
    return col.map((v, k) => (v === null ? null : (acc[k] += v)));
  });
}

function showTooltip(u) {
  const tip = $("tooltip");
  const idx = u.cursor.idx;
  if (idx === null || idx === undefined || !graphState) {
    tip.hidden = true;
    return;
  }
  const g = graphState;
  tip.innerHTML = "";
  const head = document.createElement("div");
  head.className = "tip-time";
  head.textContent = fmtDateTime(u.data[0][idx], g.utc);
  tip.appendChild(head);
  let rows = 0;
  g.series.forEach((s, i) => {
    if (!u.series[i + 1].show) return;
    const v = g.raw[i][idx];
    if (v === null) return;
    const row = document.createElement("div");
    row.className = "tip-row";
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = COLORS[i % COLORS.length];
    const val = document.createElement("b");
    val.className = "tip-value";
    // A histogram series' line is its count; the tooltip gives its sum too.
    val.textContent = s.sums ? `count ${v}, sum ${s.sums[idx]}` : String(v);
    const name = document.createElement("span");
    name.className = "tip-labels";
    name.textContent = s.label;
    row.append(sw, val, name);
    tip.appendChild(row);
    rows++;
  });
  if (!rows) {
    tip.hidden = true;
    return;
  }
  tip.hidden = false;
  const left = u.cursor.left + u.over.offsetLeft;
  const wrap = $("graph-wrap").clientWidth;
  // Right of the cursor, or left of it near the right edge, so it never hides the point.
  const w = tip.offsetWidth;
  tip.style.left = `${left + 16 + w <= wrap ? left + 16 : Math.max(0, left - 16 - w)}px`;
  tip.style.top = `${u.cursor.top + u.over.offsetTop + 16}px`;
  document.body.dataset.hover = String(rows);
}

// Dragging across the graph zooms: the selection becomes the query's range and end, so the
// zoomed view is queried again at a finer step, as in Prometheus' page.
function zoomTo(u) {
  const sel = u.select;
  if (sel.width < 5) return;
  const from = u.posToVal(sel.left, "x");
  const to = u.posToVal(sel.left + sel.width, "x");
  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
  $("end").value = new Date(to * 1000).toISOString();
  $("range").value = fmtDuration(Math.max(1, to - from));
  $("step").value = "";
  execute();
}

function drawLegend() {
  const legend = $("legend");
  legend.innerHTML = "";
  graphState.series.forEach((s, i) => {
    const li = document.createElement("li");
    li.className = "series";
    li.dataset.series = s.label;
    li.title = "Click to show only this series; click again to show all";
    if (isolated >= 0 && isolated !== i) li.classList.add("off");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = COLORS[i % COLORS.length];
    li.append(sw, labelChips(s.metric));
    if (s.sums) {
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = "histogram count";
      li.appendChild(kind);
    }
    li.addEventListener("click", () => isolate(i));
    legend.appendChild(li);
  });
}

// A click on a legend entry shows only that series; a second click shows them all again.
function isolate(i) {
  isolated = isolated === i ? -1 : i;
  drawPlot();
}

function drawPlot() {
  const g = graphState;
  const host = $("graph");
  if (plot) { plot.destroy(); plot = null; }
  host.innerHTML = "";
  const shown = g.series.map((_, i) => isolated < 0 || isolated === i);
  const ys = g.stacked ? stack(g.raw, shown) : g.raw;
  const series = [{}].concat(g.series.map((s, i) => ({
    label: s.label,
    stroke: COLORS[i % COLORS.length],
    width: 1.5,
    show: shown[i],
    fill: g.stacked ? alpha(COLORS[i % COLORS.length], 0.35) : undefined,
    spanGaps: false,
    points: { show: false },
  })));
  // In stacked mode each series fills down to the one below it, not to zero.
  const bands = [];
  if (g.stacked) {
    let below = -1;
    shown.forEach((on, i) => {
      if (!on) return;
      if (below >= 0) bands.push({ series: [i + 1, below + 1], fill: alpha(COLORS[i % COLORS.length], 0.35) });
      below = i;
    });
  }
  const width = Math.max(300, host.clientWidth || 960);
  const opts = {
    width,
    height: 360,
    legend: { show: false },
    series,
    bands,
    cursor: { drag: { x: true, y: false, setScale: false }, points: { size: 6 } },
    scales: { x: { time: true, min: g.start, max: g.end } },
    axes: [
      { stroke: "#555", grid: { stroke: "#eee" }, ticks: { stroke: "#ccc" }, size: 44, space: 90,
        values: (u, splits, ax, space, incr) => timeTicks(splits, incr, g.utc) },
      { stroke: "#555", grid: { stroke: "#eee" }, ticks: { stroke: "#ccc" }, size: 60,
        values: (u, splits) => splits.map((v) => fmtSI(v)) },
    ],
    hooks: {
      setCursor: [showTooltip],
      setSelect: [zoomTo],
    },
  };
  if (g.utc) opts.tzDate = (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
  plot = new uPlot(opts, [g.xs, ...ys], host);
  plot.over.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  host.dataset.series = String(g.series.length);
  host.dataset.shown = String(shown.filter(Boolean).length);
  drawLegend();
}

// The lines of the graph: a float series as it is, a histogram series as its count (with its
// sums kept for the tooltip). A series with both kinds of samples gives two lines.
function graphLines(result) {
  const lines = [];
  for (const s of result) {
    if (s.values && s.values.length) {
      lines.push({ metric: s.metric, values: s.values, label: seriesName(s.metric) });
    }
    if (s.histograms && s.histograms.length) {
      lines.push({ metric: s.metric, values: s.histograms.map(([t, h]) => [t, h.count]),
        label: `${seriesName(s.metric)} count`, histograms: s.histograms });
    }
  }
  return lines;
}

function renderGraph(data, start, end, step, resolution) {
  const result = data.resultType === "matrix" ? data.result : [];
  const series = graphLines(result);
  const [xs, raw] = alignData(series, start, end, step);
  for (const s of series) {
    if (!s.histograms) continue;
    const [, [sums]] = alignData([{ values: s.histograms.map(([t, h]) => [t, h.sum]) }], start, end, step);
    s.sums = sums;
  }
  const hists = result.filter((s) => s.histograms && s.histograms.length);
  graphState = { series, raw, xs, start, end, step, hists, stacked: $("stacked").checked, utc: $("utc").checked };
  isolated = -1;
  $("tooltip").hidden = true;
  const points = raw.reduce((n, col) => n + col.filter((v) => v !== null).length, 0);
  $("graph-info").textContent = `step ${fmtDuration(step)} · resolution ${resolution || "raw"} · ` +
    `${fmtDateTime(start, graphState.utc)} to ${fmtDateTime(end, graphState.utc)} · ` +
    `${result.length} series, ${points} points`;
  $("graph-info").dataset.step = String(step);
  const note = $("hist-note");
  note.hidden = !hists.length;
  note.textContent = hists.length
    ? `${hists.length} native histogram series: each is drawn above as a line of its count of ` +
      "observations (its sum is in the tooltip), and below as a heatmap of its bucket counts. " +
      "For counter histograms, rate() or increase() shows how the distribution changes over time."
    : "";
  drawPlot();
  drawHeatmaps();
  return result.length;
}

// --- heatmaps of native histogram buckets ------------------------------------------------------

const MAX_HEATMAPS = 10;
// Low counts light, high counts dark (viridis, reversed for a white page).
const HEAT_STOPS = [[253, 231, 37], [94, 201, 98], [33, 145, 140], [59, 82, 139], [68, 1, 84]];

function heatColor(f) {
  const x = Math.min(1, Math.max(0, f)) * (HEAT_STOPS.length - 1);
  const i = Math.min(HEAT_STOPS.length - 2, Math.floor(x));
  const t = x - i;
  const [a, b] = [HEAT_STOPS[i], HEAT_STOPS[i + 1]];
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * t)).join(",")})`;
}

// One histogram series on the step grid: its distinct buckets (rows, lowest first) and the
// count of each bucket at each step (null where the bucket or the sample is absent).
function heatmapGrid(s, xs) {
  const index = new Map(xs.map((t, i) => [t.toFixed(3), i]));
  const rows = new Map();
  const cells = [];
  for (const [t, h] of s.histograms) {
    const col = index.get(Number(t).toFixed(3));
    if (col === undefined) continue;
    for (const b of h.buckets || []) {
      const key = `${b[0]}|${b[1]}|${b[2]}`;
      if (!rows.has(key)) rows.set(key, { bucket: b, lower: parseFloat(b[1]), upper: parseFloat(b[2]) });
      cells.push([col, key, parseFloat(b[3])]);
    }
  }
  const sorted = [...rows.entries()].sort((a, b) => a[1].lower - b[1].lower || a[1].upper - b[1].upper);
  const rowOf = new Map(sorted.map(([k], i) => [k, i]));
  const grid = sorted.map(() => new Array(xs.length).fill(null));
  let max = 0;
  const columns = new Set();
  for (const [col, key, v] of cells) {
    if (!Number.isFinite(v)) continue;
    grid[rowOf.get(key)][col] = v;
    columns.add(col);
    if (v > max) max = v;
  }
  return { buckets: sorted.map(([, r]) => r.bucket), grid, max, columns: columns.size };
}

// Time ticks at a round interval, about one per `px` pixels.
function heatTicks(start, end, width, px) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
    43200, 86400, 172800, 604800];
  const want = Math.max(1, Math.floor(width / px));
  const incr = steps.find((s) => (end - start) / s <= want) || steps[steps.length - 1];
  const out = [];
  for (let t = Math.ceil(start / incr) * incr; t <= end; t += incr) out.push(t);
  return [out, incr];
}

function drawHeatmap(box, s, g) {
  const { buckets, grid, max, columns } = heatmapGrid(s, g.xs);
  box.dataset.rows = String(buckets.length);
  box.dataset.columns = String(columns);
  box.dataset.max = String(max);
  const canvas = box.querySelector("canvas");
  const info = box.querySelector(".heatmap-info");
  if (!buckets.length) {
    canvas.hidden = true;
    info.textContent = "No populated buckets in this range.";
    return;
  }
  const labels = buckets.map(bucketRange);
  const cssWidth = Math.max(300, (box.clientWidth || $("graph").clientWidth || 960) - 2);
  const rowH = Math.max(3, Math.min(16, Math.floor(320 / buckets.length)));
  const plotH = rowH * buckets.length;
  const ctx0 = canvas.getContext("2d");
  ctx0.font = "11px monospace";
  const labelW = Math.min(220, Math.ceil(Math.max(...labels.map((l) => ctx0.measureText(l).width))) + 10);
  const left = labelW, top = 6, right = 12, axisH = 34;
  const plotW = cssWidth - left - right;
  const cssHeight = top + plotH + axisH;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(cssWidth * dpr);
  canvas.height = Math.round(cssHeight * dpr);
  canvas.style.width = `${cssWidth}px`;
  canvas.style.height = `${cssHeight}px`;
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.fillStyle = "#fafafa";
  ctx.fillRect(left, top, plotW, plotH);
  const span = g.end - g.start || 1;
  const xOf = (t) => left + ((t - g.start) / span) * plotW;
  const colW = Math.max(1, (g.step / span) * plotW);
  // Rows from the top: the highest bucket first, as on a y axis.
  const yOf = (r) => top + (buckets.length - 1 - r) * rowH;
  grid.forEach((row, r) => {
    row.forEach((v, c) => {
      if (v === null || v <= 0) return;
      ctx.fillStyle = heatColor(max > 0 ? Math.sqrt(v / max) : 0);
      // Whole pixels, so that neighbouring cells leave no hairline gaps.
      const x0 = Math.max(left, Math.floor(xOf(g.xs[c]) - colW / 2));
      const x1 = Math.min(left + plotW, Math.ceil(xOf(g.xs[c]) + colW / 2));
      ctx.fillRect(x0, yOf(r), Math.max(1, x1 - x0), rowH);
    });
  });
  ctx.strokeStyle = "#ccc";
  ctx.strokeRect(left + 0.5, top + 0.5, plotW - 1, plotH - 1);
  // Bucket labels, thinned so that they do not overlap.
  ctx.fillStyle = "#444";
  ctx.font = "11px monospace";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  const every = Math.ceil(12 / rowH);
  labels.forEach((l, r) => {
    if ((buckets.length - 1 - r) % every !== 0) return;
    ctx.fillText(l, left - 6, yOf(r) + rowH / 2, labelW - 8);
  });
  // The time axis.
  const [ticks, incr] = heatTicks(g.start, g.end, plotW, 90);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  timeTicks(ticks, incr, g.utc).forEach((text, i) => {
    const x = xOf(ticks[i]);
    ctx.fillStyle = "#ccc";
    ctx.fillRect(Math.round(x), top + plotH, 1, 4);
    ctx.fillStyle = "#555";
    text.split("\n").forEach((line, k) => ctx.fillText(line, x, top + plotH + 6 + k * 12));
  });
  // Hovering names the cell under the mouse.
  const rest = `${buckets.length} buckets × ${columns} steps; darker is more (square-root scale), max ${fmtSI(max)}`;
  info.textContent = rest;
  canvas.onmousemove = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left, y = ev.clientY - rect.top;
    const c = Math.round(((x - left) / plotW) * span / g.step);
    const r = buckets.length - 1 - Math.floor((y - top) / rowH);
    if (x < left || x > left + plotW || r < 0 || r >= buckets.length || c < 0 || c >= g.xs.length) {
      info.textContent = rest;
      return;
    }
    const v = grid[r][c];
    info.textContent = `${fmtDateTime(g.xs[c], g.utc)} · bucket ${labels[r]} · ` +
      (v === null ? "no value" : `count ${v}`);
  };
  canvas.onmouseleave = () => { info.textContent = rest; };
}

function drawHeatmaps() {
  const host = $("heatmaps");
  host.innerHTML = "";
  const g = graphState;
  host.hidden = !g.hists.length;
  host.dataset.count = String(Math.min(MAX_HEATMAPS, g.hists.length));
  if (!g.hists.length) return;
  const h = document.createElement("h3");
  h.textContent = "Bucket counts over time";
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.textContent = "One column per step, one row per bucket (highest at the top), colour by the bucket's count.";
  host.append(h, hint);
  g.hists.slice(0, MAX_HEATMAPS).forEach((s) => {
    const box = document.createElement("div");
    box.className = "heatmap";
    box.dataset.series = seriesName(s.metric);
    const title = document.createElement("div");
    title.className = "heatmap-title";
    title.appendChild(labelChips(s.metric));
    const canvas = document.createElement("canvas");
    const info = document.createElement("div");
    info.className = "heatmap-info";
    box.append(title, canvas, info);
    host.appendChild(box);
    drawHeatmap(box, s, g);
  });
  if (g.hists.length > MAX_HEATMAPS) {
    const more = document.createElement("p");
    more.className = "hint";
    more.textContent = `${g.hists.length - MAX_HEATMAPS} more histogram series not drawn; narrow the query to see them.`;
    host.appendChild(more);
  }
}

// Moves the mouse over the plot, as a person would, so a test can see the hover from the DOM:
// #hover=0.5 at half the width, #hover=last over the newest timestamp that has a value.
function hoverAt(where) {
  if (!plot || !graphState) return;
  const rect = plot.over.getBoundingClientRect();
  let x = rect.width * Number(where);
  if (where === "last") {
    let idx = -1;
    for (const col of graphState.raw) {
      for (let k = col.length - 1; k > idx; k--) if (col[k] !== null) { idx = k; break; }
    }
    if (idx < 0) return;
    x = plot.valToPos(graphState.xs[idx], "x");
  }
  const init = { bubbles: true, clientX: rect.left + x, clientY: rect.top + rect.height / 2 };
  plot.over.dispatchEvent(new MouseEvent("mouseenter", init));
  plot.over.dispatchEvent(new MouseEvent("mousemove", init));
}

// --- errors at their position ---------------------------------------------------------------

// The engine reports "line:col: parse error: ..."; show the expression with a caret there.
function showErrorPosition(expr, message) {
  const pre = $("error-pos");
  const m = /(\d+):(\d+): parse error/.exec(message);
  if (!m) {
    pre.hidden = true;
    return;
  }
  const line = Number(m[1]), col = Number(m[2]);
  const lines = expr.split("\n");
  const text = lines[line - 1] ?? "";
  pre.textContent = `${text}\n${" ".repeat(Math.max(0, col - 1))}^ ${message.replace(/^.*?parse error: /, "")}`;
  pre.dataset.line = String(line);
  pre.dataset.col = String(col);
  pre.hidden = false;
  const box = $("expr");
  let offset = col - 1;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  box.setSelectionRange(offset, Math.min(offset + 1, box.value.length));
}

// --- history --------------------------------------------------------------------------------

const HISTORY_KEY = "cairn.history";
const LAST_KEY = "cairn.last";

function loadHistory() {
  try {
    const h = JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
    return Array.isArray(h) ? h.filter((e) => typeof e === "string") : [];
  } catch (e) {
    return [];
  }
}

function remember(expr, query) {
  try {
    const h = [expr].concat(loadHistory().filter((e) => e !== expr)).slice(0, 50);
    localStorage.setItem(HISTORY_KEY, JSON.stringify(h));
    localStorage.setItem(LAST_KEY, query);
  } catch (e) {
    // Storage may be disabled; the URL still has the query.
  }
  drawHistory();
}

function drawHistory() {
  const sel = $("history");
  sel.length = 1;
  for (const e of loadHistory()) {
    const o = document.createElement("option");
    o.value = e;
    o.textContent = e.length > 80 ? `${e.slice(0, 77)}…` : e;
    sel.appendChild(o);
  }
}

async function execute() {
  const st = formState();
  const params = new URLSearchParams(st);
  if ($("stacked").checked) params.set("stacked", "1");
  if ($("utc").checked) params.set("utc", "1");
  if (tableSort.key) params.set("sort", `${tableSort.dir < 0 ? "-" : ""}${tableSort.key}`);
  history.replaceState(null, "", `?${params}${location.hash}`);
  $("query-form").dataset.resolution = st.max_source_resolution || "raw";
  $("table-view").hidden = st.tab !== "table";
  $("graph-view").hidden = st.tab !== "graph";
  $("error-pos").hidden = true;
  $("empty").hidden = Boolean(st.expr.trim());
  if (!st.expr.trim()) {
    setStatus("Enter an expression, or pick one of these.", false);
    $("table-view").hidden = true;
    $("graph-view").hidden = true;
    return;
  }
  remember(st.expr, params.toString());
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
      // Whole steps from a whole-second start, so sample timestamps fall on the grid.
      const step = parseDuration(st.step || "") || Math.max(1, Math.round(range / 250));
      const start = end - range;
      json = await api("api/v1/query_range", { ...common, start, end, step }, true);
      n = renderGraph(json.data, start, end, step, st.max_source_resolution);
    }
    showWarnings(json.warnings);
    const ms = Math.round(performance.now() - started);
    setStatus(`${n} series, ${json.data.resultType}, ${ms} ms`, false);
    document.body.dataset.state = "done";
    const hover = /hover=(last|[0-9.]+)/.exec(location.hash);
    // uPlot sizes its elements after the constructor returns; hover once they have a size.
    if (hover && st.tab === "graph") setTimeout(() => hoverAt(hover[1]), 100);
  } catch (e) {
    const msg = String(e.message || e);
    setStatus(msg, true);
    showErrorPosition(st.expr, msg);
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
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    ul.hidden = true;
    execute();
    return;
  }
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

// --- cluster page ---------------------------------------------------------------------------

function fmtBytes(n) {
  return n ? `${fmtSI(n)}B` : "0";
}

function fmtAge(sec) {
  return sec > 0 ? fmtDuration(sec) : "";
}

function cell(tr, text, cls, title) {
  const td = document.createElement("td");
  if (text instanceof Node) td.appendChild(text); else td.textContent = text ?? "";
  if (cls) td.className = cls;
  if (title) td.title = title;
  tr.appendChild(td);
  return td;
}

function shareBar(share) {
  const wrap = document.createElement("span");
  if (share === null || share === undefined) return wrap;
  const bar = document.createElement("span");
  bar.className = "bar";
  const fill = document.createElement("span");
  fill.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
  bar.appendChild(fill);
  wrap.appendChild(bar);
  wrap.appendChild(document.createTextNode(`${(share * 100).toFixed(1)}%`));
  return wrap;
}

const CLUSTER_COLUMNS = ["Member", "Endpoint", "Health", "Head series", "Share", "Hints toward",
  "Oldest hint", "Forwards failing", "Replication ok", "Shipper backlog", "Oldest unshipped",
  "Volume free", "Error"];

function memberRow(m) {
  const tr = document.createElement("tr");
  const n = m.node;
  tr.className = n ? "member" : "member error";
  tr.dataset.member = m.member;
  cell(tr, m.member);
  cell(tr, m.endpoint || "—", "", m.endpoint ? "" : "no --endpoint of this query layer");
  cell(tr, m.health, `health-${m.health}`);
  cell(tr, n ? String(n.headSeries) : "");
  cell(tr, n ? shareBar(n.seriesShare) : "");
  const h = m.hintsToward || {};
  cell(tr, h.pending ? `${h.pending} (${fmtBytes(h.bytes)})` : "0", h.pending ? "warn" : "",
    h.pending ? `held by ${h.holders.join(", ")}` : "");
  cell(tr, fmtAge(h.oldestAgeSeconds), h.pending ? "warn" : "");
  const fe = m.forwardErrors || [];
  cell(tr, fe.length ? fe.map((f) => f.from).join(", ") : "", fe.length ? "warn" : "",
    fe.map((f) => `${f.from}: ${f.error}`).join("\n"));
  const r = n && n.replication;
  cell(tr, r && r.ratio !== null ? `${(r.ratio * 100).toFixed(2)}%` : "",
    r && r.error ? "warn" : "", r ? `${r.success} series reached quorum, ${r.error} did not` : "");
  const s = n && n.shipper;
  cell(tr, s ? (s.enabled ? `${s.pendingBlocks} blocks (${fmtBytes(s.pendingBytes)})` : "no bucket") : "",
    s && s.lastError ? "warn" : "", s && s.lastError ? s.lastError : "");
  cell(tr, s ? fmtAge(s.oldestPendingAgeSeconds) : "");
  const v = n && n.volume;
  cell(tr, v ? `${fmtBytes(v.availableBytes)} (${(100 * v.availableBytes / Math.max(1, v.sizeBytes)).toFixed(0)}%)` : "");
  // A down endpoint usually fails Info and Node alike: say it once.
  cell(tr, [...new Set([m.error, m.endpointError].filter((e) => e))].join("; "), "err");
  return tr;
}

function clusterTable(title, skew, members) {
  const frag = document.createDocumentFragment();
  const h3 = document.createElement("h3");
  h3.textContent = title;
  if (skew !== null && skew !== undefined) {
    const sk = document.createElement("span");
    sk.className = skew > 1.2 ? "skew high" : "skew";
    sk.textContent = `skew ${skew.toFixed(3)}`;
    sk.title = "the most loaded member's share of the hash space over the mean share (1: even)";
    h3.appendChild(sk);
  }
  frag.appendChild(h3);
  const table = document.createElement("table");
  table.className = "cluster";
  const head = document.createElement("tr");
  for (const c of CLUSTER_COLUMNS) {
    const th = document.createElement("th");
    th.textContent = c;
    head.appendChild(th);
  }
  table.createTHead().appendChild(head);
  const tbody = table.createTBody();
  for (const m of members) tbody.appendChild(memberRow(m));
  frag.appendChild(table);
  return frag;
}

async function cluster() {
  const out = $("cluster");
  const status = $("cluster-status");
  document.body.dataset.state = "loading";
  status.textContent = "Asking the receivers…";
  status.className = "status";
  try {
    const json = await api("api/v1/status/cluster", {});
    const d = json.data;
    out.innerHTML = "";
    const byName = new Map(d.members.map((m) => [m.member, m]));
    for (const ring of d.hashrings) {
      const title = `Hashring ${ring.name || "(unnamed)"}` +
        (ring.tenants.length ? ` — tenants ${ring.tenants.join(", ")}` : " — every tenant") +
        (ring.nodesDisagree ? " — the nodes disagree on its members" : "");
      out.appendChild(clusterTable(title, ring.skew, ring.endpoints.map((e) => byName.get(e)).filter((m) => m)));
    }
    const outside = d.members.filter((m) => !m.inHashrings.length);
    if (outside.length) {
      // Without any hashrings file (a single `cairn up`) every receiver stores what it is sent.
      const title = d.hashrings.length
        ? "Receivers in no hashring (or whose hashrings are unknown)"
        : "Receivers (no hashrings file: each stores what it is sent)";
      out.appendChild(clusterTable(title, null, outside));
    }
    const down = d.members.filter((m) => m.health !== "up").length;
    status.textContent = `${d.members.length} members, replication factor ${d.replicationFactor}, ` +
      `${d.headSeriesTotal} head series stored` + (down ? `; ${down} not up` : "") +
      `; asked ${new Date().toLocaleTimeString()}`;
    status.className = down ? "status error" : "status";
    document.body.dataset.state = "done";
  } catch (e) {
    status.textContent = String(e.message || e);
    status.className = "status error";
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
  if (location.pathname.endsWith("/cluster")) {
    $("page-query").hidden = true;
    $("page-cluster").hidden = false;
    $("cluster-refresh").addEventListener("click", cluster);
    cluster();
    return;
  }
  let q = new URLSearchParams(location.search);
  if (!q.has("expr")) {
    // A bare visit picks up where the last one left off.
    try {
      const last = localStorage.getItem(LAST_KEY);
      if (last) q = new URLSearchParams(last);
    } catch (e) {
      // No storage: start empty.
    }
  }
  $("expr").value = q.get("expr") || "";
  $("tab").value = q.get("tab") === "graph" ? "graph" : "table";
  if (q.get("range")) $("range").value = q.get("range");
  if (q.get("end")) $("end").value = q.get("end");
  if (q.get("step")) $("step").value = q.get("step");
  $("dedup").checked = q.get("dedup") !== "false";
  $("partial").checked = q.get("partial_response") !== "false";
  $("stacked").checked = q.get("stacked") === "1";
  $("utc").checked = q.get("utc") === "1";
  const sort = /^(-?)(value|series)$/.exec(q.get("sort") || "");
  if (sort) tableSort = { key: sort[2], dir: sort[1] ? -1 : 1 };
  $("resolution").value = ["auto", "5m", "1h"].includes(q.get("max_source_resolution"))
    ? q.get("max_source_resolution") : "";
  $("resolution").addEventListener("change", execute);
  $("query-form").addEventListener("submit", (ev) => { ev.preventDefault(); execute(); });
  $("tab").addEventListener("change", execute);
  $("expr").addEventListener("input", suggest);
  $("expr").addEventListener("keydown", onKey);
  $("expr").addEventListener("blur", () => setTimeout(() => { $("suggestions").hidden = true; }, 100));
  // Ctrl+Enter (Cmd+Enter) runs the query from anywhere on the page.
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && ev.target !== $("expr")) {
      ev.preventDefault();
      execute();
    }
  });
  for (const th of $("results").querySelectorAll("th.sortable")) {
    th.addEventListener("click", () => sortBy(th.dataset.sort));
  }
  for (const b of document.querySelectorAll("button.example")) {
    b.addEventListener("click", () => {
      $("expr").value = b.dataset.expr;
      $("tab").value = "graph";
      execute();
    });
  }
  $("history").addEventListener("change", () => {
    const e = $("history").value;
    $("history").value = "";
    if (!e) return;
    $("expr").value = e;
    execute();
  });
  const redraw = () => {
    if (!graphState) return;
    graphState.stacked = $("stacked").checked;
    graphState.utc = $("utc").checked;
    execute();
  };
  $("stacked").addEventListener("change", redraw);
  $("utc").addEventListener("change", redraw);
  window.addEventListener("resize", () => {
    if (plot) plot.setSize({ width: Math.max(300, $("graph").clientWidth), height: 360 });
  });
  drawHistory();
  if (q.has("suggest")) {
    // Place the cursor at the end and show what would be suggested (used by the page test).
    const box = $("expr");
    box.focus();
    box.selectionStart = box.selectionEnd = box.value.length;
    suggest();
  } else if ($("expr").value) {
    execute();
  } else {
    $("empty").hidden = false;
    $("table-view").hidden = true;
    document.body.dataset.state = "empty";
  }
}

start();
