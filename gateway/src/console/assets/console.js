// The Rill web console: a single page over the node's JSON API (/api/v1/...). No framework and
// no fetch beyond this node. Data is put into the page with textContent only (never innerHTML),
// so topic names, keys and values cannot inject markup. Elements carrying a number the API also
// answers have a data-k attribute (used by the browser test to compare both).
"use strict";

const TOKEN_KEY = "rill-console-token";
let overview = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "onclick" || k === "onsubmit" || k === "onchange") e[k] = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(headers, rows, attrs) {
  return el("table", attrs || {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function td(v, key) {
  const num = typeof v === "number";
  return el("td", { class: num ? "num" : null, "data-k": key || null }, v === null ? "" : v);
}

function card(label, value, key) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label),
    el("div", { class: "value", "data-k": key }, value));
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(1)) + " " + units[i];
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600),
    m = Math.floor((s % 3600) / 60), sec = s % 60;
  return (d ? d + "d " : "") + (h ? h + "h " : "") + (m ? m + "m " : "") + sec + "s";
}

// A line plot of `values` (numbers) as inline SVG; `id` names it for tests.
function plot(values, id, width, height) {
  const w = width || 360, h = height || 70;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "plot");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("data-plot", id);
  svg.setAttribute("data-points", values.length);
  if (values.length > 0) {
    const max = Math.max(1, ...values);
    const step = values.length > 1 ? (w - 4) / (values.length - 1) : 0;
    const pts = values.map((v, i) =>
      (2 + i * step).toFixed(1) + "," + (h - 2 - (v / max) * (h - 4)).toFixed(1));
    if (values.length === 1) pts.push((w - 2) + "," + pts[0].split(",")[1]);
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(line);
  }
  const num = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
  const caption = values.length === 0 ? "no sample yet (one every 10 s)" :
    values.length + " samples · max " + num(Math.max(...values)) + " · now " + num(values[values.length - 1]);
  return el("div", { class: "plot-box" }, svg, el("div", { class: "muted" }, caption));
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options) {
  const headers = { "Accept": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  if (options && options.body) headers["Content-Type"] = "application/json";
  const resp = await fetch("/api/v1" + path, Object.assign({ headers }, options || {}));
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!resp.ok) {
    const message = (body && body.error) || text.trim() || resp.statusText;
    throw new ApiError(resp.status, message);
  }
  return body;
}

function showError(message) {
  const e = document.getElementById("error");
  e.textContent = message;
  e.hidden = !message;
}

// ---- base64 and the message views -------------------------------------------------------

function b64bytes(b64) {
  if (b64 === null || b64 === undefined) return null;
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function asText(b) {
  if (b === null) return null;
  try { return new TextDecoder("utf-8", { fatal: true }).decode(b); } catch (_) { return null; }
}

function asHex(b) {
  if (b === null) return "(null)";
  const lines = [];
  for (let i = 0; i < b.length; i += 16) {
    const row = Array.from(b.slice(i, i + 16));
    lines.push(i.toString(16).padStart(8, "0") + "  " +
      row.map((x) => x.toString(16).padStart(2, "0")).join(" ").padEnd(48) + "  " +
      row.map((x) => (x >= 32 && x < 127 ? String.fromCharCode(x) : ".")).join(""));
  }
  return lines.join("\n");
}

function render(b, view) {
  if (b === null) return "(null)";
  const text = asText(b);
  if (view === "hex" || text === null) return asHex(b);
  if (view === "json") {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return "(not JSON) " + text; }
  }
  return text;
}

function preview(b64) {
  const b = b64bytes(b64);
  if (b === null) return "(null)";
  const t = asText(b);
  const s = t === null ? asHex(b.slice(0, 16)).slice(10, 57).trim() + (b.length > 16 ? " …" : "") : t;
  return s.length > 80 ? s.slice(0, 80) + "…" : s;
}

// ---- pages -----------------------------------------------------------------------------

