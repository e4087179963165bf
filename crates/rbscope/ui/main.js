// The page shell of `rbscope ui`: routes History API paths to page modules (loaded on demand),
// intercepts same-origin links, owns the header, the shared DOM and fetch helpers, and shows
// API errors, not-found pages and the "analysing" status. It also renders the small Files page.

import { bytes, count, percent } from './format.js';

// ------------------------------------------------------------------ DOM helpers

/**
 * h('div', {class: 'x', testid: 'y', onclick: fn}, child, ...): an element. Children are
 * nodes or strings (always inserted as text, never parsed as HTML); null/false are skipped.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'testid') el.dataset.testid = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'style') Object.assign(el.style, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

/** el.append that skips null/false/undefined and flattens arrays (text stays text). */
export function add(el, ...children) {
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** A same-origin link the router handles. */
export function link(href, ...children) {
  return h('a', { href }, ...children);
}

/** A small "copy" button that copies text (falls back to selecting `selectEl`). */
export function copyButton(text, { label = 'Copy', testid, selectEl } = {}) {
  const b = h('button', { type: 'button', class: 'btn btn-small', testid, title: 'Copy to the clipboard' }, label);
  b.addEventListener('click', async () => {
    try {
      if (!navigator.clipboard) throw new Error('no clipboard');
      await navigator.clipboard.writeText(text);
      flash(b, 'Copied');
    } catch {
      if (selectEl) {
        const range = document.createRange();
        range.selectNodeContents(selectEl);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        flash(b, 'Selected: press Ctrl+C');
      } else {
        flash(b, 'Cannot copy');
      }
    }
  });
  return b;
}

function flash(button, text) {
  const old = button.dataset.label || button.textContent;
  button.dataset.label = old;
  button.textContent = text;
  clearTimeout(button._flash);
  button._flash = setTimeout(() => { button.textContent = old; }, 1500);
}

// ------------------------------------------------------------------ API

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** Keeps integers beyond 2^53 exact (snapshot values can be any Ruby Integer). */
function exactIntegers(key, value, context) {
  if (typeof value === 'number' && !Number.isSafeInteger(value) && Number.isInteger(value)
      && context && typeof context.source === 'string' && /^-?\d+$/.test(context.source)) {
    return BigInt(context.source);
  }
  return value;
}

/**
 * GET a same-origin API path. Resolves to {status, body}; rejects with an ApiError whose
 * message is the API's own `error` text (or a sentence saying what went wrong).
 */
export async function api(path, { signal, exact = false } = {}) {
  let res;
  try {
    res = await fetch(path, { signal, headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, `Cannot reach the rbscope ui server (${e.message}). Is it still running?`);
  }
  const text = await res.text();
  let body = null;
  let parsed = false;
  try {
    body = text ? JSON.parse(text, exact ? exactIntegers : undefined) : null;
    parsed = text !== '';
  } catch {
    parsed = false;
  }
  if (!res.ok) {
    let msg;
    if (parsed && body && typeof body.error === 'string') msg = body.error;
    else msg = `${res.status} ${res.statusText || 'error'} from ${path}`;
    throw new ApiError(res.status, msg, body);
  }
  if (!parsed) throw new ApiError(res.status, `${path} answered with something that is not JSON`);
  return { status: res.status, body };
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new DOMException('aborted', 'AbortError'));
    }, { once: true });
  });
}

/**
 * GET a heap endpoint that answers 202 {"state": "analysing", "progress": p} until the dump is
 * analysed: polls every 300 ms, calling onProgress(body) meanwhile; resolves to the final body.
 */
export async function apiReady(path, { signal, onProgress } = {}) {
  for (;;) {
    const r = await api(path, { signal });
    if (r.status !== 202) return r.body;
    onProgress?.(r.body);
    await sleep(300, signal);
  }
}

