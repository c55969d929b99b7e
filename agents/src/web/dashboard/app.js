// The wattchain dashboard: the REST API for the first picture, then server-sent events for
// every change. No framework, no network beyond this server.
"use strict";

const QUANTITIES = [
  { key: "U", color: "#facc15", digits: 2 },
  { key: "I", color: "#38bdf8", digits: 3 },
  { key: "PA", color: "#4ade80", digits: 1 },
  { key: "PR", color: "#f472b6", digits: 1 },
];
const BLOCKS_SHOWN = 8;
const WINDOWS_SHOWN = 8;

const $ = (sel, root = document) => root.querySelector(sel);
const cabinets = new Map(); // id -> cabinet card state
const agents = new Map();
const nodes = new Map();
let blocks = []; // latest blocks, newest first
let deadletters = 0;
let token = localStorage.getItem("wattchain-token") || "";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function setBadge(node, text, kind) {
  node.textContent = text;
  for (const k of ["ok", "warn", "bad"]) node.classList.toggle(k, k === kind);
}

function shortHash(h) {
  return h ? h.slice(0, 10) + "…" : "—";
}

function clock(ts) {
  const d = new Date(ts);
  return isNaN(d) ? "—" : d.toLocaleTimeString([], { hour12: false });
}

// ---- API -----------------------------------------------------------------

async function api(path) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const r = await fetch(path, { headers });
  if (r.status === 401) {
    askToken();
    throw new Error("this server needs an access token");
  }
  const body = await r.json();
  if (!r.ok) {
    const e = new Error(body.detail || r.statusText);
    e.problem = body;
    throw e;
  }
  return body;
}

function askToken() {
  $("#token-box").hidden = false;
}

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("#token").value.trim();
  localStorage.setItem("wattchain-token", token);
  $("#token-box").hidden = true;
  start();
});

// ---- Cabinets ------------------------------------------------------------

function cabinet(id) {
  let c = cabinets.get(id);
  if (c) return c;
  const node = $("#cabinet-tpl").content.firstElementChild.cloneNode(true);
  node.dataset.cabinet = id;
  $(".name", node).textContent = "Cabinet " + id;
  const loads = $(".loads", node);
  for (let k = 1; k <= 7; k++) loads.append(el("span", { class: "load", title: "Load " + k, text: String(k) }));
  const plots = {};
  for (const q of QUANTITIES) {
    const fig = $(`.q[data-q="${q.key}"]`, node);
    fig.style.setProperty("--accent", q.color);
    plots[q.key] = new Plot($("canvas", fig), { color: q.color, digits: q.digits, span: 120000 });
  }
  $("#no-cabinet").hidden = true;
  $("#cabinets").append(node);
  $("#cabinet-ids").append(el("option", { value: id }));
  c = { id, node, plots, lastSeq: -1, windows: [] };
  cabinets.set(id, c);
  if ($("#search-cabinet").value === "") $("#search-cabinet").value = id;
  return c;
}

function onQuad(q) {
  const c = cabinet(q.cabinet);
  if (q.seq <= c.lastSeq) return;
  c.lastSeq = q.seq;
  const t = Date.parse(q.ts);
  for (const quantity of QUANTITIES) {
    const v = q[quantity.key];
    c.plots[quantity.key].push(t, v);
    $(`.q[data-q="${quantity.key}"] .value`, c.node).textContent = formatValue(v, quantity.digits);
  }
}

function onCabinetStatus(s) {
  const c = cabinet(s.cabinet);
  setBadge($(".state", c.node), s.state, s.state === "online" ? "ok" : "bad");
  const modbus = { ok: "ok", error: "bad" }[s.modbus] || "warn";
  setBadge($(".modbus", c.node), "Modbus " + s.modbus, modbus);
  if (s.last_error && s.modbus !== "ok") $(".modbus", c.node).title = s.last_error;
  $(".outbox", c.node).textContent = `outbox ${s.outbox}`;
  $(".next", c.node).textContent = `next window ${s.next_window}`;
  const loads = c.node.querySelectorAll(".load");
  (s.loads || []).forEach((on, k) => loads[k] && loads[k].classList.toggle("on", on));
  $(".source", c.node).textContent = s.source ? "S" + s.source : "—";
}

function onWindow(w) {
  const c = cabinet(w.cabinet);
  if (c.windows.some((x) => x.window === w.window)) return;
  const committed = blocks.find((b) => records(b).some((r) => r.cabinet === w.cabinet && r.window === w.window));
  c.windows.unshift({ ...w, committed_in: w.committed_in ?? (committed ? committed.index : null) });
  c.windows.sort((a, b) => b.window - a.window);
  c.windows.length = Math.min(c.windows.length, WINDOWS_SHOWN);
  renderWindows(c);
}