async function pageOverview(root) {
  const o = await api("/overview");
  overview = o;
  root.append(
    el("h2", {}, "Overview"),
    el("div", { class: "cards" },
      card("Node", o.node.node_name + " (id " + o.node.node_id + ")", "overview.node_name"),
      card("Version", o.node.version, "overview.version"),
      card("Uptime", duration(o.uptime_seconds), "overview.uptime"),
      card("Topics", o.topics, "overview.topics"),
      card("Partitions", o.partitions, "overview.partitions"),
      card("Consumer groups", o.groups, "overview.groups"),
      card("MQTT clients", o.mqtt_clients, "overview.mqtt_clients")),
    el("h3", {}, "Throughput (records/s, one point every 10 s, last hour)"),
    plot(o.throughput.map((s) => s.records_per_second), "throughput"),
    el("h3", {}, "Disk"),
    el("div", { class: "cards" },
      card("Used by logs", bytes(o.disk.used_bytes), "overview.disk_used"),
      card("Budget", o.disk.budget_bytes === null ? "none" : bytes(o.disk.budget_bytes), "overview.disk_budget"),
      card("Free in budget", o.disk.free_bytes === null ? "-" : bytes(o.disk.free_bytes), "overview.disk_free")),
    el("p", { class: "muted" }, "Kafka " + o.node.kafka_listen + " · MQTT " + o.node.mqtt_listen +
      " · cluster id " + o.node.cluster_id + " · console writes " + (o.console_writes ? "on" : "off")));
}

async function pageTopics(root) {
  const t = await api("/topics");
  root.append(el("h2", {}, "Topics"),
    table(["Topic", "Partitions", "Records", "Size"],
      t.topics.map((x) => el("tr", { class: "clickable", "data-topic": x.name,
        onclick: () => { location.hash = "#/topics/" + encodeURIComponent(x.name); } },
        el("td", {}, el("a", { href: "#/topics/" + encodeURIComponent(x.name) }, x.name),
          x.internal ? el("span", { class: "muted" }, " (internal)") : null),
        td(x.partitions, "topic." + x.name + ".partitions"),
        td(x.records, "topic." + x.name + ".records"),
        td(bytes(x.size_bytes))))));
}

