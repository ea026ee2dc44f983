// The saga observer's UI: plain DOM, no build step. Every value from the API is set as
// text (never parsed as HTML): event types, ids and payloads come from other systems.

const SVG = "http://www.w3.org/2000/svg";
const ROW = 26; // px per row in the timeline and the tree (both are virtualized)
const app = document.getElementById("app");
let refreshTimer = null;

// -- small DOM helpers ------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") node.style.cssText = value; // CSSOM: allowed by the page's CSP
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

function badge(status) {
  return el("span", { class: `badge ${status}`, "data-testid": "status-badge", text: status });
}

function short(id, n = 8) {
  return id && id.length > n + 3 ? `${id.slice(0, n)}…` : id || "";
}

function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function ms(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 60000) return `${(value / 60000).toFixed(1)} min`;
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  return `${Number(value).toFixed(value < 10 ? 2 : 0)} ms`;
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (Array.isArray(value)) value.forEach((v) => url.searchParams.append(key, v));
    else if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  const response = await fetch(url, { headers: authHeaders({ Accept: "application/json" }) });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) askForToken(body.detail);
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

// -- access ------------------------------------------------------------------------------
// The token lives in this tab's sessionStorage only and goes out as a bearer header with
// every API call; it is never put in a URL or a cookie.

function authHeaders(headers) {
  const token = sessionStorage.getItem("token");
  return token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
}

