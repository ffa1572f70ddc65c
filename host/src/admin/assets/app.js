// Switchyard dashboard. One Server-Sent Events stream (/api/stream) delivers a snapshot of
// the last five minutes, then one aggregated update per second; everything below redraws
// once per update, never per request, so the page costs the same at 500 and at 20k req/s.
// All text from the server goes through textContent (policy names are not trusted HTML).
(() => {
  'use strict';

  const WINDOW_S = 300;        // seconds of history on the charts
  const SHARE_S = 60;          // window of the share bars and the error-rate tile
  const ROWS = 20;             // latest requests shown
  const EVENTS = 50;           // events listed
  const COLORS = ['#2563eb', '#16a34a', '#db2777', '#9333ea', '#ea580c', '#0891b2', '#65a30d', '#b91c1c'];
  const MARKER_COLORS = { swap: '#2563eb', failed_swap: '#d97706', fault: '#dc2626', disabled: '#7c3aed' };

  const token = new URLSearchParams(location.search).get('token');
  /** A same-origin URL carrying the admin token, if the page was opened with one. */
  function withToken(path) {
    const u = new URL(path, location.href);
    if (token) u.searchParams.set('token', token);
    return u.toString();
  }

  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  const fmt = (v, digits = 1) => (v === null || v === undefined || !isFinite(v) ? '–' : v.toFixed(digits));
  const pct = (v) => (isFinite(v) ? (v * 100).toFixed(v < 0.1 ? 2 : 1) + '%' : '–');
  const clock = (unix, ms = false) => {
    const d = new Date(unix * 1000);
    const hms = d.toLocaleTimeString('en-GB', { hour12: false });
    return ms ? hms + '.' + String(d.getMilliseconds()).padStart(3, '0') : hms;
  };
  const color = (i) => COLORS[i % COLORS.length];

  /** Everything the page knows, merged from the stream. */
  const model = {
    now: Date.now() / 1000,
    state: null,
    ids: [],
    seconds: [],
    markers: [],
    rows: [],
    conns: [],
    lastUnix: 0,
    lastMarker: 0,
    lastRow: 0,
    lastConnAt: 0,
  };

  /** For tests and the curious: what the charts and tables currently hold. */
  const dash = (window.__dashboard = {
    ticks: 0,
    snapshots: 0,
    backends: [],
    latencyPoints: {},
    share: {},
    rows: 0,
    scoredRows: 0,
    markers: [],
    markersDrawn: 0,
    routingMode: null,
    policyFile: null,
    swaps: [],
    connected: false,
  });

  // ---- charts ---------------------------------------------------------------------

  let charts = null;

  /** The last five minutes, or less while there is less history (at least a minute). */
  function xRange() {
    const first = model.seconds.length ? model.seconds[0].unix : model.now;
    const span = Math.min(WINDOW_S, Math.max(60, model.now - first + 5));
    return [model.now - span, model.now];
  }

  /** Draws a vertical line per marker inside the plot, labelled, coloured by kind. */
  function markersPlugin() {
    return {
      hooks: {
        draw: [
          (u) => {
            const { left, top, width, height } = u.bbox;
            const dpr = window.devicePixelRatio || 1;
            const ctx = u.ctx;
            let drawn = 0;
            ctx.save();
            ctx.font = `${11 * dpr}px system-ui, sans-serif`;
            for (const m of model.markers) {
              const x = Math.round(u.valToPos(m.at, 'x', true));
              if (!(x >= left && x <= left + width)) continue;
              const c = MARKER_COLORS[m.kind] || '#555';
              ctx.strokeStyle = c;
              ctx.fillStyle = c;
              ctx.lineWidth = 2 * dpr;
              ctx.setLineDash(m.kind === 'swap' ? [] : [5 * dpr, 3 * dpr]);
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, top + height);
              ctx.stroke();
              const label = m.label;
              const w = ctx.measureText(label).width;
              const lx = x + 4 * dpr + w > left + width ? x - 4 * dpr - w : x + 4 * dpr;
              ctx.fillText(label, lx, top + (12 + (drawn % 4) * 13) * dpr);
              drawn++;
            }
            ctx.restore();
            dash.markersDrawn = drawn;
          },
        ],
      },
    };
  }

  function size(elem, height) {
    return { width: Math.max(300, elem.clientWidth), height };
  }

  function makeCharts() {
    const latencyEl = $('chart-latency');
    const rpsEl = $('chart-rps');
    const connsEl = $('chart-conns');
    for (const e of [latencyEl, rpsEl, connsEl]) e.textContent = '';
    // Auto scale whose range ignores the data: the window always ends now and scrolls.
    const x = { time: true, range: () => xRange() };
    const ms = { label: 'ms', size: 56 };
    // One clock time per tick, spaced so labels never overlap on narrow charts (uPlot's
    // default adds a date line under the first tick, which collided with its neighbours).
    const two = (n) => String(n).padStart(2, '0');
    const clock = (t) => { const d = new Date(t * 1000); return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`; };
    const time = { space: 72, values: (u, splits) => splits.map(clock) };
    const series = [{}];
    model.ids.forEach((id, i) => {
      series.push({ label: `${id} mean`, stroke: color(i), width: 2, spanGaps: false, value: (u, v) => fmt(v) + ' ms' });
    });
    model.ids.forEach((id, i) => {
      series.push({ label: `${id} p95`, stroke: color(i), width: 1, dash: [4, 4], alpha: 0.6, spanGaps: false, value: (u, v) => fmt(v) + ' ms' });
    });
    const latency = new uPlot(
      {
        ...size(latencyEl, 280),
        scales: { x, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
        axes: [time, ms],
        series,
        plugins: [markersPlugin()],
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
      },
      emptyData(series.length),
      latencyEl,
    );
    const rpsSeries = [
      {},
      { label: 'req/s', stroke: '#111827', width: 2, fill: 'rgba(37,99,235,0.08)' },
      { label: 'errors/s', stroke: '#dc2626', width: 1.5 },
    ];
    const rps = new uPlot(
      {
        ...size(rpsEl, 180),
        scales: { x, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
        axes: [time, { size: 56 }],
        series: rpsSeries,
        cursor: { drag: { x: false, y: false } },
      },
      emptyData(rpsSeries.length),
      rpsEl,
    );
    const connSeries = [
      {},
      { label: 'opened/s', stroke: '#ea580c', width: 2 },
      { label: 'reused/s', stroke: '#16a34a', width: 2 },
    ];
    const conns = new uPlot(
      {
        ...size(connsEl, 180),
        scales: { x, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
        axes: [time, { size: 56 }],
        series: connSeries,
        cursor: { drag: { x: false, y: false } },
      },
      emptyData(connSeries.length),
      connsEl,
    );
    charts = { latency, rps, conns };
  }

  function emptyData(n) {
    return Array.from({ length: n }, () => []);
  }

  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (!charts) return;
      charts.latency.setSize(size($('chart-latency'), 280));
      charts.rps.setSize(size($('chart-rps'), 180));
      charts.conns.setSize(size($('chart-conns'), 180));
    }, 150);
  });

  // ---- merging updates ------------------------------------------------------------

  function apply(u) {
    if (u.kind === 'snapshot') {
      model.seconds = [];
      model.markers = [];
      model.rows = [];
      model.conns = [];
      model.lastUnix = model.lastMarker = model.lastRow = model.lastConnAt = 0;
      dash.snapshots++;
    } else {
      dash.ticks++;
    }
    model.now = u.now;
    model.state = u.state;
    const ids = u.state.backends.map((b) => b.id);
    if (!charts || ids.join('\u0000') !== model.ids.join('\u0000')) {
      model.ids = ids;
      makeCharts();
      makeShare();
      makeLatestHead(true);
    }
    for (const s of u.seconds) {
      if (s.unix > model.lastUnix) {
        // Idle seconds have no summary: fill them so lines break instead of bridging.
        if (model.lastUnix) {
          for (let t = Math.max(model.lastUnix + 1, s.unix - WINDOW_S); t < s.unix; t++) {
            model.seconds.push({ unix: t, requests: 0, errors: 0, faults: 0, reused: 0, backends: [] });
          }
        }
        model.seconds.push(s);
        model.lastUnix = s.unix;
      }
    }
    const from = model.now - WINDOW_S;
    trim(model.seconds, (s) => s.unix >= from);
    for (const m of u.markers) {
      if (m.id > model.lastMarker) {
        model.markers.push(m);
        model.lastMarker = m.id;
      }
    }
    trim(model.markers, (m) => m.at >= from - WINDOW_S);
    for (const r of u.recent) {
      if (r.id > model.lastRow) {
        model.rows.push(r);
        model.lastRow = r.id;
      }
    }
    if (model.rows.length > ROWS) model.rows.splice(0, model.rows.length - ROWS);
    for (const c of u.conns) {
      if (c.at > model.lastConnAt) {
        model.conns.push(c);
        model.lastConnAt = c.at;
      }
    }
    trim(model.conns, (c) => c.at >= from);
    render();
  }

  /** Drops leading items that fail `keep` (arrays are in time order). */
  function trim(arr, keep) {
    let n = 0;
    while (n < arr.length && !keep(arr[n])) n++;
    if (n) arr.splice(0, n);
  }

  // ---- rendering (once per update) -------------------------------------------------

  function render() {
    const st = model.state;
    renderHeader(st);
    renderTiles(st);
    renderCharts();
    renderShare(st);
    renderConns(st);
    renderLatest(st);
    renderMarkers();
  }

  function renderHeader(st) {
    $('listen').textContent = st.listen;
    $('upstream').textContent = st.upstream_protocol === 'h2c' ? st.upstream + ' (h2c)' : st.upstream;
    $('routing-mode').textContent = st.policy.routing_mode;
    $('version').textContent = st.version;
    dash.routingMode = st.policy.routing_mode;
    dash.policyFile = st.policy.file;
    dash.backends = model.ids.slice();
    document.title = `Switchyard · ${st.policy.routing_mode}`;
  }

  function lastSecond() {
    return model.seconds.length ? model.seconds[model.seconds.length - 1] : null;
  }

  function renderTiles(st) {
    const s = lastSecond();
    const fresh = s && model.now - s.unix < 3;
    const t = st.totals;
    $('t-rps').textContent = fresh ? String(s.requests) : '0';
    $('t-rps-s').textContent = `${t.requests.toLocaleString('en-US')} since start`;
    $('t-mean').textContent = fresh && s.requests ? fmt(s.mean_ms) + ' ms' : '–';
    $('t-mean-s').textContent = `since start ${fmt(t.mean_ms)} ms`;
    $('t-p95').textContent = fresh && s.requests ? fmt(s.p95_ms) + ' ms' : '–';
    $('t-p95-s').textContent = `since start ${fmt(t.p95_ms)} ms · p99 ${fmt(t.p99_ms)} ms`;
    const recent = model.seconds.filter((x) => x.unix > model.now - SHARE_S);
    const req = recent.reduce((a, x) => a + x.requests, 0);
    const err = recent.reduce((a, x) => a + x.errors, 0);
    $('t-err').textContent = req ? pct(err / req) : '–';
    $('t-err').classList.toggle('bad', err > 0);
    $('t-err-s').textContent = `last ${SHARE_S} s · since start ${pct(t.error_rate)} (${t.errors})`;
    const p = st.policy;
    $('t-policy').textContent = p.name;
    const faults = Object.values(st.counters.faults).reduce((a, b) => a + b, 0);
    const state = p.disabled ? 'DISABLED (host round-robin)' : p.live ? `gen ${p.generation}` : 'rebuilding';
    $('t-policy-s').textContent = `${state} · loaded ${clock(p.loaded_at)} · ${st.counters.swaps} swaps · ${faults} faults · ${fmt(st.counters.mean_call_us, 2)} µs/call`;
  }

  function renderCharts() {
    const xs = model.seconds.map((s) => s.unix);
    const lat = [xs];
    model.ids.forEach((id, i) => lat.push(model.seconds.map((s) => (s.backends[i] ? s.backends[i].mean_ms : null))));
    model.ids.forEach((id, i) => lat.push(model.seconds.map((s) => (s.backends[i] ? s.backends[i].p95_ms : null))));
    charts.latency.setData(lat);
    charts.rps.setData([xs, model.seconds.map((s) => s.requests), model.seconds.map((s) => s.errors)]);
    charts.conns.setData([model.conns.map((c) => c.at), model.conns.map((c) => c.opened), model.conns.map((c) => c.reused)]);
    const points = {};
    model.ids.forEach((id, i) => {
      points[id] = lat[1 + i].filter((v) => v !== null && v !== undefined).length;
    });
    dash.latencyPoints = points;
    dash.markers = model.markers.map((m) => ({ kind: m.kind, label: m.label, at: m.at }));
  }

  let shareRows = [];
  function makeShare() {
    const box = $('share');
    box.textContent = '';
    shareRows = model.ids.map((id, i) => {
      const row = el('div', null, 'row');
      const name = el('span');
      const sw = el('span', null, 'swatch');
      sw.style.background = color(i);
      name.append(sw, document.createTextNode(id));
      const bar = el('div', null, 'bar');
      const fill = el('div', null, 'fill');
      fill.style.background = color(i);
      bar.append(fill);
      const label = el('span', '–', 'pct');
      row.append(name, bar, label);
      box.append(row);
      return { fill, label };
    });
  }

  function renderShare(st) {
    const recent = model.seconds.filter((x) => x.unix > model.now - SHARE_S);
    const total = recent.reduce((a, x) => a + x.requests, 0);
    const share = {};
    model.ids.forEach((id, i) => {
      const n = recent.reduce((a, x) => a + (x.backends[i] ? x.backends[i].requests : 0), 0);
      const s = total ? n / total : 0;
      share[id] = s;
      const r = shareRows[i];
      if (!r) return;
      r.fill.style.width = (s * 100).toFixed(1) + '%';
      const all = st.backends[i] ? st.backends[i].share : 0;
      r.label.textContent = `${(s * 100).toFixed(1)}% · ${(all * 100).toFixed(0)}%`;
    });
    dash.share = share;
  }

  function renderConns(st) {
    const body = $('conns-body');
    const rows = st.backends.map((b, i) => {
      const tr = el('tr');
      const name = el('td');
      const sw = el('span', null, 'swatch');
      sw.style.background = color(i);
      name.append(sw, document.createTextNode(b.id));
      const c = b.connections;
      const uses = c.opened + c.reused;
      tr.append(
        name,
        el('td', c.opened.toLocaleString('en-US')),
        el('td', c.reused.toLocaleString('en-US')),
        el('td', uses ? pct(c.reused / uses) : '–'),
        el('td', String(c.failed_connects)),
      );
      return tr;
    });
    body.replaceChildren(...rows);
  }

  let latestHeadKey = '';
  function makeLatestHead(force) {
    const st = model.state;
    const label = st && st.policy.scores ? st.policy.scores.label : '';
    const key = label + '|' + model.ids.join(',');
    if (!force && key === latestHeadKey) return;
    latestHeadKey = key;
    const tr = el('tr');
    for (const h of ['time', 'backend', 'latency ms', 'status', 'routing_mode']) tr.append(el('th', h));
    for (const id of model.ids) tr.append(el('th', `${label || 'score'} ${id}`));
    $('latest-head').replaceChildren(tr);
  }

  function renderLatest() {
    makeLatestHead(false);
    let scored = 0;
    const rows = model.rows
      .slice()
      .reverse()
      .map((r) => {
        const tr = el('tr');
        const bad = r.status >= 500 || r.outcome !== 'response';
        tr.append(
          el('td', clock(r.at, true)),
          el('td', r.backend),
          el('td', fmt(r.latency_ms, 2)),
          el('td', bad && r.outcome !== 'response' ? `${r.status} ${r.outcome}` : String(r.status), bad ? 'bad' : ''),
          el('td', r.routing_mode, 'rm'),
        );
        const vals = r.scores || [];
        const present = vals.filter((v) => v !== null && v !== undefined);
        const best = present.length ? Math.min(...present) : null;
        if (present.length) scored++;
        model.ids.forEach((id, i) => {
          const v = vals[i];
          tr.append(el('td', fmt(v, 2), v !== null && v !== undefined && v === best ? 'best' : ''));
        });
        return tr;
      });
    $('latest-body').replaceChildren(...rows);
    dash.rows = rows.length;
    dash.scoredRows = scored;
  }

  function renderMarkers() {
    const items = model.markers
      .slice(-EVENTS)
      .reverse()
      .map((m) => {
        const li = el('li');
        li.append(el('span', clock(m.at), 't'), el('span', m.label, m.kind));
        return li;
      });
    $('markers').replaceChildren(...items);
  }

  // ---- the stream -----------------------------------------------------------------

  function connect() {
    const es = new EventSource(withToken('api/stream'));
    es.onopen = () => {
      dash.connected = true;
      $('conn').textContent = 'live';
      $('conn').className = 'pill on';
    };
    es.onerror = () => {
      dash.connected = false;
      $('conn').textContent = 'reconnecting…';
      $('conn').className = 'pill off';
    };
    es.onmessage = (ev) => {
      try {
        apply(JSON.parse(ev.data));
      } catch (e) {
        console.error('bad update', e);
      }
    };
  }

  // ---- policy selector --------------------------------------------------------------

  async function loadPolicies() {
    try {
      const r = await fetch(withToken('api/policies'), { cache: 'no-store' });
      if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
      const list = await r.json();
      const sel = $('policy-select');
      sel.replaceChildren(
        ...list.files.map((f) => {
          const o = el('option', f);
          o.value = f;
          if (f === list.current) o.selected = true;
          return o;
        }),
      );
      sel.title = `.wasm files in ${list.folder}`;
    } catch (e) {
      message(`cannot list policies: ${e.message}`, true);
    }
  }

  function message(text, bad) {
    const m = $('policy-msg');
    m.textContent = text;
    m.className = bad ? 'msg bad' : 'msg';
  }

  $('policy-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const file = $('policy-select').value;
    if (!file) return;
    const button = $('policy-swap');
    button.disabled = true;
    message(`loading ${file}…`, false);
    try {
      const r = await fetch(withToken('api/policy'), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ file }),
      });
      const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
      dash.swaps.push({ file, status: r.status, ...body });
      if (r.ok && body.ok) {
        message(`${body.from} → ${body.to} in ${fmt(body.took_ms)} ms`, false);
      } else {
        message(body.error || `HTTP ${r.status}`, true);
      }
    } catch (e) {
      message(`swap failed: ${e.message}`, true);
    } finally {
      button.disabled = false;
      loadPolicies();
    }
  });

  $('metrics-link').href = withToken('metrics');
  $('state-link').href = withToken('api/state');
  loadPolicies();
  connect();
})();
