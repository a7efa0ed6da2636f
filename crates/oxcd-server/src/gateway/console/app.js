// The oxcd console: one page, no dependencies. Every call goes to the member's JSON gateway under
// /ui/v3/ (the same services gRPC clients call, with the user's token), plus /metrics for the
// charts and each member's own /ui/v3/maintenance/status for the cluster table.
'use strict';

const $ = (sel, el = document) => el.querySelector(sel);
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

// ---- bytes ----

function bytes(s) { return typeof s === 'string' ? utf8.encode(s) : s; }
function b64(s) {
  let bin = '';
  for (const b of bytes(s)) bin += String.fromCharCode(b);
  return btoa(bin);
}
function unb64(s) {
  const bin = atob(s || '');
  const u = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i);
  return u;
}
/** The text of `u` if it is UTF-8, else null. */
function asText(u) { try { return strictUtf8.decode(u); } catch { return null; } }
/** How a key is shown: its text, or Go-style escapes for what is not printable UTF-8. */
function showKey(u) {
  const t = asText(u);
  if (t !== null && !/[\x00-\x08\x0b-\x1f\x7f]/.test(t)) return t;
  let s = '';
  for (const b of u) s += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '\\x' + b.toString(16).padStart(2, '0');
  return s;
}
function hexdump(u, max = 4096) {
  const lines = [];
  for (let i = 0; i < Math.min(u.length, max); i += 16) {
    const row = u.subarray(i, i + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const chars = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(i.toString(16).padStart(8, '0') + '  ' + hex.padEnd(48) + ' ' + chars);
  }
  if (u.length > max) lines.push(`… ${u.length - max} more bytes`);
  return lines.join('\n');
}
/** The first key after every key that starts with `u` (etcd's prefix range end; for an empty
 *  `u`, "\0": every key). */
function prefixEnd(u) {
  const r = u.slice();
  for (let i = r.length - 1; i >= 0; i--) {
    if (r[i] < 0xff) { r[i]++; return r.slice(0, i + 1); }
  }
  return new Uint8Array([0]);
}
/** The range of every key that starts with `u` (an empty `u`: every key, "\0" to "\0"). */
function prefixRange(u) { return { key: b64(u.length ? u : new Uint8Array([0])), range_end: b64(prefixEnd(u)) }; }
function concat(a, b) { const r = new Uint8Array(a.length + b.length); r.set(a); r.set(b, a.length); return r; }
function sameBytes(a, b) { return a.length === b.length && a.every((x, i) => x === b[i]); }
function hexId(id) { return id ? BigInt(id).toString(16) : '0'; }
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
function size(n) {
  n = Number(n || 0);
  if (n < 1024) return n + ' B';
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(1) + ' ' + u[i];
}

// ---- the gateway ----

const session = {
  get token() { return sessionStorage.getItem('oxcd-token') || ''; },
  set token(t) { if (t) sessionStorage.setItem('oxcd-token', t); else sessionStorage.removeItem('oxcd-token'); },
  get user() { return sessionStorage.getItem('oxcd-user') || ''; },
  set user(u) { if (u) sessionStorage.setItem('oxcd-user', u); else sessionStorage.removeItem('oxcd-user'); },
};

class ApiError extends Error {
  constructor(message, code) { super(message); this.code = code; }
  get needsLogin() { return /user name is empty|invalid auth token|authentication failed/.test(this.message); }
}

function headers() {
  const h = { 'Content-Type': 'application/json' };
  if (session.token) h.Authorization = session.token;
  return h;
}

/** One call: `method` as the gateway names it ("kv/range"), on this member or on `base`. */
async function api(method, body = {}, { base = '', timeout = 0 } = {}) {
  const ctl = new AbortController();
  const timer = timeout ? setTimeout(() => ctl.abort(), timeout) : 0;
  try {
    const r = await fetch(base + '/ui/v3/' + method, {
      method: 'POST', headers: headers(), body: JSON.stringify(body), signal: ctl.signal,
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok || j.error) {
      const e = new ApiError(j.message || j.error || r.statusText, j.code);
      if (e.needsLogin && !base) showLogin();
      throw e;
    }
    return j;
  } finally {
    clearTimeout(timer);
  }
}

// ---- login ----

function showLogin() {
  session.token = '';
  const main = $('#main');
  if ($('#login-form', main)) return;
  main.innerHTML = '';
  main.append($('#login').content.cloneNode(true));
  $('#who').textContent = '';
  $('#login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = $('#login-name').value, password = $('#login-password').value;
    try {
      const r = await api('auth/authenticate', { name, password });
      session.token = r.token;
      session.user = name;
      showWho();
      route();
    } catch (e) {
      $('#login-error').textContent = e.message;
    }
  });
}

function showWho() {
  const who = $('#who');
  who.innerHTML = '';
  if (!session.token) return;
  who.append(document.createTextNode(session.user));
  const out = document.createElement('button');
  out.textContent = 'Log out';
  out.id = 'logout';
  out.onclick = () => { session.token = ''; session.user = ''; showWho(); showLogin(); };
  who.append(out);
}

// ---- views ----

let stopView = () => {};

function route() {
  stopView();
  stopView = () => {};
  const [path, query] = (location.hash.slice(1) || '/cluster').split('?');
  const params = new URLSearchParams(query || '');
  const view = path.split('/')[1] || 'cluster';
  for (const a of document.querySelectorAll('header nav a')) {
    a.classList.toggle('active', a.dataset.view === (view === 'key' ? 'keys' : view));
  }
  const views = { cluster: clusterView, keys: keysView, key: keyView, watch: watchView, leases: leasesView, locks: locksView };
  const main = $('#main');
  const run = views[view] || clusterView;
  run(main, params).catch((e) => {
    if (!(e instanceof ApiError && e.needsLogin)) main.innerHTML = `<p class="error">${esc(e.message)}</p>`;
  });
}

function h(html) {
  const t = document.createElement('template');
  t.innerHTML = html.trim();
  return t.content.firstElementChild;
}

// Cluster: members with each member's own status, alarms, and charts from /metrics.

async function clusterView(main) {
  main.innerHTML = '';
  const page = h(`<div>
    <h2>Cluster</h2>
    <div class="card"><table id="members"><thead><tr>
      <th>Name</th><th>ID</th><th>State</th><th>Role</th><th>Peer URLs</th><th>Client URLs</th>
      <th class="num">Raft term</th><th class="num">Raft index</th><th class="num">Applied</th>
      <th class="num">DB size</th><th class="num">In use</th><th>Version</th></tr></thead><tbody></tbody></table>
      <p class="muted" id="cluster-id"></p></div>
    <div class="card"><h3>Alarms</h3><div id="alarms" class="muted">…</div></div>
    <div class="charts" id="charts"></div>
  </div>`);
  main.append(page);
  const charts = [
    new Chart('writes', 'Writes/s', 'put + delete + txn'),
    new Chart('reads', 'Reads/s', 'ranges'),
    new Chart('fsync', 'WAL fsync ms', 'mean over the last second'),
    new Chart('apply', 'Apply ms', 'mean over the last second'),
  ];
  for (const c of charts) $('#charts', page).append(c.el);
  let last = null;
  let live = true;
  stopView = () => { live = false; };
  const tick = async () => {
    await Promise.all([refreshMembers(page), refreshAlarms(page)]).catch(() => {});
    const m = await fetch('/metrics').then((r) => r.text()).then(parseMetrics).catch(() => null);
    if (m && last) {
      const dt = (m.at - last.at) / 1000;
      const d = (k) => (m.v[k] || 0) - (last.v[k] || 0);
      const mean = (sum, count) => (d(count) > 0 ? (d(sum) / d(count)) * 1000 : 0);
      charts[0].push(d('etcd_mvcc_put_total') / dt + d('etcd_mvcc_delete_total') / dt + d('etcd_mvcc_txn_total') / dt);
      charts[1].push(d('etcd_mvcc_range_total') / dt);
      charts[2].push(mean('etcd_disk_wal_fsync_duration_seconds_sum', 'etcd_disk_wal_fsync_duration_seconds_count'));
      charts[3].push(mean('etcd_server_apply_duration_seconds_sum', 'etcd_server_apply_duration_seconds_count'));
    }
    if (m) last = m;
    if (live) setTimeout(tick, 1000);
  };
  await tick();
}

async function refreshMembers(page) {
  const list = await api('cluster/member/list', { linearizable: false });
  $('#cluster-id', page).textContent = `cluster ${hexId(list.header.cluster_id)} · member list served by ${hexId(list.header.member_id)}`;
  const members = (list.members || []).sort((a, b) => (a.name || '').localeCompare(b.name || '') || (a.ID < b.ID ? -1 : 1));
  const rows = await Promise.all(members.map(async (m) => {
    const url = (m.clientURLs || [])[0];
    let st = null, err = null;
    if (url) {
      try { st = await api('maintenance/status', {}, { base: url, timeout: 1500 }); } catch (e) { err = e.message; }
    }
    return { m, st, err, url };
  }));
  const tbody = $('#members tbody', page);
  tbody.innerHTML = '';
  for (const { m, st, err, url } of rows) {
    const id = hexId(m.ID);
    const state = !url ? '<span class="badge">not started</span>'
      : st ? '<span class="badge up">up</span>'
        : `<span class="badge down" title="${esc(err || '')}">down</span>`;
    const role = m.isLearner ? 'learner' : st && st.leader === m.ID ? '<span class="badge leader">leader</span>' : st ? 'follower' : '';
    tbody.append(h(`<table><tr data-member="${esc(m.name || id)}" data-state="${st ? 'up' : 'down'}">
      <td>${esc(m.name || '')}</td><td class="mono">${id}</td><td class="state">${state}</td><td>${role}</td>
      <td class="mono">${esc((m.peerURLs || []).join(', '))}</td><td class="mono">${esc((m.clientURLs || []).join(', '))}</td>
      <td class="num">${st ? esc(st.raftTerm || 0) : ''}</td><td class="num">${st ? esc(st.raftIndex || 0) : ''}</td>
      <td class="num">${st ? esc(st.raftAppliedIndex || 0) : ''}</td>
      <td class="num">${st ? size(st.dbSize) : ''}</td><td class="num">${st ? size(st.dbSizeInUse) : ''}</td>
      <td>${st ? esc(st.version || '') : ''}${st && st.errors ? ` <span class="error">${esc(st.errors.join('; '))}</span>` : ''}</td>
    </tr></table>`).querySelector('tr'));
  }
}

async function refreshAlarms(page) {
  const r = await api('maintenance/alarm', { action: 'GET' });
  const alarms = r.alarms || [];
  $('#alarms', page).innerHTML = alarms.length
    ? alarms.map((a) => `<span class="badge down">${esc(a.alarm || 'NONE')}</span> on member <code>${hexId(a.memberID)}</code>`).join('<br>')
    : 'none';
}

function parseMetrics(text) {
  const v = {};
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const sp = line.lastIndexOf(' ');
    const brace = line.indexOf('{');
    const name = brace >= 0 && brace < sp ? line.slice(0, brace) : line.slice(0, sp);
    v[name] = (v[name] || 0) + Number(line.slice(sp + 1));
  }
  return { at: Date.now(), v };
}