async function apiWrite(path, payload) {
  const response = await fetch(new URL(path, location.origin), {
    method: "POST",
    headers: authHeaders({ Accept: "application/json", "Content-Type": "application/json" }),
    body: JSON.stringify(payload || {}),
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) askForToken(body.detail);
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function askForToken(why) {
  if (document.getElementById("token-form")) return;
  const input = el("input", { id: "token-input", type: "password", placeholder: "token", autocomplete: "off" });
  const form = el("form", { id: "token-form", class: "token-form" },
    el("span", { text: why || "This observer needs a token." }), input,
    el("button", { type: "submit", text: "Sign in" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("token", input.value.trim());
    form.remove();
    route();
  });
  document.querySelector("header.top").append(form);
}

function showError(error) {
  app.prepend(el("div", { class: "error", role: "alert", text: String(error.message || error) }));
}

// -- routing ----------------------------------------------------------------------------

function route() {
  clearInterval(refreshTimer);
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  for (const link of document.querySelectorAll("[data-nav]")) {
    const name = link.dataset.nav;
    link.classList.toggle(
      "active",
      (name === "flows" && (path === "/" || path.startsWith("/flow"))) || path === `/${name}`,
    );
  }
  let page;
  if (path.startsWith("/flow/")) page = flowPage(decodeURIComponent(path.slice(6)));
  else if (path === "/topology") page = topologyPage();
  else if (path === "/map") page = mapPage(params);
  else if (path === "/records") page = recordsPage(params);
  else page = flowsPage(params);
  page.catch(showError);
}

window.addEventListener("hashchange", route);
route();
api("/api/stats")
  .then((s) => { document.getElementById("instance").textContent = `group ${s.group} · ${s.instance.client_id}`; })
  .catch(() => {});

// -- the flow list ----------------------------------------------------------------------

const FILTERS = ["status", "saga", "event_type", "service", "since", "until", "q", "connected", "dead_letters", "sort"];
// Filters the map and the failure patterns link to (kept as they are when the form changes).
const LINKED = ["cause_type", "waiting_at", "waited_more_than", "dead_letter_error", "dead_letter_type", "dead_letter_fingerprint"];

async function flowsPage(params) {
  const [facets, counts] = await Promise.all([api("/api/facets"), api("/api/counts")]);
  const limit = 50;
  const offset = Number(params.get("offset") || 0);
  const query = {};
  for (const key of FILTERS) {
    const values = params.getAll(key).filter(Boolean);
    if (values.length) query[key] = key === "status" ? values : values[0];
  }
  for (const key of ["since", "until"]) {
    if (query[key]) query[key] = new Date(query[key]).toISOString();
  }
  for (const key of LINKED) {
    if (params.get(key)) query[key] = params.get(key);
  }
  const page = await api("/api/flows", { ...query, limit, offset });
  const linked = LINKED.filter((key) => params.get(key)).map((key) =>
    el("span", { class: "chip", "data-testid": `linked-${key}` }, `${key.replaceAll("_", " ")}: ${params.get(key)}`));

  const go = (changes) => {
    const next = new URLSearchParams(params);
    for (const [key, value] of Object.entries(changes)) {
      next.delete(key);
      if (value !== "" && value !== null && value !== undefined) next.set(key, value);
    }
    if (!("offset" in changes)) next.delete("offset");
    location.hash = `#/?${next}`;
  };

  const selected = params.get("status");
  const countBar = el(
    "div",
    { class: "counts", "data-testid": "counts" },
    el("button", { class: selected ? "" : "selected", onclick: () => go({ status: "" }) },
      el("strong", { text: counts.total }), "all"),
    Object.entries(counts.by_status).map(([status, n]) =>
      el("button", {
        class: selected === status ? "selected" : "",
        "data-testid": `count-${status}`,
        onclick: () => go({ status }),
      }, el("strong", { text: n }), badge(status)),
    ),
  );

  const select = (name, label, options, current) =>
    el("label", {}, label,
      el("select", { name, "data-testid": `filter-${name}` },
        el("option", { value: "", text: "any" }),
        options.map((o) => el("option", { value: o, text: o, selected: o === current }))));
  const input = (name, label, type, current, placeholder) =>
    el("label", {}, label, el("input", { name, type, value: current || "", placeholder, "data-testid": `filter-${name}` }));

  const form = el("form", { class: "filters panel", "data-testid": "filters" },
    select("status", "Status", facets.statuses, params.get("status")),
    select("saga", "Saga", facets.sagas, params.get("saga")),
    select("event_type", "Has event type", facets.event_types, params.get("event_type")),
    select("service", "Has service", facets.services, params.get("service")),
    input("since", "Started from", "datetime-local", params.get("since")),
    input("until", "Started before", "datetime-local", params.get("until")),
    input("q", "Correlation id (prefix) or event id", "search", params.get("q"), "search…"),
    select("connected", "One connected tree", ["true", "false"], params.get("connected")),
    select("dead_letters", "Has dead letters", ["true", "false"], params.get("dead_letters")),
    select("sort", "Sort", ["-started_at", "started_at", "-last_event_at", "-event_count", "event_count"], params.get("sort")),
    el("div", { class: "actions" },
      el("button", { class: "primary", type: "submit", "data-testid": "apply-filters", text: "Apply" }),
      el("button", { class: "secondary", type: "button", text: "Clear", onclick: () => { location.hash = "#/"; } })),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const changes = {};
    for (const key of FILTERS) changes[key] = data.get(key) || "";
    go(changes);
  });
  for (const node of form.querySelectorAll("select")) node.addEventListener("change", () => form.requestSubmit());

  const rows = page.items.map((f) =>
    el("tr", { class: "flow-row", "data-testid": "flow-row", "data-status": f.status },
      el("td", {}, badge(f.status)),
      el("td", {}, el("a", { href: `#/flow/${encodeURIComponent(f.correlation_id)}`, class: "mono", "data-testid": "flow-link", title: f.correlation_id, text: short(f.correlation_id, 13) })),
      el("td", { text: f.saga || "–" }),
      el("td", { text: when(f.started_at) }),
      el("td", { class: "num", text: ms(f.duration_ms) }),
      el("td", { class: "num", text: f.event_count }),
      el("td", { text: f.end_type || "" }),
      el("td", { class: "muted", text: expectedText(f.expected) }),
    ));
  const table = el("table", { "data-testid": "flow-table" },
    el("thead", {}, el("tr", {}, ["Status", "Flow", "Saga", "Started", "Duration", "Events", "End", "Expected next"].map((h, i) =>
      el("th", { class: i === 4 || i === 5 ? "num" : "", text: h })))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted", text: "No flow matches." }))),
  );
  const first = page.total ? offset + 1 : 0;
  const pager = el("div", { class: "pager" },
    el("button", { class: "secondary", disabled: offset === 0, onclick: () => go({ offset: Math.max(0, offset - limit) }), text: "‹ Newer" }),
    el("span", { "data-testid": "page-info", text: `${first}–${offset + page.items.length} of ${page.total}` }),
    el("button", { class: "secondary", disabled: offset + limit >= page.total, onclick: () => go({ offset: offset + limit }), text: "Older ›" }),
    el("label", { class: "muted" },
      el("input", { type: "checkbox", id: "auto-refresh", checked: sessionStorage.getItem("autorefresh") === "1",
        onchange: (e) => { sessionStorage.setItem("autorefresh", e.target.checked ? "1" : "0"); route(); } }),
      " refresh every 5 s"),
  );
  const chips = linked.length
    ? el("div", { class: "row chips", "data-testid": "linked-filters" }, linked,
      el("button", { class: "secondary", type: "button", text: "Drop these", onclick: () => go(Object.fromEntries(LINKED.map((k) => [k, ""]))) }))
    : null;
  app.replaceChildren(el("h1", { text: "Flows" }), countBar, form, chips, el("h2", {}), table, pager);
  if (sessionStorage.getItem("autorefresh") === "1") refreshTimer = setInterval(route, 5000);
}

function expectedText(expected) {
  return (expected || []).map((e) => {
    if (e.reason === "missing-cause") return `cause ${short(e.after_id)} not seen`;
    if (e.reason === "missing-start") return `start ${e.one_of.join(" | ")} not seen`;
    const who = e.services && e.services.length ? ` (${e.services.join(", ")})` : "";
    return `${e.one_of.join(" | ")}${who}`;
  }).join("; ");
}

// -- one flow -----------------------------------------------------------------------------

async function flowPage(correlationId) {
  const flow = await api(`/api/flows/${encodeURIComponent(correlationId)}`);
  const byId = new Map(flow.events.map((e) => [e.id, e]));
  const detail = el("aside", { class: "panel detail", "data-testid": "event-detail" },
    el("p", { class: "muted", text: "Select an event to see its attributes and payload." }));
  let selectedId = null;
  const select = async (id) => {
    selectedId = id;
    for (const node of app.querySelectorAll(".selected[data-event]")) node.classList.remove("selected");
    for (const node of app.querySelectorAll(`[data-event="${CSS.escape(id)}"]`)) node.classList.add("selected");
    try {
      showEvent(detail, await api(`/api/events/${encodeURIComponent(id)}`));
    } catch (error) {
      detail.replaceChildren(el("div", { class: "error", text: error.message }));
    }
  };

  const head = el("div", { class: "panel" },
    el("div", { class: "row" },
      el("h1", { class: "grow" }, "Flow ", el("span", { class: "mono", text: flow.correlation_id })),
      el("span", { "data-testid": "flow-status" }, badge(flow.status))),
    el("div", { class: "facts" },
      fact("Saga", flow.saga || "untracked"),
      fact("Started", when(flow.started_at)),
      fact("Ended", when(flow.ended_at)),
      fact("Duration", ms(flow.duration_ms)),
      fact("Events", `${flow.event_count}` + (flow.duplicates ? ` (+${flow.duplicates} duplicates)` : "")),
      fact("Causation graph", flow.graph.connected ? `one tree from ${flow.graph.root_type}` : `not one tree (${flow.graph.roots.length} roots, ${flow.graph.orphans.length} orphans)`),
      fact("Deadline", when(flow.deadline)),
      fact("Dead letters", flow.dead_letters),
    ),
    el("div", { class: "row", style: "margin-top:10px" },
      flow.traces.map((t) => el("a", { href: t.jaeger_url, target: "_blank", rel: "noopener", "data-testid": "jaeger-link", text: `Trace ${short(t.trace_id, 12)} in Jaeger (${t.events} events)` })),
      el("a", { href: flow.jaeger_search_url, target: "_blank", rel: "noopener", "data-testid": "jaeger-link", text: "Search Jaeger for this flow" }),
      el("a", { href: `/api/flows/${encodeURIComponent(flow.correlation_id)}`, target: "_blank", text: "JSON" }),
    ),
  );

  const expected = flow.expected.length || flow.missing_compensations.length
    ? el("div", { class: "panel expected", "data-testid": "expected-next", style: "margin-top:12px" },
        el("strong", { text: flow.status === "stalled" ? "Stalled — waiting for:" : "Expected next:" }),
        el("ul", {}, flow.expected.map((e) => el("li", {}, expectation(e, byId)))))
    : null;

  const tabs = [
    ["Timeline", () => timeline(flow, select, () => selectedId)],
    ["Causation graph", () => tree(flow, select, () => selectedId)],
    ["Services", () => timings(flow)],
    [`Dead letters (${flow.dead_letter_records.length}) & lifecycle`, () => records(flow)],
  ];
  const body = el("div");
  const tabBar = el("div", { class: "tabs", role: "tablist" });
  const show = (index) => {
    tabBar.querySelectorAll("button").forEach((b, i) => b.classList.toggle("active", i === index));
    body.replaceChildren(tabs[index][1]());
  };
  tabs.forEach(([label], index) => tabBar.append(el("button", { role: "tab", onclick: () => show(index), text: label })));
  app.replaceChildren(head, expected || "", tabBar, el("div", { class: "layout" }, body, detail));
  show(0);
}

function fact(label, value) {
  return el("div", {}, el("span", { text: label }), String(value));
}

function expectation(e, byId) {
  const after = e.after_id && byId.get(e.after_id);
  if (e.reason === "missing-cause") {
    return el("span", {}, "an event names cause ", el("code", { text: e.after_id }), ", which has not been seen");
  }
  if (e.reason === "missing-start") return el("span", { text: `the start event (${e.one_of.join(" | ")}) has not been seen` });
  const what = e.reason === "compensation" ? "compensation " : "";
  const who = e.services && e.services.length ? ` from ${e.services.join(", ")}` : "";
  return el("span", {}, `${what}one of `, el("strong", { text: e.one_of.join(" | ") }), who,
    after ? ` after ${after.type} (${after.service}, ${when(after.time)})` : "");
}

function showEvent(panel, e) {
  const pairs = [
    ["type", `${e.type} v${e.dataversion}`], ["id", e.id], ["service", e.service], ["source", e.source],
    ["time", when(e.time)], ["cause", e.causation_id ? `${e.cause_type || "not seen"} · ${e.causation_id}` : "none (root)"],
    ["latency", ms(e.latency_ms)], ["topic", `${e.topic}[${e.partition}]@${e.offset}`],
    ["deliveries", e.deliveries], ["trace", e.trace_id || "–"],
  ];
  panel.replaceChildren(
    el("h2", { text: e.type }),
    el("dl", {}, pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { class: "mono", text: String(v) })])),
    e.jaeger_url ? el("p", {}, el("a", { href: e.jaeger_url, target: "_blank", rel: "noopener", "data-testid": "event-jaeger-link", text: "Open its trace in Jaeger" })) : "",
    el("h2", { text: e.payload_truncated ? `Payload (${e.size} bytes, larger than the limit: not kept)` : "Payload" }),
    el("pre", { text: e.payload_truncated ? "" : JSON.stringify(e.payload, null, 2) }),
  );
}

