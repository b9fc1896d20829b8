// mbuskit head-end page: meters per bus and live plots drawn on <canvas> (no libraries:
// the page must work on a machine without internet access).
"use strict";

const REFRESH_MS = 2000;
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];
let selected = null;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v, unit) {
  if (v === undefined || v === null) return "–";
  if (unit === "Wh") return (v / 1000).toFixed(2) + " kWh";
  if (unit === "W") return v.toFixed(0) + " W";
  return (Math.abs(v) >= 1000 ? v.toFixed(0) : v.toPrecision(4)) + " " + unit;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

function renderBuses(buses, meters) {
  const byName = Object.fromEntries(meters.map(m => [m.name, m]));
  const root = document.getElementById("buses");
  root.replaceChildren();
  for (const bus of buses) {
    const sec = el("div", { class: "bus", "data-bus": bus.name });
    const h = el("h2", {}, bus.name + " ");
    h.append(el("span", { class: "busy" },
      `${bus.kind} ${bus.target}, ${bus.baud} Bd, busy ${(100 * bus.busy_ratio).toFixed(0)} %` +
      (bus.owned ? "" : " (polled by another worker)")));
    sec.append(h);
    const grid = el("div", { class: "meters" });
    for (const ref of bus.meters) {
      const m = byName[ref.name];
      if (!m) continue;
      const card = el("div", { class: "meter" + (m.name === selected ? " selected" : ""),
                               "data-meter": m.name, "data-state": m.health.state });
      card.append(el("div", { class: "name" }, m.name));
      const id = m.identity;
      card.append(el("div", { class: "ident" },
        `${id.manufacturer || "?"} ${id.id || ""} · ${m.address.kind} ` +
        (m.address.primary !== null ? m.address.primary : m.address.secondary)));
      card.append(el("div", { class: "state" }, m.health.state +
        (m.health.last_error && m.health.state !== "ok" ? ": " + m.health.last_error : "")));
      const l = m.latest;
      card.append(el("div", { class: "values" },
        `${fmt(l.energy && l.energy.value, "Wh")} · ${fmt(l.power && l.power.value, "W")}`));
      card.addEventListener("click", () => { selected = m.name; refresh(); });
      grid.append(card);
    }
    sec.append(grid);
    root.append(sec);
  }
}

function renderSelect(meters) {
  const sel = document.getElementById("meter-select");
  const names = meters.map(m => m.name);
  if (sel.options.length !== names.length) {
    sel.replaceChildren(...names.map(n => el("option", { value: n }, n)));
    sel.onchange = () => { selected = sel.value; refresh(); };
  }
  if (!selected || !names.includes(selected)) selected = names[0] || null;
  sel.value = selected || "";
}

// Draws series {label, points: [[t, v], ...]} with time and value axes; returns points drawn.
function plot(canvas, series, scale) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 70, R = 110, T = 12, B = 28;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, W, H);
  const pts = series.flatMap(s => s.points);
  if (pts.length === 0) {
    ctx.fillStyle = "#6b7385";
    ctx.font = "14px sans-serif";
    ctx.fillText("no readings yet", W / 2 - 50, H / 2);
    return 0;
  }
  let t0 = Math.min(...pts.map(p => p[0])), t1 = Math.max(...pts.map(p => p[0]));
  let v0 = Math.min(...pts.map(p => p[1] * scale)), v1 = Math.max(...pts.map(p => p[1] * scale));
  if (t1 === t0) { t0 -= 1; t1 += 1; }
  if (v1 === v0) { v0 -= 1; v1 += 1; }
  const pad = (v1 - v0) * 0.05; v0 -= pad; v1 += pad;
  const x = t => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = v => H - B - (v - v0) / (v1 - v0) * (H - T - B);
  ctx.strokeStyle = "#d9dde5"; ctx.fillStyle = "#6b7385"; ctx.font = "11px sans-serif";
  ctx.lineWidth = 1;
  // enough decimals to tell the four grid lines apart, no more
  const decimals = Math.max(0, Math.min(6, 2 - Math.floor(Math.log10((v1 - v0) / 4))));
  for (let i = 0; i <= 4; i++) {
    const v = v0 + (v1 - v0) * i / 4, yy = y(v);
    ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(W - R, yy); ctx.stroke();
    ctx.fillText(v.toFixed(decimals), 4, yy + 4);
    const t = t0 + (t1 - t0) * i / 4;
    ctx.fillText(new Date(t * 1000).toLocaleTimeString(), x(t) - 25, H - 8);
  }
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    ctx.strokeStyle = c; ctx.lineWidth = 2; ctx.beginPath();
    s.points.forEach((p, j) => {
      const xx = x(p[0]), yy = y(p[1] * scale);
      if (j === 0) ctx.moveTo(xx, yy); else ctx.lineTo(xx, yy);
    });
    ctx.stroke();
    ctx.fillStyle = c;
    ctx.fillRect(W - R + 10, T + 16 * i, 10, 10);
    ctx.fillText(s.label, W - R + 26, T + 16 * i + 9);
  });
  return pts.length;
}