class Chart {
  constructor(id, title, note) {
    this.points = [];
    this.el = h(`<div class="card chart" id="chart-${id}"><span class="now">–</span><b>${esc(title)}</b>
      <div class="muted">${esc(note)}</div><canvas width="600" height="180"></canvas></div>`);
  }
  push(x) {
    this.points.push(Number.isFinite(x) ? x : 0);
    if (this.points.length > 60) this.points.shift();
    const last = this.points[this.points.length - 1];
    $('.now', this.el).textContent = last >= 100 ? Math.round(last).toString() : last.toFixed(2);
    this.draw();
  }
  draw() {
    const c = $('canvas', this.el), g = c.getContext('2d');
    const W = c.width, H = c.height, max = Math.max(1e-9, ...this.points) * 1.15;
    g.clearRect(0, 0, W, H);
    g.strokeStyle = '#e5e7eb';
    g.beginPath(); g.moveTo(0, H - 1); g.lineTo(W, H - 1); g.stroke();
    g.strokeStyle = '#1f6feb'; g.lineWidth = 2;
    g.beginPath();
    this.points.forEach((p, i) => {
      const x = (i / 59) * W, y = H - (p / max) * (H - 8) - 2;
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  }
}

// Keys: a prefix tree, a page at a time.

const PAGE = 50;

/** The children of `prefix` from `from` on: sub-prefixes up to the next '/', and keys. A large
 *  sub-prefix is skipped over in one request, so a page costs a few ranges however many keys. */
async function children(prefix, from, want) {
  const end = prefixEnd(prefix);
  const out = [];
  if (!from.length) from = new Uint8Array([0]); // etcd refuses an empty key
  for (;;) {
    const r = await api('kv/range', { key: b64(from), range_end: b64(end), limit: 200, keys_only: true });
    const kvs = r.kvs || [];
    for (const kv of kvs) {
      const k = unb64(kv.key);
      const slash = k.subarray(prefix.length).indexOf(47);
      const child = slash >= 0 ? k.subarray(0, prefix.length + slash + 1) : k;
      const prev = out[out.length - 1];
      if (prev && prev.dir && sameBytes(prev.key, child)) continue;
      if (out.length === want) return { items: out, next: child };
      out.push({ key: child, dir: slash >= 0 });
    }
    if (!r.more || !kvs.length) return { items: out, next: null };
    const last = out[out.length - 1];
    from = last.dir ? prefixEnd(last.key) : concat(last.key, [0]);
    if (out.length === want) return { items: out, next: from };
  }
}

async function keysView(main, params) {
  const prefix = unb64(params.get('p') || '');
  const from = params.has('from') ? unb64(params.get('from')) : prefix;
  const started = performance.now();
  const { items, next } = await children(prefix, from, PAGE);
  // Crumbs: one link per '/' in the prefix (cut on the bytes: a key need not be UTF-8).
  const shown = showKey(prefix);
  let crumbs = '<a href="#/keys">(root)</a>';
  for (let at = prefix.indexOf(47), from = 0; at >= 0; from = at + 1, at = prefix.indexOf(47, at + 1)) {
    const upTo = prefix.subarray(0, at + 1);
    crumbs += ` <a href="#/keys?p=${encodeURIComponent(b64(upTo))}">${esc(showKey(prefix.subarray(from, at + 1)))}</a>`;
  }
  const list = items.map((it) => {
    const label = esc(showKey(it.key.subarray(prefix.length)) || showKey(it.key));
    return it.dir
      ? `<li class="dir"><a href="#/keys?p=${encodeURIComponent(b64(it.key))}" data-key="${esc(showKey(it.key))}">${label}</a></li>`
      : `<li class="leaf"><a href="#/key?k=${encodeURIComponent(b64(it.key))}" data-key="${esc(showKey(it.key))}">${label}</a></li>`;
  }).join('');
  main.innerHTML = '';
  main.append(h(`<div>
    <h2>Keys</h2>
    <div class="card">
      <div class="crumbs">${crumbs}</div>
      <ul class="tree" id="tree">${list || '<li class="muted">no keys</li>'}</ul>
      <div class="toolbar spaced">
        ${params.has('from') ? `<a href="#/keys?p=${encodeURIComponent(b64(prefix))}">first page</a>` : ''}
        ${next ? `<a id="next-page" href="#/keys?p=${encodeURIComponent(b64(prefix))}&from=${encodeURIComponent(b64(next))}">next page</a>` : ''}
        <span class="muted" id="render-ms"></span>
      </div>
    </div>
    <div class="row">
      <form class="card" id="put-form"><h3>Put a key</h3>
        <label>Key <input id="put-key" size="40" value="${esc(shown)}"></label>
        <textarea id="put-value" placeholder="value"></textarea>
        <button class="primary" id="put-submit">Put</button> <span id="put-result"></span></form>
      <form class="card" id="delprefix-form"><h3>Delete a prefix</h3>
        <label>Prefix <input id="del-prefix" size="40" value="${esc(shown)}"></label>
        <button class="danger" id="del-submit">Delete every key under it</button> <span id="del-result"></span></form>
    </div></div>`));
  const ms = performance.now() - started;
  $('#render-ms').textContent = `${items.length} entries in ${ms.toFixed(1)} ms`;
  // For the browser test: the listing's own time, and the time since the page's navigation.
  window.oxcdLastRender = ms;
  window.oxcdRenderedAt = performance.now();
  $('#put-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const key = $('#put-key').value;
    if (!confirm(`Put ${key}?`)) return;
    try {
      const r = await api('kv/put', { key: b64(key), value: b64($('#put-value').value) });
      $('#put-result').innerHTML = `<span class="ok">written at revision ${esc(r.header.revision)}</span>`;
    } catch (e) { $('#put-result').innerHTML = `<span class="error">${esc(e.message)}</span>`; }
  };
  $('#delprefix-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const p = bytes($('#del-prefix').value);
    const range = prefixRange(p);
    try {
      const n = await api('kv/range', { ...range, count_only: true });
      if (!confirm(`Delete ${n.count || 0} keys under "${showKey(p)}"?`)) return;
      const r = await api('kv/deleterange', range);
      $('#del-result').innerHTML = `<span class="ok">${esc(r.deleted || 0)} deleted at revision ${esc(r.header.revision)}</span>`;
    } catch (e) { $('#del-result').innerHTML = `<span class="error">${esc(e.message)}</span>`; }
  };
}

// A key: its value in several renderings, its history and a diff, edit and delete.

/** A Kubernetes object in its protobuf envelope ("k8s\0" + runtime.Unknown): apiVersion, kind. */
function k8sObject(u) {
  if (u.length < 4 || asText(u.subarray(0, 4)) !== 'k8s\0') return null;
  const fields = protoFields(u.subarray(4));
  const meta = fields[1] ? protoFields(fields[1]) : {};
  const str = (x) => (x ? asText(x) : '');
  return { apiVersion: str(meta[1]), kind: str(meta[2]), raw: fields[2] || new Uint8Array(), contentType: str(fields[4]) };
}
/** The length-delimited fields of a protobuf message, by number (the last of each). */
function protoFields(u) {
  const out = {};
  let i = 0;
  const varint = () => {
    let x = 0, s = 0;
    for (;;) {
      if (i >= u.length) throw new Error('truncated');
      const b = u[i++];
      x += (b & 0x7f) * 2 ** s;
      s += 7;
      if (b < 0x80) return x;
    }
  };
  try {
    while (i < u.length) {
      const tag = varint(), field = Math.floor(tag / 8), wire = tag & 7;
      if (wire === 0) varint();
      else if (wire === 1) i += 8;
      else if (wire === 5) i += 4;
      else if (wire === 2) { const n = varint(); out[field] = u.subarray(i, i + n); i += n; }
      else break;
    }
  } catch { /* a damaged message: what was read */ }
  return out;
}

function toYaml(v, indent = '') {
  const scalar = (x) => {
    if (x === null) return 'null';
    if (typeof x === 'string') return /^[\w./@-][\w ./@:-]*$/.test(x) && !/^(true|false|null|yes|no|~|[-\d.]+)$/i.test(x) ? x : JSON.stringify(x);
    return String(x);
  };
  if (Array.isArray(v)) {
    if (!v.length) return '[]';
    return v.map((x) => (typeof x === 'object' && x !== null && Object.keys(x).length
      ? `${indent}- ${toYaml(x, indent + '  ').trimStart()}`
      : `${indent}- ${typeof x === 'object' && x !== null ? (Array.isArray(x) ? '[]' : '{}') : scalar(x)}`)).join('\n');
  }
  if (typeof v === 'object' && v !== null) {
    const keys = Object.keys(v);
    if (!keys.length) return '{}';
    return keys.map((k) => {
      const x = v[k], name = indent + scalar(k) + ':';
      if (typeof x === 'object' && x !== null && (Array.isArray(x) ? x.length : Object.keys(x).length)) {
        return `${name}\n${toYaml(x, indent + '  ')}`;
      }
      return `${name} ${typeof x === 'object' && x !== null ? (Array.isArray(x) ? '[]' : '{}') : scalar(x)}`;
    }).join('\n');
  }
  return indent + scalar(v);
}

function renderings(u) {
  const out = {};
  const k8s = k8sObject(u);
  const text = asText(u);
  let json;
  if (text !== null) { try { json = JSON.parse(text); } catch { json = undefined; } }
  if (json !== undefined && typeof json === 'object') {
    out.json = JSON.stringify(json, null, 2);
    out.yaml = toYaml(json);
  }
  if (text !== null && !k8s) out.text = text;
  out.hex = hexdump(u);
  return { out, k8s, json };
}

async function keyView(main, params) {
  const key = unb64(params.get('k') || '');
  const r = await api('kv/range', { key: b64(key) });
  const kv = (r.kvs || [])[0];
  const parent = (() => { const s = showKey(key); const i = s.lastIndexOf('/', s.length - 2); return i >= 0 ? s.slice(0, i + 1) : ''; })();
  main.innerHTML = '';
  const page = h(`<div>
    <h2><a href="#/keys?p=${encodeURIComponent(b64(parent))}">${esc(parent || '(root)')}</a> <span class="mono" id="key-name">${esc(showKey(key))}</span></h2>
    <div id="key-body"></div></div>`);
  main.append(page);
  const body = $('#key-body', page);
  if (!kv) {
    body.append(h(`<div class="card"><p class="muted">No such key (at revision ${esc(r.header.revision)}).</p></div>`));
    return;
  }
  const value = unb64(kv.value);
  const { out, k8s, json } = renderings(value);
  const modes = Object.keys(out);
  const initial = json !== undefined && typeof json === 'object' ? 'json' : modes[0];
  const leaseInfo = kv.lease && kv.lease !== '0' ? `lease <code>${hexId(kv.lease)}</code>` : 'no lease';
  body.append(h(`<div class="card">
    <div class="toolbar">
      ${k8s ? `<span class="badge leader" id="k8s-kind">Kubernetes ${esc(k8s.apiVersion)} ${esc(k8s.kind)}</span>` : ''}
      <span class="muted" id="key-meta">revision <b id="mod-rev">${esc(kv.mod_revision)}</b> · created at ${esc(kv.create_revision)} · version ${esc(kv.version)} · ${leaseInfo} · ${size(value.length)}</span>
      <span class="tabs">${modes.map((m) => `<button data-mode="${m}">${m.toUpperCase()}</button>`).join(' ')}</span>
    </div>
    <pre id="value"></pre>
    <div class="toolbar spaced">
      <button id="edit">Edit</button> <button class="danger" id="delete">Delete</button> <span id="key-result"></span>
    </div>
    <form id="edit-form" hidden><textarea id="edit-value"></textarea><button class="primary" id="save">Save</button> <button type="button" id="cancel">Cancel</button></form>
  </div>`));
  const show = (mode) => {
    $('#value').textContent = out[mode];
    for (const b of body.querySelectorAll('.tabs button')) b.classList.toggle('on', b.dataset.mode === mode);
  };
  for (const b of body.querySelectorAll('.tabs button')) b.onclick = () => show(b.dataset.mode);
  show(initial);
  $('#edit').onclick = () => {
    $('#edit-form').hidden = false;
    $('#edit-value').value = asText(value) ?? '';
    $('#edit-value').focus();
  };
  $('#cancel').onclick = () => { $('#edit-form').hidden = true; };
  $('#edit-form').onsubmit = async (ev) => {
    ev.preventDefault();
    if (!confirm(`Write the new value of ${showKey(key)}?`)) return;
    try {
      // Only over the revision that was read (a write made meanwhile is not lost), and the key
      // keeps its lease, as `etcdctl put --ignore-lease` does.
      const put = { key: b64(key), value: b64($('#edit-value').value), ignore_lease: kv.lease && kv.lease !== '0' };
      const w = await api('kv/txn', {
        compare: [{ key: b64(key), target: 'MOD', result: 'EQUAL', mod_revision: kv.mod_revision }],
        success: [{ request_put: put }],
      });
      if (!w.succeeded) {
        $('#key-result').innerHTML = `<span class="error">the key changed after revision ${esc(kv.mod_revision)}: reload it, then edit</span>`;
        return;
      }
      await keyView(main, params);
      $('#key-result').innerHTML = `<span class="ok notice" id="written">written at revision ${esc(w.header.revision)}</span>`;
    } catch (e) { $('#key-result').innerHTML = `<span class="error">${esc(e.message)}</span>`; }
  };
  $('#delete').onclick = async () => {
    if (!confirm(`Delete ${showKey(key)}?`)) return;
    try {
      const d = await api('kv/deleterange', { key: b64(key) });
      $('#key-result').innerHTML = `<span class="ok">deleted at revision ${esc(d.header.revision)}</span>`;
    } catch (e) { $('#key-result').innerHTML = `<span class="error">${esc(e.message)}</span>`; }
  };
  await history(body, key, kv);
}

/** The key's earlier values, newest first, as far back as compaction allows (20 at most). */
async function history(body, key, kv) {
  const versions = [kv];
  let note = '';
  while (versions.length < 20) {
    const cur = versions[versions.length - 1];
    if (cur.version === '1' || cur.mod_revision === cur.create_revision) { note = 'created here'; break; }
    try {
      const r = await api('kv/range', { key: b64(key), revision: String(BigInt(cur.mod_revision) - 1n) });
      const older = (r.kvs || [])[0];
      if (!older) break;
      versions.push(older);
    } catch (e) {
      note = /compacted/.test(e.message) ? 'older revisions are compacted' : e.message;
      break;
    }
  }
  const opts = versions.map((v, i) => `<option value="${i}">rev ${esc(v.mod_revision)} (v${esc(v.version)})</option>`).join('');
  const card = h(`<div class="card"><h3>History</h3>
    <table><thead><tr><th class="num">Revision</th><th class="num">Version</th><th>Value</th></tr></thead><tbody id="history">
    ${versions.map((v) => `<tr><td class="num">${esc(v.mod_revision)}</td><td class="num">${esc(v.version)}</td><td class="mono">${esc(preview(unb64(v.value)))}</td></tr>`).join('')}
    </tbody></table><p class="muted">${esc(note)}</p>
    <div class="toolbar">Diff <select id="diff-from">${opts}</select> → <select id="diff-to">${opts}</select></div>
    <div class="diff" id="diff"></div></div>`);
  body.append(card);
  const from = $('#diff-from', card), to = $('#diff-to', card);
  from.value = versions.length > 1 ? '1' : '0';
  to.value = '0';
  const redraw = () => {
    const a = lines(unb64(versions[+from.value].value)), b = lines(unb64(versions[+to.value].value));
    $('#diff', card).innerHTML = diff(a, b).map(([op, l]) => `<div class="${op === '+' ? 'add' : op === '-' ? 'del' : ''}">${op} ${esc(l)}</div>`).join('');
  };
  from.onchange = to.onchange = redraw;
  redraw();
}

function preview(u) {
  const t = asText(u);
  const s = t !== null ? t : hexdump(u, 32);
  return s.length > 120 ? s.slice(0, 120) + '…' : s;
}
function lines(u) {
  const t = asText(u);
  if (t === null) return hexdump(u).split('\n');
  try { const j = JSON.parse(t); if (typeof j === 'object' && j !== null) return JSON.stringify(j, null, 2).split('\n'); } catch { /* text */ }
  return t.split('\n');
}
/** A line diff (longest common subsequence): [op, line] with op ' ', '-' or '+'. */
function diff(a, b) {
  if (a.length * b.length > 4e6) return [...a.map((l) => ['-', l]), ...b.map((l) => ['+', l])];
  const n = a.length, m = b.length;
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push([' ', a[i]]); i++; j++; } else if (L[i + 1][j] >= L[i][j + 1]) out.push(['-', a[i++]]); else out.push(['+', b[j++]]);
  }
  while (i < n) out.push(['-', a[i++]]);
  while (j < m) out.push(['+', b[j++]]);
  return out;
}

