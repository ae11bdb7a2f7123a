// rubricmill's web UI: plain JavaScript, no libraries. Every figure is read from /api/*; the
// elements that carry figures have data-metric / data-field / data-col attributes (with the raw
// number in data-value) so that tests and scripts can read them.
"use strict";

const main = document.getElementById("main");
let info = { mode: "", writable: false };
let refreshTimer = null;

// ---- small helpers --------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
  return body;
}

const integer = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const usd = (n) => (n === null || n === undefined ? "–" : "$" + Number(n).toFixed(n >= 100 ? 2 : 4));
const decimal = (n, digits) => (n === null || n === undefined ? "–" : Number(n).toFixed(digits));

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
}

function ago(iso) {
  if (!iso) return "–";
  return duration((Date.now() - Date.parse(iso)) / 1000) + " ago";
}

function metric(name, label, value, shown, sub) {
  return h("div", { class: "metric" },
    h("span", { class: "label" }, label),
    h("span", { class: "value", "data-metric": name, "data-value": value === null || value === undefined ? "" : value }, shown),
    sub ? h("span", { class: "sub" }, sub) : null);
}

function loaded(page) {
  document.body.dataset.loaded = page;
}

function fail(error) {
  main.replaceChildren(h("p", { class: "error", id: "error" }, String(error.message || error)));
  loaded("error");
}

function token() {
  let value = sessionStorage.getItem("rubricmill-token");
  if (!value) {
    value = window.prompt("Token (RUBRICMILL_UI_TOKEN)");
    if (value) sessionStorage.setItem("rubricmill-token", value);
  }
  return value || "";
}

async function act(action, job) {
  const verb = action === "retry" ? "Queue the failed shards of " + job + " again?" : "Cancel " + job + "?";
  if (!window.confirm(verb)) return;
  try {
    const result = await api("/api/jobs/" + encodeURIComponent(job) + "/" + action, {
      method: "POST",
      headers: { Authorization: "Bearer " + token() },
    });
    window.alert(action === "retry" ? result.queued + " shards queued again" : "cancelled; " + result.purged + " queued shards removed");
  } catch (error) {
    sessionStorage.removeItem("rubricmill-token");
    window.alert(action + " failed: " + error.message);
  }
  route();
}

// ---- charts ---------------------------------------------------------------------------------

// A line chart of one or more series over time, as inline SVG.
function chart(title, id, lines, format) {
  const width = 360, height = 140, left = 46, bottom = 18, top = 6, right = 8;
  const points = lines.flatMap((line) => line.points);
  const box = h("div", { class: "chart", "data-chart": id }, h("div", { class: "title" }, title));
  if (points.length < 2) {
    box.append(h("div", { class: "muted" }, "not enough samples yet"));
    return box;
  }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const y1 = Math.max(...ys, 0) || 1;
  const sx = (x) => left + ((x - x0) / (x1 - x0 || 1)) * (width - left - right);
  const sy = (y) => top + (1 - y / y1) * (height - top - bottom);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el);
  };
  add("line", { class: "axis", x1: left, y1: height - bottom, x2: width - right, y2: height - bottom });
  add("line", { class: "axis", x1: left, y1: top, x2: left, y2: height - bottom });
  add("text", { x: 2, y: top + 8 }, format(y1));
  add("text", { x: 2, y: height - bottom }, format(0));
  add("text", { x: left, y: height - 4 }, new Date(x0).toLocaleTimeString());
  add("text", { x: width - right - 50, y: height - 4 }, new Date(x1).toLocaleTimeString());
  for (const line of lines) {
    if (line.points.length < 1) continue;
    const d = line.points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" ");
    add("path", { d, fill: "none", stroke: line.color, "stroke-width": 1.8 });
  }
  box.append(svg);
  box.append(h("div", { class: "muted" }, lines.map((l) => h("span", { style: "color:" + l.color + ";margin-right:10px" }, "— " + l.name))));
  return box;
}

