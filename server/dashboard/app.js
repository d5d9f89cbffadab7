// c10m dashboard: polls /jmx once a second and draws the last five minutes
// with uPlot (served from this admin port). Plain browser JavaScript, no
// build step. With an admin token, /jmx gets `Authorization: Bearer <token>`;
// the token comes from the URL (#token=... is best: a fragment never reaches
// a server or its logs; ?token=... works too), the form shown on a 401, or
// this tab's sessionStorage.
'use strict';
(function () {
  const POLL_MS = 1000;
  const KEEP_POINTS = 300;
  const TOKEN_KEY = 'c10m.adminToken';
  const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

  const $ = (id) => document.getElementById(id);

  // ---- token ----------------------------------------------------------

  function initialToken() {
    const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
    const fromQuery = new URLSearchParams(location.search).get('token');
    const t = fromHash || fromQuery;
    if (t) {
      sessionStorage.setItem(TOKEN_KEY, t);
      // Keep the token out of the address bar, bookmarks and screenshots.
      const q = new URLSearchParams(location.search);
      q.delete('token');
      const rest = q.toString();
      history.replaceState(null, '', location.pathname + (rest ? '?' + rest : ''));
      return t;
    }
    return sessionStorage.getItem(TOKEN_KEY) || '';
  }
  let token = initialToken();

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token-input').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token-form').hidden = true;
    schedule(0);
  });

  // ---- formatting -----------------------------------------------------

  function fmtCount(v) {
    if (v == null || !isFinite(v)) return '–';
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2) + ' G';
    if (a >= 1e6) return (v / 1e6).toFixed(2) + ' M';
    if (a >= 1e4) return (v / 1e3).toFixed(1) + ' k';
    return a >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1);
  }
  function fmtBytes(v) {
    if (v == null || !isFinite(v)) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i === 0 ? String(Math.round(v)) : v.toFixed(1)) + ' ' + units[i];
  }
  function fmtMicros(v) {
    if (v == null || !isFinite(v)) return '–';
    if (v >= 1e6) return (v / 1e6).toFixed(2) + ' s';
    if (v >= 1e3) return (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + ' ms';
    return Math.round(v) + ' µs';
  }
  const fmtPercent = (v) => (v == null || !isFinite(v) ? '–' : v.toFixed(v < 10 ? 1 : 0) + ' %');

  // ---- charts ---------------------------------------------------------

  /** A uPlot chart plus the columns it draws (x in unix seconds). */
  function makeChart(elId, title, series, options) {
    const el = $(elId);
    const columns = [[]].concat(series.map(() => []));
    const opts = Object.assign(
      {
        title,
        width: Math.max(300, el.clientWidth - 12),
        height: 220,
        scales: { x: { time: true } },
        series: [{}].concat(series.map((s, i) => Object.assign({ stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false, points: { show: false } }, s))),
        axes: [{}, { size: 70, values: (u, splits) => splits.map(series[0].fmt || fmtCount) }],
        legend: { live: true },
      },
      options || {},
    );
    const plot = new uPlot(opts, columns, el);
    return { el, plot, columns };
  }

  function push(chart, t, values) {
    const c = chart.columns;
    c[0].push(t);
    for (let i = 0; i < values.length; i++) c[i + 1].push(values[i]);
    if (c[0].length > KEEP_POINTS) for (const col of c) col.shift();
    chart.plot.setData(c);
  }

  const charts = {
    sessions: makeChart('chart-sessions', 'Connected sessions', [{ label: 'sessions', fill: 'rgba(31,119,180,0.08)', value: (u, v) => fmtCount(v) }]),
    messages: makeChart(
      'chart-messages',
      'Messages per second',
      [
        { label: 'in/s (publishes)', scale: 'in', value: (u, v) => fmtCount(v) },
        { label: 'out/s (frames to subscribers)', scale: 'out', value: (u, v) => fmtCount(v) },
      ],
      {
        scales: { x: { time: true }, in: {}, out: {} },
        axes: [{}, { scale: 'in', size: 70, values: (u, s) => s.map(fmtCount) }, { scale: 'out', side: 1, size: 70, grid: { show: false }, values: (u, s) => s.map(fmtCount) }],
      },
    ),
    latency: makeChart(
      'chart-latency',
      'Publish-to-write latency (≤, window)',
      [
        { label: 'p50', scale: 'us', value: (u, v) => fmtMicros(v) },
        { label: 'p90', scale: 'us', value: (u, v) => fmtMicros(v) },
        { label: 'p99', scale: 'us', value: (u, v) => fmtMicros(v) },
        { label: 'p99.9', scale: 'us', value: (u, v) => fmtMicros(v) },
      ],
      {
        scales: { x: { time: true }, us: { distr: 3 } },
        axes: [{}, { scale: 'us', size: 70, values: (u, s) => s.map(fmtMicros) }],
      },
    ),
    memory: makeChart(
      'chart-memory',
      'Memory',
      [
        { label: 'RSS (process)', value: (u, v) => fmtBytes(v) },
        { label: 'heap (main thread)', value: (u, v) => fmtBytes(v) },
        { label: 'heap (workgroups)', value: (u, v) => fmtBytes(v) },
      ],
      { axes: [{}, { size: 70, values: (u, s) => s.map(fmtBytes) }] },
    ),
  };
  // CPU and per-workgroup load depend on the number of workgroups: built on the first answer.
  let workgroupCount = -1;

  function buildWorkgroupCharts(n) {
    for (const id of ['chart-cpu', 'chart-workgroups']) {
      const el = $(id);
      if (charts[id]) charts[id].plot.destroy();
      el.textContent = '';
    }
    const cpuSeries = [{ label: 'process CPU', value: (u, v) => fmtPercent(v) }];
    for (let i = 0; i < n; i++) cpuSeries.push({ label: 'wg ' + i + ' loop busy', dash: [6, 4], value: (u, v) => fmtPercent(v) });
    charts['chart-cpu'] = makeChart('chart-cpu', 'CPU and workgroup event-loop use (%)', cpuSeries, {
      axes: [{}, { size: 70, values: (u, s) => s.map(fmtPercent) }],
    });
    const wgSeries = [];
    for (let i = 0; i < n; i++) wgSeries.push({ label: 'wg ' + i + ' out/s', value: (u, v) => fmtCount(v) });
    charts['chart-workgroups'] = makeChart('chart-workgroups', 'Per-workgroup frames out per second', wgSeries);
    workgroupCount = n;
  }

  window.addEventListener('resize', () => {
    for (const c of Object.values(charts)) c.plot.setSize({ width: Math.max(300, c.el.clientWidth - 12), height: 220 });
  });

  // ---- figures --------------------------------------------------------

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }

  function update(doc) {
    const t = doc.Timestamp / 1000;
    const wgs = doc.Workgroups || [];
    if (wgs.length !== workgroupCount) buildWorkgroupCharts(wgs.length);

    setText('sessions', doc.ConnectedSessions.toLocaleString('en-US'));
    setText('in-rate', fmtCount(doc.InPublishMessagesPerSecond));
    setText('out-rate', fmtCount(doc.OutPublishMessagesPerSecond));
    setText('out-bytes', fmtBytes(doc.OutPublishBytesPerSecond) + '/s');
    setText('latency', fmtMicros(doc.LatencyP50Micros) + ' / ' + fmtMicros(doc.LatencyP99Micros));
    setText('subs', fmtCount(doc.Subscriptions) + ' / ' + fmtCount(doc.Topics));
    setText('memory', fmtBytes(doc.RSS) + ' / ' + fmtBytes(doc.HeapUsed));
    setText('cpu', fmtPercent(doc.CpuPercent) + ' (' + doc.CpuCores + ' cores)');
    setText('workgroups', doc.WorkgroupsListening + '/' + doc.WorkgroupCount + ' · ' + doc.WorkgroupRestarts);
    setText('slow', fmtCount(doc.SlowConsumerDisconnects));
    setText('fds', fmtCount(doc.OpenFileDescriptors) + ' / ' + fmtCount(doc.MaxFileDescriptors));
    setText('native', doc.NativeIo + ' · ' + fmtBytes(doc.HugePageArenaBytes + doc.TransparentHugePageArenaBytes));
    setEngine(doc.Engine);
    setText('window', 'window ' + doc.WindowSeconds.toFixed(1) + ' s · up ' + Math.round(doc.UptimeSeconds) + ' s');
    setText('window-seconds', doc.WindowSeconds.toFixed(1));

    push(charts.sessions, t, [doc.ConnectedSessions]);
    push(charts.messages, t, [doc.InPublishMessagesPerSecond, doc.OutPublishMessagesPerSecond]);
    push(charts.latency, t, [doc.LatencyP50Micros, doc.LatencyP90Micros, doc.LatencyP99Micros, doc.LatencyP999Micros]);
    push(charts.memory, t, [doc.RSS, doc.HeapUsed, doc.WorkgroupHeapUsed || null]);
    push(charts['chart-cpu'], t, [doc.CpuPercent].concat(wgs.map((w) => (w.EventLoopUtilization == null ? null : w.EventLoopUtilization * 100))));
    push(
      charts['chart-workgroups'],
      t,
      wgs.map((w) => w.OutPublishMessagesPerSecond),
    );

    const rows = wgs.map((w) => {
      const tr = document.createElement('tr');
      const cells = [
        w.Process == null ? w.Id : w.Id + ' (process ' + w.Process + ')',
        w.Listening ? 'yes' : 'no',
        w.ConnectedSessions.toLocaleString('en-US'),
        fmtCount(w.Subscriptions),
        fmtCount(w.Topics),
        fmtCount(w.InPublishMessagesPerSecond),
        fmtCount(w.OutPublishMessagesPerSecond),
        fmtMicros(w.LatencyP99Micros),
        w.EventLoopUtilization == null ? '–' : fmtPercent(w.EventLoopUtilization * 100),
        w.HeapUsed == null ? '–' : fmtBytes(w.HeapUsed),
        w.Restarts,
        fmtCount(w.SlowConsumerDisconnects),
      ];
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = String(c);
        tr.appendChild(td);
      }
      return tr;
    });
    document.querySelector('#workgroup-table tbody').replaceChildren(...rows);
    updateProcesses(doc.Processes);
  }

  /** With --processes: one row per node process (the table stays hidden otherwise). */
  function updateProcesses(procs) {
    $('process-section').hidden = !procs;
    if (!procs) return;
    const rows = procs.map((p) => {
      const tr = document.createElement('tr');
      const cells = [
        p.Id,
        p.Pid,
        p.Listening ? 'yes' : 'no',
        p.ConnectedSessions.toLocaleString('en-US'),
        fmtCount(p.Subscriptions),
        fmtCount(p.OutPublishMessagesPerSecond),
        p.EventLoopUtilization == null ? '–' : fmtPercent(p.EventLoopUtilization * 100),
        p.EventLoopDelayMaxMs == null ? '–' : p.EventLoopDelayMaxMs.toFixed(1) + ' ms',
        p.RSS == null ? '–' : fmtBytes(p.RSS),
        p.OpenFileDescriptors == null ? '–' : fmtCount(p.OpenFileDescriptors),
        p.Restarts,
        p.HeartbeatAgeSeconds == null ? '–' : p.HeartbeatAgeSeconds.toFixed(1) + ' s',
      ];
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = String(c);
        tr.appendChild(td);
      }
      return tr;
    });
    document.querySelector('#process-table tbody').replaceChildren(...rows);
  }

  /** memory, or redis and its state; with redis, a second tile: publish round-trip p99 and messages received per second. */
  function setEngine(e) {
    if (!e) return;
    const down = e.State !== 'Up';
    $('engine').classList.toggle('bad', down);
    $('engine').title = down ? e.WorkgroupsUnavailable + ' workgroup(s) cannot reach Redis: publishes get UNAVAILABLE, /readyz answers 503' : '';
    setText('engine', e.Type === 'redis' ? (down ? 'redis unreachable' : 'redis up') : e.Type);
    $('redis-tile').hidden = e.Type !== 'redis';
    if (e.Type === 'redis') setText('redis', fmtMicros(e.RedisRoundTripP99Micros) + ' / ' + fmtCount(e.RedisMessagesReceivedPerSecond));
  }

  function setStatus(kind, text) {
    const el = $('status');
    el.className = 'status ' + kind;
    setText('status', text);
  }

  // ---- polling --------------------------------------------------------

  let timer = null;
  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  async function poll() {
    const abort = new AbortController();
    const deadline = setTimeout(() => abort.abort(), 3000);
    try {
      const headers = token ? { authorization: 'Bearer ' + token } : {};
      const res = await fetch('/jmx', { headers, cache: 'no-store', signal: abort.signal });
      if (res.status === 401) {
        setStatus('down', token ? 'the admin token was refused' : 'this admin port needs a token');
        $('token-form').hidden = false;
        return; // no polling until a token is given
      }
      if (!res.ok) throw new Error('HTTP ' + res.status);
      update(await res.json());
      setStatus('live', 'live');
      schedule(POLL_MS);
    } catch (err) {
      setStatus('down', 'no answer from /jmx (' + (err && err.name === 'AbortError' ? 'timed out' : err.message) + '); retrying');
      schedule(POLL_MS);
    } finally {
      clearTimeout(deadline);
    }
  }

  poll();
})();
