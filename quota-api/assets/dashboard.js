// Gantry's dashboard: quota against use and borrowing, the queue with reasons and estimated
// starts, cost over time and budget burn, from the quota API. The bearer token is typed or pasted
// into the sign-in form and kept in this tab's sessionStorage only: never in the address, so
// never in the browser's history.
"use strict";

const state = { token: "", at: 0, flavors: [], tenants: [] };
const $ = (id) => document.getElementById(id);
const palette = ["#3a6fd8", "#d8743a", "#3aa874", "#a83a9d", "#c9b037", "#3ab4c9", "#7d5a3a", "#5a5a5a"];

function takeToken() {
  // Nothing is read from the address; whatever was put in it is taken out of this entry.
  if (location.hash || location.search) history.replaceState(null, "", location.pathname);
  state.token = sessionStorage.getItem("gantry-token") || "";
}

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

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const num = (x, d = 1) => Number(x).toLocaleString("en", { maximumFractionDigits: d });
const when = (t) => new Date(t * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";

function period() {
  const days = Number($("period").value);
  return { from: state.at - days * 86400, to: state.at + 1 };
}
function tenantQuery() {
  const t = $("tenant").value;
  return t ? "&tenant=" + encodeURIComponent(t) : "";
}

function renderQuotas(tenants) {
  const box = $("quotas");
  box.replaceChildren();
  for (const t of tenants) {
    for (const q of t.quotas) {
      const scale = Math.max(q.ceiling, q.used, q.nominal, 1e-9);
      const own = Math.min(q.used - q.borrowed, q.used);
      const bar = el("div", { class: "bar", role: "img", "aria-label": `${t.name} ${q.flavor}: ${q.used} in use of ${q.nominal} nominal` },
        el("div", { class: "guaranteed", style: `width:${(100 * own) / scale}%` }),
        el("div", { class: "borrowed", style: `left:${(100 * own) / scale}%;width:${(100 * q.borrowed) / scale}%` }),
        el("div", { class: "nominal", style: `left:${(100 * q.nominal) / scale}%` }));
      box.append(el("div", { class: "quota", "data-tenant": t.name, "data-flavor": q.flavor, "data-used": q.used, "data-nominal": q.nominal, "data-borrowed": q.borrowed },
        el("span", {}, t.name), el("span", { class: "muted" }, q.flavor), bar,
        el("span", {}, `${num(q.used)} / ${num(q.nominal)}` + (q.borrowed > 0 ? ` (+${num(q.borrowed)} borrowed)` : ""))));
    }
  }
}

function renderQueue(waiting) {
  const body = $("queue").querySelector("tbody");
  body.replaceChildren();
  for (const w of waiting) {
    body.append(el("tr", { "data-workload": w.id, "data-reason": w.reason.reason },
      el("td", {}, w.tenant), el("td", { class: "num" }, `${w.position}/${w.queueLength}`), el("td", {}, w.name), el("td", {}, w.kind),
      el("td", {}, el("span", { class: "reason" }, w.reason.reason), " — ", w.message),
      el("td", {}, w.estimatedStart ? when(w.estimatedStart) : "—")));
  }
  $("queue-empty").hidden = waiting.length > 0;
}

// Stacked bars of cost per day and tenant, at the prices in force when the time was used.
function renderCostChart(points) {
  const days = {}, tenants = [];
  for (const p of points) {
    const c = p.cost;
    (days[p.at] ||= {})[p.tenant] = ((days[p.at] || {})[p.tenant] || 0) + c;
    if (!tenants.includes(p.tenant)) tenants.push(p.tenant);
  }
  const keys = Object.keys(days).map(Number).sort((a, b) => a - b);
  const max = Math.max(1e-9, ...keys.map((k) => Object.values(days[k]).reduce((a, b) => a + b, 0)));
  const W = 640, H = 200, pad = 30, bw = Math.max(2, (W - pad) / Math.max(1, keys.length) - 2);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 20}`);
  svg.setAttribute("id", "cost-svg");
  keys.forEach((k, i) => {
    let y = H;
    tenants.forEach((t, ti) => {
      const c = days[k][t] || 0;
      if (c <= 0) return;
      const h = (H - 10) * c / max;
      y -= h;
      const r = document.createElementNS(ns, "rect");
      Object.entries({ x: pad + i * (bw + 2), y, width: bw, height: h, fill: palette[ti % palette.length], "data-day": k, "data-tenant": t, "data-cost": c.toFixed(2) })
        .forEach(([a, v]) => r.setAttribute(a, v));
      const tip = document.createElementNS(ns, "title");
      tip.textContent = `${t} ${when(k).slice(0, 10)}: ${num(c, 2)}`;
      r.append(tip);
      svg.append(r);
    });
  });
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 0); label.setAttribute("y", 10); label.textContent = num(max, 0);
  svg.append(label);
  const legend = el("div", { class: "legend" }, ...tenants.map((t, ti) => el("span", {}, el("span", { class: "swatch", style: `background:${palette[ti % palette.length]}` }), t)));
  $("cost-chart").replaceChildren(svg, legend);
}

function renderCost(cost) {
  const body = $("cost").querySelector("tbody");
  body.replaceChildren();
  for (const l of cost.lines) {
    body.append(el("tr", { "data-tenant": l.tenant, "data-flavor": l.flavor, "data-total": l.totalCost.toFixed(2) },
      el("td", {}, l.tenant), el("td", {}, l.flavor), el("td", { class: "num" }, num(l.guaranteedHours)), el("td", { class: "num" }, num(l.borrowedHours)),
      el("td", { class: "num" }, num(l.idleHours)), el("td", { class: "num" }, `${num(l.totalCost, 2)} ${cost.currency}`)));
  }
}

function renderBudgets(budgets) {
  const box = $("budgets");
  box.replaceChildren();
  if (!budgets.length) box.append(el("p", { class: "muted" }, "No tenant has a budget."));
  for (const b of budgets) {
    box.append(el("div", { class: "quota", "data-budget": b.tenant, "data-burn": b.burn.toFixed(3) },
      el("span", {}, b.tenant), el("span", { class: "muted" }, b.whenExhausted),
      el("div", { class: "bar" }, el("div", { class: "guaranteed", style: `width:${Math.min(100, 100 * b.burn)}%` })),
      el("span", {}, `${num(b.usedGpuHours)} / ${num(b.gpuHoursPerMonth)} GPU-h`)));
  }
}

async function refresh() {
  if (!state.token) return;
  try {
    const t = await json("/api/v1/tenants");
    state.at = t.at; state.flavors = t.flavors; state.tenants = t.tenants;
    $("at").textContent = "as of " + when(t.at);
    const select = $("tenant");
    if (select.options.length !== t.tenants.length + 1) {
      const chosen = select.value;
      select.replaceChildren(el("option", { value: "" }, "all tenants"), ...t.tenants.map((x) => el("option", { value: x.name }, x.name)));
      select.value = chosen;
    }
    const chosen = select.value;
    renderQuotas(t.tenants.filter((x) => !chosen || x.name === chosen));
    const { from, to } = period();
    const [q, usage, cost, budgets] = await Promise.all([
      json("/api/v1/queue?" + tenantQuery().slice(1)),
      json(`/api/v1/usage?step=day&from=${from}&to=${to}${tenantQuery()}`),
      json(`/api/v1/cost?from=${from}&to=${to}${tenantQuery()}`),
      json("/api/v1/budgets"),
    ]);
    renderQueue(q.waiting);
    renderCostChart(usage.points);
    renderCost(cost);
    renderBudgets(budgets.budgets.filter((b) => !chosen || b.tenant === chosen));
    $("error").hidden = true;
    document.body.dataset.loaded = "true";
  } catch (e) {
    if (!state.token) return;
    $("error").textContent = e.message;
    $("error").hidden = false;
  }
}

async function exportCsv() {
  const { from, to } = period();
  const r = await api(`/api/v1/cost.csv?from=${from}&to=${to}${tenantQuery()}`);
  const a = el("a", { href: URL.createObjectURL(await r.blob()), download: "gantry-cost.csv" });
  a.click();
}

takeToken();
$("signin").addEventListener("submit", signIn);
$("signout").addEventListener("click", () => signOut(""));
if (state.token) { $("signin").hidden = true; $("signout").hidden = false; } else signOut("");
$("tenant").addEventListener("change", refresh);
$("period").addEventListener("change", refresh);
$("export").addEventListener("click", () => exportCsv().catch((e) => { $("error").textContent = e.message; $("error").hidden = false; }));
refresh();
setInterval(refresh, 2000);
