// The snapshot pages: the list (grouped by fingerprint or flat, with search and filters kept in
// the URL) and one snapshot (the exception, its causes, the restore command and every captured
// frame with its source and values).

import { h, add, link, api, navigate, setQuery, setTitle, errorBox, copyButton, getInfo } from './main.js';
import { count, exactTime, utcTime, relativeTime, timeElement } from './format.js';
import { valueTree, refCounts } from './valuetree.js';

const PAGE = 50;
const FILTERS = ['q', 'class', 'host', 'since', 'fingerprint'];
const SINCE = [['', 'any time'], ['1h', 'last hour'], ['24h', 'last 24 hours'], ['7d', 'last 7 days'], ['30d', 'last 30 days']];

// ------------------------------------------------------------------ the list

export async function listPage(ctx) {
  setTitle('Snapshots');
  const { root, signal } = ctx;
  let query = ctx.query;

  const search = h('input', { type: 'search', class: 'input input-wide', testid: 'search', placeholder: 'Search class, message or top frame', 'aria-label': 'search' });
  const klass = h('input', { type: 'text', class: 'input mono', testid: 'filter-class', placeholder: 'Exception class', 'aria-label': 'exception class' });
  const host = h('input', { type: 'text', class: 'input mono', testid: 'filter-host', placeholder: 'Host', 'aria-label': 'host' });
  const since = h('select', { class: 'input', testid: 'filter-since', 'aria-label': 'reported since' },
    SINCE.map(([v, t]) => h('option', { value: v }, t)));
  const groupsBtn = h('button', { type: 'button', class: 'seg', testid: 'view-groups' }, 'Grouped');
  const allBtn = h('button', { type: 'button', class: 'seg', testid: 'view-all' }, 'All');
  const chips = h('div', { class: 'chips' });
  const results = h('div', { class: 'results' });
  const summaryLine = h('span', { class: 'muted small', role: 'status' });

  root.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Snapshots'), summaryLine),
    h('form', { class: 'toolbar filters', role: 'search', onsubmit: (e) => e.preventDefault() },
      search, klass, host, since,
      h('div', { class: 'segmented', role: 'group', 'aria-label': 'view' }, groupsBtn, allBtn)),
    chips, results);

  const view = () => (query.get('view') === 'all' ? 'all' : 'groups');
  const syncInputs = () => {
    if (document.activeElement !== search) search.value = query.get('q') || '';
    if (document.activeElement !== klass) klass.value = query.get('class') || '';
    if (document.activeElement !== host) host.value = query.get('host') || '';
    since.value = query.get('since') || '';
    if (![...since.options].some((o) => o.value === since.value)) {
      since.append(h('option', { value: query.get('since') }, query.get('since')));
      since.value = query.get('since');
    }
    groupsBtn.setAttribute('aria-pressed', String(view() === 'groups'));
    allBtn.setAttribute('aria-pressed', String(view() === 'all'));
    chips.replaceChildren();
    const fp = query.get('fingerprint');
    if (fp) {
      const clear = h('button', { type: 'button', class: 'chip-x', 'aria-label': 'clear the fingerprint filter' }, '×');
      clear.addEventListener('click', () => update({ fingerprint: null }, true));
      chips.append(h('span', { class: 'chip' }, 'fingerprint ', h('code', null, fp), clear));
    }
  };

  /** Changes the query (null removes a key), keeps it in the URL, reloads the results. */
  const update = (changes, push = false) => {
    const q = new URLSearchParams(query);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === '' || v === undefined) q.delete(k);
      else q.set(k, v);
    }
    query = q;
    setQuery(q, { push });
    syncInputs();
    load();
  };

  let typing = null;
  const typed = (key, input) => {
    clearTimeout(typing);
    typing = setTimeout(() => update({ [key]: input.value.trim() }), 250);
  };
  search.addEventListener('input', () => typed('q', search));
  klass.addEventListener('input', () => typed('class', klass));
  host.addEventListener('input', () => typed('host', host));
  for (const [input, key] of [[search, 'q'], [klass, 'class'], [host, 'host']]) {
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { clearTimeout(typing); update({ [key]: input.value.trim() }); }
    });
  }
  since.addEventListener('change', () => update({ since: since.value }));
  groupsBtn.addEventListener('click', () => update({ view: null, fingerprint: null }, true));
  allBtn.addEventListener('click', () => update({ view: 'all' }, true));
  signal.addEventListener('abort', () => clearTimeout(typing));

  let loadAbort = null;
  const apiQuery = (offset) => {
    const q = new URLSearchParams();
    for (const k of FILTERS) {
      if (k === 'fingerprint' && view() !== 'all') continue;
      const v = query.get(k);
      if (v) q.set(k, v);
    }
    q.set('limit', String(PAGE));
    q.set('offset', String(offset));
    return q;
  };
  const filtered = () => FILTERS.some((k) => query.get(k));

  const load = async () => {
    loadAbort?.abort();
    const mine = new AbortController();
    loadAbort = mine;
    signal.addEventListener('abort', () => mine.abort(), { once: true });
    const isAll = view() === 'all';
    results.setAttribute('aria-busy', 'true');
    summaryLine.textContent = 'Loading…';
    const rows = h('tbody');
    const table = isAll ? snapshotTable(rows) : groupTable(rows);
    const more = h('button', { type: 'button', class: 'btn', testid: 'more' }, 'Load more');
    const moreBox = h('div', { class: 'load-more' });
    let shown = 0;
    const page = async (offset) => {
      const path = isAll ? '/api/snapshots' : '/api/groups';
      const { body } = await api(`${path}?${apiQuery(offset)}`, { signal: mine.signal });
      const list = (isAll ? body.snapshots : body.groups) || [];
      for (const item of list) rows.append(isAll ? snapshotRow(item) : groupRow(item));
      shown += list.length;
      moreBox.replaceChildren(body.more ? more : '');
      return list.length;
    };
    more.addEventListener('click', async () => {
      more.disabled = true;
      more.textContent = 'Loading…';
      try {
        await page(shown);
        summaryLine.textContent = status(isAll, shown, moreBox.childElementCount > 0);
      } catch (e) {
        if (e.name !== 'AbortError') moreBox.replaceChildren(errorBox(e));
        return;
      }
      more.disabled = false;
      more.textContent = 'Load more';
    });
    try {
      const n = await page(0);
      if (mine.signal.aborted) return;
      if (n === 0) {
        summaryLine.textContent = '';
        results.replaceChildren(filtered() ? noMatch(update) : await emptyStore(signal));
      } else {
        summaryLine.textContent = status(isAll, shown, moreBox.childElementCount > 0);
        results.replaceChildren(table, moreBox);
      }
    } catch (e) {
      if (mine.signal.aborted || e.name === 'AbortError') return;
      summaryLine.textContent = '';
      results.replaceChildren(errorBox(e));
    } finally {
      if (loadAbort === mine) results.removeAttribute('aria-busy');
    }
  };

  syncInputs();
  load(); // not awaited: the page takes query changes while it loads
  return {
    onQuery(q) {
      query = q;
      syncInputs();
      load();
    },
  };
}

