// The console's script: every few seconds, fetches each panel's URL from
// this instance and draws what it answers. A panel whose URL fails says
// so, with the reason, and keeps what it last drew, dimmed. No library:
// the charts are plain SVG.
"use strict";
(() => {
  const REFRESH_MS = 3000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#2f6fd1", "#d1542f", "#2a9d55", "#8e44ad", "#c29100", "#138d90", "#b83280", "#5b6b82"];

  // An element with attributes and children (nodes or text).
  function build(node, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  const el = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
  const svg = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);

  // A panel's URL answered that the panel does not apply here.
  class NotApplicable {
    constructor(why) { this.why = why; }
  }

  async function fetchText(url) {
    let response;
    try {
      response = await fetch(url, { cache: "no-store" });
    } catch (error) {
      throw new Error(`this instance does not answer (${error.message})`);
    }
    const text = await response.text();
    if (!response.ok) {
      let reason = `HTTP ${response.status} ${response.statusText}`.trim();
      try {
        const body = JSON.parse(text);
        if (body && body.error) reason = `${body.error} (HTTP ${response.status})`;
      } catch (_) { /* not JSON: the status says it */ }
      throw new Error(reason);
    }
    return text;
  }

  async function fetchJson(url) {
    const text = await fetchText(url);
    let body;
    try {
      body = JSON.parse(text);
    } catch (error) {
      throw new Error(`${url} did not answer JSON (${error.message})`);
    }
    if (body && typeof body.notApplicable === "string") throw new NotApplicable(body.notApplicable);
    return body;
  }

  const clockText = (ms) => new Date(ms).toLocaleTimeString(undefined, { hour12: false });
  // Today's times as a clock reading, others with their date.
  function timeText(ms) {
    const date = new Date(ms);
    if (date.toDateString() === new Date().toDateString()) return clockText(ms);
    return date.toLocaleString(undefined, { hour12: false });
  }

  // Integers in full, others to three significant digits (scoring times
  // are often a few microseconds, in milliseconds).
  function numberText(n) {
    if (Number.isInteger(n)) return n.toLocaleString("en-US");
    if (Math.abs(n) < 1) return String(Number(n.toPrecision(3)));
    return n.toLocaleString("en-US", { maximumFractionDigits: Math.abs(n) >= 100 ? 1 : 3 });
  }

  function cell(value) {
    if (value === null || value === undefined) return el("td", {}, "–");
    if (typeof value === "number") return el("td", { class: "num" }, numberText(value));
    if (typeof value === "object" && typeof value.time === "number") {
      return el("td", { title: new Date(value.time).toISOString() }, timeText(value.time));
    }
    return el("td", {}, String(value));
  }

  function footnote(...children) {
    return el("p", { class: "footnote" }, ...children);
  }

  // [`TablePanel`] JSON: tables of cells, rows optionally marked.
  async function table(url) {
    const data = await fetchJson(url);
    const out = document.createDocumentFragment();
    if (data.warning) out.append(el("div", { class: "unavailable-note" }, data.warning));
    for (const t of data.tables || []) {
      if ((t.rows || []).length === 0 && t.empty) {
        if (t.title) out.append(el("table", {}, el("caption", {}, t.title)));
        out.append(el("p", { class: "na" }, t.empty));
        continue;
      }
      out.append(el("table", { "data-title": t.title },
        t.title ? el("caption", {}, t.title) : null,
        el("thead", {}, el("tr", {}, (t.columns || []).map((c) => el("th", {}, c)))),
        el("tbody", {}, (t.rows || []).map((row) =>
          el("tr", { class: row.mark }, (row.cells || []).map(cell))))));
    }
    if (data.note) out.append(footnote(data.note));
    return out;
  }

  // `/console/instances`: every live instance, this one marked.
  async function instances(url) {
    const data = await fetchJson(url);
    const list = data.instances || [];
    const out = document.createDocumentFragment();
    if (list.length === 0) {
      out.append(el("p", { class: "na" }, "No live instance in the registry yet."));
    } else {
      const chips = (items) => el("div", { class: "chips" }, items.length ? items.map((i) => el("span", { class: "chip" }, i)) : "–");
      out.append(el("table", { class: "instances" },
        el("thead", {}, el("tr", {}, ["Instance", "Partitions", "Stores"].map((c) => el("th", {}, c)))),
        el("tbody", {}, list.map((i) => el("tr", { class: i.answering ? "answering" : null, "data-instance": i.instance },
          el("td", {}, i.instance, i.answering ? el("span", { class: "badge", title: "this instance serves the page" }, "answering") : null),
          el("td", {}, chips((i.partitions || []).map((p) => `${p.topic}-${p.partition}`))),
          el("td", {}, chips(i.storeNames || [])))))));
    }
    const state = data.state ? ` This instance: ${data.state}${data.reason ? ` (${data.reason})` : ""}.` : "";
    out.append(footnote(`${list.length} live instance${list.length === 1 ? "" : "s"}.${state}${data.note ? " " + data.note : ""}`));
    return out;
  }

  // A value axis's top: 1, 2 or 5 times a power of ten, at least `max`.
  function niceTop(max) {
    if (!(max > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(max)));
    for (const step of [1, 2, 5, 10]) if (step * power >= max) return step * power;
    return 10 * power;
  }

  // A line chart of `series` ([{name, points: [[ms, value]]}]) over time.
  function lineChart(id, title, series, windowMs, emptyText) {
    const W = 560, H = 210, left = 56, right = 14, top = 12, bottom = 26;
    const all = series.flatMap((s) => s.points);
    const chart = el("div", { class: "chart", id });
    chart.append(el("h3", {}, title));
    const drawing = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, "data-points": all.length });
    chart.append(drawing);
    const plotW = W - left - right, plotH = H - top - bottom;
    drawing.append(svg("rect", { x: left, y: top, width: plotW, height: plotH, fill: "#fbfcfe", stroke: "#d9e0ea" }));
    if (all.length === 0) {
      drawing.append(svg("text", { x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle", fill: "#5b6b82", "font-size": 13 }, emptyText));
      return chart;
    }
    const newest = Math.max(...all.map((p) => p[0]));
    const oldest = Math.min(...all.map((p) => p[0]));
    const t1 = newest;
    const t0 = Math.max(newest - windowMs, Math.min(oldest, newest - 60000));
    const yTop = niceTop(Math.max(...all.map((p) => p[1])));
    const x = (t) => left + ((t - t0) / Math.max(t1 - t0, 1)) * plotW;
    const y = (v) => top + plotH - (v / yTop) * plotH;
    for (let i = 0; i <= 4; i++) {
      const value = (yTop * i) / 4;
      drawing.append(svg("line", { x1: left, x2: left + plotW, y1: y(value), y2: y(value), stroke: "#e6ebf2" }));
      drawing.append(svg("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6b82" }, numberText(value)));
    }
    const span = t1 - t0;
    const step = span > 180000 ? 60000 : span > 90000 ? 30000 : 15000;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      drawing.append(svg("line", { x1: x(t), x2: x(t), y1: top, y2: top + plotH, stroke: "#eef1f6" }));
      drawing.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle", "font-size": 11, fill: "#5b6b82" }, clockText(t)));
    }
    const legend = el("div", { class: "legend" });
    series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      const points = s.points.filter((p) => p[0] >= t0);
      if (points.length === 0) return;
      const coords = points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
      const max = Math.max(...points.map((p) => p[1]));
      drawing.append(svg("polyline", { class: "series", "data-series": s.name, "data-points": points.length, "data-max": max, points: coords, fill: "none", stroke: color, "stroke-width": 2, "stroke-linejoin": "round" }));
      const last = points[points.length - 1];
      drawing.append(svg("circle", { cx: x(last[0]), cy: y(last[1]), r: 3, fill: color }));
      // Set through the CSSOM: the page's policy refuses inline styles.
      const swatch = el("i");
      swatch.style.background = color;
      legend.append(el("span", { "data-series": s.name }, swatch, `${s.name}: ${numberText(last[1])}`));
    });
    chart.append(legend);
    return chart;
  }

  // `/console/throughput`: records per second per instance, lag per partition.
  async function throughput(url) {
    const data = await fetchJson(url);
    const windowMs = data.windowMs || 300000;
    const records = (data.records || []).map((s) => ({ name: s.instance, points: s.points || [] }));
    const lag = (data.lag || []).map((s) => ({ name: s.instance ? `${s.partition} @ ${s.instance}` : s.partition, points: s.points || [] }));
    const out = document.createDocumentFragment();
    out.append(el("div", { class: "charts" },
      lineChart("records-chart", "Records per second, per instance", records, windowMs, "no samples yet"),
      lineChart("lag-chart", "Consumer lag per partition (records behind the end)", lag, windowMs, "no lag reported")));
    const missing = data.missing || [];
    if (missing.length) {
      out.append(el("div", { class: "unavailable-note" }, "Not answering: ",
        missing.map((m) => `${m.instance} (${m.error})`).join("; ")));
    }
    return out;
  }

  // An SVG drawing from the server, inlined; fetched once, then kept.
  async function topology(url, panel) {
    if (panel.dataset.loaded) return null;
    const text = await fetchText(url);
    if (text.trimStart().startsWith("{")) {
      const body = JSON.parse(text);
      if (body.notApplicable) throw new NotApplicable(body.notApplicable);
    }
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    const root = doc.documentElement;
    if (root.nodeName !== "svg") throw new Error(`${url} is not an SVG drawing`);
    panel.dataset.loaded = "true";
    const link = (href) => el("a", { href }, href);
    return el("div", { class: "topology-frame" }, document.importNode(root, true),
      footnote("Alone: ", link(url), " · text: ", link("/topology"), " · JSON: ", link("/topology.json")));
  }

  const renderers = { table, instances, throughput, topology };

  async function refresh(panel) {
    const kind = panel.dataset.kind;
    const render = renderers[kind];
    if (!render) return;
    const body = panel.querySelector(".body");
    const state = panel.querySelector(".state");
    try {
      const node = await render(panel.dataset.url, panel);
      if (node) body.replaceChildren(node);
      panel.classList.remove("unavailable");
      state.replaceChildren();
    } catch (error) {
      if (error instanceof NotApplicable) {
        panel.classList.remove("unavailable");
        state.replaceChildren();
        body.replaceChildren(el("p", { class: "na" }, `Does not apply here: ${error.why}`));
        return;
      }
      panel.classList.add("unavailable");
      state.replaceChildren(el("div", { class: "unavailable-note" }, `Unavailable: ${error.message}`));
      if (body.querySelector(".loading")) body.replaceChildren();
    }
  }

  async function health() {
    const node = document.getElementById("health");
    const banner = document.getElementById("banner");
    let response;
    try {
      response = await fetch("/health", { cache: "no-store" });
    } catch (error) {
      node.className = "bad";
      node.textContent = "not answering";
      banner.hidden = false;
      banner.textContent = `This instance does not answer (${error.message}): the panels show what they last saw.`;
      return;
    }
    banner.hidden = true;
    let body = {};
    try { body = await response.json(); } catch (_) { /* no JSON: the status says it */ }
    node.className = response.ok ? "ok" : "bad";
    node.textContent = (body.state || `HTTP ${response.status}`) + (body.reason ? `: ${body.reason}` : "");
  }

  let rounds = 0;
  async function tick() {
    const panels = [...document.querySelectorAll("section.panel")];
    await Promise.all([health(), ...panels.map(refresh)]);
    rounds += 1;
    document.body.dataset.refreshes = String(rounds);
    document.getElementById("updated").textContent = `updated ${clockText(Date.now())}`;
    setTimeout(tick, REFRESH_MS);
  }
  tick();
})();