// A virtualized list: only the rows in view (plus a margin) exist in the DOM.
function virtual(viewport, count, render, header) {
  const spacer = el("div", { style: `height:${count * ROW}px; position:relative` });
  const layer = el("div", { style: "position:absolute; left:0; right:0; top:0" });
  spacer.append(layer);
  viewport.replaceChildren(...(header ? [header] : []), spacer);
  let scheduled = false;
  const draw = () => {
    scheduled = false;
    const offset = header ? header.offsetHeight : 0;
    const top = Math.max(0, viewport.scrollTop - offset);
    const first = Math.max(0, Math.floor(top / ROW) - 10);
    const last = Math.min(count, Math.ceil((top + viewport.clientHeight) / ROW) + 10);
    layer.style.transform = `translateY(${first * ROW}px)`;
    layer.replaceChildren(render(first, last));
  };
  viewport.addEventListener("scroll", () => {
    if (!scheduled) { scheduled = true; requestAnimationFrame(draw); }
  });
  requestAnimationFrame(draw);
  draw();
}

function timeline(flow, select, selected) {
  const events = flow.events;
  const lanes = [];
  for (const e of events) if (!lanes.includes(e.service)) lanes.push(e.service);
  const index = new Map(events.map((e, i) => [e.id, i]));
  const gutter = 96;
  const laneWidth = Math.max(150, Math.floor((1040 - gutter) / Math.max(1, lanes.length)));
  const width = gutter + laneWidth * lanes.length;
  const x = (service) => gutter + laneWidth * lanes.indexOf(service) + laneWidth / 2;
  const start = events.length ? Date.parse(events[0].time) : 0;
  const ends = new Set([flow.end_type]);
  const viewport = el("div", { class: "viewport", "data-testid": "swimlanes", "data-events": events.length, "data-lanes": lanes.length });
  const header = el("div", { class: "lanes-head", style: `width:${width}px` },
    el("div", { style: `width:${gutter}px`, class: "muted", text: "since start" }),
    lanes.map((lane) => el("div", { style: `width:${laneWidth}px`, "data-testid": "lane-header", text: lane })));
  virtual(viewport, events.length, (first, last) => {
    const height = (last - first) * ROW;
    const root = svg("svg", { width, height, "data-testid": "swimlane-slice" });
    for (const lane of lanes) root.append(svg("line", { class: "lane-line", x1: x(lane), x2: x(lane), y1: 0, y2: height }));
    for (let i = first; i < last; i += 1) {
      const e = events[i];
      const y = (i - first) * ROW + ROW / 2;
      const g = svg("g", { "data-testid": "swimlane-row", "data-event": e.id, "data-type": e.type, class: selected() === e.id ? "selected" : "" });
      const hit = svg("rect", { class: `row-hit${selected() === e.id ? " selected" : ""}`, x: 0, y: y - ROW / 2, width, height: ROW, "data-event": e.id });
      g.addEventListener("click", () => select(e.id)); // the label, arrow or dot: the whole row
      g.append(hit);
      g.append(svg("text", { class: "offset", x: 6, y: y + 4 }, `+${ms(Date.parse(e.time) - start)}`));
      const to = x(e.service);
      const cause = e.causation_id !== null ? events[index.get(e.causation_id)] : undefined;
      let labelX = to + 8;
      if (e.orphan) {
        g.append(svg("line", { class: "arrow orphan", x1: gutter, x2: to - 5, y1: y, y2: y}));
        g.append(svg("text", { x: gutter + 4, y: y - 4, fill: "#b42318" }, "cause not seen"));
      } else if (cause) {
        const from = x(cause.service);
        if (from === to) {
          g.append(svg("path", { class: "arrow", d: `M${to} ${y - 8} c 22 0 22 12 4 12` }));
        } else {
          g.append(svg("line", { class: "arrow", x1: from, x2: to + (from < to ? -5 : 5), y1: y, y2: y }));
          g.append(svg("path", { class: "dot", d: from < to ? `M${to - 5} ${y - 4} L${to} ${y} L${to - 5} ${y + 4} z` : `M${to + 5} ${y - 4} L${to} ${y} L${to + 5} ${y + 4} z` }));
          labelX = Math.min(from, to) + 8;
        }
      }
      const kind = ends.has(e.type) ? (flow.status === "completed" ? " end" : " failure") : "";
      g.append(svg("circle", { class: `dot${kind}`, cx: to, cy: y, r: 4.5 }));
      const latency = e.latency_ms !== null ? `  ${ms(e.latency_ms)}` : "";
      g.append(svg("text", { x: labelX, y: y - 5 }, `${e.type}${latency}`));
      root.append(g);
    }
    return root;
  }, header);
  return el("div", {},
    el("p", { class: "muted", text: `${events.length} events in ${lanes.length} services, by time; an arrow runs from the cause's service to the event's. Click an event for details.` }),
    viewport);
}