function charts(series) {
  const t = (p) => Date.parse(p.at);
  const throughput = [];
  for (let i = 1; i < series.length; i++) {
    const dt = (t(series[i]) - t(series[i - 1])) / 1000;
    if (dt > 0) throughput.push([t(series[i]), (series[i].rows - series[i - 1].rows) / dt]);
  }
  const cost = series.map((p) => [t(p), p.cost_usd]);
  const p50 = series.filter((p) => p.latency_p50_ms !== null && p.latency_p50_ms !== undefined).map((p) => [t(p), p.latency_p50_ms]);
  const p95 = series.filter((p) => p.latency_p95_ms !== null && p.latency_p95_ms !== undefined).map((p) => [t(p), p.latency_p95_ms]);
  return h("div", { class: "charts" },
    chart("throughput (rows/s)", "throughput", [{ name: "rows/s", color: "#1e8a4c", points: throughput }], (v) => decimal(v, 1)),
    chart("cost so far (USD)", "cost", [{ name: "cost", color: "#2f6fde", points: cost }], (v) => "$" + decimal(v, 3)),
    chart("LLM latency (ms)", "latency", [
      { name: "p50", color: "#8a5cd6", points: p50 },
      { name: "p95", color: "#c23b31", points: p95 },
    ], (v) => decimal(v, 0)));
}

// ---- jobs -----------------------------------------------------------------------------------

function rateWithLimit(rate, limit, digits) {
  const shown = rate === null || rate === undefined ? "–" : digits ? decimal(rate, digits) : integer(Math.round(rate));
  return limit ? shown + " / " + integer(limit) : shown;
}

function jobCard(job, series) {
  const planned = job.planned || 0;
  const pct = (n) => (planned ? (100 * n) / planned : 0) + "%";
  const u = job.usage;
  const limits = job.limits;
  const pauses = job.pauses;
  const card = h("section", { class: "card job", "data-job": job.job },
    h("div", { class: "job-head" },
      h("span", { class: "name" }, job.job),
      h("span", { class: "state " + job.state, "data-metric": "state", "data-value": job.state }, job.state),
      job.reason ? h("span", { class: "error", "data-metric": "reason" }, job.reason) : null,
      h("span", { class: "muted" }, job.pipeline + " · " + job.model + " · "),
      h("span", { class: "muted", "data-metric": "output", title: "output folder" }, job.output),
      h("a", { href: "#/rows/" + encodeURIComponent(job.job) }, "rows"),
      h("a", { href: "#/spec/" + encodeURIComponent(job.job) }, "spec"),
      info.mode === "coordinator" ? h("a", { href: "/api/jobs/" + encodeURIComponent(job.job), title: "the figures of rubricmill status --json" }, "json") : null,
      info.mode === "coordinator" && job.failed > 0 ? h("a", { href: "#/failures" }, job.failed + " failed") : null,
      info.mode === "coordinator" && job.state === "running" ? h("button", { class: "secondary needs-token", "data-action": "cancel", "data-job": job.job, onclick: () => act("cancel", job.job) }, "cancel") : null),
    h("div", { class: "bar", title: "committed / running / failed of planned" },
      h("span", { class: "committed", style: "width:" + pct(job.committed) }),
      h("span", { class: "running", style: "width:" + pct(job.running) }),
      h("span", { class: "failed", style: "width:" + pct(job.failed) })),
    h("h3", {}, "shards"),
    h("div", { class: "metrics" },
      metric("planned", "planned", job.planned, integer(job.planned)),
      metric("committed", "committed", job.committed, integer(job.committed)),
      metric("running", "running", job.running, integer(job.running)),
      metric("pending", "pending", job.pending, integer(job.pending)),
      metric("failed", "failed", job.failed, integer(job.failed)),
      job.workers === null ? null : metric("workers", "live workers", job.workers, integer(job.workers))),
    h("h3", {}, "output"),
    h("div", { class: "metrics" },
      metric("records", "records read", job.records, integer(job.records)),
      metric("rows", "rows", job.rows, integer(job.rows)),
      metric("rejects", "rejects", job.rejects, integer(job.rejects)),
      metric("records_per_s", "records/s", job.records_per_s, decimal(job.records_per_s, 2)),
      metric("eta_s", "eta", job.eta_s, job.state === "complete" ? "done" : duration(job.eta_s))),
    h("h3", {}, "llm"),
    h("div", { class: "metrics" },
      metric("calls", "calls", u.calls, integer(u.calls)),
      metric("cache_hits", "cache hits", u.cache_hits, integer(u.cache_hits)),
      metric("retries", "retries", u.retries, integer(u.retries)),
      metric("throttled", "429/503 answers", u.throttled, integer(u.throttled)),
      pauses ? metric("pauses", "fleet pauses", pauses.count, integer(pauses.count), duration(pauses.paused_s) + " paused") : null,
      metric("tokens_in", "tokens in", u.tokens_in, integer(u.tokens_in)),
      metric("tokens_out", "tokens out", u.tokens_out, integer(u.tokens_out)),
      metric("cost_usd", "cost so far", u.cost_usd, usd(u.cost_usd), limits.max_cost_usd ? "budget " + usd(limits.max_cost_usd) : null),
      metric("projected_cost_usd", "projected cost", job.projected_cost_usd, usd(job.projected_cost_usd), "per committed shard × planned"),
      metric("calls_per_minute", "calls/min (limit)", job.calls_per_minute, rateWithLimit(job.calls_per_minute, limits.requests_per_minute, 1)),
      metric("tokens_per_minute", "tokens/min (limit)", job.tokens_per_minute, rateWithLimit(job.tokens_per_minute, limits.tokens_per_minute)),
      metric("latency_p50_ms", "latency p50", u.latency_p50_ms, u.latency_p50_ms ? decimal(u.latency_p50_ms, 0) + " ms" : "–"),
      metric("latency_p95_ms", "latency p95", u.latency_p95_ms, u.latency_p95_ms ? decimal(u.latency_p95_ms, 0) + " ms" : "–"),
      u.batch_calls || job.batches_pending ? metric("batch_calls", "batch answers", u.batch_calls, integer(u.batch_calls), usd(u.batch_saved_usd) + " saved") : null,
      job.batches_pending ? metric("batches_pending", "batches pending", job.batches_pending, integer(job.batches_pending)) : null),
    charts(series));
  return card;
}

