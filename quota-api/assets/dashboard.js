// Gantry's dashboard: quota against use and borrowing, the queue with reasons and estimated
// starts, cost over time and budget burn, from the quota API; for a platform team (every tenant)
// and, at `#tenant=NAME`, for one tenant's users. Plain script, no build step; the cost chart is
// drawn by uPlot (vendor/, MIT), the rest is DOM.
//
// The bearer token is typed or pasted into the sign-in form and kept in this tab's sessionStorage
// only: never in the address, so never in the browser's history. The address holds only what is
// looked at (tenant, period, sort), so a view can be bookmarked or sent, and back and forward walk
// through the views.
"use strict";

const $ = (id) => document.getElementById(id);
const DAY = 86400;
const state = {
  token: "",
  route: { tenant: "", period: 7, sort: "name" },
  // From the API: the view's time, the currency, flavors and the tenants this token may see.
  at: 0, currency: "", flavors: [], tenants: [],
  chart: null, // the uPlot chart, kept across refreshes (a new one only when its series change)
  open: new Set(), // queue rows expanded to their whole message
};

// ---- The address -------------------------------------------------------------------------------

const PERIODS = ["1", "7", "30", "365"];
const SORTS = ["name", "use", "waiting", "cost"];
const DEFAULTS = { tenant: "", period: 7, sort: "name" };

// The view an address names: `#tenant=NAME&period=DAYS&sort=KEY`, each key optional (the same
// keys in a query string, `/?tenant=NAME`, are read too). Only these three keys are read, each
// checked against what it may be; anything else is ignored, and dropped from the address on load.
function routeOf(loc) {
  const p = new URLSearchParams(loc.search);
  for (const [k, v] of new URLSearchParams(loc.hash.slice(1))) p.set(k, v);
  return {
    tenant: p.get("tenant") || "",
    period: PERIODS.includes(p.get("period")) ? Number(p.get("period")) : DEFAULTS.period,
    sort: SORTS.includes(p.get("sort")) ? p.get("sort") : DEFAULTS.sort,
  };
}

// The address of a view, with only what differs from the defaults.
function addressOf(route) {
  const p = new URLSearchParams();
  for (const k of ["tenant", "period", "sort"]) if (route[k] !== DEFAULTS[k]) p.set(k, route[k]);
  const s = p.toString();
  return location.pathname + (s ? "#" + s : "");
}

// Another view: a new history entry, so that back and forward return to this one.
function go(change) {
  const next = { ...state.route, ...change };
  history.pushState(null, "", addressOf(next));
  show(next);
}

function show(route) {
  state.route = route;
  $("tenant").value = route.tenant;
  $("period").value = String(route.period);
  $("sort").value = route.sort;
  Object.assign(document.body.dataset, { tenant: route.tenant, period: route.period, sort: route.sort });
  refresh();
}

// ---- Signing in and asking the API -------------------------------------------------------------

function signIn(event) {
  event.preventDefault();
  const token = $("token-input").value.trim();
  $("token-input").value = "";
  if (!token) return;
  sessionStorage.setItem("gantry-token", token);
  state.token = token;
  $("signin").hidden = true;
  $("signout").hidden = false;
  refresh();
}

function signOut(message) {
  sessionStorage.removeItem("gantry-token");
  state.token = "";
  $("signin-message").textContent = message || "";
  $("signin").hidden = false;
  $("signout").hidden = true;
  $("token-input").focus();
}

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
  if (r.status === 401) signOut("The token was refused (not valid, or expired): sign in with a new one.");
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (_) {}
    throw new Error(path + ": " + msg);
  }
  return r;
}
const json = async (path) => (await api(path)).json();

// ---- Formatting --------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const num = (x, d = 1) => Number(x).toLocaleString("en", { maximumFractionDigits: d });
const iso = (t) => new Date(t * 1000).toISOString();
const when = (t) => iso(t).replace("T", " ").slice(0, 16) + " UTC";
const weekday = (t) => ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][new Date(t * 1000).getUTCDay()];

function duration(s) {
  const m = Math.max(0, Math.round(s / 60));
  if (m < 60) return `${m}m`;
  if (m < 24 * 60) return `${Math.floor(m / 60)}h ${m % 60}m`;
  return `${Math.floor(m / 1440)}d ${Math.floor((m % 1440) / 60)}h`;
}

// Money in the API's currency: its symbol when it is an ISO 4217 code, else the label after it.
function money(x, digits = 2, compact = false) {
  const opts = { maximumFractionDigits: digits, minimumFractionDigits: compact ? 0 : digits };
  if (compact) opts.notation = "compact";
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency: state.currency, ...opts }).format(x);
  } catch (_) {
    return new Intl.NumberFormat("en", opts).format(x) + " " + state.currency;
  }
}