// Watch: a live stream of events under a prefix, with pause and filters.

async function watchView(main, params) {
  main.innerHTML = '';
  const page = h(`<div><h2>Watch</h2><div class="card">
    <form class="toolbar" id="watch-form">
      <label>Prefix <input id="watch-prefix" size="36" value="${esc(params.get('p') || '')}"></label>
      <button class="primary" id="watch-start">Watch</button>
      <button type="button" id="watch-pause" disabled>Pause</button>
      <label><input type="checkbox" id="f-put" checked> puts</label>
      <label><input type="checkbox" id="f-del" checked> deletes</label>
      <label>Key contains <input id="f-key" size="16"></label>
      <button type="button" id="watch-clear">Clear</button>
      <span class="muted" id="watch-state">not watching</span>
    </form>
    <div class="events"><table><thead><tr><th>Time</th><th>Type</th><th>Key</th><th class="num">Revision</th><th>Value</th></tr></thead>
    <tbody id="events"></tbody></table></div></div></div>`);
  main.append(page);
  let ctl = null, paused = false, held = [], seen = [];
  const tbody = $('#events', page);
  const visible = (e) => ((e.type === 'DELETE' ? $('#f-del').checked : $('#f-put').checked)
    && (!$('#f-key').value || e.key.includes($('#f-key').value)));
  const draw = (e) => {
    if (!visible(e)) return;
    const tr = h(`<table><tr class="${e.type}"><td>${e.at}</td><td class="type">${e.type}</td><td class="mono">${esc(e.key)}</td>
      <td class="num">${esc(e.rev)}</td><td class="mono">${esc(e.value)}</td></tr></table>`).querySelector('tr');
    tbody.prepend(tr);
    while (tbody.children.length > 500) tbody.lastChild.remove();
  };
  // Held events (paused) are drawn on resume, not before.
  const redraw = () => { tbody.innerHTML = ''; for (const e of seen.slice(0, seen.length - held.length)) draw(e); };
  for (const id of ['#f-put', '#f-del']) $(id).onchange = redraw;
  $('#f-key').oninput = redraw;
  $('#watch-clear').onclick = () => { seen = []; held = []; redraw(); };
  $('#watch-pause').onclick = () => {
    paused = !paused;
    $('#watch-pause').textContent = paused ? 'Resume' : 'Pause';
    if (!paused) { for (const e of held) draw(e); held = []; $('#watch-state').textContent = 'watching'; }
  };
  stopView = () => { if (ctl) ctl.abort(); };
  $('#watch-form').onsubmit = async (ev) => {
    ev.preventDefault();
    if (ctl) ctl.abort();
    ctl = new AbortController();
    const p = bytes($('#watch-prefix').value);
    const req = { create_request: { ...prefixRange(p), prev_kv: true } };
    $('#watch-pause').disabled = false;
    try {
      const resp = await fetch('/ui/v3/watch', { method: 'POST', headers: headers(), body: JSON.stringify(req), signal: ctl.signal });
      if (!resp.ok) {
        const j = await resp.json().catch(() => ({}));
        $('#watch-state').textContent = j.message || j.error || resp.statusText;
        return;
      }
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      $('#watch-state').textContent = 'watching';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const msg = JSON.parse(line);
          if (msg.error) { $('#watch-state').textContent = msg.error.message || 'watch failed'; continue; }
          const res = msg.result || {};
          if (res.canceled) $('#watch-state').textContent = `canceled: ${res.cancel_reason || ''}`;
          for (const e of res.events || []) {
            const kv = e.kv || {};
            const ev = {
              at: new Date().toLocaleTimeString(), type: e.type || 'PUT', key: showKey(unb64(kv.key)),
              rev: kv.mod_revision || res.header.revision, value: e.type === 'DELETE' ? '' : preview(unb64(kv.value)),
            };
            seen.push(ev);
            if (seen.length > 2000) seen.shift();
            if (paused) { held.push(ev); $('#watch-state').textContent = `paused (${held.length} held)`; } else draw(ev);
          }
        }
      }
    } catch (e) {
      if (e.name !== 'AbortError') $('#watch-state').textContent = e.message;
    }
  };
  if (params.has('p')) $('#watch-form').requestSubmit();
}