/** The "analysing" status line with a progress bar; update(body) takes a 202 body. */
export function analysingBox(what = 'Analysing the heap dump') {
  const bar = h('div', { class: 'progress-fill' });
  const label = h('span', { class: 'analysing-text' }, `${what}…`);
  const box = h('div', { class: 'analysing', testid: 'analysing', role: 'status', 'aria-live': 'polite' },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }),
    label,
    h('div', { class: 'progress' }, bar));
  const started = Date.now();
  box.update = (body) => {
    const p = body && typeof body.progress === 'number' ? Math.max(0, Math.min(1, body.progress)) : null;
    const secs = Math.round((Date.now() - started) / 1000);
    const state = body && body.state && body.state !== 'analysing' ? ` (${body.state})` : '';
    label.textContent = `${what}${state}… ${p === null ? '' : percent(p, 1) + ' '}${secs >= 2 ? `${secs} s` : ''}`.trimEnd();
    box.classList.toggle('indeterminate', p === null);
    bar.style.width = p === null ? '30%' : `${(p * 100).toFixed(1)}%`;
  };
  box.update(null);
  return box;
}

/** The element showing an error: not-found for 404s, the API's message verbatim otherwise. */
export function errorBox(err) {
  const msg = err && err.message ? err.message : String(err);
  if (err && err.status === 404) {
    return h('div', { class: 'notice notice-notfound', role: 'alert', testid: 'not-found' },
      h('h2', null, 'Not found'), h('p', { class: 'notice-message' }, msg),
      h('p', null, link('/snapshots', 'Snapshots'), ' · ', link('/files', 'Files')));
  }
  const title = err && err.status === 503 ? 'The store cannot be reached'
    : err && err.status === 422 ? 'The data cannot be read'
    : err && err.status === 401 ? 'Not authorised'
    : 'Something went wrong';
  return h('div', { class: 'notice notice-error', role: 'alert' },
    h('h2', null, title),
    h('p', { class: 'notice-message', testid: 'error' }, msg),
    err && err.status ? h('p', { class: 'muted small' }, `HTTP ${err.status}`) : null);
}

// ------------------------------------------------------------------ /api/info

let infoPromise = null;
/** /api/info, cached for the session unless fresh is asked. */
export function getInfo({ fresh = false, signal } = {}) {
  if (fresh || !infoPromise) {
    infoPromise = api('/api/info', { signal }).then((r) => r.body);
    infoPromise.catch(() => { infoPromise = null; });
  }
  return infoPromise;
}

/** The file entry of /api/info with this id, or a 404 ApiError. */
export async function fileInfo(fid, signal) {
  let info = await getInfo({ signal });
  let f = info.files.find((x) => x.id === fid);
  if (!f) {
    info = await getInfo({ fresh: true, signal });
    f = info.files.find((x) => x.id === fid);
  }
  if (!f) throw new ApiError(404, `There is no file ${fid} (the files rbscope ui was given are listed under Files).`);
  return f;
}

function showStatus(info) {
  const el = document.getElementById('status');
  if (!el) return;
  el.replaceChildren();
  if (!info) return;
  const dot = h('span', { class: info.store_ok ? 'dot dot-ok' : 'dot dot-bad', 'aria-hidden': 'true' });
  el.append(dot, h('span', { class: 'mono' }, info.store_ok ? `${count(info.snapshots)} snapshots` : 'store unreachable'));
  el.title = `store: ${info.store}${info.store_error ? `\n${info.store_error}` : ''}\nrbscope ${info.version}`;
}

// ------------------------------------------------------------------ router

const routes = [
  { re: /^\/snapshots\/?$/, mod: () => import('./snapshots.js'), fn: 'listPage', nav: 'snapshots' },
  { re: /^\/snapshots\/([^/]+)\/?$/, mod: () => import('./snapshots.js'), fn: 'snapshotPage', nav: 'snapshots' },
  { re: /^\/files\/?$/, mod: async () => ({ filesPage }), fn: 'filesPage', nav: 'files' },
  { re: /^\/heap\/([^/]+)\/?$/, mod: () => import('./heap.js'), fn: 'heapPage', nav: 'files' },
  { re: /^\/heap\/([^/]+)\/path\/([^/]+)\/?$/, mod: () => import('./heap.js'), fn: 'pathPage', nav: 'files' },
  { re: /^\/diff\/?$/, mod: () => import('./heap.js'), fn: 'diffPage', nav: 'files' },
  { re: /^\/saved\/([^/]+)\/?$/, mod: () => import('./heap.js'), fn: 'savedPage', nav: 'files' },
  { re: /^\/traces\/([^/]+)\/?$/, mod: () => import('./traces.js'), fn: 'tracePage', nav: 'files' },
  { re: /^\/profiles\/([^/]+)\/?$/, mod: () => import('./flame.js'), fn: 'profilePage', nav: 'files' },
];