function status(isAll, n, more) {
  const what = isAll ? (n === 1 ? 'snapshot' : 'snapshots') : (n === 1 ? 'group' : 'groups');
  return `${count(n)}${more ? '+' : ''} ${what}`;
}

function groupTable(rows) {
  return h('table', { class: 'table table-rows groups' },
    h('thead', null, h('tr', null,
      h('th', null, 'Exception'), h('th', null, 'Top frame'), h('th', { class: 'num' }, 'Count'),
      h('th', null, 'First seen'), h('th', null, 'Last seen'), h('th', null, 'Hosts'))),
    rows);
}

function snapshotTable(rows) {
  return h('table', { class: 'table table-rows snapshots' },
    h('thead', null, h('tr', null,
      h('th', null, 'Time'), h('th', null, 'Exception'), h('th', null, 'Message'),
      h('th', null, 'Top frame'), h('th', null, 'Host:pid'))),
    rows);
}

/** Makes a table row act as a link (the row's first link stays the keyboard target). */
function rowLink(tr, href) {
  tr.classList.add('clickable');
  tr.addEventListener('click', (ev) => {
    if (ev.target.closest('a, button, input, select')) return;
    if (window.getSelection && String(window.getSelection()).length > 0) return; // selecting text
    if (ev.ctrlKey || ev.metaKey) window.open(href, '_blank', 'noopener');
    else navigate(href);
  });
}