// Leases: TTLs counting down, their keys, revoke.

async function leasesView(main) {
  const r = await api('lease/leases', {});
  const all = r.leases || [];
  const ids = all.slice(0, 100).map((l) => l.ID);
  const infos = await Promise.all(ids.map((ID) => api('lease/timetolive', { ID, keys: true }).catch(() => null)));
  main.innerHTML = '';
  const page = h(`<div><h2>Leases <span class="muted">${all.length}${all.length > 100 ? ' (the first 100 shown)' : ''}</span></h2>
    <div class="card"><table><thead><tr><th>ID</th><th class="num">TTL left</th><th class="num">Granted</th><th>Keys</th><th></th></tr></thead>
    <tbody id="leases"></tbody></table></div></div>`);
  main.append(page);
  const tbody = $('#leases', page);
  const fetched = Date.now();
  infos.forEach((t, i) => {
    if (!t) return;
    const keys = t.keys || [];
    const tr = h(`<table><tr><td class="mono">${hexId(ids[i])}</td><td class="num ttl" data-ttl="${esc(t.TTL)}">${esc(t.TTL)} s</td>
      <td class="num">${esc(t.grantedTTL)} s</td>
      <td class="mono">${keys.slice(0, 10).map((k) => `<a href="#/key?k=${encodeURIComponent(k)}">${esc(showKey(unb64(k)))}</a>`).join('<br>')}${keys.length > 10 ? `<br>… ${keys.length - 10} more` : ''}</td>
      <td><button class="danger">Revoke</button></td></tr></table>`).querySelector('tr');
    $('button', tr).onclick = async () => {
      if (!confirm(`Revoke lease ${hexId(ids[i])} and delete its ${keys.length} keys?`)) return;
      try {
        const d = await api('lease/revoke', { ID: ids[i] });
        tr.remove();
        $('h2', page).append(h(`<span class="notice">revoked at revision ${esc(d.header.revision)}</span>`));
      } catch (e) {
        $('h2', page).append(h(`<span class="error">${esc(e.message)}</span>`));
      }
    };
    tbody.append(tr);
  });
  const timer = setInterval(() => {
    const gone = (Date.now() - fetched) / 1000;
    for (const td of tbody.querySelectorAll('.ttl')) td.textContent = `${Math.max(0, Math.round(+td.dataset.ttl - gone))} s`;
  }, 1000);
  const refresh = setTimeout(() => route(), 10000);
  stopView = () => { clearInterval(timer); clearTimeout(refresh); };
}