function tree(flow, select, selected) {
  const byId = new Map(flow.events.map((e) => [e.id, e]));
  const children = new Map();
  for (const edge of flow.graph.edges) {
    if (!children.has(edge.cause)) children.set(edge.cause, []);
    children.get(edge.cause).push(edge.effect);
  }
  const rows = [];
  const seen = new Set();
  const walk = (startId) => {
    const stack = [[startId, 0]];
    while (stack.length) {
      const [id, depth] = stack.pop();
      if (seen.has(id)) continue;
      seen.add(id);
      rows.push([byId.get(id), depth]);
      const kids = children.get(id) || [];
      for (let i = kids.length - 1; i >= 0; i -= 1) stack.push([kids[i], depth + 1]);
    }
  };
  for (const id of flow.graph.roots) walk(id);
  for (const id of flow.graph.orphans) walk(id);
  for (const e of flow.events) walk(e.id); // a cycle has no way in: show what is left at the top
  const viewport = el("div", { class: "viewport", "data-testid": "graph-tree" });
  virtual(viewport, rows.length, (first, last) => {
    const box = el("div");
    for (let i = first; i < last; i += 1) {
      const [e, depth] = rows[i];
      const indent = Math.min(depth, 40);
      box.append(el("div", {
        class: `tree-row${e.orphan ? " orphan" : ""}${selected() === e.id ? " selected" : ""}`,
        "data-testid": "graph-row", "data-event": e.id, style: `padding-left:${8 + indent * 16}px`,
        onclick: () => select(e.id),
      },
        el("span", { class: "guide", text: depth ? "└" : "●" }),
        el("span", { class: "type", text: e.type }),
        el("span", { class: "muted", text: `${e.service} · ${when(e.time)}` }),
        e.latency_ms !== null ? el("span", { class: "muted", text: `+${ms(e.latency_ms)}` }) : "",
        depth > 40 ? el("span", { class: "muted", text: `depth ${depth}` }) : "",
        e.orphan ? el("span", { class: "badge failed", text: `cause ${short(e.causation_id)} not seen` }) : "",
      ));
    }
    return box;
  });
  const summary = flow.graph.connected
    ? `One tree rooted at ${flow.graph.root_type}, ${flow.graph.depth} deep, ${flow.graph.edges.length} edges.`
    : `Not one tree: ${flow.graph.roots.length} root(s), ${flow.graph.orphans.length} event(s) whose cause was not seen.`;
  return el("div", {}, el("p", { class: "muted", text: summary }), viewport);
}