function groupRow(g) {
  const href = `/snapshots/${encodeURIComponent(g.last_id)}`;
  // `hosts` is a count (the CLI's list --group) or a list of names.
  const hosts = Array.isArray(g.hosts) ? g.hosts : null;
  const hostCell = hosts
    ? h('td', { class: 'mono small cell-hosts', title: hosts.join('\n') }, hosts.slice(0, 3).join(', '), hosts.length > 3 ? ` +${hosts.length - 3}` : '')
    : h('td', { class: 'small cell-hosts' }, `${count(g.hosts ?? 0)} ${Number(g.hosts) === 1 ? 'host' : 'hosts'}`);
  const allQ = new URLSearchParams();
  allQ.set('view', 'all');
  allQ.set('fingerprint', g.fingerprint);
  const tr = h('tr', { testid: 'group-row', dataset: { fingerprint: g.fingerprint, lastId: g.last_id } },
    h('td', { class: 'cell-exception' },
      link(href, classOrKind(g.exception_class)),
      h('div', { class: 'exc-message ellipsis', title: g.last_message }, firstLine(g.last_message))),
    h('td', { class: 'mono small ellipsis cell-frame', title: g.top_frame }, g.top_frame),
    h('td', { class: 'num' },
      h('div', { class: 'count-big' }, count(g.count)),
      h('a', { href: `/snapshots?${allQ}`, class: 'small all-link', testid: 'group-all' }, `all ${count(g.count)}`)),
    h('td', { class: 'nowrap' }, timeElement(g.first_ms)),
    h('td', { class: 'nowrap' }, timeElement(g.last_ms)),
    hostCell);
  rowLink(tr, href);
  return tr;
}

function snapshotRow(s) {
  const href = `/snapshots/${encodeURIComponent(s.id)}`;
  const tr = h('tr', { testid: 'snapshot-row', dataset: { id: s.id } },
    h('td', { class: 'nowrap' }, link(href, timeElement(s.reported_at_ms))),
    h('td', { class: 'exc-class-cell' }, classOrKind(s.exception_class)),
    h('td', { class: 'cell-message' }, h('div', { class: 'ellipsis', title: s.message }, firstLine(s.message))),
    h('td', { class: 'mono small ellipsis cell-frame', title: s.top_frame }, s.top_frame),
    h('td', { class: 'mono small nowrap' }, `${s.hostname}:${s.pid}`));
  rowLink(tr, href);
  return tr;
}

// A snapshot no exception caused is listed under its kind in parentheses (`(live)`,
// `(breakpoint)`, `(slow)`: rbscope_snapshot::trigger_class); its kind, or null.
const KINDS = ['live', 'breakpoint', 'slow'];
function kindOf(exceptionClass) {
  const m = /^\(([a-z_]+)\)$/.exec(String(exceptionClass ?? ''));
  return m ? m[1] : null;
}

/** The class cell's content: an exception class, or a badge for a snapshot's kind. */
function classOrKind(exceptionClass) {
  const kind = kindOf(exceptionClass);
  if (!kind) return h('span', { class: 'exc-class' }, exceptionClass);
  const known = KINDS.includes(kind) ? kind : 'other';
  return h('span', { class: ['badge', 'kind', `kind-${known}`], testid: 'kind', dataset: { kind }, title: `${kind} snapshot (no exception)` }, kind);
}

function firstLine(s) {
  const t = String(s ?? '');
  const i = t.indexOf('\n');
  return i < 0 ? t : `${t.slice(0, i)} …`;
}

