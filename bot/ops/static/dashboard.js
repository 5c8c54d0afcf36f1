// spx-bot dashboard: one EventSource on /events; every frame re-renders the figures from the
// daemon's status (the same dict `spx-bot status --json` prints) and appends the new chart points.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { vix: [], equity: [], events: [], meta: {}, charts: {} };
  const MAX_POINTS = 5000, MAX_EVENTS = 200;
  const SKIP = ["seq", "event", "timestamp", "level", "logger", "logger_name"];

  const num = (v) => (v === null || v === undefined || v === "" || isNaN(Number(v))) ? null : Number(v);
  function money(v) {
    const n = num(v);
    if (n === null) return "–";
    return (n < 0 ? "-" : "") + "$" + Math.abs(n).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }
  function fixed(v, d) { const n = num(v); return n === null ? "–" : n.toFixed(d); }
  function signed(el, v) { const n = num(v); el.classList.toggle("pos", n !== null && n > 0); el.classList.toggle("neg", n !== null && n < 0); }
  function setText(id, text) { const el = $(id); if (el.textContent !== text) el.textContent = text; return el; }
  function setMoney(id, v, colour) { const el = setText(id, money(v)); el.dataset.value = v === null || v === undefined ? "" : String(v); if (colour) signed(el, v); }
  function age(s) { const n = num(s); if (n === null) return "–"; return n < 120 ? n.toFixed(0) + " s" : (n / 60).toFixed(1) + " min"; }
  function cell(text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; }
  function rows(tbody, items, build) {
    tbody.replaceChildren(...items.map((it) => { const tr = document.createElement("tr"); build(tr, it); return tr; }));
  }

  // --- charts (uPlot, served by the daemon) --------------------------------------------------
  function width(el) { return Math.max(260, el.clientWidth || 300); }
  function makeChart(id, series, height, extra) {
    const el = $(id);
    const opts = Object.assign({
      width: width(el), height: height, scales: { x: { time: true } },
      axes: [{ stroke: "#8a96a3", grid: { stroke: "#26313c" } }, { stroke: "#8a96a3", grid: { stroke: "#26313c" } }],
      series: [{}].concat(series), legend: { live: true },
    }, extra || {});
    return new uPlot(opts, [[]].concat(series.map(() => [])), el);
  }
  function shadeActivation(u) {
    const ctx = u.ctx, b = u.bbox, xs = u.data[0], act = state.vix.map((p) => p[6]);
    ctx.save();
    ctx.fillStyle = "rgba(224, 83, 61, 0.22)";
    for (let i = 0; i < xs.length; i++) {
      if (!act[i]) continue;
      const x0 = u.valToPos(xs[i], "x", true), x1 = u.valToPos(i + 1 < xs.length ? xs[i + 1] : xs[i], "x", true);
      ctx.fillRect(x0, b.top, Math.max(2, x1 - x0), b.height);
    }
    ctx.strokeStyle = "rgba(227, 167, 47, 0.5)"; ctx.setLineDash([4, 4]);
    for (const bound of (state.meta.tier_bounds || [])) {
      const y = u.valToPos(bound, "y", true);
      if (y >= b.top && y <= b.top + b.height) { ctx.beginPath(); ctx.moveTo(b.left, y); ctx.lineTo(b.left + b.width, y); ctx.stroke(); }
    }
    ctx.restore();
  }
  function initCharts() {
    const dollars = (u, vals) => vals.map((v) => v === null ? "" : Math.abs(v) >= 1e6 ? "$" + (v / 1e6).toFixed(3) + "M" : "$" + (v / 1e3).toFixed(1) + "k");
    state.charts.equity = makeChart("chart-equity", [{ label: "net liquidation", stroke: "#7fb3ff", width: 2, points: { show: true } }], 200,
      { axes: [{ stroke: "#8a96a3", grid: { stroke: "#26313c" } }, { stroke: "#8a96a3", grid: { stroke: "#26313c" }, size: 70, values: dollars }] });
    state.charts.vix = makeChart("chart-vix", [{ label: "VIX", stroke: "#e3a72f", width: 2 }], 220,
      { hooks: { drawClear: [shadeActivation] } });
    state.charts.rsi = makeChart("chart-rsi", [{ label: "RSI", stroke: "#b48ead" }], 130,
      { scales: { x: { time: true }, y: { range: [0, 100] } } });
    state.charts.macd = makeChart("chart-macd", [{ label: "MACD", stroke: "#2fb36b" }, { label: "signal", stroke: "#e0533d" }], 130);
    window.addEventListener("resize", () => {
      for (const [name, c] of Object.entries(state.charts)) c.setSize({ width: width($("chart-" + name)), height: c.height });
    });
  }
  function drawCharts() {
    const v = state.vix, e = state.equity;
    const live = e.slice();
    if (state.now && state.nl !== null && (!live.length || state.now > live[live.length - 1][0])) live.push([state.now, state.nl]);
    state.charts.equity.setData([live.map((p) => p[0]), live.map((p) => p[1])]);
    const t = v.map((p) => p[0]);
    state.charts.vix.setData([t, v.map((p) => p[1])]);
    state.charts.rsi.setData([t, v.map((p) => p[2])]);
    state.charts.macd.setData([t, v.map((p) => p[3]), v.map((p) => p[4])]);
  }

  // --- figures ---------------------------------------------------------------------------------
  function render(frame) {
    const s = frame.status || {}, h = s.health || {}, acct = s.account || {}, pnl = s.pnl || {}, d = frame.derived || {};
    setText("frame", String(frame.frame));
    setText("asof", (s.time || "").replace("T", " ").slice(0, 19) + " UTC");
    document.body.dataset.frame = String(frame.frame);
    document.body.dataset.statusTime = s.time || "";
    const conn = $("conn");
    conn.className = "light " + (h.connected ? (h.degraded ? "warn" : "on") : "off");
    conn.textContent = "broker: " + (h.connected ? (h.degraded ? "degraded" : "connected") : "disconnected");
    const halt = $("halt");
    halt.textContent = s.halted ? "HALTED" : "trading";
    halt.classList.toggle("halted", !!s.halted);
    const banner = $("halt-reason");
    banner.hidden = !s.halted;
    setText("halt-reason", s.halted ? "Kill switch engaged: " + (s.halt_reason || "(no reason)") : "");

    setText("acct-id", (acct.id || "–") + (acct.paper ? " (paper)" : ""));
    setMoney("nl", acct.net_liquidation); setMoney("cash", acct.cash);
    setMoney("pnl-today", d.pnl_today, true); setMoney("pnl-start", d.pnl_since_start, true);
    setMoney("realized", pnl.realized, true); setMoney("unrealized", pnl.unrealized, true);

    setText("connected", h.connected ? "connected" : "disconnected" + (h.broker_down_s ? " for " + age(h.broker_down_s) : ""));
    setText("maint", h.in_maintenance_window ? "inside" : "no");
    setText("tick-age", age(h.last_tick_age_s)); setText("loop-age", age(h.last_loop_age_s));
    const blocked = Object.entries(h.entries_blocked || {}).map(([k, v]) => k + ": " + v);
    setText("blocked", blocked.length ? blocked.join("; ") : (s.position_mismatch ? "position mismatch" : "no"));
    setText("healthy", h.healthy ? "healthy" : "unhealthy: " + (h.reasons || []).join("; "));
    setText("spx", fixed((s.market || {}).spx, 2));

    const condors = s.open_condors || [];
    setText("condor-count", "(" + condors.length + ")");
    rows($("condors").tBodies[0], condors, (tr, c) => {
      tr.dataset.condorId = c.condor_id;
      const up = cell(money(c.unrealized_pnl)); signed(up, c.unrealized_pnl);
      const dp = cell(fixed(c.distance_put, 2)), dc = cell(fixed(c.distance_call, 2));
      signed(dp, c.distance_put); signed(dc, c.distance_call);
      tr.append(cell(c.condor_id), cell(c.expiry), cell(String(c.quantity)), cell((c.strikes || []).join(" / ")),
        cell(fixed(c.credit, 2)), cell(money(c.value)), up, dp, dc);
    });

    const hedge = s.hedge || {}, layers = hedge.layers || {};
    setText("hedge-state", hedge.error ? "(" + hedge.error + ")" :
      "total P&L " + money(hedge.total_pnl) + (hedge.annualized_cost_pct_nl !== null && hedge.annualized_cost_pct_nl !== undefined
        ? " · cost " + fixed(hedge.annualized_cost_pct_nl, 2) + "% of NL a year" : "") + (hedge.halted ? " · HEDGE HALTED" : ""));
    rows($("hedge").tBodies[0], Object.entries(layers), (tr, [name, b]) => {
      tr.dataset.layer = name;
      const r = cell(money(b.realized_pnl)), u = cell(money(b.unrealized_pnl)); signed(r, b.realized_pnl); signed(u, b.unrealized_pnl);
      tr.append(cell(name), cell(String(b.held)), cell(String(b.short)), cell(money(b.market_value)),
        cell(money(b.premium_paid)), cell(money(b.premium_collected)), r, u);
    });

    const sig = (s.ops || {}).signal || {};
    setText("vix", fixed(sig.vix !== undefined ? sig.vix : (s.market || {}).vix, 2));
    setText("tier", hedge.tier !== undefined ? String(hedge.tier) : (sig.tier !== undefined ? String(sig.tier) : "–"));
    const active = hedge.activated !== undefined ? hedge.activated : sig.activation;
    const act = setText("activation", active ? "ACTIVATION" : "not activated"); act.classList.toggle("neg", !!active);
    setText("rsi", fixed(sig.rsi, 1)); setText("macd", fixed(sig.macd, 3)); setText("macd-signal", fixed(sig.signal_line, 3));

    const orders = s.working_order_details || (s.working_orders || []).map((r) => ({ order_ref: r }));
    setText("order-count", "(" + orders.length + ")");
    rows($("orders").tBodies[0], orders, (tr, o) => {
      tr.dataset.orderRef = o.order_ref;
      tr.append(cell(o.order_ref), cell(o.purpose || ""), cell(o.quantity === undefined ? "" : String(o.quantity)),
        cell(o.filled === undefined ? "" : String(o.filled)), cell(o.limit || "–"));
    });
  }

  function renderEvents(newEvents, reset) {
    if (reset) state.events = [];
    state.events = state.events.concat(newEvents).slice(-MAX_EVENTS);
    const ol = $("events");
    ol.replaceChildren(...state.events.slice().reverse().map((e) => {
      const li = document.createElement("li");
      li.className = "level-" + (e.level || "info");
      const rest = Object.entries(e).filter(([k, v]) => !SKIP.includes(k) && (v === null || typeof v !== "object"))
        .map(([k, v]) => k + "=" + v).join(" ");
      const line = (e.timestamp || "").slice(5, 19).replace("T", " ") + " " + e.event + " " + rest;
      li.textContent = line.length > 220 ? line.slice(0, 219) + "…" : line;
      li.title = JSON.stringify(e);
      return li;
    }));
  }

  function onFrame(frame) {
    if (frame.meta) state.meta = frame.meta;
    if (frame.kind === "snapshot") { state.vix = frame.vix || []; state.equity = frame.equity || []; }
    else { state.vix = state.vix.concat(frame.vix || []).slice(-MAX_POINTS); state.equity = state.equity.concat(frame.equity || []).slice(-MAX_POINTS); }
    const st = frame.status || {};
    state.now = st.time ? Date.parse(st.time) / 1000 : null;
    state.nl = num((st.account || {}).net_liquidation);
    render(frame);
    renderEvents(frame.events || [], frame.kind === "snapshot");
    drawCharts();
  }

  function connect() {
    const token = new URLSearchParams(location.search).get("token");
    const es = new EventSource("events" + (token ? "?token=" + encodeURIComponent(token) : ""));
    const live = $("stream");
    es.addEventListener("frame", (m) => {
      live.className = "light on"; live.textContent = "live";
      try { onFrame(JSON.parse(m.data)); } catch (err) { console.error(err); }
    });
    es.onerror = () => { live.className = "light off"; live.textContent = "live: reconnecting"; };
  }

  initCharts();
  connect();
})();