function timings(flow) {
  return el("table", { "data-testid": "timings" },
    el("thead", {}, el("tr", {}, ["Service", "Events", "First", "Last", "Reactions", "Reaction total", "Mean", "Max"].map((h) => el("th", { text: h })))),
    el("tbody", {}, flow.timings.map((t) => el("tr", {},
      el("td", { text: t.service }), el("td", { class: "num", text: t.events }),
      el("td", { text: when(t.first_at) }), el("td", { text: when(t.last_at) }),
      el("td", { class: "num", text: t.reactions }), el("td", { class: "num", text: ms(t.reaction_ms_total) }),
      el("td", { class: "num", text: ms(t.reaction_ms_mean) }), el("td", { class: "num", text: ms(t.reaction_ms_max) })))));
}

function records(flow) {
  return el("div", {},
    el("h2", { text: "Dead letters" }),
    flow.dead_letter_records.length
      ? deadLetterTable(flow.dead_letter_records)
      : el("p", { class: "muted", text: "No consumer gave up on an event of this flow." }),
    el("h2", { text: "Lifecycle events published" }),
    el("table", {},
      el("thead", {}, el("tr", {}, ["Type", "Status", "Judged", "Sent", "Read back", "Id"].map((h) => el("th", { text: h })))),
      el("tbody", {}, flow.lifecycle.map((l) => el("tr", {},
        el("td", { text: l.type }), el("td", {}, badge(l.status)), el("td", { text: when(l.created_at) }),
        el("td", { text: when(l.sent_at) }), el("td", { text: l.observed ? "yes" : "no" }), el("td", { class: "mono", text: l.id }))))),
  );
}

async function replayDeadLetter(d, button) {
  // A write action: it needs an operator token (apiWrite asks for one on 401/403).
  button.disabled = true;
  button.textContent = "Replaying…";
  try {
    const body = await apiWrite(`/api/dead-letters/${encodeURIComponent(d.topic)}/${d.partition}/${d.offset}/replay`, {});
    button.textContent = `Replayed to ${body.group || "every group"}`;
    button.dataset.result = body.result;
  } catch (error) {
    button.disabled = false;
    button.textContent = "Replay";
    showError(error);
  }
}

function deadLetterStatus(d) {
  if (d.status === "dead" || d.status === "failed") {
    const button = el("button", { class: "secondary", "data-testid": "replay", text: "Replay", title: `Send ${d.event_type || "it"} back to ${d.group || "its group"} only` });
    button.addEventListener("click", () => replayDeadLetter(d, button));
    return [badge(d.status), " ", button];
  }
  return [badge(d.status)];
}

function deadLetterTable(items) {
  return el("table", { "data-testid": "dead-letters" },
    el("thead", {}, el("tr", {}, ["Failed", "Event", "Group", "Error", "Attempts", "Flow", "From", "Status"].map((h) => el("th", { text: h })))),
    el("tbody", {}, items.map((d) => el("tr", { "data-status": d.status },
      el("td", { text: when(d.failed_at) }),
      el("td", { text: `${d.event_type || "?"} ${short(d.event_id)}` }),
      el("td", { text: d.group || "?" }),
      el("td", {}, el("strong", { text: d.error_type }), el("div", { class: "muted", text: d.error_message })),
      el("td", { class: "num", text: d.attempts ?? "?" }),
      el("td", {}, d.correlation_id ? el("a", { href: `#/flow/${encodeURIComponent(d.correlation_id)}`, class: "mono", text: short(d.correlation_id) }) : el("span", { class: "muted", text: "no flow" })),
      el("td", { class: "mono", text: d.original_topic ? `${d.original_topic}[${d.original_partition}]@${d.original_offset}` : `${d.topic}[${d.partition}]@${d.offset}` }),
      el("td", { "data-testid": "dead-letter-status" }, deadLetterStatus(d))))));
}