// Tenant i's colour (flavor i's on a tenant's page), by its place in the API's list, so it stays
// the same across periods and sorts. Hues a golden angle (137.5°) apart spread evenly however
// many there are; the hues that come back close (8, 13, 21 and 34 places apart: 20°, 12°, 8° and
// 5°) get another of five saturation and lightness steps (those distances are not multiples of
// five). The steps were chosen by measuring: no two of the first 50 colours are closer than 6
// CIEDE2000 units (8.8 for the first 18), and none repeats.
const STEPS = [[55, 70], [90, 60], [80, 38], [55, 30], [55, 55]];
function colour(i) {
  const [s, l] = STEPS[i % STEPS.length];
  return `hsl(${((10 + i * 137.508) % 360).toFixed(1)} ${s}% ${l}%)`;
}

// ---- The period --------------------------------------------------------------------------------

// The period asked for: hourly buckets up to a week, daily beyond, starting on a bucket's edge so
// that the chart's first bucket and the cost lines cover the same time.
function period(days) {
  const step = days <= 7 ? 3600 : DAY;
  const from = Math.floor((state.at - days * DAY) / step) * step;
  return { from, to: state.at + 1, step, days };
}
const periodName = (days) => $("period").querySelector(`option[value="${days}"]`).textContent;

// ---- Refreshing --------------------------------------------------------------------------------

async function refresh() {
  if (!state.token) return;
  const route = state.route;
  try {
    const t = await json("/api/v1/tenants");
    if (route !== state.route) return; // another view was chosen meanwhile; its refresh draws it
    Object.assign(state, { at: t.at, flavors: t.flavors, tenants: t.tenants });
    $("at").textContent = "as of " + when(t.at);
    fillTenantSelect(route);
    // A tenant's page when one is chosen, or when the token may read only one tenant.
    let name = route.tenant || (t.tenants.length === 1 ? t.tenants[0].name : "");
    let notice = "";
    if (name && !t.tenants.some((x) => x.name === name)) {
      notice = `There is no tenant ${name}, or this token may not read it; showing all tenants.`;
      name = "";
    }
    const p = period(route.period);
    const only = name ? "&tenant=" + encodeURIComponent(name) : "";
    // A tenant's page also lists its running notebooks (with the queue, only when asked).
    const [queue, usage, cost, budgets, runs, pipelines, stops] = await Promise.all([
      json("/api/v1/queue?" + (name ? "running=true" + only : "")),
      json(`/api/v1/usage?step=${p.step === DAY ? "day" : "hour"}&from=${p.from}&to=${p.to}${only}`),
      json(`/api/v1/cost?from=${p.from}&to=${p.to}${only}`),
      json("/api/v1/budgets"),
      json(`/api/v1/cost?group=run&from=${p.from}&to=${p.to}${only}`),
      json(`/api/v1/cost?group=pipeline&from=${p.from}&to=${p.to}${only}`),
      json(`/api/v1/notebook-stops?from=${p.from}&to=${p.to}${only}`),
    ]);
    if (route !== state.route) return;
    state.currency = cost.currency;
    const tenants = name ? t.tenants.filter((x) => x.name === name) : t.tenants;
    const costBy = {};
    for (const l of cost.lines) costBy[l.tenant] = (costBy[l.tenant] || 0) + l.totalCost;
    const ctx = {
      route, name, period: p, tenants, costBy, waiting: queue.waiting, running: queue.running || [], usage: usage.points, cost, runs, pipelines, stops,
      budgets: new Map(budgets.budgets.filter((b) => !name || b.tenant === name).map((b) => [b.tenant, b])),
    };
    document.body.dataset.view = name ? "tenant" : "overview";
    document.body.classList.toggle("one-tenant", !!name);
    if (name) renderTenantPage(ctx); else renderOverview(ctx);
    renderQueue(ctx);
    renderCost(ctx);
    renderRuns(ctx);
    renderNotebooks(ctx);
    renderStops(ctx);
    $("error").textContent = notice;
    $("error").hidden = !notice;
    document.body.dataset.loaded = "true";
    document.body.dataset.loadedFor = addressOf(route);
  } catch (e) {
    if (!state.token) return;
    $("error").textContent = e.message;
    $("error").hidden = false;
  }
}

function fillTenantSelect(route) {
  const select = $("tenant");
  const names = state.tenants.map((x) => x.name);
  const have = [...select.options].map((o) => o.value).join("\n");
  const want = (names.length > 1 ? [""] : []).concat(names);
  if (have !== want.join("\n")) {
    select.replaceChildren(...want.map((n) => el("option", { value: n }, n || "all tenants")));
  }
  select.value = route.tenant || (names.length === 1 ? names[0] : "");
}

// ---- Quota bars --------------------------------------------------------------------------------