async function pageTopic(root, name) {
  const t = await api("/topics/" + encodeURIComponent(name));
  if (!overview) overview = await api("/overview");
  root.append(el("h2", {}, "Topic ", el("span", { "data-k": "topic.name" }, t.name)),
    el("h3", {}, "Partitions"),
    table(["Partition", "Log start", "High watermark", "Log end", "Size", "Segments"],
      t.partitions.map((p) => el("tr", {},
        td(p.partition), td(p.log_start_offset, "partition." + p.partition + ".log_start_offset"),
        td(p.high_watermark, "partition." + p.partition + ".high_watermark"),
        td(p.log_end_offset, "partition." + p.partition + ".log_end_offset"),
        td(bytes(p.size_bytes)), td(p.segments)))));

  // Message browser.
  const part = el("select", { id: "browse-partition" },
    t.partitions.map((p) => el("option", { value: p.partition }, String(p.partition))));
  const offset = el("input", { id: "browse-offset", type: "number", placeholder: "latest", size: 8 });
  const limit = el("input", { id: "browse-limit", type: "number", value: 20, min: 1, max: 500, size: 5 });
  const list = el("div", { id: "messages" });
  const detail = el("div", { id: "message-detail" });
  const load = async () => {
    list.replaceChildren();
    detail.replaceChildren();
    const q = "?limit=" + encodeURIComponent(limit.value || "20") +
      (offset.value !== "" ? "&offset=" + encodeURIComponent(offset.value) : "");
    const m = await api("/topics/" + encodeURIComponent(name) + "/partitions/" + part.value + "/messages" + q);
    if (m.messages.length === 0) { list.append(el("p", { class: "muted" }, "no messages")); return; }
    list.append(table(["Offset", "Timestamp", "Key", "Value", "Headers"],
      m.messages.map((r) => {
        const row = el("tr", { class: "clickable", "data-offset": r.offset },
          td(r.offset), el("td", {}, new Date(r.timestamp).toISOString()),
          el("td", {}, preview(r.key_b64)), el("td", {}, preview(r.value_b64)), td(r.headers.length));
        row.onclick = () => {
          for (const s of list.querySelectorAll("tr.selected")) s.classList.remove("selected");
          row.classList.add("selected");
          showMessage(detail, r);
        };
        return row;
      }), { id: "message-table" }));
  };
  root.append(el("h3", {}, "Messages"),
    el("form", { class: "inline", id: "browse-form", onsubmit: (e) => { e.preventDefault(); load().catch(fail); } },
      el("label", {}, "Partition", part), el("label", {}, "From offset", offset),
      el("label", {}, "Count", limit), el("button", { type: "submit", id: "browse-load" }, "Load")),
    list, detail);

  // Produce a test message (only with [admin] console_writes = true).
  if (overview.console_writes) {
    const ppart = el("select", { id: "produce-partition" },
      t.partitions.map((p) => el("option", { value: p.partition }, String(p.partition))));
    const key = el("input", { id: "produce-key", placeholder: "key (optional)" });
    const value = el("textarea", { id: "produce-value", rows: 2, cols: 40, placeholder: "value" });
    const hdrs = el("input", { id: "produce-headers", placeholder: "k=v, k2=v2" });
    const result = el("div", { id: "produce-result" });
    const send = async () => {
      const headers = hdrs.value.split(",").map((s) => s.trim()).filter((s) => s)
        .map((s) => { const i = s.indexOf("="); return i < 0 ? { key: s, value: "" } : { key: s.slice(0, i), value: s.slice(i + 1) }; });
      const r = await api("/topics/" + encodeURIComponent(name) + "/messages", {
        method: "POST",
        body: JSON.stringify({ partition: Number(ppart.value), key: key.value === "" ? null : key.value, value: value.value, headers }),
      });
      result.replaceChildren(el("div", { class: "ok" }, "written at offset ", el("span", { "data-k": "produce.offset" }, r.offset)));
    };
    root.append(el("h3", {}, "Produce a test message"),
      el("form", { class: "inline", id: "produce-form", onsubmit: (e) => { e.preventDefault(); send().catch(fail); } },
        el("label", {}, "Partition", ppart), el("label", {}, "Key", key), el("label", {}, "Value", value),
        el("label", {}, "Headers", hdrs), el("button", { type: "submit", id: "produce-send" }, "Produce")),
      result);
  }

  root.append(el("h3", {}, "Configs"),
    table(["Name", "Value", "Source"],
      t.configs.map((c) => el("tr", {}, el("td", {}, c.name), el("td", { "data-config": c.name }, c.value === null ? "(sensitive)" : c.value),
        el("td", { class: "muted" }, c.source)))));
  load().catch(fail);
}

function showMessage(detail, r) {
  let view = "text";
  const body = el("div", {});
  const draw = () => {
    body.replaceChildren(
      el("h3", {}, "Key"), el("pre", { id: "detail-key" }, render(b64bytes(r.key_b64), view)),
      el("h3", {}, "Value"), el("pre", { id: "detail-value" }, render(b64bytes(r.value_b64), view)),
      el("h3", {}, "Headers"),
      r.headers.length === 0 ? el("p", { class: "muted" }, "none") :
        table(["Key", "Value"], r.headers.map((h) => el("tr", {}, el("td", {}, h.key),
          el("td", { class: "header-value" }, render(b64bytes(h.value_b64), view === "hex" ? "hex" : "text")))), { id: "detail-headers" }));
    for (const b of buttons.querySelectorAll("button")) b.classList.toggle("active", b.dataset.view === view);
  };
  const buttons = el("div", { class: "views" },
    ["text", "json", "hex"].map((v) => el("button", { type: "button", "data-view": v, id: "view-" + v,
      onclick: () => { view = v; draw(); } }, v.toUpperCase())));
  detail.replaceChildren(el("h3", {}, "Message at offset ", el("span", { "data-k": "detail.offset" }, r.offset)), buttons, body);
  draw();
}