// -- topology -----------------------------------------------------------------------------

async function topologyPage() {
  const topo = await api("/api/topology");
  const services = topo.services;
  const w = 1000;
  const h = 620;
  const r = Math.min(w, h) / 2 - 70;
  const pos = new Map(services.map((s, i) => {
    const angle = (2 * Math.PI * i) / Math.max(1, services.length) - Math.PI / 2;
    return [s, [w / 2 + r * Math.cos(angle), h / 2 + r * Math.sin(angle)]];
  }));
  const picture = svg("svg", { viewBox: `0 0 ${w} ${h}`, "data-testid": "topology-graph", role: "img" });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrowhead", viewBox: "0 0 10 10", refX: 30, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8290ad" }));
  defs.append(marker);
  picture.append(defs);
  const pairs = new Map();
  for (const link of topo.links) {
    const key = `${link.from_service}\u0000${link.to_service}`;
    if (!pairs.has(key)) pairs.set(key, []);
    pairs.get(key).push(link);
  }
  const label = (x, y, lines) => {
    const text = svg("text", { class: "edge-label", x, y: y - (lines.length - 1) * 6 });
    lines.forEach((line, i) => text.append(svg("tspan", { x, dy: i ? 12 : 0 }, line)));
    return text;
  };
  for (const links of pairs.values()) {
    const [x1, y1] = pos.get(links[0].from_service);
    const [x2, y2] = pos.get(links[0].to_service);
    const lines = links.map((l) => `${l.cause_type} → ${l.effect_type} ×${l.count}`);
    if (links[0].from_service === links[0].to_service) {
      picture.append(svg("path", { class: "edge", d: `M${x1 - 10} ${y1 - 28} c -40 -60 60 -60 20 0` }));
      picture.append(label(x1 + 30, y1 - 60, lines));
      continue;
    }
    // Curve each direction to its own side, and put the label on the curve's middle.
    const cx = (x1 + x2) / 2 + (y2 - y1) * 0.22;
    const cy = (y1 + y2) / 2 - (x2 - x1) * 0.22;
    picture.append(svg("path", { class: "edge", d: `M${x1} ${y1} Q${cx} ${cy} ${x2} ${y2}`, "marker-end": "url(#arrowhead)" }));
    picture.append(label(0.25 * x1 + 0.5 * cx + 0.25 * x2, 0.25 * y1 + 0.5 * cy + 0.25 * y2, lines));
  }
  for (const [service, [x, y]] of pos) {
    const g = svg("g", { class: "node", "data-testid": "topology-node" });
    g.append(svg("circle", { cx: x, cy: y, r: 28 }));
    g.append(svg("text", { x, y: y + 4 }, service));
    picture.append(g);
  }
  const publishers = el("table", { "data-testid": "publishers" },
    el("thead", {}, el("tr", {}, ["Service", "Publishes", "Count"].map((t) => el("th", { text: t })))),
    el("tbody", {}, topo.publishers.map((p) => el("tr", {}, el("td", { text: p.service }), el("td", { text: p.event_type }), el("td", { class: "num", text: p.count })))));
  const reactions = el("table", { "data-testid": "reactions" },
    el("thead", {}, el("tr", {}, ["Event type", "Reacting service", "Reactions", "Produces", "p50", "p90", "p99", "max"].map((t) => el("th", { text: t })))),
    el("tbody", {}, topo.reactions.map((r) => el("tr", {},
      el("td", { text: r.event_type }), el("td", { text: r.service }), el("td", { class: "num", text: r.count }),
      el("td", { text: r.produces.join(", ") }),
      ["p50", "p90", "p99", "max"].map((k) => el("td", { class: "num", text: r.latency_ms ? ms(r.latency_ms[k]) : "–" }))))));
  app.replaceChildren(
    el("h1", { text: "Service topology" }),
    el("p", { class: "muted", text: "Inferred from causation: a service reacts to an event type when it publishes events caused by it. Latency: from the cause to the reaction." }),
    el("div", { class: "topology" }, picture),
    el("h2", { text: "Who publishes what" }), publishers,
    el("h2", { text: "Who reacts to what" }), reactions,
  );
}

// -- the saga map -------------------------------------------------------------------------
// The spec as a graph (columns by distance from the start), with live figures for the
// flows started in the chosen window; every figure links to its flows in the flow list.

const WINDOWS = [["5m", 5 * 60e3], ["15m", 15 * 60e3], ["1h", 3600e3], ["24h", 86400e3], ["all", null]];
const NODE_W = 180;
const NODE_H = 64;
const COL_W = 310;
const ROW_H = 100;

function flowsLink(apiUrl) {
  // "/api/flows?a=b" -> "#/?a=b": the same filters, in the flow list
  return `#/?${apiUrl.split("?")[1] || ""}`;
}

function seconds(value) {
  if (value >= 3600) return `${+(value / 3600).toFixed(1)} h`;
  if (value >= 60) return `${+(value / 60).toFixed(1)} min`;
  return `${+value.toFixed(1)} s`;
}