// Quota bars put every row's nominal quota at the same place, so that rows compare: a bar that
// reaches the mark is a tenant using exactly its guarantee, be it 10 GPUs or 100, and past the
// mark it borrows. One GPU scale shared by all rows was the other choice, but it draws a 10-GPU
// tenant as a sliver beside a 100-GPU one and hides whether it is starved or borrowing; the sizes
// are in the numbers beside each bar. The track runs to the largest use-to-nominal ratio shown, the
// same for every row of a table: at least 1.25, and at most 2 so that nominal keeps half of it
// (beyond is clipped and marked; the numbers say by how much).
function trackOf(quotas) {
  let r = 1.25;
  for (const q of quotas) if (q.nominal > 0) r = Math.max(r, q.used / q.nominal);
  return Math.min(2, Math.ceil(r * 4) / 4);
}

function quotaBar(tenant, q, track) {
  const full = q.nominal > 0 ? q.nominal * track : Math.max(q.used, 1e-9);
  const pct = (x) => Math.min(100, (100 * Math.max(0, x)) / full).toFixed(2) + "%";
  const own = q.used - q.borrowed;
  const label = `${tenant} ${q.flavor}: ${num(q.used)} in use of ${num(q.nominal)} nominal` +
    (q.borrowed > 0 ? `, ${num(q.borrowed)} borrowed` : "");
  return el("div", { class: "quota", "data-tenant": tenant, "data-flavor": q.flavor, "data-used": q.used, "data-nominal": q.nominal, "data-borrowed": q.borrowed, title: label },
    el("div", { class: "bar", role: "img", "aria-label": label },
      el("div", { class: "own", style: `width:${pct(own)}` }),
      el("div", { class: "borrowed", style: `left:${pct(own)};width:${pct(q.borrowed)}` }),
      q.nominal > 0 ? el("div", { class: "mark", style: `left:${pct(q.nominal)}` }) : null,
      q.used > full ? el("div", { class: "clipped" }, "▸") : null),
    el("span", { class: "figures" }, `${num(q.used)} / ${num(q.nominal)}`,
      q.borrowed > 0 ? el("span", { class: "plus" }, ` +${num(q.borrowed)}`) : null));
}

// The flavors worth a column: GPU models any shown tenant has quota of or uses; `cpu` only while
// something uses it (every tenant has CPU quota, and a column of "0 / N" says nothing). The others
// are named in one line under the table.
function flavorsShown(tenants) {
  const shown = [], idle = [];
  for (const f of state.flavors) {
    const qs = tenants.flatMap((t) => t.quotas.filter((q) => q.flavor === f.name));
    const used = qs.some((q) => q.used > 0);
    if (used || (f.name !== "cpu" && qs.some((q) => q.nominal > 0))) shown.push(f.name);
    else if (qs.some((q) => q.nominal > 0)) idle.push([f.name, qs.reduce((a, q) => a + q.nominal, 0)]);
  }
  return { shown, idle };
}

function budgetCell(b) {
  if (!b) return el("td", { class: "muted" }, "—");
  const cls = b.burn >= 1 ? "spent" : b.burn >= 0.8 ? "near" : "";
  return el("td", { "data-budget": b.tenant, "data-burn": b.burn.toFixed(3), title: `${num(b.usedGpuHours)} of ${num(b.gpuHoursPerMonth)} GPU-hours this month; when spent: ${b.whenExhausted}` },
    el("div", { class: "quota budget" }, el("div", { class: "bar" }, el("div", { class: "own " + cls, style: `width:${Math.min(100, 100 * b.burn).toFixed(2)}%` })),
      el("span", { class: "figures" }, `${num(100 * b.burn, 0)} %`)));
}

// Tenant names in the chosen order.
function ordered(ctx) {
  const gpus = (t) => t.quotas.filter((q) => q.flavor !== "cpu");
  const share = (t) => gpus(t).reduce((a, q) => a + q.used, 0) / Math.max(1e-9, gpus(t).reduce((a, q) => a + q.nominal, 0));
  const by = {
    name: () => 0,
    use: (a, b) => share(b) - share(a),
    waiting: (a, b) => b.pending - a.pending,
    cost: (a, b) => (ctx.costBy[b.name] || 0) - (ctx.costBy[a.name] || 0),
  }[ctx.route.sort];
  return [...ctx.tenants].sort((a, b) => by(a, b) || a.name.localeCompare(b.name, "en", { numeric: true })).map((t) => t.name);
}

// ---- The overview ------------------------------------------------------------------------------

function renderSummary(items) {
  $("summary").replaceChildren(...items.map(([label, value, cls]) =>
    el("div", { class: "kpi " + (cls || "") }, el("span", { class: "muted" }, label), " ", el("strong", {}, value))));
}