async function jobsPage() {
  const jobs = await api("/api/jobs");
  const series = await Promise.all(jobs.map((job) => api("/api/jobs/" + encodeURIComponent(job.job) + "/series")));
  const cards = jobs.map((job, i) => jobCard(job, series[i]));
  main.replaceChildren(h("h2", {}, "Jobs"), ...(cards.length ? cards : [h("p", { class: "muted", id: "no-jobs" }, "no jobs submitted")]));
  loaded("jobs");
  refreshTimer = setTimeout(route, 5000);
}

async function specPage(job) {
  const spec = await api("/api/jobs/" + encodeURIComponent(job) + "/spec");
  main.replaceChildren(h("h2", {}, "Spec of " + job + " (secrets redacted)"), h("pre", { id: "spec" }, JSON.stringify(spec, null, 2)));
  loaded("spec");
}

// ---- workers and failures -------------------------------------------------------------------

async function workersPage() {
  const fleet = await api("/api/workers");
  const rows = fleet.workers.map((w) => h("tr", { "data-worker": w.id },
    h("td", { "data-col": "id" }, w.id),
    h("td", { "data-col": "host" }, w.host),
    h("td", { "data-col": "live", class: w.live ? "live-yes" : "live-no" }, w.live ? "live" : "lost"),
    h("td", { "data-col": "draining" }, w.draining ? "draining" : "–"),
    h("td", { "data-col": "in_flight", "data-value": w.in_flight.length }, w.in_flight.length + " / " + w.capacity,
      h("div", { class: "muted" }, w.in_flight.map((s) => s.job + " " + s.shard + " (attempt " + s.attempt + ", " + ago(s.since) + ")").join("; "))),
    h("td", { "data-col": "beat_at", title: w.beat_at }, ago(w.beat_at)),
    h("td", { "data-col": "version" }, w.version)));
  main.replaceChildren(h("h2", {}, "Workers"),
    h("p", { class: "muted" }, "a worker whose heartbeat is older than " + duration(fleet.heartbeat_ttl_s) + " counts as lost"),
    rows.length ? h("table", { id: "workers" },
      h("thead", {}, h("tr", {}, ["worker", "host", "state", "draining", "shards in flight", "last heartbeat", "version"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)) : h("p", { class: "muted", id: "no-workers" }, "no workers"));
  loaded("workers");
  refreshTimer = setTimeout(route, 5000);
}

async function failuresPage() {
  const failed = await api("/api/failures");
  const jobs = [...new Set(failed.map((f) => f.job))];
  const rows = failed.map((f) => h("tr", { "data-failed-shard": f.shard, "data-job": f.job },
    h("td", { "data-col": "job" }, f.job),
    h("td", { "data-col": "shard" }, f.shard),
    h("td", { "data-col": "reason" }, f.reason),
    h("td", { "data-col": "attempts", "data-value": f.attempts }, f.attempts),
    h("td", { "data-col": "worker" }, f.worker || "–"),
    h("td", { "data-col": "at", title: f.at }, ago(f.at))));
  main.replaceChildren(h("h2", {}, "Failed shards"),
    jobs.length ? h("p", {}, jobs.map((job) => h("span", {},
      h("button", { class: "needs-token", "data-action": "retry", "data-job": job, onclick: () => act("retry", job) }, "retry failed shards of " + job),
      h("code", { class: "muted", style: "margin: 0 16px 0 8px" }, "rubricmill retry " + job)))) : null,
    rows.length ? h("table", { id: "failures" },
      h("thead", {}, h("tr", {}, ["job", "shard", "reason", "attempts", "last worker", "when"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)) : h("p", { class: "muted", id: "no-failures" }, "no failed shards"));
  loaded("failures");
  refreshTimer = setTimeout(route, 5000);
}

// ---- dataset viewer -------------------------------------------------------------------------

const FILTERS = ["table", "kept", "stage", "reason", "field", "item_type", "shard", "q"];

function textBlock(field, label, text) {
  if (text === null || text === undefined || text === "") return null;
  return h("div", {}, h("h3", {}, label), h("div", { class: "text", "data-field": field }, text));
}

function messagesOf(messages) {
  return (messages || []).map((m) => h("div", { class: "message" }, h("span", { class: "tag" }, m.role), h("span", { "data-field": "prompt-message" }, m.content)));
}

const yesNo = (value, yes, no) => (value === true ? yes : value === false ? no : "–");

// The judge's verdicts on one response, one per criterion: met / not met / no verdict.
function verdictsOf(field, verdicts, rubric) {
  const items = (verdicts || []).map((v) => {
    const criterion = (rubric || [])[v.criterion];
    const text = criterion ? criterion.criterion || criterion.text || criterion.rubric_item : "";
    return h("li", { "data-field": "verdict", "data-criterion": v.criterion, "data-met": v.met === null || v.met === undefined ? "" : String(v.met) },
      h("span", { class: "tag " + (v.met === true ? "kept" : v.met === false ? "dropped" : "") }, yesNo(v.met, "met", "not met")),
      " #" + v.criterion + (text ? " " + text : ""),
      v.rationale ? h("div", { class: "muted" }, v.rationale) : null);
  });
  return items.length ? h("ul", { "data-field": field }, items) : h("div", { class: "muted", "data-field": field }, "no verdicts");
}

function keptOf(row) {
  return h("div", {},
    h("span", { class: "tag " + (row.kept ? "kept" : "dropped"), "data-field": "kept" }, row.kept ? "kept" : "dropped"),
    row.drop_reason ? h("span", { "data-field": "drop_reason" }, row.drop_reason) : null);
}

function sourceOf(row) {
  if (row.stage !== undefined && row.excerpt !== undefined) {
    return [
      h("h3", {}, "rejected input"),
      h("div", {}, h("span", { class: "tag", "data-field": "stage" }, row.stage), " ", h("span", { "data-field": "reason" }, row.reason)),
      textBlock("excerpt", "excerpt", row.excerpt),
    ];
  }
  if (row.nuggets !== undefined && row.question !== undefined) {
    const passages = (row.passages || []).map((p) => h("div", { class: "message", "data-field": "passage", "data-passage": p.passage_id },
      h("span", { class: "tag" }, p.passage_id), h("span", { "data-field": "passage-text" }, p.text)));
    return [
      h("h3", {}, "question"), h("div", { class: "text", "data-field": "question" }, row.question),
      passages.length ? h("div", {}, h("h3", {}, "passages"), h("div", { class: "text", "data-field": "passages" }, passages)) : null,
    ];
  }
  if (row.responses !== undefined) {
    return [
      h("h3", {}, "prompt"), h("div", { class: "text", "data-field": "prompt" }, messagesOf(row.prompt)),
      h("div", {}, h("span", { class: "tag", "data-field": "rubric_layout" }, row.rubric_layout), " rubric layout"),
    ];
  }
  if (row.dropped_criteria !== undefined) {
    return [
      h("h3", {}, "prompt"), h("div", { class: "text", "data-field": "prompt" }, messagesOf(row.prompt)),
      textBlock("reference_answer", "reference answer", row.reference_answer),
      textBlock("degraded_answer", "degraded answer" + (row.degraded_origin ? " (" + row.degraded_origin + ")" : ""), row.degraded_answer),
      (row.example_tags || []).length ? h("div", {}, (row.example_tags || []).map((t) => h("span", { class: "tag", "data-field": "example-tag" }, t))) : null,
    ];
  }
  if (row.pair_id !== undefined) {
    const prompt = (row.prompt || []).map((m) => h("div", { class: "message" }, h("span", { class: "tag" }, m.role), h("span", { "data-field": "prompt-message" }, m.content)));
    return [
      h("h3", {}, "prompt"), h("div", { class: "text", "data-field": "prompt" }, prompt),
      textBlock("chosen", "chosen", row.chosen),
      textBlock("rejected", "rejected", row.rejected),
    ];
  }
  const refs = (row.cited_references || []).map((r) => h("li", { "data-field": "reference" },
    h("span", { class: "tag" }, r.key), [r.first_author, r.year, r.title].filter(Boolean).join(", "),
    r.url ? [" ", h("a", { href: r.url, rel: "noreferrer noopener", target: "_blank" }, "link")] : null));
  return [
    h("h3", {}, "query"), h("div", { class: "text", "data-field": "query" }, row.query),
    h("h3", {}, "section"),
    h("div", {}, h("strong", { "data-field": "section_heading" }, row.section_heading), " ",
      h("span", { class: "muted" }, (row.heading_path || []).join(" › "))),
    textBlock("section_text", "section text", row.section_text),
    refs.length ? h("div", {}, h("h3", {}, "cited references"), h("ul", {}, refs)) : null,
  ];
}

function nuggetsOf(row) {
  const items = (row.nuggets || []).map((n) => h("li", { "data-field": "nugget", "data-importance": n.importance },
    h("span", { class: "tag", "data-field": "importance" }, n.importance),
    n.supported === null || n.supported === undefined ? null
      : h("span", { class: "tag " + (n.supported ? "kept" : "dropped"), "data-field": "supported" }, n.supported ? "supported" : "unsupported"),
    h("span", { "data-field": "nugget-text" }, n.nugget),
    h("div", { class: "muted" },
      h("span", { class: "tag", "data-field": "passage_id" }, n.passage_id),
      " [" + n.span_start + ", " + n.span_end + ") ",
      h("q", { "data-field": "span" }, n.span))));
  const parts = [h("h3", {}, "nuggets"), items.length ? h("ul", { "data-field": "nuggets" }, items) : h("div", { class: "muted" }, "no nuggets")];
  if ((row.dropped_nuggets || []).length) {
    parts.push(h("h3", {}, "dropped nuggets"), h("ul", { "data-field": "dropped-nuggets" }, row.dropped_nuggets.map((d) => h("li", {}, d))));
  }
  return parts;
}

function rubricOf(row) {
  if (row.nuggets !== undefined && row.question !== undefined) return nuggetsOf(row);
  if (!row.rubric) return [];
  const items = row.rubric.map((item) => h("li", { "data-field": "rubric-item" },
    (item.type || (item.kind ? [item.kind] : item.category ? [item.category].concat(item.tags || []) : [])).map((t) => h("span", { class: "tag" }, t)),
    item.points !== undefined ? h("strong", { "data-field": "points" }, (item.points > 0 ? "+" : "") + item.points + " ") : null,
    item.rubric_item || item.text || item.criterion));
  const parts = [h("h3", {}, "rubric"), h("ul", {}, items)];
  if ((row.dropped_criteria || []).length) {
    parts.push(h("h3", {}, "dropped criteria"), h("ul", { "data-field": "dropped-criteria" }, row.dropped_criteria.map((d) => h("li", {}, d))));
  }
  if (row.dropped_criteria !== undefined && row.kept !== undefined) {
    parts.push(h("h3", {}, "self-check"), keptOf(row));
    if (row.judge_model) {
      parts.push(h("div", { class: "metrics" },
        metric("reference_score", "reference score", row.reference_score, decimal(row.reference_score, 2)),
        metric("degraded_score", "degraded score", row.degraded_score, decimal(row.degraded_score, 2)),
        metric("attempts", "attempts", row.attempts, integer(row.attempts))));
      parts.push(h("h3", {}, "verdicts on the reference answer"), verdictsOf("reference-verdicts", row.reference_verdicts, row.rubric));
      parts.push(h("h3", {}, "verdicts on the degraded answer"), verdictsOf("degraded-verdicts", row.degraded_verdicts, row.rubric));
    } else {
      parts.push(h("div", { class: "muted", "data-field": "self-check-off" }, "the self-check did not run"));
    }
  }
  if (row.responses !== undefined) {
    parts.push(h("div", {},
      h("span", { "data-field": "label" }, "label " + (row.label || "–")), " · ",
      h("span", { "data-field": "predicted" }, "predicted " + (row.predicted || "–")), " · ",
      h("span", { class: "tag " + (row.agrees === true ? "kept" : row.agrees === false ? "dropped" : ""), "data-field": "agrees", "data-value": row.agrees === null || row.agrees === undefined ? "" : String(row.agrees) },
        row.agrees === true ? "agrees" : row.agrees === false ? "disagrees" : "no label")));
    const responses = row.responses.map((r) => h("div", { class: "response", "data-field": "response", "data-response": r.response_id },
      h("h3", {}, r.response_id + " (" + r.origin + ")"),
      h("div", {},
        h("strong", { "data-field": "score", "data-value": r.score === null || r.score === undefined ? "" : r.score }, "score " + decimal(r.score, 2)),
        r.hard_rules_met === null || r.hard_rules_met === undefined ? null
          : h("span", { class: "tag " + (r.hard_rules_met ? "kept" : "dropped"), "data-field": "hard_rules_met" }, r.hard_rules_met ? "hard rules met" : "hard rule failed")),
      h("div", { class: "text", "data-field": "response-text" }, r.text),
      verdictsOf("verdicts", r.verdicts, row.rubric)));
    parts.push(h("h3", {}, "responses"), ...responses);
  }
  if (row.pair_id !== undefined) {
    parts.push(keptOf(row));
    const verdicts = (row.verdicts || []).map((v) => h("li", {}, v.order + ": prefers " + v.preferred));
    parts.push(h("h3", {}, "verdicts (consistency " + decimal(row.consistency, 2) + ", " + row.attempts + " attempts)"), h("ul", { "data-field": "verdicts" }, verdicts));
    const attempts = (row.attempt_log || []).map((a) => h("li", {},
      "attempt " + a.attempt + ": " + (a.consistent ? "consistent" : "inconsistent") +
      (a.accuracy === undefined || a.accuracy === null ? "" : ", accuracy " + decimal(a.accuracy, 2)) +
      (a.error ? ", error: " + a.error : "")));
    if (attempts.length) parts.push(h("h3", {}, "judge attempts"), h("ul", { "data-field": "attempt-log" }, attempts));
  }
  return parts;
}

function provenanceOf(row, metadata) {
  const meta = metadata || {};
  const entries = [
    ["job", meta["rubricmill.job"]], ["pipeline", meta["rubricmill.pipeline"] && meta["rubricmill.pipeline"] + " " + (meta["rubricmill.pipeline_version"] || "")],
    ["shard", row.shard_id], ["attempt", row.attempt_id], ["input file", row.source_file],
    ["location", row.source_location], ["provider", row.provider], ["model", row.model],
    ["prompt", row.prompt_hash], ["judge model", row.judge_model], ["judge prompt", row.judge_prompt_hash],
    ["tokens", row.tokens_in === undefined ? undefined : row.tokens_in + " in, " + row.tokens_out + " out"],
    ["cost", row.cost_usd === undefined ? undefined : usd(row.cost_usd)],
    ["cache hits", row.cache_hits], ["worker", row._worker], ["committed", row._committed_at],
    ["part", row._part + " #" + row._row], ["doc", row.doc_title || row.doc_id], ["field", row.field],
    ["prompts", meta["rubricmill.prompt_hashes"]], ["simulated", meta["rubricmill.simulated"] === "true" ? "yes (test/dry-run provider)" : undefined],
  ].filter(([, v]) => v !== undefined && v !== null && v !== "");
  return [h("h3", {}, "provenance"), h("dl", { class: "prov" }, entries.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-prov": k }, v)]))];
}

async function rowsPage(job, params) {
  const jobs = await api("/api/jobs");
  if (!job && jobs.length) job = jobs[0].job;
  if (!job) {
    main.replaceChildren(h("p", { class: "muted" }, "no jobs"));
    loaded("rows");
    return;
  }
  const offset = Number(params.get("offset") || 0);
  const limit = Number(params.get("limit") || 20);
  const query = new URLSearchParams();
  for (const name of FILTERS) if (params.get(name)) query.set(name, params.get(name));
  query.set("offset", offset);
  query.set("limit", limit);
  const page = await api("/api/jobs/" + encodeURIComponent(job) + "/rows?" + query);
  const filtered = FILTERS.some((name) => name !== "table" && params.get(name));
  const go = (changes) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) v === "" || v === null ? next.delete(k) : next.set(k, v);
    location.hash = "#/rows/" + encodeURIComponent(job) + "?" + next;
  };
  const input = (name, label, placeholder) => h("label", {}, label, h("input", { name, value: params.get(name) || "", placeholder }));
  const select = (name, label, options) => h("label", {}, label, h("select", { name },
    options.map(([value, text]) => h("option", { value, selected: (params.get(name) || "") === value }, text))));
  const form = h("form", { class: "filters", id: "filters", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    const changes = { offset: "" };
    for (const name of FILTERS) changes[name] = data.get(name) || "";
    go(changes);
  } },
    h("label", {}, "job", h("select", { name: "job", onchange: (e) => { location.hash = "#/rows/" + encodeURIComponent(e.target.value); } },
      jobs.map((j) => h("option", { value: j.job, selected: j.job === job }, j.job)))),
    select("table", "table", [["", "rows"], ["rejects", "rejects"]]),
    select("kept", "kept / dropped", [["", "any"], ["true", "kept"], ["false", "dropped"]]),
    input("stage", "stage", "rejects: e.g. sections"),
    input("reason", "reason", "contains"),
    input("field", "field / source", "e.g. Biology"),
    input("item_type", "rubric item type", "e.g. Factual"),
    input("shard", "shard", "shard id"),
    input("q", "text", "contains"),
    h("button", { type: "submit" }, "apply"));
  const pager = h("div", { class: "pager" },
    h("button", { class: "secondary", disabled: offset === 0, onclick: () => go({ offset: Math.max(0, offset - limit) }) }, "‹ previous"),
    h("span", { id: "page-info", "data-offset": offset, "data-count": page.rows.length, "data-total": page.total },
      (page.rows.length ? (filtered ? "matching " : "") + "rows " + (offset + 1) + "–" + (offset + page.rows.length) : "no rows match") +
        " · " + integer(page.total) + " committed " + page.table + " in " + page.parts + " parts"),
    h("button", { class: "secondary", disabled: !page.has_more, onclick: () => go({ offset: offset + limit }) }, "next ›"));
  const rows = page.rows.map((row, i) => h("article", { class: "card row", "data-row-index": offset + i, "data-shard": row.shard_id },
    h("div", { class: "source" }, sourceOf(row)),
    h("div", { class: "rubric" }, rubricOf(row)),
    h("div", { class: "provenance" }, provenanceOf(row, page.metadata[row._part]))));
  main.replaceChildren(h("h2", {}, "Dataset: " + job), form, pager, ...rows);
  loaded("rows");
}

// ---- routing --------------------------------------------------------------------------------

async function route() {
  clearTimeout(refreshTimer);
  const hash = location.hash.replace(/^#\/?/, "") || "jobs";
  const [path, search] = hash.split("?");
  const [page, arg] = path.split("/");
  const params = new URLSearchParams(search || "");
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.page === page);
  try {
    if (page === "workers") await workersPage();
    else if (page === "failures") await failuresPage();
    else if (page === "rows") await rowsPage(arg ? decodeURIComponent(arg) : "", params);
    else if (page === "spec") await specPage(decodeURIComponent(arg || ""));
    else await jobsPage();
  } catch (error) {
    fail(error);
  }
}

async function start() {
  try {
    info = await api("/api/info");
  } catch (error) {
    fail(error);
    return;
  }
  document.body.dataset.mode = info.mode;
  document.body.dataset.writable = String(info.writable);
  document.getElementById("mode").textContent = (info.mode === "view" ? "view (read-only)" : "coordinator" + (info.writable ? "" : " (read-only)")) + " · v" + info.version;
  window.addEventListener("hashchange", route);
  await route();
}

start();