let current = null; // {path, abort, page}

/** Goes to a same-origin URL (path + query) through the History API. */
export function navigate(url, { replace = false } = {}) {
  const u = new URL(url, location.href);
  const target = u.pathname + u.search + u.hash;
  if (replace) history.replaceState(null, '', target);
  else history.pushState(null, '', target);
  route({ scroll: !replace });
}

/** Replaces the query string without a page change (filters while typing). */
export function setQuery(params, { push = false } = {}) {
  const qs = params.toString();
  const target = location.pathname + (qs ? `?${qs}` : '');
  if (target === location.pathname + location.search) return;
  if (push) history.pushState(null, '', target);
  else history.replaceState(null, '', target);
}

export function setTitle(...parts) {
  document.title = [...parts.filter(Boolean), 'rbscope'].join(' · ');
}

async function route({ scroll = false } = {}) {
  const path = decodePath(location.pathname);
  const query = new URLSearchParams(location.search);
  if (path === '/' || path === '') {
    navigate('/snapshots', { replace: true });
    return;
  }
  if (current && current.path === location.pathname && current.page && typeof current.page.onQuery === 'function') {
    current.page.onQuery(query);
    return;
  }
  current?.abort.abort();
  const abort = new AbortController();
  const root = document.getElementById('main');
  const me = { path: location.pathname, abort, page: null };
  current = me;
  root.replaceChildren();
  if (scroll) window.scrollTo(0, 0);
  let matched = null;
  let params = [];
  for (const r of routes) {
    const m = r.re.exec(path);
    if (m) {
      matched = r;
      params = m.slice(1);
      break;
    }
  }
  for (const a of document.querySelectorAll('.mainnav a')) {
    if (matched && a.dataset.nav === matched.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!matched) {
    setTitle('Not found');
    root.append(errorBox(new ApiError(404, `There is no page at ${location.pathname}.`)));
    return;
  }
  if (scroll) root.focus({ preventScroll: true }); // screen readers start at the new page
  const ctx = { root, params, query, signal: abort.signal };
  try {
    const mod = await matched.mod();
    if (abort.signal.aborted) return;
    me.page = (await mod[matched.fn](ctx)) || null;
  } catch (e) {
    if (abort.signal.aborted || e.name === 'AbortError') return;
    if (!(e instanceof ApiError)) console.error(e); // API errors are shown, not logged
    setTitle(e.status === 404 ? 'Not found' : 'Error');
    root.replaceChildren(errorBox(e));
  }
}

function decodePath(p) {
  try {
    return decodeURIComponent(p);
  } catch {
    return p;
  }
}

/** Page-module helper: shows an error in place of the page (unless the page was left). */
export function fail(ctx, e, into = ctx.root) {
  if (ctx.signal.aborted || (e && e.name === 'AbortError')) return;
  if (!(e instanceof ApiError)) console.error(e);
  into.replaceChildren(errorBox(e));
}

document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest && ev.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const u = new URL(a.href, location.href);
  if (u.origin !== location.origin || u.pathname.startsWith('/api/') || u.pathname.startsWith('/assets/')) return;
  if (u.pathname === location.pathname && u.search === location.search && u.hash) return;
  ev.preventDefault();
  navigate(u.pathname + u.search + u.hash);
});

window.addEventListener('popstate', () => route());

// ------------------------------------------------------------------ Files page

const KIND_LABEL = {
  heap: 'heap dump',
  trace: 'trace',
  profile: 'profile',
  'saved-summary': 'saved summary',
  'saved-top': 'saved top',
  'saved-diff': 'saved diff',
  'saved-path': 'saved path',
  unknown: 'unknown',
};

/** Where a file's page is, or null for files without one. */
export function fileHref(f) {
  if (f.kind === 'heap') return `/heap/${encodeURIComponent(f.id)}`;
  if (f.kind === 'trace') return `/traces/${encodeURIComponent(f.id)}`;
  if (f.kind === 'profile') return `/profiles/${encodeURIComponent(f.id)}`;
  if (f.kind && f.kind.startsWith('saved-')) return `/saved/${encodeURIComponent(f.id)}`;
  return null;
}