function renderOverview(ctx) {
  const { tenants } = ctx;
  const used = (f) => tenants.reduce((a, t) => a + t.quotas.filter((q) => q.flavor === f).reduce((b, q) => b + q.used, 0), 0);
  const burning = [...ctx.budgets.values()].filter((b) => b.burn >= 0.8);
  renderSummary([
    ...state.flavors.filter((f) => f.name !== "cpu" && f.capacity > 0)
      .map((f) => [f.name, `${num(used(f.name))} / ${num(f.capacity)} in use`]),
    ["waiting", `${ctx.waiting.length} workloads`],
    [`cost, ${periodName(ctx.route.period)}`, money(Object.values(ctx.costBy).reduce((a, b) => a + b, 0), 0)],
    ...(burning.length ? [["budgets", burning.map((b) => `${b.tenant} ${num(100 * b.burn, 0)} %`).join(", "), "near"]] : []),
  ]);
  $("tenants-title").textContent = "Quota and use";
  $("tenants-note").textContent = "bar: in use, light where borrowed; mark: nominal quota, at one place on every row";
  const { shown, idle } = flavorsShown(tenants);
  const track = trackOf(tenants.flatMap((t) => t.quotas.filter((q) => shown.includes(q.flavor))));
  const anyBudget = ctx.budgets.size > 0;
  const head = el("tr", {}, el("th", {}, "tenant"), ...shown.map((f) => el("th", { "data-flavor": f, style: `width:${Math.floor(64 / shown.length)}%` }, f)),
    el("th", { class: "num" }, "waiting"), el("th", { class: "num" }, "cost"), anyBudget ? el("th", {}, "budget") : null);
  const byName = new Map(tenants.map((t) => [t.name, t]));
  const rows = ordered(ctx).map((name) => {
    const t = byName.get(name);
    return el("tr", { "data-row": name },
      el("td", {}, el("a", { href: addressOf({ ...ctx.route, tenant: name }) }, name)),
      ...shown.map((f) => {
        const q = t.quotas.find((x) => x.flavor === f);
        return el("td", {}, q && (q.nominal > 0 || q.used > 0) ? quotaBar(name, q, track) : "");
      }),
      el("td", { class: "num" }, t.pending || ""),
      el("td", { class: "num" }, money(ctx.costBy[name] || 0, 0)),
      anyBudget ? budgetCell(ctx.budgets.get(name)) : null);
  });
  $("tenants-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  $("unused").textContent = idle.length
    ? "Not in use by anyone: " + idle.map(([f, n]) => `${f} (${num(n)} of quota)`).join(", ") + "; shown once in use."
    : "";
}

// ---- A tenant's page ---------------------------------------------------------------------------

const EXHAUSTED = {
  refuse: "new workloads are refused until next month",
  "idle-only": "new workloads run only as reclaimable work: they preempt nothing and are the first to be preempted",
};

function renderTenantPage(ctx) {
  const t = ctx.tenants[0];
  const b = ctx.budgets.get(t.name);
  renderSummary([
    ["tenant", t.name],
    ...(t.cohort ? [["cohort", t.cohort]] : []),
    ["namespaces", t.namespaces.join(", ") || "—"],
    ["running", String(t.running)],
    ["waiting", String(t.pending)],
    [`cost, ${periodName(ctx.route.period)}`, money(ctx.costBy[t.name] || 0)],
    ...(b ? [["budget", `${num(100 * b.burn, 0)} % of ${num(b.gpuHoursPerMonth)} GPU-h`, b.burn >= 0.8 ? "near" : ""]] : []),
  ]);
  if (state.tenants.length > 1) $("summary").prepend(el("a", { href: addressOf({ ...ctx.route, tenant: "" }) }, "← all tenants"));
  $("tenants-title").textContent = `${t.name}: quota and use`;
  $("tenants-note").textContent = "bar: in use, light where borrowed (its owner may take it back); mark: nominal quota";
  const { shown, idle } = flavorsShown([t]);
  const quotas = t.quotas.filter((q) => shown.includes(q.flavor) && (q.nominal > 0 || q.used > 0));
  const track = trackOf(quotas);
  const price = (q) => money(q.priceMicros / 1e6) + (q.flavor === "cpu" ? "/core-h" : "/GPU-h");
  const rows = quotas.map((q) => el("tr", { "data-row": q.flavor },
    el("td", {}, q.flavor), el("td", { class: "wide" }, quotaBar(t.name, q, track)),
    el("td", { class: "num" }, num(q.borrowed)),
    el("td", { class: "num" }, q.borrowingLimit === null || q.borrowingLimit === undefined ? "no limit" : num(q.borrowingLimit)),
    el("td", { class: "num", title: "the most it could hold now, with nothing else running in the cohort" }, num(q.ceiling)),
    el("td", { class: "num" }, price(q))));
  $("tenants-table").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", {}, "flavor"), el("th", {}, "in use / nominal"), el("th", { class: "num" }, "borrowed"),
      el("th", { class: "num" }, "may borrow"), el("th", { class: "num" }, "could hold"), el("th", { class: "num" }, "price"))),
    el("tbody", {}, ...rows),
    b ? el("tfoot", {}, el("tr", {}, el("td", {}, "budget"), budgetCell(b),
      el("td", { colspan: 4, class: "muted" }, `${num(b.usedGpuHours)} of ${num(b.gpuHoursPerMonth)} GPU-hours this month; when spent, ${EXHAUSTED[b.whenExhausted] || b.whenExhausted}`))) : "");
  $("unused").textContent = idle.length ? "Not in use: " + idle.map(([f, n]) => `${f} (${num(n)} of quota)`).join(", ") + "." : "";
}