async function pageGroups(root) {
  const g = await api("/groups");
  root.append(el("h2", {}, "Consumer groups"),
    g.groups.length === 0 ? el("p", { class: "muted" }, "no groups") :
      table(["Group", "State", "Type", "Members", "Lag (records)"],
        g.groups.map((x) => el("tr", { class: "clickable", "data-group": x.group,
          onclick: () => { location.hash = "#/groups/" + encodeURIComponent(x.group); } },
          el("td", {}, el("a", { href: "#/groups/" + encodeURIComponent(x.group) }, x.group)),
          el("td", { "data-k": "group." + x.group + ".state" }, x.state), el("td", {}, x.type),
          td(x.members, "group." + x.group + ".members"),
          td(x.lag_records, "group." + x.group + ".lag_records")))));
}

async function pageGroup(root, id) {
  const g = await api("/groups/" + encodeURIComponent(id));
  root.append(el("h2", {}, "Group ", el("span", { "data-k": "group.name" }, g.group)),
    el("p", {}, "State ", el("b", { "data-k": "group.state" }, g.state), " · generation ", g.generation,
      " · protocol ", g.protocol || "-"),
    el("h3", {}, "Members"),
    g.members.length === 0 ? el("p", { class: "muted" }, "no members") :
      table(["Member", "Client id", "Host", "Assignment"],
        g.members.map((m) => el("tr", {}, el("td", {}, m.member_id), el("td", {}, m.client_id),
          el("td", {}, m.client_host),
          el("td", { "data-assignment": m.member_id },
            Object.entries(m.assignment).map(([t, ps]) => t + ": " + ps.join(",")).join("; "))))),
    el("h3", {}, "Lag per partition"),
    table(["Topic", "Partition", "Committed", "High watermark", "Lag (records)", "Lag (s)"],
      g.offsets.map((o) => el("tr", {}, el("td", {}, o.topic), td(o.partition),
        td(o.committed, "offset." + o.topic + "." + o.partition + ".committed"),
        td(o.high_watermark, "offset." + o.topic + "." + o.partition + ".high_watermark"),
        td(o.lag_records, "offset." + o.topic + "." + o.partition + ".lag_records"),
        td(Number(o.lag_seconds.toFixed(1)))))),
    el("h3", {}, "Lag over time (records, one point every 10 s, last hour)"),
    plot(g.lag_history.map((s) => s.lag_records), "group-lag"));
}

async function pageBridge(root) {
  const b = await api("/bridge");
  root.append(el("h2", {}, "Bridge"),
    b.partitions.length === 0 ? el("p", { class: "muted", id: "bridge-none" }, "no mirrors run on this node") :
      table(["Mirror", "Target", "Topic", "Partition", "Target topic", "State", "Next offset", "Lag (records)", "Lag (s)", "Mirrored", "Last error"],
        b.partitions.map((p) => el("tr", {}, td(p.mirror), el("td", {}, p.target), el("td", {}, p.topic),
          td(p.partition), el("td", {}, p.target_topic),
          el("td", { "data-k": "bridge." + p.topic + "." + p.partition + ".state" }, typeof p.state === "string" ? p.state : JSON.stringify(p.state)),
          td(p.next_offset), td(p.lag_records, "bridge." + p.topic + "." + p.partition + ".lag_records"),
          td(Number(p.lag_seconds.toFixed(1))), td(p.records_mirrored, "bridge." + p.topic + "." + p.partition + ".records_mirrored"),
          el("td", { class: "muted" }, p.last_error || "")))),
    el("h3", {}, "Unmirrored records over time"),
    plot(b.lag_history.map((s) => s.lag_records), "bridge-lag"));
}