async function filesPage(ctx) {
  setTitle('Files');
  const { root, signal } = ctx;
  const body = h('div', { class: 'page' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(h('div', { class: 'page-head' }, h('h1', null, 'Files')), body);
  const selected = new Set();
  let timer = null;
  signal.addEventListener('abort', () => clearTimeout(timer));

  const draw = (info) => {
    showStatus(info);
    const files = info.files || [];
    if (files.length === 0) {
      body.replaceChildren(h('div', { class: 'empty' },
        h('h2', null, 'No files'),
        h('p', null, 'rbscope ui shows the files named on its command line: heap dumps (ObjectSpace.dump_all, plain, .gz or .zst), traces (rbscope trace -o FILE --format jsonl or chrome), profiles (rbscope record --format speedscope or collapsed) and saved analyses (rbscope heap summary/top/diff/path --json).'),
        h('pre', { class: 'code' }, 'rbscope ui heap-1.json heap-2.json trace.jsonl profile.json')));
      return;
    }
    for (const id of [...selected]) if (!files.some((f) => f.id === id && f.kind === 'heap')) selected.delete(id);
    const diffBtn = h('button', { type: 'button', class: 'btn btn-primary', testid: 'diff-selected' }, 'Diff selected');
    const hint = h('span', { class: 'muted small' });
    const syncBtn = () => {
      const n = selected.size;
      diffBtn.disabled = n < 2 || n > 3;
      hint.textContent = n === 0 ? 'Tick 2 or 3 heap dumps, oldest first, to see what grew.'
        : n === 1 ? 'Tick one or two more heap dumps.'
        : n > 3 ? 'A diff takes 2 or 3 dumps.'
        : `Diff of ${n} dumps, in table order.`;
    };
    diffBtn.addEventListener('click', () => {
      const ids = files.filter((f) => selected.has(f.id)).map((f) => f.id);
      navigate(`/diff?files=${ids.map(encodeURIComponent).join(',')}`);
    });
    const rows = files.map((f) => {
      const href = fileHref(f);
      const cb = f.kind === 'heap'
        ? h('input', { type: 'checkbox', 'aria-label': `select ${f.name} for a diff`, checked: selected.has(f.id) })
        : null;
      cb?.addEventListener('change', () => {
        if (cb.checked) selected.add(f.id);
        else selected.delete(f.id);
        syncBtn();
      });
      let state = f.state;
      if (f.state === 'analysing' && typeof f.progress === 'number') state = `analysing ${percent(f.progress, 1)}`;
      return h('tr', { testid: 'file-row', dataset: { fileId: f.id, kind: f.kind } },
        h('td', { class: 'col-check' }, cb),
        h('td', { class: 'mono' }, href && f.state !== 'failed' ? link(href, f.name) : f.name,
          h('div', { class: 'muted small mono ellipsis', title: f.path }, f.path)),
        h('td', null, KIND_LABEL[f.kind] || f.kind),
        h('td', { class: 'num' }, bytes(f.bytes)),
        h('td', null, h('span', { class: `state state-${f.state}` }, state),
          f.error ? h('div', { class: 'small error-text' }, f.error) : null));
    });
    body.replaceChildren(
      h('table', { class: 'table' },
        h('thead', null, h('tr', null, h('th', { class: 'col-check' }, h('span', { class: 'sr-only' }, 'select')),
          h('th', null, 'File'), h('th', null, 'Kind'), h('th', { class: 'num' }, 'Size'), h('th', null, 'State'))),
        h('tbody', null, rows)),
      h('div', { class: 'toolbar' }, diffBtn, hint),
      h('p', { class: 'muted small' },
        `Store: ${info.store}`, info.store_ok ? ` (${count(info.snapshots)} snapshots)` : ` — unreachable: ${info.store_error || ''}`));
    syncBtn();
    if (files.some((f) => f.state === 'analysing')) {
      timer = setTimeout(() => refresh(), 1000);
    }
  };
  const refresh = async () => {
    try {
      const info = await getInfo({ fresh: true, signal });
      if (!signal.aborted) draw(info);
    } catch (e) {
      fail(ctx, e, body);
    }
  };
  await refresh();
}

// ------------------------------------------------------------------ start

getInfo().then(showStatus, () => showStatus(null));
route();