// ---- The queue ---------------------------------------------------------------------------------

function renderQueue(ctx) {
  const body = $("queue").querySelector("tbody");
  body.replaceChildren(...ctx.waiting.map((w) => {
    const row = el("tr", { "data-workload": w.id, "data-reason": w.reason.reason, class: state.open.has(w.id) ? "open" : "" },
      el("td", { class: "num" }, `${w.position}/${w.queueLength}`),
      el("td", { class: "name" }, w.name, el("div", { class: "muted" },
        el("a", { class: "who", href: addressOf({ ...ctx.route, tenant: w.tenant }) }, w.tenant), el("span", { class: "who" }, " · "), w.kind)),
      el("td", { class: "num", title: "submitted " + when(w.submitted) }, duration(state.at - w.submitted)),
      el("td", { title: "click for the whole message" }, el("div", { class: "why" }, el("span", { class: "reason" }, w.reason.reason), " — ", w.message)),
      el("td", { title: w.estimatedStart ? when(w.estimatedStart) : "" },
        w.estimatedStart ? `in ${duration(w.estimatedStart - state.at)}` : "—",
        w.estimatedStart ? el("div", { class: "muted" }, when(w.estimatedStart).slice(5, 16)) : null));
    row.addEventListener("click", (e) => {
      if (e.target.closest("a")) return;
      if (state.open.has(w.id)) state.open.delete(w.id); else state.open.add(w.id);
      row.classList.toggle("open");
    });
    return row;
  }));
  $("queue-count").textContent = ctx.waiting.length ? `${ctx.waiting.length} waiting` : "";
  $("queue-empty").hidden = ctx.waiting.length > 0;
}

// ---- Cost --------------------------------------------------------------------------------------

function renderCost(ctx) {
  // The chart's series: every tenant shown, or on a tenant's page every flavor it has quota of or
  // was charged for; colours by their place in the API's lists.
  const series = ctx.name
    ? state.flavors.map((f, i) => ({ key: f.name, colour: colour(i) }))
      .filter((s) => ctx.tenants[0].quotas.some((q) => q.flavor === s.key && (q.nominal > 0 || q.used > 0) && s.key !== "cpu")
        || ctx.usage.some((p) => p.flavor === s.key && p.cost > 0))
    : state.tenants.map((t, i) => ({ key: t.name, colour: colour(i), link: true })).filter((s) => ctx.tenants.some((t) => t.name === s.key));
  const keyOf = ctx.name ? (p) => p.flavor : (p) => p.tenant;
  const total = {};
  for (const l of ctx.cost.lines) total[keyOf(l)] = (total[keyOf(l)] || 0) + l.totalCost;
  drawChart(ctx, series, keyOf, total);
  renderCostTable(ctx);
}

// Cost per bucket on a regular grid from the first bucket with cost to the last (empty ones 0, so
// bars keep their width and time its spacing); `own[k][j]`: series k's cost in bucket j.
function buckets(points, series, keyOf, step) {
  let first = Infinity, last = -Infinity; // not Math.min(...): a year of 50 tenants is 10^5 points
  for (const p of points) if (p.cost > 0) { first = Math.min(first, p.at); last = Math.max(last, p.at); }
  if (first > last) return null;
  const xs = [];
  for (let t = first; t <= last; t += step) xs.push(t);
  const index = new Map(series.map((s, k) => [s.key, k]));
  const own = series.map(() => new Array(xs.length).fill(0));
  for (const p of points) {
    const k = index.get(keyOf(p)), j = (p.at - first) / step;
    if (k !== undefined && j >= 0 && j < xs.length) own[k][j] += p.cost;
  }
  return { xs, own };
}

// The time axis' labels, in UTC like every time on the page: dates when ticks are a day or more
// apart, else hours, with the date under midnight and under the first tick.
function tickLabels(splits, incr) {
  return splits.map((s, i) => {
    if (s === null) return null; // a tick uPlot filtered out
    const [date, hm] = [iso(s).slice(0, 10), iso(s).slice(11, 16)];
    if (incr >= DAY) return date;
    return hm === "00:00" || i === 0 ? `${hm}\n${date}` : hm;
  });
}

// Tick spacings: no finer than the buckets.
const HOUR_TICKS = [1, 2, 3, 4, 6, 12, 24, 48, 168].map((h) => h * 3600);
const DAY_TICKS = [1, 2, 7, 14, 28, 91, 182, 364].map((d) => d * DAY);