// Locks and elections: the keys etcd's concurrency recipes write, `<name>/<lease id in hex>`.

async function locksView(main) {
  const r = await api('lease/leases', {});
  const ids = (r.leases || []).slice(0, 1000).map((l) => l.ID);
  const infos = await Promise.all(ids.map((ID) => api('lease/timetolive', { ID, keys: true }).catch(() => null)));
  // Names by their bytes (base64), as the keys carry them.
  const names = new Set();
  infos.forEach((t, i) => {
    const suffix = bytes('/' + hexId(ids[i]));
    for (const k of (t && t.keys) || []) {
      const key = unb64(k);
      const tail = key.subarray(key.length - suffix.length);
      if (key.length > suffix.length && sameBytes(tail, suffix)) names.add(b64(key.subarray(0, key.length - suffix.length + 1)));
    }
  });
  main.innerHTML = '';
  const page = h(`<div><h2>Locks &amp; elections</h2><p class="muted">Names under which keys end in their lease's id, as etcd's Lock and Election services and the concurrency recipes write them: the oldest key holds, the others wait in order.</p><div id="locks"></div></div>`);
  main.append(page);
  if (!names.size) $('#locks', page).append(h('<div class="card muted">No lock or election is held.</div>'));
  for (const p of [...names].map(unb64).sort((a, b) => showKey(a).localeCompare(showKey(b)))) {
    const name = showKey(p);
    const w = await api('kv/range', { ...prefixRange(p), sort_order: 'ASCEND', sort_target: 'CREATE' });
    const kvs = w.kvs || [];
    $('#locks', page).append(h(`<div class="card"><h3 class="mono">${esc(name.slice(0, -1))}</h3><table>
      <thead><tr><th></th><th>Key</th><th class="num">Created</th><th>Value (an election's proposal)</th></tr></thead><tbody>
      ${kvs.map((kv, i) => `<tr><td>${i ? 'waits' : '<span class="badge leader">holds</span>'}</td><td class="mono">${esc(showKey(unb64(kv.key)))}</td>
        <td class="num">${esc(kv.create_revision)}</td><td class="mono">${esc(preview(unb64(kv.value)))}</td></tr>`).join('')}
      </tbody></table></div>`));
  }
}

// ---- start ----

function start() {
  window.addEventListener('hashchange', route);
  // No round trip first to learn whether a login is needed: a view's first call that is refused
  // for want of a user shows the login form (see `api`).
  showWho();
  route();
}

start();