function renderWindows(c) {
  const body = $(".windows tbody", c.node);
  body.replaceChildren(
    ...c.windows.map((w) => {
      const block = w.committed_in == null
        ? el("span", { class: "pending", text: "pending" })
        : el("span", { class: "committed", text: "#" + w.committed_in });
      const row = el(
        "tr",
        { title: "Show the proof of this window" },
        el("td", { text: "#" + w.window }),
        el("td", { text: clock(w.to) }),
        el("td", { text: w.U.toFixed(2) }),
        el("td", { text: w.I.toFixed(3) }),
        el("td", { text: w.PA.toFixed(1) }),
        el("td", { text: w.PR.toFixed(1) }),
        el("td", {}, block),
      );
      row.addEventListener("click", () => prove(c.id, w.window));
      return row;
    }),
  );
}

// ---- Chain ---------------------------------------------------------------

function records(block) {
  return (block.data && block.data.records) || [];
}

function onBlock(b) {
  if (blocks.some((x) => x.index === b.index)) return;
  blocks.push(b);
  blocks.sort((x, y) => y.index - x.index);
  blocks.length = Math.min(blocks.length, BLOCKS_SHOWN);
  for (const r of records(b)) {
    const c = cabinets.get(r.cabinet);
    const w = c && c.windows.find((x) => x.window === r.window);
    if (w) {
      w.committed_in = b.index;
      renderWindows(c);
    }
  }
  renderBlocks();
}

function renderBlocks() {
  const head = blocks.length ? blocks[0].index : 0;
  $("#blocks").replaceChildren(
    ...blocks.map((b) => {
      const recs = records(b);
      const windows = recs.map((r) => `${r.cabinet}#${r.window}`).join(" ") || "genesis";
      const conf = head - b.index;
      return el(
        "li",
        { class: "block", "data-index": String(b.index) },
        el("span", { class: "index", text: "#" + b.index }),
        el("code", { class: "hash", title: b.hash, text: shortHash(b.hash) }),
        el("span", { class: "time", text: clock(b.timestamp) }),
        el("span", { class: "recs", text: windows }),
        el("span", { class: "by", text: "mined by " + (b.producer ? b.producer.slice(0, 8) + "…" : "—") }),
        el("span", { class: "work", text: (b.difficulty ?? "?") + " bits" }),
        el("span", { class: "conf", text: conf === 0 ? "head" : conf + " conf." }),
      );
    }),
  );
}

async function refreshStatus() {
  try {
    const s = await api("/api/v1/status");
    setBadge($("#mqtt"), s.mqtt_connected ? "MQTT connected" : "MQTT down", s.mqtt_connected ? "ok" : "bad");
    if (s.chain.valid) {
      setBadge($("#chain-badge"), `chain valid · ${s.chain.length} blocks`, "ok");
    } else {
      const v = await api("/api/v1/chain/verify");
      const bad = v.first_bad;
      setBadge($("#chain-badge"), `chain INVALID at block ${bad ? bad.index : "?"}`, "bad");
      $("#chain-badge").title = bad ? bad.reason : "";
    }
    $("#chain-summary").textContent = s.chain.head ? `head ${shortHash(s.chain.head)}` : "";
    deadletters = Object.values(s.deadletters || {}).reduce((a, b) => a + b, 0);
    renderAgents();
  } catch (e) {
    setBadge($("#mqtt"), "server unreachable", "bad");
  }
}

// ---- Agents and nodes ----------------------------------------------------

function renderAgents() {
  const list = [...agents.values()].sort((a, b) => a.role.localeCompare(b.role) || a.id.localeCompare(b.id));
  const items = list.map((a) =>
    el(
      "li",
      { class: a.state === "online" ? "online" : "offline", title: `${a.role} ${a.version}, since ${clock(a.ts)}` },
      el("span", { class: "dot" }),
      el("span", { class: "id", text: a.id }),
      el("span", { class: "role", text: a.role }),
    ),
  );
  if (deadletters > 0) items.push(el("li", { class: "dead", text: `${deadletters} dead letter(s) seen` }));
  $("#agents").replaceChildren(...items);
}