function drawChart(ctx, series, keyOf, total) {
  const { step, from, to } = ctx.period;
  const box = $("cost-chart");
  Object.assign(box.dataset, { from, to, step, unit: `${state.currency} per ${step === DAY ? "day" : "hour"}` });
  const data = buckets(ctx.usage, series, keyOf, step);
  const sig = JSON.stringify([series.map((s) => s.key), step, state.currency]);
  if (state.chart && (!data || state.chart.sig !== sig)) { state.chart.u.destroy(); state.chart = null; }
  $("cost-empty").hidden = !!data;
  if (!data) { box.replaceChildren(); $("cost-axis").replaceChildren(); }

  // uPlot draws series in order, each bar from zero: the running totals are given top first, so
  // each series' own bar is drawn over the one of all that stack above it.
  const n = series.length;
  const cum = [], run = new Array(data ? data.xs.length : 0).fill(0);
  if (data) for (let k = 0; k < n; k++) cum.push(data.own[k].map((v, j) => (run[j] += v)));
  const stacked = data ? [data.xs, ...cum.reverse()] : null;
  const meta = { data, series, total, step, x0: data && Math.max(from, data.xs[0]), x1: data && Math.min(to, data.xs[data.xs.length - 1] + step) };
  if (data && state.chart) {
    state.chart.meta = meta;
    state.chart.u.setData(stacked);
  } else if (data) {
    const chart = { sig, meta };
    const opts = {
      width: box.clientWidth || 600,
      height: chartHeight(),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      padding: [12, 40, 0, 0], // room for the last time label
      legend: { show: false }, // ours, below: it fits 50 tenants and shows totals when not hovering
      cursor: { y: false, drag: { x: false, y: false }, points: { show: false } },
      scales: {
        x: { time: true, range: () => [chart.meta.x0, chart.meta.x1] },
        y: { range: (u, lo, hi) => [0, hi > 0 ? hi * 1.08 : 1] },
      },
      axes: [
        { space: 70, incrs: step === DAY ? DAY_TICKS : HOUR_TICKS, values: (u, splits, ax, space, incr) => ticks(chart, splits, incr), grid: { stroke: "#eceef2" }, stroke: "#4b5263" },
        { label: box.dataset.unit, size: 64, values: (u, splits) => splits.map((v) => money(v, 1, true)), grid: { stroke: "#eceef2" }, stroke: "#4b5263" },
      ],
      series: [{}, ...[...series].reverse().map((s) => ({
        label: s.key, fill: s.colour, stroke: s.colour, width: 0, points: { show: false },
        paths: uPlot.paths.bars({ align: 1, size: [0.92, Infinity] }),
      }))],
      hooks: {
        setCursor: [(u) => hover(chart, u)],
        draw: [() => axisList(chart)],
      },
    };
    box.replaceChildren();
    chart.u = new uPlot(opts, stacked, box);
    state.chart = chart;
  }
  renderLegend(ctx, series, total, data);
  if (state.chart) hover(state.chart, state.chart.u);
}

const chartHeight = () => (window.innerWidth < 1200 ? 200 : 220);

// The time axis is drawn on a canvas: its labels are also written, with their times, in a list
// that screen readers (and the browser test) read.
function ticks(chart, splits, incr) {
  const labels = tickLabels(splits, incr);
  chart.ticks = splits.map((s, i) => [s, labels[i]]).filter(([s]) => s !== null);
  return labels;
}
function axisList(chart) {
  $("cost-axis").replaceChildren(...(chart.ticks || []).map(([s, label]) => el("li", { "data-at": s }, label.replace("\n", " "))));
}

// The legend's figures: each series' cost in the hovered bucket, or over the period.
function hover(chart, u) {
  const { data, series, total, step } = chart.meta;
  let j = null;
  if (u.cursor.left >= 0) {
    const x = u.posToVal(u.cursor.left, "x");
    j = Math.floor((x - data.xs[0]) / step);
    if (j < 0 || j >= data.xs.length) j = null;
  }
  const values = series.map((s, k) => (j === null ? total[s.key] || 0 : data.own[k][j]));
  const sum = values.reduce((a, b) => a + b, 0);
  if (j === null) {
    $("cost-hover").textContent = `Over the period: ${money(sum)}. Hover the chart for one ${step === DAY ? "day" : "hour"}.`;
  } else {
    const t = data.xs[j];
    const span = step === DAY ? `${weekday(t)} ${iso(t).slice(0, 10)}` : `${weekday(t)} ${when(t).slice(0, 16)}–${iso(t + step).slice(11, 16)} UTC`;
    $("cost-hover").textContent = `${span}: ${money(sum)}`;
  }
  for (const li of $("cost-legend").children) {
    const v = values[Number(li.dataset.k)];
    li.lastChild.textContent = money(v, v >= 100 ? 0 : 2);
  }
}