async function refreshPlots() {
  if (!selected) return;
  const h = await getJSON(`/api/meters/${encodeURIComponent(selected)}/history?limit=5000`);
  const series = {};
  for (const r of h.readings) (series[r.register] = series[r.register] || []).push([r.read_time, r.value]);
  const energy = Object.keys(series).filter(k => k === "energy")
    .map(k => ({ label: "A+", points: series[k] }));
  // per-phase registers (EN 13757-3:2018 VIFE FC 01-03) when the meter sends them, else total
  let phases = Object.keys(series).filter(k => /^power\.phase_L[123]$/.test(k)).sort();
  if (phases.length === 0) phases = Object.keys(series).filter(k => k === "power");
  const power = phases.map(k => ({ label: k.replace("power.phase_", "") || k, points: series[k] }));
  const n1 = plot(document.getElementById("plot-energy"), energy, 0.001);
  const n2 = plot(document.getElementById("plot-power"), power, 1);
  document.body.dataset.plotted = String(n1 + n2);
  document.body.dataset.plotSeries = String(energy.length + power.length);
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [buses, meters] = await Promise.all([getJSON("/api/buses"), getJSON("/api/meters")]);
    renderSelect(meters);
    renderBuses(buses, meters);
    updateButtons(meters);
    await refreshPlots();
    const ok = meters.filter(m => m.health.state === "ok").length;
    status.textContent = `${meters.length} meters, ${ok} answering · updated ` +
      new Date().toLocaleTimeString();
    document.body.dataset.meters = String(meters.length);
    document.body.dataset.state = "ready";
  } catch (e) {
    status.textContent = "error: " + e.message;
    document.body.dataset.state = "error";
  }
}

// Commands put frames on the bus, so the API wants the token (kept for this tab only).
async function command(btn) {
  const out = document.getElementById("cmd-result");
  const token = document.getElementById("token").value;
  sessionStorage.setItem("mbus-token", token);
  if (!selected) return;
  const cmd = btn.dataset.cmd;
  const init = { method: "POST", headers: { "Authorization": "Bearer " + token } };
  if (cmd === "breaker") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify({ state: btn.dataset.state });
  }
  out.textContent = `${cmd} ${selected}…`;
  try {
    const r = await fetch(`/api/meters/${encodeURIComponent(selected)}/${cmd}`, init);
    const body = await r.json();
    out.textContent = r.ok ? `${cmd} ${selected}: done` : `${cmd} ${selected}: ${body.error}`;
    if (r.ok) refresh();
  } catch (e) {
    out.textContent = `${cmd}: ${e.message}`;
  }
}

function updateButtons(meters) {
  const m = meters.find(x => x.name === selected);
  for (const b of document.querySelectorAll(".commands button.breaker")) {
    b.disabled = !m || !m.breaker;
  }
}

document.getElementById("token").value = sessionStorage.getItem("mbus-token") || "";
for (const b of document.querySelectorAll(".commands button")) {
  b.addEventListener("click", () => command(b));
}

refresh();
setInterval(refresh, REFRESH_MS);