function noMatch(update) {
  const clear = h('button', { type: 'button', class: 'btn' }, 'Clear the filters');
  clear.addEventListener('click', () => update({ q: null, class: null, host: null, since: null, fingerprint: null }, true));
  return h('div', { class: 'empty' }, h('h2', null, 'No snapshots match'), h('p', null, 'Nothing stored matches the search and filters above.'), clear);
}

async function emptyStore(signal) {
  let store = null;
  try {
    store = (await getInfo({ fresh: true, signal })).store;
  } catch {
    store = null;
  }
  return h('div', { class: 'empty', testid: 'empty' },
    h('h2', null, 'No snapshots yet'),
    h('p', null, 'rbscope stores a snapshot when an exception escapes a Ruby process that runs its agent (or when the app calls Rbscope.report). Each one holds the frames of the exception with self, the local variables and the source around each line.'),
    h('p', null, 'Start a program under rbscope:'),
    h('pre', { class: 'code' }, 'rbscope run -- ruby app.rb'),
    h('p', null, 'or from the app itself:'),
    h('pre', { class: 'code' }, 'require "rbscope"\nRbscope.start\nuse Rbscope::Middleware   # in a Rack app; Rails: require "rbscope/rails"'),
    store ? h('p', { class: 'muted small' }, 'This page reads the store ', h('code', null, store), '; the app writes to the same one unless RBSCOPE_STORE points elsewhere.') : null);
}

// ------------------------------------------------------------------ one snapshot

export async function snapshotPage(ctx) {
  const { root, signal } = ctx;
  const id = ctx.params[0];
  setTitle(id, 'Snapshot');
  root.append(h('p', { class: 'muted' }, 'Loading…'));
  let snap;
  try {
    snap = (await api(`/api/snapshots/${encodeURIComponent(id)}`, { signal, exact: true })).body;
  } catch (e) {
    const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'breadcrumb' }, link('/snapshots', 'Snapshots'), h('span', { class: 'sep' }, '/'), h('span', { class: 'mono' }, id));
    if (!signal.aborted && e.name !== 'AbortError') root.replaceChildren(crumbs, errorBox(e));
    return null;
  }
  const e = snap.exception || {};
  setTitle(`${e.class}: ${firstLine(e.message)}`);
  const refs = refCounts(snap);
  const page = h('div', { class: 'snapshot' });
  add(page,
    h('nav', { class: 'crumbs', 'aria-label': 'breadcrumb' }, link('/snapshots', 'Snapshots'), h('span', { class: 'sep' }, '/'), h('span', { class: 'mono' }, snap.id)),
    exceptionHeader(snap),
    takeSection(snap),
    restoreBox(snap),
    captureStats(snap.stats || {}),
    causes(snap, refs),
    framesSection(snap, refs),
    classStateSection(snap, refs),
    contextSection(snap));
  root.replaceChildren(page);
  return null;
}