function renderLegend(ctx, series, total, data) {
  $("cost-legend").replaceChildren(...series.map((s, k) => {
    const drawn = data ? data.own[k].reduce((a, b) => a + b, 0) : 0;
    const name = s.link ? el("a", { href: addressOf({ ...ctx.route, tenant: s.key }) }, s.key) : el("span", {}, s.key);
    return el("li", { "data-k": k, "data-series": s.key, "data-colour": s.colour, "data-total": (total[s.key] || 0).toFixed(2), "data-drawn": drawn.toFixed(2) },
      el("span", { class: "swatch", style: `background:${s.colour}` }), name, el("span", { class: "v" }, money(total[s.key] || 0)));
  }));
}

function renderCostTable(ctx) {
  const rank = new Map(ordered(ctx).map((n, i) => [n, i]));
  const flavorRank = new Map(state.flavors.map((f, i) => [f.name, i]));
  const lines = [...ctx.cost.lines].sort((a, b) => rank.get(a.tenant) - rank.get(b.tenant) || flavorRank.get(a.flavor) - flavorRank.get(b.flavor));
  const sum = (k) => lines.reduce((a, l) => a + l[k], 0);
  $("cost").querySelector("tbody").replaceChildren(...lines.map((l) =>
    el("tr", { "data-tenant": l.tenant, "data-flavor": l.flavor, "data-total": l.totalCost.toFixed(2) },
      el("td", { class: "who" }, l.tenant), el("td", {}, l.flavor), el("td", { class: "num" }, num(l.guaranteedHours)), el("td", { class: "num" }, num(l.borrowedHours)),
      el("td", { class: "num" }, num(l.idleHours)), el("td", { class: "num" }, money(l.totalCost)))));
  $("cost").querySelector("tfoot").replaceChildren(el("tr", {}, el("td", { class: "who" }), el("td", {}, "total"),
    el("td", { class: "num" }, num(sum("guaranteedHours"))), el("td", { class: "num" }, num(sum("borrowedHours"))),
    el("td", { class: "num" }, num(sum("idleHours"))), el("td", { class: "num" }, money(sum("totalCost")))));
  $("cost-currency").textContent = state.currency;
}

// ---- Cost per pipeline run -----------------------------------------------------------------------

// Lines of `/api/v1/cost?group=...` summed over flavors (and, with every tenant shown, kept per
// tenant), costliest first; what no run (or no named pipeline) was charged comes last.
function perCharge(lines, keyOf) {
  const by = new Map();
  for (const l of lines) {
    const k = JSON.stringify([l.tenant, ...keyOf(l)]);
    const e = by.get(k) || { ...l, gpuHours: 0, totalCost: 0 };
    if (!l.flavor.startsWith("cpu")) e.gpuHours += l.guaranteedHours + l.borrowedHours;
    e.totalCost += l.totalCost;
    by.set(k, e);
  }
  const named = (e) => keyOf(e).some((v) => v);
  return [...by.values()].sort((a, b) => named(b) - named(a) || b.totalCost - a.totalCost);
}

function renderRuns(ctx) {
  const runs = perCharge(ctx.runs.lines, (l) => [l.run, l.pipeline, l.experiment]);
  const pipelines = perCharge(ctx.pipelines.lines, (l) => [l.pipeline]);
  // Shown only where some use was charged to a run.
  $("runs-panel").hidden = !runs.some((r) => r.run);
  const who = (l) => ctx.name ? "" : `${l.tenant}: `;
  const rest = (l) => el("td", { class: "who muted" }, who(l) + "not charged to a run");
  $("runs").querySelector("tbody").replaceChildren(...runs.map((l) =>
    el("tr", { "data-run": l.run || "", "data-tenant": l.tenant, "data-total": l.totalCost.toFixed(2) },
      l.run ? el("td", { class: "who", title: l.run }, who(l) + l.run) : rest(l),
      el("td", {}, l.pipeline || ""), el("td", {}, l.experiment || ""),
      el("td", { class: "num" }, num(l.gpuHours)), el("td", { class: "num" }, money(l.totalCost)))));
  $("pipelines").querySelector("tbody").replaceChildren(...pipelines.map((l) =>
    el("tr", { "data-pipeline": l.pipeline || "", "data-tenant": l.tenant, "data-total": l.totalCost.toFixed(2) },
      l.pipeline ? el("td", { class: "who" }, who(l) + l.pipeline) : el("td", { class: "who muted" }, who(l) + "no named pipeline"),
      el("td", { class: "num" }, num(l.gpuHours)), el("td", { class: "num" }, money(l.totalCost)))));
}

// ---- Notebooks -----------------------------------------------------------------------------------