function renderNodes() {
  if (nodes.size === 0) {
    $("#nodes").replaceChildren(el("li", { class: "muted", text: "no ledger node announces its head yet" }));
    return;
  }
  $("#nodes").replaceChildren(
    ...[...nodes.entries()].map(([id, head]) => {
      // A node head message carries its head block's header (topics.md, "Head message").
      const h = head.header || head;
      const index = h.index ?? h.height;
      const text = index != null ? `#${index} ${shortHash(h.hash)}` : JSON.stringify(head).slice(0, 32);
      const extra = head.state || head.status || head.consensus || "";
      return el("li", {}, el("span", { class: "id", text: id }), el("code", { text }), el("span", { class: "role", text: String(extra) }));
    }),
  );
}

// ---- Record proof --------------------------------------------------------

function prove(cab, win) {
  $("#search-cabinet").value = cab;
  $("#search-window").value = String(win);
  $("#search").requestSubmit();
}

$("#search").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const cab = $("#search-cabinet").value.trim();
  const win = $("#search-window").value.trim();
  const out = $("#proof");
  out.replaceChildren(el("p", { class: "muted", text: "looking…" }));
  try {
    const p = await api(`/api/v1/records/${encodeURIComponent(cab)}/${encodeURIComponent(win)}`);
    const r = p.record;
    const dl = el("dl");
    const row = (k, v, cls) => dl.append(el("dt", { text: k }), el("dd", cls ? { class: cls, text: v } : { text: v }));
    row("Window", `${p.cabinet} #${p.window}, ${r.n} samples`);
    row("Time", `${r.from} → ${r.to}`);
    row("Block", `#${p.block.index}, record ${p.position}, ${p.confirmations} confirmation(s)`);
    row("Final", p.final ? "yes: the cabinet may release it" : "not yet", p.final ? "good" : "muted");
    row("Block hash", p.block.hash, "mono");
    row("Mined by", p.block.producer || "—");
    const units = { U: "V", I: "A", PA: "W", PR: "var" };
    for (const q of QUANTITIES) row(`Mean ${q.key}`, `${r.averages[q.key]} ${units[q.key]}`);
    for (const q of QUANTITIES) row(`SHA-256 ${q.key}`, r.digests[q.key], "mono");
    row("Chain", p.chain_valid ? "verifies" : "does NOT verify", p.chain_valid ? "good" : "badtext");
    out.replaceChildren(el("p", { class: "found", text: "On the chain." }), dl);
  } catch (e) {
    out.replaceChildren(el("p", { class: "badtext", text: e.message }));
  }
});

// ---- Live updates ----------------------------------------------------------

let source = null;
let retry = 1000;

function connect() {
  if (source) source.close();
  const url = "/api/v1/events" + (token ? "?access_token=" + encodeURIComponent(token) : "");
  source = new EventSource(url);
  const on = (kind, f) => source.addEventListener(kind, (ev) => f(JSON.parse(ev.data)));
  source.onopen = () => {
    retry = 1000;
    setBadge($("#live"), "live", "ok");
  };
  source.onerror = () => {
    setBadge($("#live"), "reconnecting…", "warn");
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    }
  };
  on("quad", onQuad);
  on("cabinet", onCabinetStatus);
  on("window", onWindow);
  on("block", onBlock);
  on("agent", (a) => {
    agents.set(a.id, a);
    renderAgents();
  });
  on("node", (n) => {
    nodes.set(n.node, n.head);
    renderNodes();
  });
  on("deadletter", () => {
    deadletters += 1;
    renderAgents();
  });
}

async function start() {
  try {
    const [list, page, agentList, nodeList] = await Promise.all([
      api("/api/v1/cabinets"),
      api(`/api/v1/chain/blocks?limit=${BLOCKS_SHOWN}`),
      api("/api/v1/agents"),
      api("/api/v1/nodes"),
    ]);
    page.blocks.forEach(onBlock);
    agentList.forEach((a) => agents.set(a.id, a));
    nodeList.nodes.forEach((n) => nodes.set(n.node, n.head));
    renderAgents();
    renderNodes();
    for (const summary of list) {
      const detail = await api(`/api/v1/cabinets/${encodeURIComponent(summary.cabinet)}`);
      (detail.history || []).forEach(onQuad);
      if (detail.status) onCabinetStatus(detail.status);
      detail.windows.forEach(onWindow);
    }
  } catch (e) {
    console.warn("initial load:", e.message);
  }
  refreshStatus();
  connect();
}

setInterval(refreshStatus, 5000);
// Keep the time axes moving between readings.
setInterval(() => cabinets.forEach((c) => Object.values(c.plots).forEach((p) => p.schedule())), 1000);
renderNodes();
start();
