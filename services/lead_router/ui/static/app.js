// Leadrouter ops page. Vanilla JS, no dependencies, no external resources; charts are inline SVG.
//
// Data: the admin API of lead_router (/v1/...) and, for SLA alerts, lead_router's proxy to the SLA
// monitor (/ui/api/alerts...). Every call carries `Authorization: Bearer <admin token>`; the token is
// entered once and kept in sessionStorage (this tab only).
(() => {
  'use strict';

  const TOKEN_KEY = 'leadrouter.adminToken';
  const REFRESH_MS = 60000;        // metrics and recent leads
  const CLOCK_MS = 15000;          // relative times ("3 min ago")
  const STREAM_MAX_BACKOFF_MS = 30000;
  const REASONS = {
    not_in_territory: ['Not in territory', '#5b7fe0'],
    no_capacity: ['No capacity', '#e0a13a'],
    not_qualified: ['Not qualified', '#d9534f'],
    duplicate: ['Duplicate', '#8e6bc9'],
    bad_contact_data: ['Bad contact data', '#3aa6a0'],
    existing_customer: ['Existing customer', '#6c8a3e'],
    other: ['Other', '#9aa3b2'],
  };
  const EXTRA_REASON_COLORS = ['#c06c9b', '#4f9bd0', '#b0894f', '#7a7fb8'];
  const KINDS = {
    accept_overdue: ['Accept overdue', 'bad'],
    first_touch_overdue: ['First touch overdue', 'warn'],
    report_back_overdue: ['Report back overdue', 'warn'],
  };
  const STATUS_BADGE = {
    received: '', nurturing: 'info', offered: 'warn', accepted: 'info', working: 'info', won: 'ok', lost: 'bad',
    no_decision: '', unroutable: 'bad',
  };
  const FUNNEL_COLORS = ['#9db4f5', '#5d85ea', '#2f5bd3', '#18804a'];

  const $ = (id) => document.getElementById(id);
  // The SVG namespace, from the HTML parser itself (so no URL needs to appear in this file).
  const SVG_NS = (() => { const d = document.createElement('div'); d.innerHTML = '<svg></svg>'; return d.firstChild.namespaceURI; })();

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    alerts: new Map(),        // alert_id -> alert
    fresh: new Set(),         // alert ids to highlight once
    acking: null,             // {id, form} while a note is being typed
    ackError: new Map(),      // alert_id -> message
    partners: null,           // last /v1/metrics/partners items
    sources: null,
    leads: new Map(),         // lead_id -> lead (recent list and opened ones)
    selectedLead: null,
    stream: null,             // AbortController of the running stream
    streamRun: 0,
    timers: [],
  };

  // ---------- DOM helpers ----------

  function add(el, children) {
    for (const c of Array.isArray(children) ? children : [children]) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) add(el, c);
      else el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    return el;
  }

  function h(tag, attrs, ...children) { return add(setAttrs(document.createElement(tag), attrs), children); }
  function s(tag, attrs, ...children) { return add(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children); }
  function replace(el, ...children) { el.replaceChildren(); return add(el, children); }

  // ---------- Formatting ----------

  const NONE = '—';
  const numberFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

  const isNum = (x) => typeof x === 'number' && Number.isFinite(x);
  const fmtInt = (x) => (isNum(x) ? numberFmt.format(x) : NONE);
  const fmtMoney = (x) => (isNum(x) ? numberFmt.format(x) : NONE);

  function fmtPct(x) {
    if (!isNum(x)) return NONE;
    if (x > 0 && x < 0.01) return '<1%';
    return `${Math.round(x * 100)}%`;
  }

  function fmtDuration(sec) {
    if (!isNum(sec)) return NONE;
    sec = Math.max(0, sec);
    if (sec < 60) return `${Math.round(sec)} s`;
    const m = Math.round(sec / 60);
    if (m < 60) return `${m} min`;
    const totalH = Math.floor(sec / 3600);
    if (totalH < 24) {
      const rm = Math.round((sec - totalH * 3600) / 60);
      return rm ? `${totalH} h ${rm} min` : `${totalH} h`;
    }
    const d = Math.floor(totalH / 24);
    const rh = totalH - d * 24;
    return rh ? `${d} d ${rh} h` : `${d} d`;
  }

  function fmtWhen(iso) {
    if (!iso) return NONE;
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return String(iso);
    const sameDay = t.toDateString() === new Date().toDateString();
    return sameDay ? timeFmt.format(t) : dateTimeFmt.format(t);
  }

  function fmtRelative(iso) {
    if (!iso) return '';
    const diff = (Date.now() - new Date(iso).getTime()) / 1000;
    if (!Number.isFinite(diff)) return '';
    const future = diff < 0;
    const a = Math.abs(diff);
    let txt;
    if (a < 10) return future ? 'now' : 'just now';
    if (a < 60) txt = `${Math.round(a)} s`;
    else if (a < 3600) txt = `${Math.round(a / 60)} min`;
    else if (a < 86400) txt = `${Math.round(a / 3600)} h`;
    else txt = `${Math.round(a / 86400)} d`;
    return future ? `in ${txt}` : `${txt} ago`;
  }

  function whenCell(iso) {
    return h('td', { class: 'when', title: iso ? fullFmt.format(new Date(iso)) : null },
      fmtWhen(iso), iso ? h('span', { class: 'rel', dataset: { rel: iso } }, fmtRelative(iso)) : null);
  }

  const shortId = (id) => (id && id.length > 13 ? `${id.slice(0, 8)}…` : id || NONE);
  const humanize = (key) => String(key).replace(/[_.]/g, ' ').replace(/^\w/, (c) => c.toUpperCase());
  const reasonLabel = (r) => (REASONS[r] ? REASONS[r][0] : humanize(r));
  const tierBadge = (tier) => (tier ? h('span', { class: `badge tier tier-${tier}` }, tier) : NONE);

  function reasonColor(reason, i) {
    return REASONS[reason] ? REASONS[reason][1] : EXTRA_REASON_COLORS[i % EXTRA_REASON_COLORS.length];
  }

  function errorNotice(err, what) {
    let msg = `${what} could not be loaded`;
    if (err && err.status === 404) msg = `${what} are not available on this server yet (404)`;
    else if (err && err.status) msg += ` (${err.status}${err.message ? `: ${err.message}` : ''})`;
    else if (err && err.message) msg += ` (${err.message})`;
    return h('p', { class: 'notice error' }, `${msg}.`);
  }

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, { method = 'GET', body } = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, 'lead_router is not reachable');
    }
    const type = res.headers.get('content-type') || '';
    const data = type.includes('json') ? await res.json().catch(() => null) : null;
    if (res.status === 401) {
      signOut('The admin token was not accepted any more. Sign in again.');
      throw new ApiError(401, 'unauthorized');
    }
    if (!res.ok) throw new ApiError(res.status, (data && (data.detail || data.title)) || res.statusText);
    return data;
  }

  function periodQuery() {
    const days = Number($('period').value || 90);
    const now = Date.now();
    const from = new Date(now - days * 86400000).toISOString();
    const to = new Date(now + 3600000).toISOString(); // an hour ahead: a browser clock behind the server's loses nothing
    return `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
  }

  // ---------- Login ----------

  async function tryToken(token) {
    try {
      const res = await fetch('/v1/leads?limit=1', { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
      if (res.status === 401) return 'That admin token was not accepted. Check LEADROUTER_ADMIN_TOKEN and try again.';
      if (!res.ok) return `lead_router answered ${res.status}; try again in a moment.`;
      return null;
    } catch (e) {
      return 'lead_router could not be reached. Is it running?';
    }
  }

  function showLogin(message) {
    $('dashboard').hidden = true;
    $('top-actions').hidden = true;
    $('login').hidden = false;
    const err = $('login-error');
    err.hidden = !message;
    err.textContent = message || '';
    $('token').value = '';
    $('token').focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    stopStream();
    for (const t of state.timers) clearInterval(t);
    state.timers = [];
    state.alerts.clear();
    state.leads.clear();
    state.selectedLead = null;
    showLogin(message);
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const token = $('token').value.trim();
    const button = $('login-submit');
    if (!token) return;
    button.disabled = true;
    const problem = await tryToken(token);
    button.disabled = false;
    if (problem) {
      const err = $('login-error');
      err.textContent = problem;
      err.hidden = false;
      $('token').select();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    state.token = token;
    startDashboard();
  }

  function startDashboard() {
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('top-actions').hidden = false;
    renderAlerts();
    refreshAll();
    startStream();
    state.timers.push(setInterval(refreshAll, REFRESH_MS));
    state.timers.push(setInterval(tickClocks, CLOCK_MS));
  }

  async function refreshAll() {
    const results = await Promise.allSettled([loadPartners(), loadSources(), loadLeads()]);
    for (const r of results) if (r.status === 'rejected') console.error('ops page:', r.reason);
    if (state.token) $('updated').textContent = `Updated ${timeFmt.format(new Date())}`;
  }

  function tickClocks() {
    for (const el of document.querySelectorAll('[data-rel]')) el.textContent = fmtRelative(el.dataset.rel);
  }

  // ---------- KPIs ----------

  function renderKpis() {
    const el = $('kpis');
    const partners = state.partners || [];
    const sum = (key) => partners.reduce((acc, p) => acc + (isNum(p[key]) ? p[key] : 0), 0);
    const open = [...state.alerts.values()].filter((a) => a.status === 'open').length;
    const acked = [...state.alerts.values()].filter((a) => a.status === 'acknowledged').length;
    const answered = sum('accepted') + sum('rejected') + sum('recalled');
    const closed = sum('won') + sum('lost') + sum('no_decision');
    const leadsIn = (state.sources || []).reduce((acc, x) => acc + (isNum(x.leads) ? x.leads : 0), 0);
    const have = state.partners !== null;
    const tile = (label, value, sub, tone, id) => h('div', { class: `kpi ${tone || ''}`, id },
      h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), h('div', { class: 'sub' }, sub));
    replace(el,
      tile('Open SLA alerts', String(open), acked ? `${acked} acknowledged` : 'none acknowledged yet',
        open ? 'bad' : 'good', 'kpi-alerts'),
      tile('Leads received', state.sources ? fmtInt(leadsIn) : NONE, 'in the period, all sources', '', 'kpi-leads'),
      tile('Offers accepted', have ? fmtPct(answered ? sum('accepted') / answered : null) : NONE,
        have ? `${fmtInt(sum('accepted'))} of ${fmtInt(answered)} answered · ${fmtInt(sum('pending'))} waiting` : '',
        '', 'kpi-accept'),
      tile('Deals won', have ? fmtInt(sum('won')) : NONE,
        have ? `win rate ${fmtPct(closed ? sum('won') / closed : null)} of ${fmtInt(closed)} closed` : '',
        'good', 'kpi-won'),
      tile('Won amount', have ? fmtMoney(sum('won_amount')) : NONE, 'sum of won deals', 'good', 'kpi-amount'));
    const count = $('alert-count');
    count.textContent = open ? `${open} open` : acked ? `${acked} acknowledged` : 'all clear';
    count.className = open ? 'pill' : acked ? 'pill acked' : 'pill zero';
    document.title = open ? `(${open}) Leadrouter · Channel ops` : 'Leadrouter · Channel ops';
  }

  // ---------- SLA alerts ----------

  const newer = (a, b) => !b || Date.parse(a.updated_at || 0) >= Date.parse(b.updated_at || 0);

  function upsertAlert(alert, { live = false } = {}) {
    const known = state.alerts.get(alert.alert_id);
    if (!newer(alert, known)) return;
    state.alerts.set(alert.alert_id, alert);
    if (live && (!known || known.status !== alert.status)) state.fresh.add(alert.alert_id);
  }

  async function loadAlerts() {
    const started = Date.now();
    const [open, acked] = await Promise.all([
      api('/ui/api/alerts?status=open&limit=500'), api('/ui/api/alerts?status=acknowledged&limit=500')]);
    const seen = new Set();
    for (const a of [...open.items, ...acked.items]) { upsertAlert(a); seen.add(a.alert_id); }
    // Alerts that left open/acknowledged while we were not listening: drop, unless changed since we asked.
    for (const [id, a] of state.alerts) {
      if (!seen.has(id) && Date.parse(a.updated_at || 0) < started - 5000) state.alerts.delete(id);
    }
    renderAlerts();
  }

  function alertOrder(a, b) {
    const rank = { open: 0, acknowledged: 1, resolved: 2 };
    return (rank[a.status] - rank[b.status]) || String(b.breached_at).localeCompare(String(a.breached_at));
  }

  function leadButton(leadId) {
    const lead = state.leads.get(leadId);
    return h('button', { class: 'link lead-link', type: 'button', title: leadId, dataset: { leadId },
      onclick: () => openLead(leadId, { scroll: true }) },
    lead && lead.company && lead.company.name ? lead.company.name : shortId(leadId),
    lead && lead.company && lead.company.name ? h('span', { class: 'lead-sub mono' }, ` ${shortId(leadId)}`) : null);
  }

  function statusBadge(status) {
    const tone = { open: 'bad', acknowledged: 'info', resolved: 'ok' }[status] || '';
    return h('span', { class: `badge status ${tone}` }, status);
  }

  function ackCell(alert) {
    const td = h('td', { class: 'actions' });
    if (alert.status === 'acknowledged') {
      add(td, h('span', { class: 'muted' }, `by ${alert.acknowledged_by || NONE}`,
        alert.note ? h('div', { class: 'lead-sub' }, `“${alert.note}”`) : null));
    } else if (alert.status === 'open') {
      if (state.acking && state.acking.id === alert.alert_id) add(td, state.acking.form);
      else add(td, h('button', { class: 'btn small ack', type: 'button', onclick: () => beginAck(alert.alert_id) }, 'Acknowledge'));
    } else {
      add(td, h('span', { class: 'muted' }, alert.resolution ? `resolved: ${alert.resolution}` : 'resolved'));
    }
    const err = state.ackError.get(alert.alert_id);
    if (err) add(td, h('div', { class: 'notice error' }, err));
    return td;
  }

  function beginAck(id) {
    const note = h('input', { type: 'text', placeholder: 'Note (optional)', maxlength: 2000, 'aria-label': 'Note' });
    const confirm = h('button', { class: 'btn small primary', type: 'submit' }, 'Confirm');
    const form = h('form', { class: 'ack-form', onsubmit: (ev) => { ev.preventDefault(); acknowledge(id, note.value, confirm); } },
      note, confirm,
      h('button', { class: 'btn small', type: 'button', title: 'Cancel', onclick: () => { state.acking = null; renderAlerts(); } }, 'Cancel'));
    state.acking = { id, form };
    state.ackError.delete(id);
    renderAlerts();
    note.focus();
  }

  async function acknowledge(id, note, button) {
    button.disabled = true;
    try {
      const alert = await api(`/ui/api/alerts/${encodeURIComponent(id)}/ack`, {
        method: 'POST', body: { by: 'ops page', note: note.trim() || null } });
      state.acking = null;
      upsertAlert(alert, { live: true });
    } catch (e) {
      button.disabled = false;
      if (e.status === 409) { state.acking = null; state.ackError.set(id, 'Already resolved: nothing to acknowledge.'); }
      else if (e.status !== 401) state.ackError.set(id, `Not acknowledged: ${e.message}`);
    }
    renderAlerts();
  }

  function renderAlerts() {
    const el = $('alerts');
    const alerts = [...state.alerts.values()].sort(alertOrder);
    // A note being typed survives a live update: the same form node is moved into the new table.
    const typing = state.acking && state.acking.form.contains(document.activeElement) ? document.activeElement : null;
    renderKpis();
    if (!alerts.length) {
      replace(el, h('div', { class: 'all-clear' },
        s('svg', { width: 22, height: 22, viewBox: '0 0 22 22', 'aria-hidden': 'true' },
          s('circle', { cx: 11, cy: 11, r: 10, fill: '#e3f4ea' }),
          s('path', { d: 'M6.5 11.5l3 3 6-6.5', fill: 'none', stroke: '#18804a', 'stroke-width': 2.2,
            'stroke-linecap': 'round', 'stroke-linejoin': 'round' })),
        'No open SLA alerts: every partner is within its deadlines.'));
      return;
    }
    const rows = alerts.map((a) => {
      const [kindLabel, tone] = KINDS[a.kind] || [humanize(a.kind), ''];
      const tr = h('tr', { class: `${a.status}${state.fresh.has(a.alert_id) ? ' fresh' : ''}`, dataset: { alertId: a.alert_id } },
        h('td', {}, h('span', { class: `badge ${tone}` }, kindLabel)),
        h('td', {}, leadButton(a.lead_id)),
        h('td', { class: 'partner' }, a.partner_id || NONE),
        whenCell(a.due_at),
        whenCell(a.breached_at),
        h('td', {}, h('span', { class: `badge ${a.action === 'recall' ? 'warn' : ''}`,
          title: a.action === 'recall' ? 'The lead is taken back and routed on' : 'Alert only' }, a.action)),
        h('td', {}, statusBadge(a.status)),
        ackCell(a));
      return tr;
    });
    state.fresh.clear();
    replace(el, h('div', { class: 'scroll-x' }, h('table', { id: 'alerts-table' },
      h('thead', {}, h('tr', {}, ['Kind', 'Lead', 'Partner', 'Due', 'Breached', 'Action', 'Status', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows))));
    if (typing && typing.isConnected) typing.focus();
  }

  // The live stream: fetch() + ReadableStream (EventSource cannot send the Authorization header),
  // parsed here; reconnects with exponential backoff and catches up from the list on every connect.

  function setLive(mode, text) {
    const el = $('live');
    el.className = `live ${mode}`;
    el.textContent = text;
  }

  function stopStream() {
    state.streamRun += 1;
    if (state.stream) state.stream.abort();
    state.stream = null;
  }

  function parseSse(buffer, onEvent) {
    // Returns the unparsed remainder. Events end with a blank line; lines end with \n, \r\n or \r.
    const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
    const rest = blocks.pop();
    for (const block of blocks) {
      const ev = { event: 'message', data: [], id: null, retry: null };
      for (const line of block.split(/\r\n|\n|\r/)) {
        if (!line || line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? '' : line.slice(i + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') ev.data.push(value);
        else if (field === 'event') ev.event = value;
        else if (field === 'id') ev.id = value;
        else if (field === 'retry' && /^\d+$/.test(value)) ev.retry = Number(value);
      }
      onEvent(ev);
    }
    return rest;
  }

  async function startStream() {
    stopStream();
    const run = state.streamRun;
    let delay = 1000;
    let base = 1000;
    while (state.token && run === state.streamRun) {
      const ctl = new AbortController();
      state.stream = ctl;
      let connected = false;
      try {
        setLive('off', 'Connecting…');
        const res = await fetch('/ui/api/alerts/stream', { signal: ctl.signal, cache: 'no-store',
          headers: { Authorization: `Bearer ${state.token}`, Accept: 'text/event-stream' } });
        if (res.status === 401) { signOut('The admin token was not accepted any more. Sign in again.'); return; }
        if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
        connected = true;
        delay = base;
        setLive('on', 'Live');
        loadAlerts().catch((e) => { if (e.status !== 401) replace($('alerts'), errorNotice(e, 'Alerts')); });
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer = parseSse(buffer + decoder.decode(value, { stream: true }), (ev) => {
            if (ev.retry) base = Math.min(Math.max(ev.retry, 500), STREAM_MAX_BACKOFF_MS);
            if (ev.event !== 'alert' || !ev.data.length) return;
            try { upsertAlert(JSON.parse(ev.data.join('\n')), { live: true }); } catch (e) { return; }
            renderAlerts();
          });
        }
      } catch (e) {
        if (ctl.signal.aborted || run !== state.streamRun) return;
      }
      if (!state.token || run !== state.streamRun) return;
      if (!connected) delay = Math.min(delay * 2, STREAM_MAX_BACKOFF_MS);
      const wait = Math.round(delay * (0.75 + Math.random() * 0.5));
      setLive(connected ? 'off' : 'down', `Reconnecting in ${Math.ceil(wait / 1000)} s…`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  // ---------- Leaderboard ----------

  // The score as the sum of its weighted parts, one colour each (the funnel's colours: accepted, touched, won).
  const SCORE_PARTS = [['acceptance', 'Acceptance', 0.3, '#5d85ea'], ['first_touch_sla', 'First touch in SLA', 0.3, '#2f5bd3'],
    ['win', 'Wins', 0.4, '#18804a']];

  function scoreBar(score, parts) {
    const W = 130; const H = 12;
    const tip = SCORE_PARTS.map(([k, label, w]) => `${label}: ${fmtPct(parts && parts[k])} × ${w}`).join('\n');
    const svg = s('svg', { class: 'score-bar', width: W, height: H, role: 'img',
      'aria-label': `Score ${isNum(score) ? Math.round(score * 100) : 'unknown'} of 100` },
    s('rect', { x: 0, y: 0, width: W, height: H, rx: 3, fill: '#eef1f6' }));
    let x = 0;
    for (const [key, , weight, color] of SCORE_PARTS) {
      const v = parts && isNum(parts[key]) ? Math.max(0, Math.min(1, parts[key])) : 0;
      const w = v * weight * W;
      if (w > 0) add(svg, s('rect', { x, y: 0, width: Math.max(w - 1, 1), height: H, fill: color, class: `part part-${key}` }));
      x += w;
    }
    add(svg, s('title', {}, `Score ${isNum(score) ? score.toFixed(3) : NONE} (0 to 1)\n${tip}`));
    return svg;
  }

  function scoreLegend() {
    return h('div', { class: 'legend', id: 'score-legend' }, 'Score = ',
      SCORE_PARTS.map(([, label, w, color]) => h('span', {}, h('span', { class: 'sw', dataset: { color } }),
        `${label} ×${w}`)));
  }

  function paint(root) {
    // swatch colours through the CSSOM (the page's CSP allows no inline style attributes)
    for (const sw of root.querySelectorAll('.sw')) sw.style.background = sw.dataset.color;
  }

  async function loadPartners() {
    const el = $('leaderboard');
    try {
      const data = await api(`/v1/metrics/partners?limit=500&${periodQuery()}`);
      state.partners = (data && data.items) || [];
    } catch (e) {
      if (e.status === 401) return;
      state.partners = null;
      replace(el, errorNotice(e, 'Partner metrics'));
      replace($('funnels'), errorNotice(e, 'Partner metrics'));
      renderKpis();
      return;
    }
    renderLeaderboard();
    renderFunnels();
    renderKpis();
  }

  function renderLeaderboard() {
    const el = $('leaderboard');
    const items = [...state.partners].sort((a, b) => (a.rank || 0) - (b.rank || 0));
    if (!items.length) { replace(el, h('p', { class: 'empty' }, 'No partner has been offered a lead in this period.')); return; }
    const cols = [
      ['#', ''], ['Partner', ''], ['Tier', ''], ['Score', ''], ['Offered', 'num'], ['Accepted', 'num'],
      ['Rejected', 'num'], ['Accept rate', 'num'], ['Median time to accept', 'num wrap'],
      ['First touch in SLA', 'num wrap'], ['Won', 'num'], ['Win rate', 'num'], ['Won amount', 'num'],
    ];
    const rows = items.map((p) => h('tr', { dataset: { partnerId: p.partner_id } },
      h('td', { class: `rank${p.rank === 1 ? ' top' : ''}` }, p.rank ?? NONE),
      h('td', {}, partnerName(p)),
      h('td', {}, tierBadge(p.tier)),
      h('td', {}, h('div', { class: 'score' },
        h('span', { class: 'val' }, isNum(p.score) ? Math.round(p.score * 100) : NONE), scoreBar(p.score, p.score_parts))),
      h('td', { class: 'num' }, fmtInt(p.offered)),
      h('td', { class: 'num' }, fmtInt(p.accepted)),
      h('td', { class: 'num', title: rejectTitle(p.rejected_by_reason) }, fmtInt(p.rejected)),
      h('td', { class: `num ${rateTone(p.acceptance_rate)}` }, fmtPct(p.acceptance_rate)),
      h('td', { class: 'num' }, fmtDuration(p.median_time_to_accept_s)),
      h('td', { class: `num ${rateTone(p.first_touch_sla_met_rate)}` }, fmtPct(p.first_touch_sla_met_rate)),
      h('td', { class: 'num' }, fmtInt(p.won)),
      h('td', { class: 'num' }, fmtPct(p.win_rate)),
      h('td', { class: 'num' }, fmtMoney(p.won_amount))));
    replace(el, scoreLegend(), h('table', { id: 'leaderboard-table' },
      h('thead', {}, h('tr', {}, cols.map(([t, c]) => h('th', { class: c }, t)))),
      h('tbody', {}, rows)));
    paint(el);
  }

  // Rates a channel manager should notice: green from 80%, red below 50%.
  const rateTone = (x) => (!isNum(x) ? '' : x >= 0.8 ? 'good' : x < 0.5 ? 'poor' : '');

  function partnerName(p) {
    if (!p.name || p.name === p.partner_id) return h('span', { class: 'partner' }, p.partner_id);
    return [h('div', { class: 'partner' }, p.name), h('div', { class: 'lead-sub mono' }, p.partner_id)];
  }

  function rejectTitle(byReason) {
    const entries = Object.entries(byReason || {}).filter(([, n]) => n);
    return entries.length ? entries.map(([r, n]) => `${reasonLabel(r)}: ${n}`).join('\n') : null;
  }

  // ---------- Funnels ----------

  function renderFunnels() {
    const el = $('funnels');
    const items = [...state.partners].sort((a, b) => (a.rank || 0) - (b.rank || 0));
    if (!items.length) { replace(el, h('p', { class: 'empty' }, 'No offers in this period.')); return; }
    replace(el, items.map(funnel));
  }

  function funnel(p) {
    const steps = [['Offered', p.offered], ['Accepted', p.accepted], ['Touched', p.touched], ['Won', p.won]];
    const top = isNum(p.offered) && p.offered > 0 ? p.offered : 0;
    const W = 250; const labelW = 64; const barMax = 120; const rowH = 22;
    const svg = s('svg', { class: 'funnel-chart', width: '100%', 'data-partner-id': p.partner_id, viewBox: `0 0 ${W} ${steps.length * rowH + 2}`,
      role: 'img', 'aria-label': `Funnel of ${p.partner_id}: ` + steps.map(([l, v]) => `${l} ${isNum(v) ? v : 'unknown'}`).join(', ') });
    steps.forEach(([label, value], i) => {
      const y = i * rowH + 2;
      const known = isNum(value);
      const width = known && top ? Math.max((value / top) * barMax, value ? 3 : 0) : 0;
      const share = known && top && i > 0 ? ` · ${fmtPct(value / top)}` : '';
      add(svg, [
        s('text', { x: 0, y: y + 13, 'font-size': 11, fill: '#5d6678' }, label),
        s('rect', { x: labelW, y: y + 2, width: barMax, height: 15, rx: 3, fill: '#f1f3f8' }),
        known ? s('rect', { x: labelW, y: y + 2, width, height: 15, rx: 3, fill: FUNNEL_COLORS[i], class: `bar bar-${label.toLowerCase()}` }) : null,
        s('text', { x: labelW + barMax + 6, y: y + 13, 'font-size': 11, fill: '#1b2333', 'font-weight': 600 },
          known ? String(value) : NONE, s('tspan', { fill: '#8a93a5', 'font-weight': 400 }, share)),
        s('title', {}, `${label}: ${known ? value : 'not reported'}${share}`),
      ]);
    });
    return h('div', { class: 'funnel', dataset: { partnerId: p.partner_id } },
      h('h3', {}, h('span', { class: 'rank' }, `#${p.rank ?? NONE}`), p.name || p.partner_id, tierBadge(p.tier)),
      top ? svg : h('p', { class: 'empty' }, 'No offers in this period.'));
  }

  // ---------- Reject reasons by source and campaign ----------

  async function loadSources() {
    const el = $('reasons');
    try {
      const data = await api(`/v1/metrics/sources?limit=500&${periodQuery()}`);
      state.sources = (data && data.items) || [];
    } catch (e) {
      if (e.status === 401) return;
      state.sources = null;
      replace(el, errorNotice(e, 'Source metrics'));
      renderKpis();
      return;
    }
    renderReasons();
    renderKpis();
  }

  function renderReasons() {
    const el = $('reasons');
    const items = state.sources;
    if (!items.length) { replace(el, h('p', { class: 'empty' }, 'No leads received in this period.')); return; }
    const reasons = [];
    for (const item of items) {
      for (const [r, n] of Object.entries(item.rejected_by_reason || {})) if (n && !reasons.includes(r)) reasons.push(r);
    }
    reasons.sort((a, b) => Object.keys(REASONS).indexOf(a) - Object.keys(REASONS).indexOf(b));
    const color = Object.fromEntries(reasons.map((r, i) => [r, reasonColor(r, i)]));
    const max = Math.max(1, ...items.map((x) => sumReasons(x)));
    const W = 620; const labelW = 196; const barMax = 240; const rowH = 38;
    const svg = s('svg', { class: 'reasons-chart', viewBox: `0 0 ${W} ${items.length * rowH + 4}`, width: '100%',
      role: 'img', 'aria-label': 'Rejections by reason for each source and campaign' });
    items.forEach((item, i) => {
      const y = i * rowH + 4;
      const name = `${item.source} · ${item.campaign || 'no campaign'}`;
      const total = sumReasons(item);
      const g = s('g', { class: 'reason-row', 'data-source': item.source, 'data-campaign': item.campaign || '' },
        s('text', { x: 0, y: y + 13, 'font-size': 12.5, fill: '#1b2333', 'font-weight': 600 }, clip(name, 27), s('title', {}, name)),
        s('text', { x: 0, y: y + 28, 'font-size': 11, fill: '#8a93a5' },
          `${plural(item.leads, 'lead')} · ${fmtInt(item.accepted)} accepted`),
        s('rect', { x: labelW, y: y + 6, width: barMax, height: 20, rx: 3, fill: '#f4f6fa' }));
      let x = labelW;
      for (const r of reasons) {
        const n = (item.rejected_by_reason || {})[r] || 0;
        if (!n) continue;
        const w = (n / max) * barMax;
        add(g, s('rect', { x, y: y + 6, width: Math.max(w - 1, 1), height: 20, fill: color[r], class: 'seg', 'data-reason': r },
          s('title', {}, `${name}\n${reasonLabel(r)}: ${n}`)));
        if (w >= 16) add(g, s('text', { x: x + w / 2, y: y + 20, 'font-size': 11, fill: '#fff', 'text-anchor': 'middle', 'font-weight': 600 }, String(n)));
        x += w;
      }
      add(g, [
        s('text', { x: labelW + barMax + 10, y: y + 15, 'font-size': 12, fill: total ? '#1b2333' : '#8a93a5', 'font-weight': total ? 600 : 400 },
          total ? `${fmtInt(item.rejected)} rejected` : 'no rejections'),
        isNum(item.reject_rate) && total
          ? s('text', { x: labelW + barMax + 10, y: y + 29, 'font-size': 11, fill: '#8a93a5' }, `${fmtPct(item.reject_rate)} of answers`)
          : null,
      ]);
      add(svg, g);
    });
    const legend = reasons.length
      ? h('div', { class: 'legend', id: 'reasons-legend' }, reasons.map((r) => h('span', { dataset: { reason: r } },
        h('span', { class: 'sw', dataset: { color: color[r] } }), reasonLabel(r))))
      : h('p', { class: 'empty' }, 'No partner has rejected a lead in this period.');
    replace(el, legend, svg);
    paint(el);
  }

  const sumReasons = (item) => Object.values(item.rejected_by_reason || {}).reduce((a, n) => a + (isNum(n) ? n : 0), 0);
  const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? '' : 's'}`;
  const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

  // ---------- Recent leads and the timeline ----------

  async function loadLeads() {
    const el = $('leads');
    let data;
    try {
      data = await api('/v1/leads?limit=20');
    } catch (e) {
      if (e.status !== 401) replace(el, errorNotice(e, 'Leads'));
      return;
    }
    const items = (data && data.items) || [];
    for (const lead of items) state.leads.set(lead.lead_id, lead);
    if (!items.length) { replace(el, h('p', { class: 'empty' }, 'No leads yet.')); return; }
    replace(el, h('table', { id: 'leads-table' },
      h('thead', {}, h('tr', {}, ['Received', 'Company', 'Source', 'Status', 'Partner'].map((t) => h('th', {}, t)))),
      h('tbody', {}, items.map((lead) => h('tr', { class: lead.lead_id === state.selectedLead ? 'selected' : null, dataset: { leadId: lead.lead_id } },
        h('td', { class: 'when', title: fullFmt.format(new Date(lead.created_at)) },
          h('span', { dataset: { rel: lead.created_at } }, fmtRelative(lead.created_at))),
        h('td', {}, h('button', { class: 'link lead-company', type: 'button', onclick: () => openLead(lead.lead_id) },
          (lead.company && lead.company.name) || shortId(lead.lead_id)),
        h('div', { class: 'lead-sub' }, [lead.product, isNum(lead.estimated_value) ? fmtMoney(lead.estimated_value) : null]
          .filter(Boolean).join(' · '))),
        h('td', {}, lead.source, lead.campaign ? h('div', { class: 'lead-sub' }, lead.campaign) : null),
        h('td', {}, h('span', { class: `badge ${STATUS_BADGE[lead.status] || ''}` }, lead.status.replace('_', ' '))),
        h('td', { class: 'partner' }, lead.partner_id || NONE))))));
    renderAlerts(); // alert rows show company names once leads are known
  }

  async function openLead(leadId, { scroll = false } = {}) {
    state.selectedLead = leadId;
    for (const tr of document.querySelectorAll('#leads-table tbody tr')) tr.classList.toggle('selected', tr.dataset.leadId === leadId);
    $('lead-id').value = leadId;
    const el = $('timeline');
    replace(el, h('p', { class: 'empty' }, 'Loading…'));
    if (scroll) $('timeline-card').scrollIntoView({ behavior: 'smooth', block: 'start' });
    let lead; let timeline;
    try {
      [lead, timeline] = await Promise.all([api(`/v1/leads/${encodeURIComponent(leadId)}`),
        api(`/v1/leads/${encodeURIComponent(leadId)}/timeline`)]);
    } catch (e) {
      if (e.status === 404) replace(el, h('p', { class: 'notice error' }, `No lead with id ${leadId}.`));
      else if (e.status !== 401) replace(el, errorNotice(e, 'The timeline'));
      return;
    }
    if (state.selectedLead !== leadId) return;
    state.leads.set(leadId, lead);
    const fact = (k, v) => h('div', {}, h('span', { class: 'k' }, k), h('span', { class: 'v' }, v ?? NONE));
    const company = lead.company || {};
    replace(el,
      h('div', { class: 'lead-summary', id: 'lead-summary', dataset: { leadId } },
        fact('Company', company.name),
        fact('Status', h('span', { class: `badge ${STATUS_BADGE[lead.status] || ''}` }, lead.status)),
        fact('Partner', lead.partner_id),
        fact('Where', [company.country, company.region].filter(Boolean).join(' / ') || null),
        fact('Product', lead.product),
        fact('Value', isNum(lead.estimated_value) ? fmtMoney(lead.estimated_value) : null),
        fact('Score', lead.score),
        fact('Source', [lead.source, lead.campaign].filter(Boolean).join(' · ')),
        fact('Lead id', h('span', { class: 'mono' }, leadId))),
      h('ol', { class: 'timeline', id: 'timeline-list' }, ((timeline && timeline.items) || []).map(timelineItem)));
  }

  const ROUTING = new Set(['lead.routed', 'lead.unroutable', 'lead.nurturing']);

  function describe(item) {
    const d = item.data || {};
    const who = item.partner_id || d.partner_id;
    switch (item.type) {
      case 'lead.received': return [d.update ? 'Updated by a later webhook' : 'Received',
        [d.product, isNum(d.estimated_value) ? fmtMoney(d.estimated_value) : null, isNum(d.score) ? `score ${d.score}` : null,
          d.campaign ? `campaign ${d.campaign}` : null].filter(Boolean).join(' · '), ''];
      case 'lead.routed': return [`Routed to ${who || NONE}`, null, 'routing'];
      case 'lead.unroutable': return ['Unroutable: no eligible partner', null, 'routing bad'];
      case 'lead.nurturing': return ['Nurturing: below the qualification bar', null, 'routing'];
      case 'lead.accepted': return [`Accepted by ${who || NONE}`, null, 'good'];
      case 'lead.rejected': return [`Rejected by ${who || NONE}: ${reasonLabel(d.reason || 'other')}`, d.note, 'bad'];
      case 'lead.recalled': return [`Recalled from ${who || NONE}`, d.reason ? humanize(d.reason) : null, 'bad'];
      case 'lead.activity': return [`${d.first_touch ? 'First touch' : humanize(d.type || 'activity')} by ${who || NONE}`,
        [d.channel, d.note].filter(Boolean).join(' · '), 'good'];
      case 'lead.disposition': {
        const amount = isNum(d.amount) ? ` (${fmtMoney(d.amount)})` : '';
        const tone = d.disposition === 'won' ? 'good' : d.disposition === 'lost' ? 'bad' : '';
        return [`${humanize(d.disposition || 'disposition')}${amount}`, [d.reason, d.note].filter(Boolean).join(' · '), tone];
      }
      case 'lead.updated': return ['Updated', null, ''];
      default: return [humanize(item.type.replace(/^lead\./, '')), null, ''];
    }
  }

  function timelineItem(item) {
    const [title, detail, tone] = describe(item);
    return h('li', { class: `tl-item ${tone}`, dataset: { type: item.type } },
      h('div', { class: 'tl-head' }, h('span', { class: 'tl-title' }, title),
        h('span', { class: 'tl-at', title: fullFmt.format(new Date(item.at)) }, `${fmtWhen(item.at)} · ${fmtRelative(item.at)}`)),
      detail ? h('div', { class: 'tl-detail' }, detail) : null,
      ROUTING.has(item.type) ? explanation(item) : null);
  }

  function explanation(item) {
    const d = item.data || {};
    const candidates = Array.isArray(d.candidates) ? d.candidates : [];
    const chosen = d.partner_id || item.partner_id;
    const hasPerf = candidates.some((c) => c.performance && typeof c.performance === 'object');
    const rows = candidates.map((c) => h('tr', { class: c.eligible ? 'eligible' : 'ineligible', dataset: { partnerId: c.partner_id } },
      h('td', { class: 'partner' }, c.partner_id,
        item.type === 'lead.routed' && c.partner_id === chosen ? h('span', { class: 'chosen' }, '← chosen') : null),
      h('td', {}, c.eligible ? h('span', { class: 'badge ok' }, 'eligible') : h('span', { class: 'badge bad' }, 'not eligible')),
      h('td', { class: 'why-not' }, c.eligible ? h('span', { class: 'muted' }, NONE)
        : h('ul', {}, (c.reasons || []).map((r) => h('li', {}, r)))),
      hasPerf ? h('td', { class: 'perf' }, performance(c.performance)) : null));
    return h('div', { class: 'explain' },
      h('div', { class: 'facts' },
        h('span', {}, 'Rule ', h('b', { class: 'rule' }, d.rule || NONE)),
        h('span', {}, 'Strategy ', h('b', { class: 'strategy' }, d.strategy ? humanize(d.strategy) : NONE)),
        h('span', {}, 'Rule set ', h('b', {}, isNum(d.rule_set_version) ? `v${d.rule_set_version}` : NONE))),
      d.reason ? h('p', { class: 'reason' }, d.reason) : null,
      candidates.length
        ? h('table', { class: 'candidates' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Partner'), h('th', {}, 'Eligible'), h('th', {}, 'Why not'),
            hasPerf ? h('th', {}, 'Performance') : null)),
          h('tbody', {}, rows))
        : h('p', { class: 'empty' }, 'No partner was considered.'));
  }

  function performance(perf) {
    if (!perf || typeof perf !== 'object') return NONE;
    const flat = [];
    const walk = (obj, prefix) => {
      for (const [k, v] of Object.entries(obj)) {
        if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, `${prefix}${k} `);
        else flat.push(`${humanize(prefix + k)} ${isNum(v) ? (Number.isInteger(v) ? v : v.toFixed(2)) : v ?? NONE}`);
      }
    };
    walk(perf, '');
    return flat.join(' · ');
  }

  // ---------- Start ----------

  function init() {
    $('login-form').addEventListener('submit', onLogin);
    $('signout').addEventListener('click', () => signOut(null));
    $('refresh').addEventListener('click', () => { refreshAll(); loadAlerts().catch(() => {}); });
    $('period').addEventListener('change', () => refreshAll());
    $('lead-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const id = $('lead-id').value.trim();
      if (id) openLead(id);
    });
    if (state.token) startDashboard();
    else showLogin(null);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