async function mapPage(params) {
  const sagas = await api("/api/sagas");
  if (!sagas.length) {
    app.replaceChildren(el("h1", { text: "Saga map" }), el("p", { class: "muted", text: "No saga specs: nothing to draw." }));
    return;
  }
  const name = params.get("saga") || sagas[0].name;
  const windowKey = params.get("window") || "all";
  const span = (WINDOWS.find(([key]) => key === windowKey) || WINDOWS[WINDOWS.length - 1])[1];
  const since = span ? new Date(Date.now() - span).toISOString() : undefined;
  const map = await api(`/api/sagas/${encodeURIComponent(name)}/map`, { since });
  const go = (changes) => {
    const next = new URLSearchParams(params);
    for (const [key, value] of Object.entries(changes)) next.set(key, value);
    location.hash = `#/map?${next}`;
  };

  const columns = new Map();
  for (const node of map.nodes) {
    if (!columns.has(node.depth)) columns.set(node.depth, []);
    columns.get(node.depth).push(node);
  }
  const depths = [...columns.keys()].sort((a, b) => a - b);
  const tallest = Math.max(...[...columns.values()].map((c) => c.length));
  const place = new Map();
  depths.forEach((depth, col) => {
    const nodes = columns.get(depth);
    const top = ((tallest - nodes.length) * ROW_H) / 2;
    nodes.forEach((node, row) => place.set(node.id, [30 + col * COL_W, 30 + top + row * ROW_H]));
  });
  const column = new Map(depths.map((depth, col) => [depth, col]));
  const colOf = new Map(map.nodes.map((n) => [n.id, column.get(n.depth)]));
  // Transitions that skip a column go around the bottom, under the nodes they would cross.
  const skips = map.edges.some((e) => colOf.get(e.target) - colOf.get(e.source) > 1);
  const w = 60 + depths.length * COL_W - (COL_W - NODE_W);
  const bottom = 30 + tallest * ROW_H - (ROW_H - NODE_H);
  const h = bottom + (skips ? 90 : 30);
  const picture = svg("svg", { viewBox: `0 0 ${w} ${h}`, class: "saga-map-picture", "data-testid": "saga-map", role: "img" });
  const defs = svg("defs");
  const marker = svg("marker", { id: "map-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8290ad" }));
  defs.append(marker);
  picture.append(defs);

  for (const edge of map.edges) {
    if (!place.has(edge.source) || !place.has(edge.target)) continue;
    const [sx, sy] = place.get(edge.source);
    const [tx, ty] = place.get(edge.target);
    const x1 = sx + NODE_W;
    const y1 = sy + NODE_H / 2;
    const x2 = tx;
    const y2 = ty + NODE_H / 2;
    const bend = Math.max(40, (x2 - x1) / 2);
    const skip = colOf.get(edge.target) - colOf.get(edge.source) > 1;
    const low = bottom + 60;
    let d;
    let mx = (x1 + x2) / 2;
    let my = (y1 + y2) / 2;
    if (skip) {
      d = `M${x1} ${y1} C${x1 + 90} ${low} ${x2 - 90} ${low} ${x2} ${y2}`;
      my = 0.125 * y1 + 0.75 * low + 0.125 * y2;
    } else if (x2 > x1) {
      d = `M${x1} ${y1} C${x1 + bend} ${y1} ${x2 - bend} ${y2} ${x2} ${y2}`;
    } else {
      d = `M${x1} ${y1} C${x1 + 80} ${y1 - 120} ${x2 - 80} ${y2 - 120} ${x2} ${y2}`;
      my = Math.min(y1, y2) - 90;
    }
    const g = svg("g", {
      class: `map-edge ${edge.kind}${edge.count ? "" : " idle"}`,
      "data-testid": "map-edge",
      "data-source": edge.source,
      "data-target": edge.target,
      "data-count": edge.count,
      tabindex: 0,
    });
    const title = svg("title", {}, `${edge.source} → ${edge.target}: ${edge.count} flows` +
      (edge.latency_ms ? `, p50 ${ms(edge.latency_ms.p50)}, p95 ${ms(edge.latency_ms.p95)}` : ""));
    g.append(title, svg("path", { class: "hit", d }), svg("path", { class: "line", d, "marker-end": "url(#map-arrow)" }));
    const top = edge.latency_ms ? my - 12 : my + 4;
    g.append(svg("text", { class: "map-edge-label", x: mx, y: top, "data-testid": "map-edge-count" }, `×${edge.count}`));
    if (edge.latency_ms) {
      g.append(svg("text", { class: "map-edge-latency", x: mx, y: top + 13 }, `p50 ${ms(edge.latency_ms.p50)}`));
      g.append(svg("text", { class: "map-edge-latency", x: mx, y: top + 25 }, `p95 ${ms(edge.latency_ms.p95)}`));
    }
    const open = () => { location.hash = flowsLink(edge.flows_url); };
    g.addEventListener("click", open);
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    picture.append(g);
  }

  for (const node of map.nodes) {
    const [x, y] = place.get(node.id);
    const waiting = node.waiting.running + node.waiting.stalled;
    const g = svg("g", {
      class: `map-node ${node.kind}${node.waiting.overdue ? " overdue" : ""}`,
      "data-testid": "map-node",
      "data-type": node.id,
      "data-passed": node.passed,
      "data-waiting": waiting,
      "data-overdue": node.waiting.overdue,
    });
    g.append(svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 8 }));
    g.append(svg("text", { class: "map-node-type", x: x + 10, y: y + 18 }, node.id));
    const passed = svg("text", { class: "map-node-figure link", x: x + 10, y: y + 36, "data-testid": "map-node-passed" }, `passed ${node.passed}`);
    passed.addEventListener("click", () => { location.hash = flowsLink(node.flows_url); });
    g.append(passed);
    if (node.deadline_seconds !== null) {
      g.append(svg("text", { class: "map-node-deadline", x: x + NODE_W - 10, y: y + 36, "text-anchor": "end" }, `deadline ${seconds(node.deadline_seconds)}`));
    }
    if (waiting || node.kind === "step" || node.kind === "start") {
      const parts = [`waiting ${node.waiting.running}`];
      if (node.waiting.stalled) parts.push(`stalled ${node.waiting.stalled}`);
      if (node.waiting.overdue) parts.push(`overdue ${node.waiting.overdue}`);
      const text = svg("text", { class: `map-node-figure${waiting ? " link waiting" : ""}`, x: x + 10, y: y + 54, "data-testid": "map-node-waiting" }, parts.join(" · "));
      if (waiting) text.addEventListener("click", () => { location.hash = flowsLink(node.waiting_url); });
      g.append(text);
    }
    picture.append(g);
  }

  const sagaSelect = el("select", { "data-testid": "map-saga", onchange: (e) => go({ saga: e.target.value }) },
    sagas.map((s) => el("option", { value: s.name, text: s.name, selected: s.name === name })));
  const windowSelect = el("select", { "data-testid": "map-window", onchange: (e) => go({ window: e.target.value }) },
    WINDOWS.map(([key]) => el("option", { value: key, text: key === "all" ? "all flows" : `started in the last ${key}`, selected: key === windowKey })));
  const patterns = await api(`/api/sagas/${encodeURIComponent(name)}/failure-patterns`, { since, limit: 20 });
  const patternTable = el("table", { "data-testid": "failure-patterns" },
    el("thead", {}, el("tr", {}, ["Flows", "Last step", "Error", "Statuses"].map((t) => el("th", { text: t })))),
    el("tbody", {}, patterns.patterns.length ? patterns.patterns.map((p) => el("tr", { "data-testid": "failure-pattern" },
      el("td", { class: "num" }, el("a", { href: flowsLink(p.flows_url), text: p.count })),
      el("td", { class: "mono", text: p.last_step }),
      el("td", { text: p.error_type ? `${p.error_type}: ${p.message || ""}` : "no dead letter" }),
      el("td", {}, Object.entries(p.by_status).map(([status, n]) => el("span", {}, badge(status), ` ${n} `))),
    )) : el("tr", {}, el("td", { colspan: 4, class: "muted", text: "No stalled or failed flow." }))));
  app.replaceChildren(
    el("h1", { text: `Saga map · ${name}` }),
    el("div", { class: "row panel" },
      el("label", {}, "Saga ", sagaSelect),
      el("label", {}, "Window ", windowSelect),
      el("span", { class: "muted", "data-testid": "map-flows", text: `${map.flows} flows` }),
      el("span", { class: "muted grow", text: "Click a transition or a figure to list its flows. Waiting: now, among the window's flows." }),
      el("label", { class: "muted" },
        el("input", { type: "checkbox", checked: sessionStorage.getItem("autorefresh") === "1",
          onchange: (e) => { sessionStorage.setItem("autorefresh", e.target.checked ? "1" : "0"); route(); } }),
        " refresh every 5 s")),
    el("div", { class: "saga-map panel" }, picture),
    el("h2", { text: "Failure patterns: stalled and failed flows by last step and error" }),
    patternTable,
  );
  if (sessionStorage.getItem("autorefresh") === "1") refreshTimer = setInterval(route, 5000);
}