function exceptionHeader(snap) {
  const e = snap.exception || {};
  const c = snap.context || {};
  const meta = [];
  const item = (label, value, cls) => (value === null || value === undefined || value === '' ? null
    : h('span', { class: 'meta-item' }, h('span', { class: 'meta-label' }, label), h('span', { class: ['meta-value', cls] }, value)));
  const when = h('span', { class: 'meta-item' }, h('span', { class: 'meta-label' }, 'reported'),
    h('span', { class: 'meta-value', title: `${utcTime(snap.reported_at_ms)}\n${relativeTime(snap.reported_at_ms)}` },
      `${exactTime(snap.reported_at_ms)} (${relativeTime(snap.reported_at_ms)})`));
  meta.push(when,
    item('host', c.hostname, 'mono'),
    item('pid', c.pid, 'mono'),
    item('thread', c.thread_name, 'mono'),
    item('ruby', c.ruby_version ? `${c.ruby_version}${c.ruby_platform ? ` (${c.ruby_platform})` : ''}` : null, 'mono'),
    item('revision', c.app_revision, 'mono'));
  const signed = snap.signed === true ? h('span', { class: 'badge badge-ok', title: 'the store key\'s signature matches: restore trusts it' }, 'signed')
    : snap.signed === false ? h('span', { class: 'badge badge-warn', title: 'unsigned or the signature does not match: restore needs --trust' }, 'unsigned') : null;
  // A snapshot no exception caused (format 3's trigger) is titled by what took it.
  const t = snap.trigger;
  const title = t ? `${t.kind[0].toUpperCase()}${t.kind.slice(1)} snapshot of thread ${t.thread}` : (e.class || '(unknown class)');
  const known = t && KINDS.includes(t.kind) ? t.kind : 'other';
  const kind = t ? h('span', { class: ['badge', 'kind', `kind-${known}`], testid: 'kind', dataset: { kind: t.kind } }, t.kind) : null;
  const reason = t ? h('span', { class: 'badge', testid: 'trigger', dataset: { thread: t.thread }, title: `thread ${t.thread}` }, t.reason) : null;
  return h('header', { class: 'exc-header', testid: 'exception' },
    h('div', { class: 'exc-title' }, h('h1', { class: 'exc-class' }, title), kind, reason, signed),
    h('pre', { class: 'exc-msg' }, e.message ?? ''),
    h('div', { class: 'meta' }, meta));
}

// Snapshots taken together (`rbscope snapshot -p --all`): a link to each other thread's.
function takeSection(snap) {
  const take = snap.take;
  if (!take || !Array.isArray(take.threads)) return null;
  const others = take.threads.filter((m) => !m.this);
  if (others.length === 0) return null;
  return h('section', { class: 'take', testid: 'take', dataset: { take: take.id } },
    h('div', { class: 'restore-label' }, `Taken together with ${others.length} other ${others.length === 1 ? 'thread' : 'threads'}`),
    h('ul', { class: 'take-list' }, others.map((m) => h('li', null,
      m.stored === false
        ? h('span', { class: 'mono muted', testid: 'take-thread-gone', dataset: { id: m.id } }, m.thread)
        : link(`/snapshots/${encodeURIComponent(m.id)}`, h('span', { class: 'mono', testid: 'take-thread', dataset: { id: m.id } }, m.thread)),
      ' ', h('span', { class: 'muted small mono' }, m.id),
      m.stored === false ? h('span', { class: 'muted small' }, ' (not in this store)') : null))),
    h('p', { class: 'small muted' }, 'In a console: ', h('code', { testid: 'take-restore' }, takeRestore(snap))));
}