async function pageMqtt(root) {
  const m = await api("/mqtt");
  root.append(el("h2", {}, "MQTT"),
    el("h3", {}, "Connected clients (", el("span", { "data-k": "mqtt.clients" }, m.clients.length), ")"),
    m.clients.length === 0 ? el("p", { class: "muted" }, "none") :
      table(["Client id", "Protocol", "Address", "Connected", "Subscriptions"],
        m.clients.map((c) => el("tr", { "data-client": c.client_id }, el("td", {}, c.client_id), el("td", {}, c.protocol),
          el("td", {}, c.peer), el("td", {}, new Date(c.connected_at_ms).toISOString()),
          el("td", { "data-subscriptions": c.client_id },
            c.subscriptions.map((s) => s.filter + " (QoS " + s.qos + ")").join(", "))))),
    el("h3", {}, "Retained topics (", el("span", { "data-k": "mqtt.retained" }, m.retained.length), ")"),
    m.retained.length === 0 ? el("p", { class: "muted" }, "none") :
      table(["Topic", "Payload"], m.retained.map((r) => el("tr", { "data-retained": r.topic },
        el("td", {}, r.topic), td(bytes(r.payload_bytes))))));
}

async function pageCluster(root) {
  const c = await api("/cluster");
  if (!c.cluster_mode) {
    root.append(el("h2", {}, "Cluster"), el("p", { class: "muted", id: "cluster-none" },
      "This node runs alone (not formatted with rill cluster format)."));
    return;
  }
  root.append(el("h2", {}, "Cluster"),
    el("p", {}, "This node: ", c.node_id, " · active controller: ", c.controller_id === null ? "none" : c.controller_id),
    el("h3", {}, "Brokers (", el("span", { "data-k": "cluster.brokers" }, c.brokers.length), ")"),
    table(["Broker", "Kafka", "Rack", "State"], c.brokers.map((b) => el("tr", {}, td(b.broker_id),
      el("td", {}, b.kafka || "-"), el("td", {}, b.rack || "-"),
      el("td", {}, b.fenced ? "fenced" : b.in_controlled_shutdown ? "shutting down" : "active")))),
    el("h3", {}, "Partitions"),
    table(["Topic", "Partition", "Leader", "Replicas", "ISR"], c.partitions.map((p) =>
      el("tr", { class: p.under_replicated ? "selected" : null }, el("td", {}, p.topic), td(p.partition),
        td(p.leader), el("td", {}, p.replicas.join(",")), el("td", {}, p.isr.join(","))))));
}

// ---- routing ---------------------------------------------------------------------------

function fail(e) {
  if (e instanceof ApiError && e.status === 401) {
    document.getElementById("token-form").hidden = false;
    showError("a token is needed: " + e.message);
  } else {
    showError(e.message || String(e));
  }
}

async function route() {
  const parts = (location.hash.replace(/^#\/?/, "") || "overview").split("/").map(decodeURIComponent);
  const page = parts[0];
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  const root = document.getElementById("page");
  root.replaceChildren();
  root.removeAttribute("data-loaded");
  showError("");
  try {
    if (page === "topics" && parts[1]) await pageTopic(root, parts.slice(1).join("/"));
    else if (page === "topics") await pageTopics(root);
    else if (page === "groups" && parts[1]) await pageGroup(root, parts.slice(1).join("/"));
    else if (page === "groups") await pageGroups(root);
    else if (page === "bridge") await pageBridge(root);
    else if (page === "mqtt") await pageMqtt(root);
    else if (page === "cluster") await pageCluster(root);
    else await pageOverview(root);
    root.setAttribute("data-loaded", page + (parts[1] ? "-detail" : ""));
  } catch (e) {
    fail(e);
  }
}

async function start() {
  document.getElementById("token-entry").onsubmit = (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value);
    document.getElementById("token-form").hidden = true;
    start();
  };
  try {
    overview = await api("/overview");
    document.getElementById("node-name").textContent = overview.node.node_name;
    document.getElementById("nav-cluster").hidden = !overview.cluster_mode;
  } catch (e) {
    fail(e);
    return;
  }
  route();
}

window.addEventListener("hashchange", route);
start();