// -- dead letters and rejects --------------------------------------------------------------

async function recordsPage(params) {
  const offset = Number(params.get("offset") || 0);
  const [letters, rejects] = await Promise.all([
    api("/api/dead-letters", { limit: 50, offset }),
    api("/api/rejects", { limit: 50, offset }),
  ]);
  const rejectTable = el("table", { "data-testid": "rejects" },
    el("thead", {}, el("tr", {}, ["Time", "Where", "Why", "Key", "Size"].map((t) => el("th", { text: t })))),
    el("tbody", {}, rejects.items.map((r) => el("tr", {},
      el("td", { text: when(r.time) }), el("td", { class: "mono", text: `${r.topic}[${r.partition}]@${r.offset}` }),
      el("td", {}, el("strong", { text: r.error_type }), el("div", { class: "muted", text: r.error_message })),
      el("td", { class: "mono", text: r.key ?? "" }), el("td", { class: "num", text: r.size })))));
  app.replaceChildren(
    el("h1", { text: "Dead letters & rejected records" }),
    el("h2", { text: `Dead letters (${letters.total})` }),
    letters.items.length ? deadLetterTable(letters.items) : el("p", { class: "muted", text: "None." }),
    el("h2", { text: `Records that are not events (${rejects.total})` }),
    rejects.items.length ? rejectTable : el("p", { class: "muted", text: "None." }),
    el("div", { class: "pager" },
      el("button", { class: "secondary", disabled: offset === 0, onclick: () => { location.hash = `#/records?offset=${Math.max(0, offset - 50)}`; }, text: "‹ Newer" }),
      el("button", { class: "secondary", disabled: offset + 50 >= Math.max(letters.total, rejects.total), onclick: () => { location.hash = `#/records?offset=${offset + 50}`; }, text: "Older ›" })),
  );
}