// A tenant's running notebooks, with how long their GPUs have sat idle where the node agents saw
// it (idleSince): what its idleNotebooks rule will stop. Shown only on a tenant's page, and only
// when it runs notebooks.
function renderNotebooks(ctx) {
  const notebooks = ctx.name ? ctx.running.filter((r) => r.kind === "notebook") : [];
  $("notebooks-panel").hidden = notebooks.length === 0;
  // Idle longest first, then the rest by how long they ran.
  notebooks.sort((a, b) => (a.idleSince ?? Infinity) - (b.idleSince ?? Infinity) || a.since - b.since);
  $("notebooks").querySelector("tbody").replaceChildren(...notebooks.map((r) =>
    el("tr", { "data-running": r.id, "data-idle-since": r.idleSince ?? "" },
      el("td", { class: "name" }, r.name), el("td", {}, r.flavor), el("td", { class: "num" }, num(r.units)),
      el("td", { class: "num", title: "since " + when(r.since) }, duration(state.at - r.since)),
      r.idleSince !== undefined && r.idleSince !== null
        ? el("td", { class: "idle-now", title: "idle since " + when(r.idleSince) }, `GPUs idle for ${duration(state.at - r.idleSince)}`)
        : el("td", { class: "muted" }, "—"))));
  const idle = notebooks.filter((r) => r.idleSince !== undefined && r.idleSince !== null).length;
  $("notebooks-note").textContent = notebooks.length ? `${notebooks.length} running${idle ? `, ${idle} with idle GPUs` : ""}` : "";
}

// Notebooks Gantry stopped because their GPUs sat idle past the tenant's idleNotebooks limit, in
// the period, newest first; shown only when there are some. The scheduler's message is text, put
// in with text nodes (el) like every figure from the API.
function renderStops(ctx) {
  const s = ctx.stops;
  $("stops-panel").hidden = s.stops.length === 0;
  $("stops").querySelector("tbody").replaceChildren(...s.stops.map((x) => {
    const key = `${x.namespace}/${x.notebook}/${x.at}`;
    const row = el("tr", { "data-stop": key, "data-tenant": x.tenant, "data-cost": x.cost.toFixed(2), class: state.open.has(key) ? "open" : "" },
      el("td", { class: "name", title: "stopped " + when(x.at) }, `${x.namespace}/${x.notebook}`,
        el("div", { class: "muted" }, el("a", { class: "who", href: addressOf({ ...ctx.route, tenant: x.tenant }) }, x.tenant),
          el("span", { class: "who" }, " · "), "stopped " + when(x.at).slice(5, 16))),
      el("td", {}, x.flavor), el("td", {}, when(x.idleSince)),
      el("td", { class: "num" }, duration(x.idleSeconds)), el("td", { class: "num" }, num(x.idleGpuHours, 2)),
      el("td", { class: "num" }, money(x.cost)),
      el("td", { title: "click for the whole message" }, el("div", { class: "why" }, x.message)));
    row.addEventListener("click", (e) => {
      if (e.target.closest("a")) return;
      if (state.open.has(key)) state.open.delete(key); else state.open.add(key);
      row.classList.toggle("open");
    });
    return row;
  }));
  $("stops-note").textContent = s.count
    ? `${s.count} this period · ${num(s.idleGpuHours)} idle GPU-h · ${money(s.cost)}` + (s.truncated ? ` · the newest ${s.stops.length} shown` : "")
    : "";
}

async function exportCsv(group) {
  const p = period(state.route.period);
  const only = document.body.dataset.view === "tenant" ? "&tenant=" + encodeURIComponent(state.tenants.length === 1 ? state.tenants[0].name : state.route.tenant) : "";
  const by = group ? `&group=${group}` : "";
  const r = await api(`/api/v1/cost.csv?from=${p.from}&to=${p.to}${only}${by}`);
  const a = el("a", { href: URL.createObjectURL(await r.blob()), download: `gantry-cost${group ? "-per-" + group : ""}-${iso(p.from).slice(0, 10)}-${iso(p.to).slice(0, 10)}.csv` });
  a.click();
}

// ---- Start -------------------------------------------------------------------------------------

// Nothing but the view is read from the address, and the address is rewritten to name only that
// view: whatever else was put in it (a token, say) is taken out of this history entry.
const start = routeOf(location);
history.replaceState(null, "", addressOf(start));
state.token = sessionStorage.getItem("gantry-token") || "";
$("signin").addEventListener("submit", signIn);
$("signout").addEventListener("click", () => signOut(""));
if (state.token) { $("signin").hidden = true; $("signout").hidden = false; } else signOut("");
$("tenant").addEventListener("change", () => go({ tenant: $("tenant").value }));
$("period").addEventListener("change", () => go({ period: Number($("period").value) }));
$("sort").addEventListener("change", () => go({ sort: $("sort").value }));
addEventListener("popstate", () => show(routeOf(location)));
// The chart follows its box, whose width changes with the window, the layout and the view.
new ResizeObserver(() => {
  const c = state.chart, width = $("cost-chart").clientWidth, height = chartHeight();
  if (c && width && (width !== c.u.width || height !== c.u.height)) c.u.setSize({ width, height });
}).observe($("cost-chart"));
$("export").addEventListener("click", () => exportCsv().catch((e) => { $("error").textContent = e.message; $("error").hidden = false; }));
$("export-runs").addEventListener("click", () => exportCsv("run").catch((e) => { $("error").textContent = e.message; $("error").hidden = false; }));
show(start);
setInterval(refresh, 2000);