/** The restore command with `--thread` after the id (same store, key and app as the page's). */
function takeRestore(snap) {
  const plain = `rbscope restore ${snap.id}`;
  const cmd = String(snap.restore_command || plain).replace(/\s+# .*$/, '');
  return cmd.includes(plain) ? cmd.replace(plain, `${plain} --thread NAME|TID`) : `${plain} --thread NAME|TID`;
}

function causes(snap, refs) {
  const list = (snap.exception && snap.exception.causes) || [];
  if (list.length === 0) return null;
  return h('section', { class: 'section causes' },
    h('h2', null, list.length === 1 ? 'Cause' : `Causes (${list.length})`),
    list.map((c, i) => {
      const frames = c.frames || [];
      const bt = c.backtrace || [];
      let extra = null;
      if (frames.length) {
        // Its frames, each collapsed: the values are rendered when a frame is opened.
        extra = h('div', { class: 'cause-body' },
          h('div', { class: 'small muted' }, `${frames.length} captured ${frames.length === 1 ? 'frame' : 'frames'}, when it was raised`),
          frameList(snap, frames, refs, false));
      } else if (bt.length) {
        const body = h('div');
        extra = h('details', { class: 'cause-frames' }, h('summary', null, `backtrace (${bt.length} lines)`), body);
        extra.addEventListener('toggle', () => {
          if (extra.open && !body.firstChild) body.append(backtraceList(bt));
        });
      }
      return h('div', { class: 'cause', testid: 'cause' },
        h('div', { class: 'cause-head' },
          h('span', { class: 'cause-arrow' }, i === 0 ? 'caused by' : '↳ caused by'),
          h('span', { class: 'exc-class' }, c.class),
          h('span', { class: 'cause-msg' }, firstLine(c.message))),
        String(c.message ?? '').includes('\n') ? h('pre', { class: 'exc-msg small' }, c.message) : null,
        extra);
    }));
}

function restoreBox(snap) {
  if (!snap.restore_command) return null;
  const code = h('code', { class: 'restore-cmd', testid: 'restore-command' }, snap.restore_command);
  return h('section', { class: 'restore' },
    h('div', { class: 'restore-label' }, 'Restore in a console'),
    h('div', { class: 'restore-row' }, code, copyButton(snap.restore_command, { testid: 'copy-restore', selectEl: code })),
    snap.signed === false ? h('p', { class: 'small muted' }, 'This snapshot is not signed with this store\'s key: restore refuses it without --trust.') : null);
}

function captureStats(st) {
  const items = [];
  const add = (n, text) => { if (n) items.push(h('span', { class: 'stat' }, h('b', null, count(n)), ` ${text}`)); };
  add(st.redacted, 'redacted');
  add(st.cut_depth, 'cut at the depth limit');
  add(st.cut_objects, 'cut at the object limit');
  add(st.cut_bytes, 'cut at the byte limit');
  add(st.truncated_strings, 'strings truncated');
  add(st.truncated_collections, 'collections truncated');
  add(st.errors, 'failed to capture');
  add(st.frames_skipped, 'app frames over the frame cap');
  if (st.locals_missing) items.push(h('span', { class: 'stat stat-warn' }, 'locals not captured (the raise was not seen by the agent)'));
  if (items.length === 0) return null;
  return h('section', { class: 'capture-stats', testid: 'capture-stats' }, h('span', { class: 'stats-label' }, 'Capture'), items);
}

function framesSection(snap, refs) {
  const frames = snap.frames || [];
  const bt = (snap.exception && snap.exception.backtrace) || [];
  const sec = h('section', { class: 'section frames' }, h('h2', null, `Frames (${frames.length})`));
  if (frames.length === 0) {
    sec.append(h('p', { class: 'muted' }, 'No app frames were captured (frames from gems and the standard library are skipped).'));
  } else {
    sec.append(frameList(snap, frames, refs, true));
  }
  if (bt.length) {
    const body = h('div');
    const det = h('details', { class: 'backtrace' }, h('summary', null, `Full backtrace (${bt.length} lines)`), body);
    det.addEventListener('toggle', () => { if (det.open && !body.firstChild) body.append(backtraceList(bt)); });
    sec.append(det);
  }
  return sec;
}

function backtraceList(lines) {
  return h('ol', { class: 'bt-lines mono small' }, lines.map((l) => h('li', null, l)));
}

function frameList(snap, frames, refs, openFirst) {
  return h('div', { class: 'frame-list' }, frames.map((f, i) => frameView(snap, f, i, refs, openFirst && i === 0)));
}

function frameView(snap, f, i, refs, startOpen) {
  const body = h('div', { class: 'frame-body', id: `frame-${Math.random().toString(36).slice(2)}` });
  const head = h('button', { type: 'button', class: 'frame-head', 'aria-expanded': 'false', 'aria-controls': body.id },
    h('span', { class: 'frame-caret', 'aria-hidden': 'true' }),
    h('span', { class: 'frame-index' }, `#${f.depth ?? i}`),
    h('span', { class: 'frame-label' }, f.label || f.method || '(unknown)'),
    h('span', { class: 'frame-loc' }, `${f.path}:${f.lineno}`));
  const el = h('div', { class: 'frame', testid: 'frame', dataset: { index: String(i) } }, head, body);
  let built = false;
  const set = (open) => {
    if (open && !built) {
      built = true;
      body.append(sourceView(f), valuesView(snap, f, refs));
    }
    body.hidden = !open;
    head.setAttribute('aria-expanded', String(open));
    el.classList.toggle('open', open);
  };
  head.addEventListener('click', () => set(body.hidden));
  set(startOpen);
  return el;
}

function sourceView(f) {
  const src = f.source;
  if (!src || !Array.isArray(src.lines) || src.lines.length === 0) {
    return h('div', { class: 'source source-none muted small' }, 'No source lines were captured for this frame.');
  }
  const first = Number(src.first_lineno) || 1;
  const box = h('div', { class: 'source', testid: 'source', role: 'region', 'aria-label': `source of ${f.path}` });
  src.lines.forEach((line, k) => {
    const n = first + k;
    const cur = n === Number(f.lineno);
    box.append(h('div', { class: ['src-line', cur && 'current'], 'aria-current': cur ? 'true' : null },
      h('span', { class: 'ln' }, String(n)),
      h('code', { class: 'src-code' }, String(line).replace(/\r?\n$/, '') || ' ')));
  });
  return box;
}

function valuesView(snap, f, refs) {
  const locals = f.locals || [];
  const entries = [{ name: 'self', value: f.self, nameClass: 'vt-self' }, ...locals.map((l) => ({ name: l.name, value: l.value }))];
  return h('div', { class: 'frame-values' },
    h('div', { class: 'values-head' }, h('span', null, 'self and locals'), h('span', { class: 'muted small' }, locals.length ? `${locals.length} ${locals.length === 1 ? 'local' : 'locals'}` : 'no locals')),
    valueTree(snap, entries, { refs }));
}

// The class-level state (class instance variables and class variables) of the classes the
// frames used, at the failure: one value tree per class.
function classStateSection(snap, refs) {
  const classes = snap.class_state || [];
  if (classes.length === 0) return null;
  return h('section', { class: 'section class-state', testid: 'class-state' },
    h('h2', null, `Class-level state (${classes.length} ${classes.length === 1 ? 'class' : 'classes'})`),
    h('p', { class: 'muted small' }, 'Class instance variables and class variables of the classes the frames used, as they were at the failure.'),
    classes.map((c) => h('div', { class: 'frame-values' },
      h('div', { class: 'values-head' }, h('span', { class: 'mono' }, c.class),
        h('span', { class: 'muted small' }, c.vars_left_out ? `${c.vars_left_out} more not captured` : '')),
      valueTree(snap, (c.vars || []).map((v) => ({ name: v.name, value: v.value })), { refs }))));
}

function contextSection(snap) {
  const c = snap.context || {};
  const rows = [];
  const add = (k, v) => { if (v !== null && v !== undefined && v !== '') rows.push(h('tr', null, h('th', null, k), h('td', { class: 'mono' }, String(v)))); };
  add('snapshot', snap.id);
  add('reported', `${exactTime(snap.reported_at_ms)} local · ${utcTime(snap.reported_at_ms)}`);
  add('fingerprint', snap.fingerprint);
  add('process', c.process_title);
  add('app root', c.app_root);
  add('revision', c.app_revision);
  add('thread', c.thread_name);
  add('ruby', c.ruby_version && `${c.ruby_version} ${c.ruby_platform || ''}`);
  add('agent', c.agent_version && `rbscope ${c.agent_version}`);
  for (const [k, v] of Object.entries(c.extra || {})) add(k, v);
  const gems = c.gems || [];
  const gemBody = h('div');
  const gemDet = gems.length ? h('details', { class: 'gems' }, h('summary', null, `Gems (${gems.length})`), gemBody) : null;
  gemDet?.addEventListener('toggle', () => {
    if (gemDet.open && !gemBody.firstChild) {
      gemBody.append(h('ul', { class: 'gem-list mono small' }, gems.map((g) => h('li', null, `${g.name} ${g.version}`))));
    }
  });
  return h('section', { class: 'section context' },
    h('h2', null, 'Context'),
    h('table', { class: 'kv' }, h('tbody', null, rows)),
    gemDet,
    h('p', { class: 'small' }, h('a', { href: `/api/snapshots/${encodeURIComponent(snap.id)}`, target: '_blank', rel: 'noopener' }, 'Raw JSON')));
}
