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
      if (m.breaker || m.breaker_state) card.append(breakerBadge(m.breaker_state));
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

// What the meter last said (its own read-out), not what was last commanded: "unknown" until a
// read-out carried the state (a standard read-out never does).
function breakerBadge(b) {
  const state = b ? b.state : "unknown";
  const text = !b ? "breaker unknown" :
    b.state === "closed" ? "breaker closed" :
    `breaker open: ${b.detail}` + (b.reason && b.reason !== "none" ? ` (${b.reason})` : "");
  return el("span", { class: "badge", "data-breaker": state,
                      title: b ? "read " + new Date(b.read_time * 1000).toLocaleString() : "" },
            text);
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

function cell(text) { return el("td", {}, text === null || text === undefined ? "" : text); }

async function refreshCommands() {
  const body = document.getElementById("command-rows");
  if (!selected) { body.replaceChildren(); return; }
  const r = await getJSON(`/api/commands?limit=10&meter=${encodeURIComponent(selected)}`);
  body.replaceChildren(...r.commands.map(c => {
    const tr = el("tr", { "data-outcome": c.outcome, "data-id": String(c.id) });
    const args = Object.entries(c.args).map(([k, v]) => `${k}=${v}`).join(" ");
    const back = c.readback && c.readback.breaker_state ?
      `breaker ${c.readback.breaker_state} (${c.readback.breaker_detail})` : "";
    tr.append(cell(new Date(c.time * 1000).toLocaleString()), cell(c.origin), cell(c.command),
              cell(args), cell(c.outcome + (c.message ? ": " + c.message : "")), cell(back));
    return tr;
  }));
  document.body.dataset.commands = String(r.commands.length);
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [buses, meters] = await Promise.all([getJSON("/api/buses"), getJSON("/api/meters")]);
    renderSelect(meters);
    renderBuses(buses, meters);
    updateButtons(meters);
    await refreshPlots();
    // the audit list is an aid, not the page: its failure shows there and stops nothing else
    await refreshCommands().catch(e => {
      const tr = el("tr");
      tr.append(el("td", { colspan: "6" }, "commands: " + e.message));
      document.getElementById("command-rows").replaceChildren(tr);
    });
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

// A disconnect cuts a household's supply: asked once more in the page, and nothing is sent
// unless confirmed. An in-page <dialog>, not window.confirm, so that it can be styled and
// tested like the rest of the page.
function confirmDisconnect(meter) {
  const dlg = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent =
    `Disconnect the breaker of meter ${meter}? Its load loses supply until reconnected.`;
  return new Promise(resolve => {
    const yes = document.getElementById("confirm-yes"), no = document.getElementById("confirm-no");
    const done = ok => { yes.onclick = no.onclick = dlg.oncancel = null; dlg.close(); resolve(ok); };
    yes.onclick = () => done(true);
    no.onclick = () => done(false);
    dlg.oncancel = e => { e.preventDefault(); done(false); };  // Escape = cancel
    dlg.showModal();
  });
}

// Commands put frames on the bus, so the API wants the token (kept for this tab only).
async function command(btn) {
  const out = document.getElementById("cmd-result");
  const token = document.getElementById("token").value;
  sessionStorage.setItem("mbus-token", token);
  if (!selected) return;
  const cmd = btn.dataset.cmd;
  const meter = selected;
  if (cmd === "breaker" && btn.dataset.state === "open" && !(await confirmDisconnect(meter))) {
    out.textContent = `breaker ${meter}: cancelled, nothing sent`;
    return;
  }
  const init = { method: "POST", headers: { "Authorization": "Bearer " + token } };
  if (cmd === "breaker") {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify({ state: btn.dataset.state });
  }
  out.textContent = `${cmd} ${meter}…`;
  try {
    const r = await fetch(`/api/meters/${encodeURIComponent(meter)}/${cmd}`, init);
    const body = await r.json();
    out.textContent = r.ok ? `${cmd} ${meter}: done` : `${cmd} ${meter}: ${body.error}`;
    // unverified: the meter took it but reads back otherwise; show what it says now
    if (r.ok || body.unverified) refresh();
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
