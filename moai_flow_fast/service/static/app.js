// moai-flow-fast dashboard: plain browser JavaScript, no build step, no dependency.
// Data: GET /v1/stats every second (counts, heartbeats/s from deltas), GET /v1/agents?
// min_state=degraded every 2 s (+ GET /v1/agents/{id} once per listed agent), and the SSE
// stream GET /v1/events read with fetch() so that the bearer token can be sent as a header.
"use strict";

(() => {
  const TOKEN_KEY = "moai-flow-fast:token";
  const STATS_MS = 1000;
  const LIST_MS = 2000;
  const LIST_LIMIT = 100;          // rows of the "not healthy" table
  const WINDOW_MS = 5 * 60 * 1000; // charts show the last five minutes
  const LATENCY_WINDOW_MS = 60 * 1000;
  const MAX_EVENTS = 200;
  const STATES = ["healthy", "degraded", "critical", "failed"];
  const SEVERITY = { healthy: 0, degraded: 1, critical: 2, failed: 3 };

  const $ = (id) => document.getElementById(id);
  const css = getComputedStyle(document.documentElement);
  const colour = (name) => css.getPropertyValue("--" + name).trim();
  const nf = new Intl.NumberFormat("en-US");
  const nf1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

  // -- state --------------------------------------------------------------------------------
  let token = localStorage.getItem(TOKEN_KEY) || "";
  // A link may carry the token in its fragment (never sent to the server): keep it, then
  // take it out of the address bar and the history.
  const fromLink = /^#token=([^&]+)$/.exec(location.hash);
  if (fromLink) {
    token = decodeURIComponent(fromLink[1]);
    localStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
  const samples = [];       // {t, healthy, degraded, critical, failed, total, hb, rate}
  const latencies = [];     // {t, ms}
  const eventLog = [];      // newest first: {t, id, state, prev, ms}; the latest 1,000
  let eventsSeen = 0;
  const agents = new Map(); // id -> {id, state, since, detail, fetchedAt, touched, pending}
  let lastCounts = null;
  let panelId = null;

  // -- token and HTTP -------------------------------------------------------------------------
  let asking = null;

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  function askToken() {
    if (asking) return asking;
    const rejected = Boolean(token);
    if (rejected) {
      token = "";
      localStorage.removeItem(TOKEN_KEY);
    }
    setConn("down", "token needed");
    asking = new Promise((resolve) => {
      $("token-error").hidden = !rejected;
      $("token-dialog").hidden = false;
      const input = $("token-input");
      input.value = "";
      input.focus();
      $("token-form").onsubmit = (ev) => {
        ev.preventDefault();
        const value = input.value.trim();
        if (!value) return;
        token = value;
        localStorage.setItem(TOKEN_KEY, token);
        $("token-dialog").hidden = true;
        $("token-forget").hidden = false;
        asking = null;
        resolve();
      };
    });
    return asking;
  }

  class HttpError extends Error {
    constructor(status, text) {
      super("HTTP " + status + (text ? ": " + text : ""));
      this.status = status;
    }
  }

  async function api(path) {
    for (;;) {
      if (asking) await asking;
      const res = await fetch(path, { headers: headers(), cache: "no-store" });
      if (res.status === 401) {
        await askToken();
        continue;
      }
      if (!res.ok) throw new HttpError(res.status, (await res.text()).slice(0, 200));
      return res.json();
    }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // -- formatting -------------------------------------------------------------------------------
  function fmtDuration(ms) {
    if (!Number.isFinite(ms) || ms < 0) return "–";
    if (ms < 1000) return Math.round(ms) + " ms";
    const s = ms / 1000;
    if (s < 60) return nf1.format(s) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.floor(s % 60) + " s";
    const h = Math.floor(m / 60);
    return h + " h " + (m % 60) + " min";
  }

  function fmtClock(ms) {
    return new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
  }

  function fmtClockMs(ms) {
    return fmtClock(ms) + "." + String(Math.floor(ms % 1000)).padStart(3, "0");
  }

  function fmtMs(ms) {
    if (!Number.isFinite(ms)) return "–";
    return ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : nf.format(Math.round(ms));
  }

  function wallMs(value) {
    // Unix seconds (number) or an ISO string, to epoch ms; null when absent.
    if (value === null || value === undefined || value === "") return null;
    if (typeof value === "number") return value * 1000;
    const t = Date.parse(value);
    return Number.isNaN(t) ? null : t;
  }

  function percentile(sorted, p) {
    if (!sorted.length) return NaN;
    return sorted[Math.max(1, Math.ceil((p / 100) * sorted.length)) - 1];
  }

  function badge(state) {
    const span = document.createElement("span");
    span.className = "badge b-" + state;
    span.textContent = state;
    return span;
  }

  function agentLink(id) {
    const a = document.createElement("a");
    a.href = "#agent=" + encodeURIComponent(id);
    a.textContent = id;
    a.title = id;
    return a;
  }

  function setConn(kind, text) {
    const el = $("conn");
    el.className = "pill pill-" + kind;
    el.textContent = text;
  }

  // -- stats: counts and heartbeats per second ---------------------------------------------------
  function countsOf(stats) {
    const m = stats.health_distribution ? stats : stats.monitor || stats;
    const dist = m.health_distribution || {};
    const out = {};
    for (const s of STATES) out[s] = Number(dist[s] || 0);
    out.total = Number(m.total_agents ?? STATES.reduce((a, s) => a + out[s], 0));
    out.hb = Number(m.total_heartbeats ?? m.heartbeats_recorded ?? NaN);
    out.engine = m.engine;
    out.tick = m.tick_ms;
    return out;
  }

  async function pollStats() {
    for (;;) {
      const started = performance.now();
      try {
        const c = countsOf(await api("/v1/stats"));
        const now = Date.now();
        const prev = samples[samples.length - 1];
        c.t = now;
        c.mono = performance.now();
        c.rate = prev && Number.isFinite(prev.hb) && Number.isFinite(c.hb) && c.hb >= prev.hb
          ? ((c.hb - prev.hb) * 1000) / Math.max(c.mono - prev.mono, 1) : NaN;
        samples.push(c);
        while (samples.length && samples[0].t < now - WINDOW_MS) samples.shift();
        lastCounts = c;
        if ($("conn").textContent === "offline") setConn("wait", "connecting…");
        renderTiles();
        drawStates();
        drawRate();
        $("updated").textContent = "updated " + fmtClock(now);
        if (c.engine) $("server-info").textContent =
          "engine " + c.engine + (c.tick ? " · tick " + c.tick + " ms" : "");
      } catch (err) {
        if (!(err instanceof HttpError)) setConn("down", "offline");
      }
      await sleep(Math.max(50, STATS_MS - (performance.now() - started)));
    }
  }

  function renderTiles() {
    const c = lastCounts;
    if (!c) return;
    $("count-total").textContent = nf.format(c.total);
    for (const s of STATES) {
      $("count-" + s).textContent = nf.format(c[s]);
      $("pct-" + s).textContent = c.total ? nf1.format((100 * c[s]) / c.total) + " %" : "\u00a0";
    }
    const bad = c.degraded + c.critical + c.failed;
    $("foot-total").textContent = nf.format(bad) + " not healthy";
    $("hb-rate").textContent = Number.isFinite(c.rate) ? nf.format(Math.round(c.rate)) : "–";
    $("hb-total").textContent = Number.isFinite(c.hb) ? nf.format(c.hb) + " total" : "\u00a0";
    renderLatency();
  }

  function renderLatency() {
    const now = Date.now();
    const recent = latencies.filter((l) => l.t >= now - LATENCY_WINDOW_MS).map((l) => l.ms);
    recent.sort((a, b) => a - b);
    if (!recent.length) {
      $("latency").textContent = "–";
      $("latency-foot").textContent = latencies.length
        ? "no detection in the last 60 s" : "no detection yet";
      return;
    }
    $("latency").textContent = fmtMs(percentile(recent, 50)) + " ms";
    $("latency-foot").textContent = "p99 " + fmtMs(percentile(recent, 99)) + " · max "
      + fmtMs(recent[recent.length - 1]) + " ms";
    $("latency-foot").title = "detected − deadline of the " + nf.format(recent.length)
      + " alerts of the last 60 s";
  }

  // -- charts (canvas) ---------------------------------------------------------------------------------
  function prepare(canvas) {
    if (!canvas.dataset.h) canvas.dataset.h = canvas.getAttribute("height");
    const h = Number(canvas.dataset.h);
    const w = canvas.clientWidth || 300;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
      canvas.style.height = h + "px";
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function compact(v) {
    if (v >= 1e6) return nf1.format(v / 1e6) + "M";
    if (v >= 1e3) return nf1.format(v / 1e3) + "k";
    return nf1.format(v);
  }

  // Axes, grid and a y mapping; series: [{points: [[t, v]], colour, fill, dots}].
  function chart(canvas, series, opts) {
    const { ctx, w, h } = prepare(canvas);
    const L = 46, R = 10, T = 8, B = 20;
    const pw = w - L - R, ph = h - T - B;
    const now = Date.now();
    // The time axis grows with the data, from one minute up to WINDOW_MS.
    const first = samples.length ? samples[0].t : now;
    const span = Math.min(WINDOW_MS, Math.max(60000, now - first));
    const t0 = now - span;
    const x = (t) => L + ((t - t0) / span) * pw;
    let vmax = 0;
    for (const s of series) for (const p of s.points) if (p[1] > vmax) vmax = p[1];
    if (opts.floor) vmax = Math.max(vmax, opts.floor);
    let y, ticks;
    if (opts.log) {
      const top = Math.max(1, Math.ceil(Math.log10(vmax + 1)));
      y = (v) => T + ph - (Math.log10(v + 1) / top) * ph;
      ticks = [0];
      for (let e = 0; e <= top; e++) ticks.push(Math.pow(10, e));
    } else {
      const top = niceMax(vmax);
      y = (v) => T + ph - (v / top) * ph;
      ticks = [0, top / 4, top / 2, (3 * top) / 4, top];
    }
    ctx.font = "11px " + colour("sans");
    ctx.fillStyle = colour("muted");
    ctx.strokeStyle = colour("line");
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of ticks) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(L, yy);
      ctx.lineTo(w - R, yy);
      ctx.stroke();
      ctx.fillText(compact(v) + (opts.unit || ""), L - 6, yy);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const step = [10, 15, 30, 60, 120].find((st) => span / (st * 1000) <= 5) * 1000;
    for (let back = 0; back <= span; back += step) {
      const label = back === 0 ? "now" : back < 60000 ? "−" + back / 1000 + " s"
        : "−" + back / 60000 + " min";
      ctx.textAlign = back === 0 ? "right" : "center";
      ctx.fillText(label, x(now - back) + (back === 0 ? 2 : 0), T + ph + 5);
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(L, T - 2, pw + 2, ph + 4);
    ctx.clip();
    for (const s of series) {
      const pts = s.points.filter((p) => p[0] >= t0 - 2000 && Number.isFinite(p[1]));
      if (!pts.length) continue;
      ctx.strokeStyle = s.colour;
      ctx.fillStyle = s.colour;
      if (s.dots) {
        for (const [t, v] of pts) {
          ctx.beginPath();
          ctx.arc(x(t), y(v), 2.2, 0, 2 * Math.PI);
          ctx.fill();
        }
        continue;
      }
      ctx.lineWidth = 1.8;
      ctx.lineJoin = "round";
      ctx.beginPath();
      pts.forEach(([t, v], i) => (i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v))));
      ctx.stroke();
      if (s.fill) {
        ctx.lineTo(x(pts[pts.length - 1][0]), y(0));
        ctx.lineTo(x(pts[0][0]), y(0));
        ctx.closePath();
        ctx.globalAlpha = 0.14;
        ctx.fill();
        ctx.globalAlpha = 1;
      }
    }
    ctx.restore();
    if (opts.empty && series.every((s) => !s.points.length)) {
      ctx.fillStyle = colour("muted");
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(opts.empty, L + pw / 2, T + ph / 2);
    }
  }

  function drawStates() {
    chart($("chart-states"), STATES.map((s) => ({
      colour: colour(s), points: samples.map((p) => [p.t, p[s]]),
    })), { log: true, empty: "waiting for /v1/stats…" });
  }

  function drawRate() {
    chart($("chart-hb"), [{
      colour: colour("link"), fill: true,
      points: samples.filter((p) => Number.isFinite(p.rate)).map((p) => [p.t, p.rate]),
    }], { floor: 10, empty: "waiting for two samples…" });
  }

  function drawLatency() {
    const now = Date.now();
    while (latencies.length && latencies[0].t < now - WINDOW_MS) latencies.shift();
    chart($("chart-latency"), [{
      colour: colour("degraded"), dots: true, points: latencies.map((l) => [l.t, l.ms]),
    }], { floor: 10, unit: "", empty: "no detection yet" });
    $("latency-detail").textContent = "detected − deadline, ms · " + nf.format(latencies.length)
      + " alerts";
  }

  // -- the event stream ------------------------------------------------------------------------------
  function field(obj, names) {
    for (const n of names) if (obj[n] !== undefined && obj[n] !== null) return obj[n];
    return undefined;
  }

  function onEvent(name, data) {
    if (Array.isArray(data)) return data.forEach((d) => onEvent(name, d));
    if (!data || typeof data !== "object") return;
    if (Array.isArray(data.events)) return data.events.forEach((d) => onEvent(name, d));
    const id = field(data, ["id", "agent", "agent_id"]);
    const state = field(data, ["state", "current_state", "new_state"]);
    if (id === undefined || !(state in SEVERITY)) {
      const reason = field(data, ["reason", "message", "error"]);
      if (reason !== undefined) addNote(String(name) + ": " + reason);
      return;
    }
    const now = Date.now();
    const prev = field(data, ["previous", "previous_state", "prev", "from"]);
    // The server sends Unix seconds ("deadline", "detected") and the wheel's own latency
    // ("latency_ms" = detected - deadline); monotonic seconds are accepted for latency too.
    const deadlineWall = wallMs(field(data, ["deadline"]));
    const detectedWall = wallMs(field(data, ["detected", "time", "timestamp"]));
    let ms = Number(field(data, ["latency_ms"]));
    if (!Number.isFinite(ms)) {
      const dl = Number(field(data, ["deadline_monotonic", "deadline"]));
      const dt = Number(field(data, ["detected_monotonic", "detected"]));
      ms = Number.isFinite(dl) && Number.isFinite(dt) ? (dt - dl) * 1000 : NaN;
    }
    const recovery = state === "healthy" || data.kind === "recovery";
    if (recovery) ms = NaN;
    else if (Number.isFinite(ms)) latencies.push({ t: now, ms });
    const evTime = detectedWall ?? now;
    eventLog.unshift({ t: evTime, id: String(id), state, prev, ms });
    eventsSeen += 1;
    if (eventLog.length > 1000) eventLog.length = 1000;
    const key = String(id);
    let a = agents.get(key);
    if (recovery) {
      agents.delete(key);
    } else {
      if (!a) {
        // It left HEALTHY at the deadline of its first crossing.
        const since = prev === "healthy" && deadlineWall !== null ? deadlineWall
          : evTime - (Number.isFinite(ms) ? ms : 0);
        a = { id: key, since, detail: null, pending: false };
        agents.set(key, a);
      }
      a.state = state;
      a.touched = now;
    }
    scheduleRender();
    if (panelId === key) renderPanel();
  }

  function addNote(text) {
    eventLog.unshift({ t: Date.now(), note: text });
    scheduleRender();
  }

  async function streamEvents() {
    let backoff = 1000;
    for (;;) {
      try {
        if (asking) await asking;
        const res = await fetch("/v1/events", {
          headers: headers({ Accept: "text/event-stream" }), cache: "no-store",
        });
        if (res.status === 401) {
          await askToken();
          continue;
        }
        if (!res.ok || !res.body) throw new HttpError(res.status, "");
        setConn("live", "live");
        backoff = 1000;
        await readSse(res.body.getReader());
        setConn("wait", "reconnecting…");
      } catch (err) {
        setConn(err instanceof HttpError ? "down" : "wait",
          err instanceof HttpError ? "events: " + err.message : "reconnecting…");
      }
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  // The text/event-stream format: "field: value" lines, an empty line ends an event.
  async function readSse(reader) {
    const decoder = new TextDecoder();
    let buf = "";
    let name = "message";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) {
            const text = data.join("\n");
            let parsed;
            try { parsed = JSON.parse(text); } catch (e) { parsed = { message: text }; }
            onEvent(name, parsed);
          }
          name = "message";
          data = [];
          continue;
        }
        if (line[0] === ":") continue;
        const colon = line.indexOf(":");
        const key = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val[0] === " ") val = val.slice(1);
        if (key === "event") name = val;
        else if (key === "data") data.push(val);
      }
    }
  }

  // -- the "not healthy" list ---------------------------------------------------------------------------
  async function fetchDetail(a) {
    a.pending = true;
    try {
      const d = await api("/v1/agents/" + encodeURIComponent(a.id));
      a.detail = d;
      a.fetchedAt = Date.now();
      if (d.state && !(a.touched > a.fetchedAt)) a.state = d.state;
      const last = wallMs(d.last_heartbeat);
      if (last !== null && Number.isFinite(Number(d.interval_ms))) {
        a.since = last + Number(d.interval_ms);
      }
    } catch (err) {
      if (err instanceof HttpError && err.status === 404) agents.delete(a.id);
    } finally {
      a.pending = false;
    }
  }

  async function pollList() {
    for (;;) {
      try {
        const started = Date.now();
        const res = await api("/v1/agents?min_state=degraded&limit=" + LIST_LIMIT);
        const ids = (res.agents || []).map((x) => String(typeof x === "object" ? x.id : x));
        const listed = new Set(ids);
        for (const [id, a] of agents) {
          if (!listed.has(id) && !(a.touched >= started)) agents.delete(id);
        }
        for (const id of ids) {
          if (!agents.has(id)) agents.set(id, { id, state: "degraded", since: Date.now(),
            detail: null, pending: false, touched: 0 });
        }
        const todo = [...agents.values()].filter((a) => !a.detail && !a.pending);
        const workers = [];
        for (let k = 0; k < 6; k++) {
          workers.push((async () => {
            while (todo.length) await fetchDetail(todo.shift());
          })());
        }
        scheduleRender();
        await Promise.all(workers);
        scheduleRender();
      } catch (err) {
        // pollStats shows the connection state.
      }
      await sleep(LIST_MS);
    }
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      renderTable();
      renderEvents();
      renderLatency();
      drawLatency();
    });
  }

  function silentFor(a) {
    const d = a.detail;
    if (d && Number.isFinite(Number(d.elapsed_ms)) && a.fetchedAt) {
      return Number(d.elapsed_ms) + (Date.now() - a.fetchedAt);
    }
    return NaN;
  }

  function renderTable() {
    const rows = [...agents.values()].filter((a) => a.state !== "healthy");
    rows.sort((a, b) => SEVERITY[b.state] - SEVERITY[a.state] || a.since - b.since
      || (a.id < b.id ? -1 : 1));
    const shown = rows.slice(0, LIST_LIMIT);
    const tbody = document.querySelector("#unhealthy-table tbody");
    const now = Date.now();
    const frag = document.createDocumentFragment();
    for (const a of shown) {
      const tr = document.createElement("tr");
      tr.dataset.agent = a.id;
      tr.dataset.state = a.state;
      const cells = [];
      const td = () => { const c = document.createElement("td"); cells.push(c); tr.appendChild(c); return c; };
      const c0 = td(); c0.className = "agent"; c0.appendChild(agentLink(a.id));
      td().appendChild(badge(a.state));
      const c2 = td();
      c2.textContent = fmtClock(a.since) + "  (" + fmtDuration(now - a.since) + " ago)";
      td().textContent = fmtDuration(silentFor(a));
      const c4 = td(); c4.className = "num";
      c4.textContent = a.detail && a.detail.interval_ms != null
        ? nf.format(a.detail.interval_ms) + " ms" : "–";
      const c5 = td(); c5.className = "num";
      c5.textContent = a.detail && a.detail.failure_threshold != null
        ? String(a.detail.failure_threshold) : "–";
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
    $("unhealthy-empty").hidden = shown.length > 0;
    const c = lastCounts;
    const total = c ? c.degraded + c.critical + c.failed : rows.length;
    $("unhealthy-summary").textContent = !shown.length ? ""
      : shown.length === LIST_LIMIT && total > LIST_LIMIT
        ? "the worst " + nf.format(LIST_LIMIT) + " of " + nf.format(total) + " agents"
        : nf.format(shown.length) + (shown.length === 1 ? " agent" : " agents");
  }

  function renderEvents() {
    const list = $("events");
    const frag = document.createDocumentFragment();
    for (const e of eventLog.slice(0, MAX_EVENTS)) {
      const li = document.createElement("li");
      if (e.note) {
        li.innerHTML = "<span class='note'></span>";
        li.firstChild.textContent = fmtClock(e.t) + "  " + e.note;
        frag.appendChild(li);
        continue;
      }
      const t = document.createElement("span"); t.className = "t"; t.textContent = fmtClock(e.t);
      const who = document.createElement("span"); who.className = "who";
      who.appendChild(agentLink(e.id));
      const arrow = document.createElement("span"); arrow.className = "arrow";
      arrow.textContent = " → ";
      who.appendChild(arrow);
      who.appendChild(badge(e.state));
      const lat = document.createElement("span"); lat.className = "lat";
      lat.textContent = Number.isFinite(e.ms) ? "+" + fmtMs(e.ms) + " ms" : "";
      lat.title = "detected − deadline";
      li.append(t, who, lat);
      frag.appendChild(li);
    }
    list.replaceChildren(frag);
    $("events-empty").hidden = eventLog.length > 0;
    $("events-count").textContent = eventsSeen ? nf.format(eventsSeen) + " since this page opened"
      : "";
  }

  // -- the agent panel (#agent=<id>) ---------------------------------------------------------------------
  let panelTimer = null;
  let panelData = null;

  function hashAgent() {
    const m = /^#agent=(.+)$/.exec(location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  }

  async function openPanel() {
    panelId = hashAgent();
    clearTimeout(panelTimer);
    if (panelId === null) {
      $("agent-panel").hidden = true;
      return;
    }
    $("agent-panel").hidden = false;
    $("agent-title").textContent = panelId;
    const id = panelId;
    try {
      const [detail, history] = await Promise.all([
        api("/v1/agents/" + encodeURIComponent(id)),
        api("/v1/agents/" + encodeURIComponent(id) + "/history").catch(() => null),
      ]);
      if (id !== panelId) return;
      panelData = { detail, history, at: Date.now(), error: null };
    } catch (err) {
      if (id !== panelId) return;
      panelData = { detail: null, history: null, at: Date.now(),
        error: err instanceof HttpError && err.status === 404 ? "No such agent." : String(err) };
    }
    renderPanel();
    panelTimer = setTimeout(openPanel, 2000);
  }

  function historyTimes(h) {
    if (!h) return [];
    const arr = Array.isArray(h) ? h : field(h, ["history", "heartbeats", "timestamps", "records"]) || [];
    return arr.map((x) => (typeof x === "object" && x !== null ? field(x, ["timestamp", "t", "time"]) : x))
      .map(wallMs).filter((t) => t !== null);
  }

  function renderPanel() {
    const body = $("agent-body");
    body.replaceChildren();
    if (!panelData) { body.textContent = "Loading…"; return; }
    if (panelData.error) {
      const p = document.createElement("p"); p.className = "error"; p.textContent = panelData.error;
      body.appendChild(p);
      return;
    }
    const d = panelData.detail;
    const dl = document.createElement("dl"); dl.className = "facts";
    const fact = (k, v) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd");
      if (v instanceof Node) dd.appendChild(v); else dd.textContent = v;
      dl.append(dt, dd);
    };
    const last = wallMs(d.last_heartbeat);
    const elapsed = Number(d.elapsed_ms) + (Date.now() - panelData.at);
    fact("State", badge(d.state || "healthy"));
    fact("Interval", d.interval_ms != null ? nf.format(d.interval_ms) + " ms" : "–");
    fact("Failure threshold", d.failure_threshold != null ? String(d.failure_threshold) : "–");
    fact("Last heartbeat", last === null ? "never" : new Date(last).toLocaleString("en-GB"));
    fact("Silent for", Number.isFinite(elapsed) ? fmtDuration(elapsed) : "–");
    const a = agents.get(String(d.id ?? panelId));
    if (a && a.state !== "healthy") fact("Unhealthy since", fmtClock(a.since));
    body.appendChild(dl);

    const times = historyTimes(panelData.history);
    const h3 = document.createElement("h3");
    h3.textContent = "Heartbeat history (" + nf.format(times.length) + ")";
    body.appendChild(h3);
    if (times.length > 1) {
      const canvas = document.createElement("canvas");
      canvas.className = "chart"; canvas.setAttribute("height", "90");
      body.appendChild(canvas);
      requestAnimationFrame(() => drawGaps(canvas, times, Number(d.interval_ms)));
    }
    if (times.length) {
      const table = document.createElement("table");
      table.innerHTML = "<thead><tr><th>Heartbeat</th><th class='num'>Gap</th></tr></thead>";
      const tb = document.createElement("tbody");
      const recent = times.slice(-15).reverse();
      recent.forEach((t, i) => {
        const tr = document.createElement("tr");
        const c1 = document.createElement("td"); c1.textContent = fmtClockMs(t);
        const c2 = document.createElement("td"); c2.className = "num";
        const prevT = times[times.length - 2 - i];
        c2.textContent = prevT !== undefined ? fmtDuration(t - prevT) : "";
        if (prevT !== undefined && t - prevT > Number(d.interval_ms)) c2.style.color = colour("degraded");
        tr.append(c1, c2);
        tb.appendChild(tr);
      });
      table.appendChild(tb);
      body.appendChild(table);
    } else {
      const p = document.createElement("p"); p.className = "muted"; p.textContent = "No heartbeat recorded.";
      body.appendChild(p);
    }
    const mine = eventLog.filter((e) => e.id === String(d.id ?? panelId)).slice(0, 20);
    const h3e = document.createElement("h3");
    h3e.textContent = "Transitions seen by this page (" + mine.length + ")";
    body.appendChild(h3e);
    const ol = document.createElement("ol"); ol.className = "events";
    for (const e of mine) {
      const li = document.createElement("li");
      const t = document.createElement("span"); t.className = "t"; t.textContent = fmtClock(e.t);
      const who = document.createElement("span"); who.className = "who";
      if (e.prev) { who.appendChild(badge(String(e.prev))); who.append(" → "); }
      who.appendChild(badge(e.state));
      const lat = document.createElement("span"); lat.className = "lat";
      lat.textContent = Number.isFinite(e.ms) ? "+" + fmtMs(e.ms) + " ms" : "";
      li.append(t, who, lat);
      ol.appendChild(li);
    }
    body.appendChild(ol);
  }

  function drawGaps(canvas, times, interval) {
    const { ctx, w, h } = prepare(canvas);
    const gaps = [];
    for (let i = 1; i < times.length; i++) gaps.push(times[i] - times[i - 1]);
    const top = Math.max(...gaps, Number.isFinite(interval) ? interval * 1.2 : 0, 1);
    const L = 4, R = 4, T = 6, B = 6;
    const bw = (w - L - R) / gaps.length;
    gaps.forEach((g, i) => {
      const bh = (g / top) * (h - T - B);
      ctx.fillStyle = Number.isFinite(interval) && g > interval ? colour("degraded") : colour("link");
      ctx.globalAlpha = 0.8;
      ctx.fillRect(L + i * bw + 0.5, h - B - bh, Math.max(1, bw - 1), bh);
    });
    ctx.globalAlpha = 1;
    if (Number.isFinite(interval)) {
      const yy = h - B - (interval / top) * (h - T - B);
      ctx.strokeStyle = colour("muted");
      ctx.setLineDash([4, 3]);
      ctx.beginPath(); ctx.moveTo(L, yy); ctx.lineTo(w - R, yy); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = colour("muted");
      ctx.font = "11px " + colour("sans");
      ctx.fillText("interval", L + 2, yy - 4);
    }
  }

  // -- start ---------------------------------------------------------------------------------------------
  $("token-forget").hidden = !token;
  $("token-forget").onclick = () => {
    localStorage.removeItem(TOKEN_KEY);
    location.reload();
  };
  window.addEventListener("hashchange", openPanel);
  window.addEventListener("resize", () => { drawStates(); drawRate(); drawLatency(); });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && panelId !== null) location.hash = "";
  });
  setInterval(() => { renderTable(); renderLatency(); drawLatency(); }, 1000);
  drawStates(); drawRate(); drawLatency();
  renderTable(); renderEvents();
  pollStats();
  pollList();
  streamEvents();
  openPanel();
})();
