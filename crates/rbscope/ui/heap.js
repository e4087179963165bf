// The heap dump pages: one dump (summary tables; retained size as a zoomable treemap or icicle
// with the dominator tree below), why one object is alive, the diff of 2–3 dumps, and saved
// `rbscope heap ... --json` analyses drawn with the same pieces.

import {
  h, link, api, apiReady, analysingBox, errorBox, fail, navigate, setQuery, setTitle,
  fileInfo, getInfo, copyButton, ApiError,
} from './main.js';
import { bytes, count, percent } from './format.js';
import { renderTreemap, renderIcicle, classColor, nodeLines, setSelected } from './treemap.js';

const TOP_LIMIT = 60;
const enc = encodeURIComponent;

// ------------------------------------------------------------------ small pieces

function statCard(label, value, sub) {
  return h('div', { class: 'stat-card' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), sub ? h('div', { class: 'sub' }, sub) : null);
}

/** "file:line in method" of an allocation site, or null. */
function site(file, line, method) {
  if (!file) return null;
  return `${file}${line ? `:${line}` : ''}${method ? ` in ${method}` : ''}`;
}

function objectName(d) {
  return d.class || d.type || '?';
}

/** A box label: the class name, or for a class or module the one it is. */
function displayName(d) {
  if (d.info && (d.type === 'CLASS' || d.type === 'MODULE' || d.type === 'ICLASS')) {
    return `${d.type === 'MODULE' ? 'module' : 'class'} ${d.info}`;
  }
  return objectName(d);
}

/** A table with a header row; cols: [title, className?]; rows: arrays of cells. */
function table(cols, rows, { testid, caption, cls } = {}) {
  return h('table', { class: ['table table-compact', cls], testid },
    caption ? h('caption', null, caption) : null,
    h('thead', null, h('tr', null, cols.map(([t, c]) => h('th', { class: c }, t)))),
    h('tbody', null, rows));
}

/** A cell with a proportional bar behind the text. */
function barCell(text, frac) {
  const bar = h('div', { class: 'bar-bg' });
  bar.style.width = `${Math.max(0, Math.min(1, frac || 0)) * 100}%`;
  return h('td', { class: 'num bar-cell' }, bar, h('span', null, text));
}

/** Shows the analysing box in `into` while polling; resolves to the body. */
async function ready(path, into, signal, what) {
  let box = null;
  return apiReady(path, {
    signal,
    onProgress: (b) => {
      if (!box) {
        box = analysingBox(what);
        into.replaceChildren(box);
      }
      box.update(b);
    },
  });
}

/** The id of a loaded heap dump whose path (or name) is `dumpPath`, or null. */
async function dumpFid(dumpPath, signal) {
  if (!dumpPath) return null;
  try {
    const info = await getInfo({ signal });
    const heaps = (info.files || []).filter((f) => f.kind === 'heap');
    const exact = heaps.find((f) => f.path === dumpPath);
    if (exact) return exact.id;
    const base = String(dumpPath).split('/').pop();
    const byName = heaps.filter((f) => f.name === base || String(f.path).endsWith(`/${dumpPath}`));
    return byName.length === 1 ? byName[0].id : null;
  } catch {
    return null;
  }
}

function crumbs(...parts) {
  const nav = h('nav', { class: 'crumbs', 'aria-label': 'breadcrumb' });
  parts.forEach((p, i) => {
    if (i) nav.append(h('span', { class: 'sep' }, '/'));
    nav.append(typeof p === 'string' ? h('span', { class: 'mono' }, p) : p);
  });
  return nav;
}

// ------------------------------------------------------------------ /heap/FID

export async function heapPage(ctx) {
  const { root, signal } = ctx;
  const fid = ctx.params[0];
  const f = await fileInfo(fid, signal);
  if (f.kind !== 'heap') throw new ApiError(404, `File ${fid} (${f.name}) is not a heap dump: it is ${f.kind}.`);
  setTitle(f.name, 'Heap');
  let query = ctx.query;

  const tabSummary = h('button', { type: 'button', role: 'tab', class: 'tab', testid: 'tab-summary', id: 'tab-summary' }, 'Summary');
  const tabRetained = h('button', { type: 'button', role: 'tab', class: 'tab', testid: 'tab-retained', id: 'tab-retained' }, 'Retained');
  const summaryPanel = h('div', { role: 'tabpanel', 'aria-labelledby': 'tab-summary' });
  const retainedPanel = h('div', { role: 'tabpanel', 'aria-labelledby': 'tab-retained' });
  const headStats = h('span', { class: 'sub' });
  root.append(
    crumbs(link('/files', 'Files'), f.name),
    h('div', { class: 'page-head' }, h('h1', { class: 'mono' }, f.name), h('span', { class: 'sub' }, `${bytes(f.bytes)} · ${f.path}`), headStats),
    h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'views' }, tabRetained, tabSummary),
    retainedPanel, summaryPanel);

  let summaryLoaded = false;
  const retained = retainedView(fid, f, retainedPanel, signal, headStats);
  const tab = () => (query.get('tab') === 'summary' ? 'summary' : 'retained');
  const show = () => {
    const t = tab();
    tabSummary.setAttribute('aria-selected', String(t === 'summary'));
    tabRetained.setAttribute('aria-selected', String(t === 'retained'));
    tabSummary.tabIndex = t === 'summary' ? 0 : -1;
    tabRetained.tabIndex = t === 'retained' ? 0 : -1;
    summaryPanel.hidden = t !== 'summary';
    retainedPanel.hidden = t !== 'retained';
    if (t === 'summary' && !summaryLoaded) {
      summaryLoaded = true;
      loadSummary(fid, summaryPanel, signal);
    }
    if (t === 'retained') retained.load(query.get('from') || null);
  };
  const choose = (t) => {
    const q = new URLSearchParams(query);
    if (t === 'summary') q.set('tab', 'summary');
    else q.delete('tab');
    query = q;
    setQuery(q, { push: true });
    show();
  };
  tabSummary.addEventListener('click', () => choose('summary'));
  tabRetained.addEventListener('click', () => choose('retained'));
  for (const t of [tabSummary, tabRetained]) {
    t.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
        ev.preventDefault();
        const other = t === tabSummary ? tabRetained : tabSummary;
        other.focus();
        other.click();
      }
    });
  }
  show();
  return {
    onQuery(q) {
      query = q;
      show();
    },
  };
}

async function loadSummary(fid, panel, signal) {
  panel.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const s = await ready(`/api/heap/${enc(fid)}/summary`, panel, signal, 'Analysing the heap dump');
    panel.replaceChildren(summaryView(s));
  } catch (e) {
    if (!signal.aborted && e.name !== 'AbortError') panel.replaceChildren(errorBox(e));
  }
}

/** `heap summary --json` as stat cards and tables. */
function summaryView(s) {
  const total = s.total || { count: 0, bytes: 0 };
  const out = h('div', { class: 'heap-summary-view', testid: 'heap-summary' });
  out.append(h('div', { class: 'stat-cards' },
    statCard('objects', count(total.count)),
    statCard('memsize', bytes(total.bytes), `${count(total.bytes)} bytes`),
    s.file_bytes !== undefined ? statCard('dump file', bytes(s.file_bytes)) : null,
    statCard('classes', count(s.classes)),
    statCard('allocation sites', count(s.sites), s.allocation_traced_objects ? `${count(s.allocation_traced_objects)} objects traced` : 'no allocation tracing'),
    s.shape_records ? statCard('shape records', count(s.shape_records), 'Ruby 3.2 or newer') : null));
  const notes = [];
  if (s.allocation_tracer) notes.push(`${bytes(s.allocation_tracer.bytes)} of this is the allocation tracer's own table (${s.allocation_tracer.address}), not the app's memory.`);
  if (s.scan && (s.scan.invalid_json_lines || s.scan.unreadable_lines)) notes.push(`${count(s.scan.invalid_json_lines)} lines of invalid JSON were read anyway; ${count(s.scan.unreadable_lines)} could not be read.`);
  if (s.scan && s.scan.truncated_at !== null && s.scan.truncated_at !== undefined) notes.push(`The dump is truncated at byte ${count(s.scan.truncated_at)}: the records before it were analysed.`);
  if (notes.length) out.append(h('div', { class: 'capture-stats' }, notes.map((n) => h('span', null, n))));

  const tb = Math.max(1, total.bytes);
  const tallyRows = (rows, name) => (rows || []).map((r) => h('tr', null,
    h('td', { class: 'mono' }, name(r)), h('td', { class: 'num' }, count(r.count)), barCell(bytes(r.bytes), r.bytes / tb), h('td', { class: 'num muted' }, percent(r.bytes, tb))));
  const cols = (first) => [[first], ['objects', 'num'], ['bytes', 'num'], ['share', 'num']];
  const grid = h('div', { class: 'grid-2' });
  grid.append(
    table(cols('type'), tallyRows(s.by_type, (r) => r.name), { testid: 'summary-table', caption: 'By type' }),
    table(cols('class'), tallyRows(s.by_class, (r) => r.name), { testid: 'summary-table', caption: `By class (${count((s.by_class || []).length)} of ${count(s.classes)})` }));
  out.append(grid);
  if ((s.by_site || []).length) {
    out.append(h('div', { class: 'section' }, table(cols('allocation site'), tallyRows(s.by_site, (r) => site(r.file, r.line, r.method)),
      { testid: 'summary-table', caption: `By allocation site (${count(s.by_site.length)} of ${count(s.sites)})` })));
  } else {
    out.append(h('p', { class: 'muted section' }, 'By allocation site: none recorded (start ObjectSpace.trace_object_allocations before allocating to get file:line).'));
  }
  const grid2 = h('div', { class: 'grid-2 section' });
  const gens = (s.by_generation || []).map((g) => ({ name: String(g.generation), count: g.count, bytes: g.bytes }));
  if (s.no_generation && s.no_generation.count) gens.push({ name: '(none: before tracing started)', ...s.no_generation });
  grid2.append(table(cols('generation (GC count at allocation)'), tallyRows(gens, (r) => r.name), { testid: 'summary-table', caption: 'By generation' }));
  const roots = (s.roots || []).map((r) => h('tr', null, h('td', { class: 'mono' }, r.root), h('td', { class: 'num' }, count(r.references))));
  const side = h('div', null, table([['root'], ['references', 'num']], roots, { testid: 'summary-table', caption: 'Roots' }));
  if ((s.slot_sizes || []).length) {
    side.append(h('div', { class: 'section' }, table([['slot size', 'num'], ['objects', 'num']],
      s.slot_sizes.map((r) => h('tr', null, h('td', { class: 'num' }, `${r.slot_size} B`), h('td', { class: 'num' }, count(r.count)))),
      { testid: 'summary-table', caption: 'Slot sizes' })));
  }
  grid2.append(side);
  out.append(grid2);
  return out;
}

// ------------------------------------------------------------------ retained: treemap, icicle, dominator tree

/** Tree rows of `top --json` (depth-first with depths) as nested nodes. */
function nestRows(rows) {
  const top = [];
  const stack = [];
  for (const r of rows || []) {
    const n = { row: r, children: [] };
    const d = r.depth || 0;
    stack.length = d;
    if (d === 0) top.push(n);
    else if (stack[d - 1]) stack[d - 1].children.push(n);
    stack[d] = n;
  }
  return top;
}

function vizNode(n) {
  const r = n.row;
  return {
    key: r.address,
    value: r.retained,
    label: displayName(r),
    sub: bytes(r.retained),
    color: classColor(objectName(r), n.row.depth ? 6 : 0),
    data: r,
    children: (n.children || []).map(vizNode),
  };
}

function retainedView(fid, f, panel, signal, headStats) {
  let currentFrom;
  let loadAbort = null;
  let mode = 'treemap'; // kept while zooming around this page, not across page loads
  const load = async (from) => {
    if (from === currentFrom && panel.firstChild) return;
    currentFrom = from;
    loadAbort?.abort();
    const mine = new AbortController();
    loadAbort = mine;
    signal.addEventListener('abort', () => mine.abort(), { once: true });
    panel.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    const qs = new URLSearchParams({ depth: '2', limit: String(TOP_LIMIT) });
    if (from) qs.set('from', from);
    let data;
    try {
      data = await ready(`/api/heap/${enc(fid)}/top?${qs}`, panel, mine.signal, 'Analysing the heap dump');
    } catch (e) {
      if (!mine.signal.aborted && e.name !== 'AbortError') {
        panel.replaceChildren(from ? crumbBar(fid, null, from) : '', errorBox(e));
      }
      return;
    }
    if (mine.signal.aborted) return;
    headStats.textContent = data.reachable ? `· ${count(data.reachable.count)} reachable objects (${bytes(data.reachable.bytes)})${data.unreachable && data.unreachable.count ? `, ${count(data.unreachable.count)} unreachable (${bytes(data.unreachable.bytes)})` : ''}` : '';
    draw(data);
  };

  const draw = (data) => {
    const from = data.from;
    const tree = nestRows(data.tree);
    const totalValue = from ? from.retained : (data.reachable ? data.reachable.bytes : tree.reduce((s, n) => s + n.row.retained, 0));
    const shown = tree.reduce((s, n) => s + n.row.retained, 0);
    const focusName = from ? `${objectName(from.object)} ${from.object.address}` : 'GC roots';
    const model = {
      value: totalValue,
      label: from ? objectName(from.object) : 'roots',
      sub: bytes(totalValue),
      children: tree.map(vizNode),
      emptyText: from ? `${focusName} retains only itself.` : 'No objects are reachable from the roots.',
    };
    const panelBox = h('div');
    const showPanel = (d) => panelBox.replaceChildren(objectPanel(fid, d, { zoom: (x) => zoom(x.address) }));
    const zoom = (addr) => navigate(`/heap/${enc(fid)}?from=${enc(addr)}`);
    const handlers = {
      onSelect: (d) => { showPanel(d); selectRow(d.address); },
      onZoom: (d) => zoom(d.address),
      tooltip: (d) => [...nodeLines(d), { text: 'click: details · double-click: zoom in', dim: true }],
    };
    const vizHolder = h('div');
    let viz = null;
    const drawViz = () => {
      viz = mode === 'icicle' ? renderIcicle(model, handlers) : renderTreemap(model, handlers);
      vizHolder.replaceChildren(viz);
    };
    const btnTreemap = h('button', { type: 'button', class: 'seg', testid: 'view-treemap' }, 'Treemap');
    const btnIcicle = h('button', { type: 'button', class: 'seg', testid: 'view-icicle' }, 'Icicle');
    const syncMode = () => {
      btnTreemap.setAttribute('aria-pressed', String(mode === 'treemap'));
      btnIcicle.setAttribute('aria-pressed', String(mode === 'icicle'));
    };
    const setMode = (m) => {
      mode = m;
      syncMode();
      drawViz();
    };
    btnTreemap.addEventListener('click', () => setMode('treemap'));
    btnIcicle.addEventListener('click', () => setMode('icicle'));
    syncMode();

    const focusLine = h('span', { class: 'focus-line' },
      from ? `${focusName}${from.object.info ? ` ${from.object.info}` : ''} retains ${bytes(from.retained)} in ${count(from.retained_objects)} objects`
        : `${count(data.reachable ? data.reachable.count : 0)} objects reachable from the roots, ${bytes(totalValue)}`);
    const who = from ? 'it retains' : 'the roots retain';
    const coverage = tree.length ? h('p', { class: 'small muted', testid: 'treemap-caption' },
      `${tree.length >= TOP_LIMIT ? `The ${TOP_LIMIT} biggest objects ${who} directly` : `The ${count(tree.length)} ${tree.length === 1 ? 'object' : 'objects'} ${who} directly`}: `
      + `${bytes(shown)} of ${bytes(totalValue)} (${percent(shown, totalValue)})${from ? `; the object itself is ${bytes(from.object.memsize || 0)}` : ''}. `
      + 'Inside a box, its own children at their true size. Click: details · double-click: zoom in.') : null;
    const notes = [];
    if (data.allocation_tracer) notes.push(h('p', { class: 'small muted' }, `The allocation tracer's own table (${data.allocation_tracer.address}, ${bytes(data.allocation_tracer.bytes)}) is left out of retained sizes.`));
    if (from && (from.dominators || []).length === 0) {
      notes.push(h('p', { class: 'small muted' }, 'No single object retains it: it hangs from the roots, or from more than one place.'));
    }

    // The dominator tree table.
    const rowsBody = h('tbody');
    const rowIndex = new Map();
    let selectedAddr = null;
    const selectRow = (addr) => {
      selectedAddr = addr;
      for (const tr of rowsBody.querySelectorAll('tr.selected')) tr.classList.remove('selected');
      const tr = rowIndex.get(addr);
      if (tr) tr.classList.add('selected');
    };
    const maxRetained = Math.max(1, totalValue);
    const addRows = (nodes, after, depth) => {
      let last = after;
      const made = [];
      for (const n of nodes) {
        const tr = domRow(n, depth);
        if (last) last.after(tr);
        else rowsBody.append(tr);
        last = tr;
        made.push(tr);
      }
      return made;
    };
    const domRow = (n, depth) => {
      const r = n.row;
      const canOpen = (r.retained_objects || 0) > 1;
      const toggle = h('button', { type: 'button', class: 'dt-toggle', 'aria-expanded': 'false', disabled: !canOpen, 'aria-label': `show what ${objectName(r)} ${r.address} retains` });
      const swatch = h('span', { class: 'swatch' });
      swatch.style.background = classColor(objectName(r));
      const nameCell = h('td', null, h('div', { class: 'dt-name' }, toggle, swatch, h('span', { class: 'dt-class' }, objectName(r))));
      nameCell.firstChild.style.paddingLeft = `${depth * 18}px`;
      const tr = h('tr', { testid: 'domtree-row', class: 'clickable', dataset: { address: r.address, depth: String(depth) } },
        barCell(bytes(r.retained), r.retained / maxRetained),
        h('td', { class: 'num' }, count(r.retained_objects)),
        nameCell,
        h('td', { class: 'dt-info', title: r.info || '' }, r.info || ''),
        h('td', { class: 'dt-addr' }, link(`/heap/${enc(fid)}?from=${enc(r.address)}`, r.address)),
        h('td', { class: 'nowrap small' }, link(`/heap/${enc(fid)}/path/${enc(r.address)}`, 'path')));
      rowIndex.set(r.address, tr);
      if (r.address === selectedAddr) tr.classList.add('selected');
      toggle.addEventListener('click', async (ev) => {
        ev.stopPropagation();
        if (tr._kids) {
          if (toggle.getAttribute('aria-expanded') === 'true') collapse(tr);
          else {
            for (const c of tr._kids) c.hidden = false;
            toggle.setAttribute('aria-expanded', 'true');
          }
          return;
        }
        toggle.disabled = true;
        let kids = n.children && n.children.length ? n.children : null;
        if (!kids) {
          try {
            const qs = new URLSearchParams({ from: r.address, depth: '1', limit: '50' });
            const d = await ready(`/api/heap/${enc(fid)}/top?${qs}`, h('div'), signal);
            kids = nestRows(d.tree);
          } catch (e) {
            toggle.disabled = false;
            if (e.name !== 'AbortError') tr.after(h('tr', null, h('td', { colspan: '6' }, errorBox(e))));
            return;
          }
        }
        tr._kids = addRows(kids, tr, depth + 1);
        toggle.disabled = false;
        toggle.setAttribute('aria-expanded', 'true');
      });
      tr.addEventListener('click', (ev) => {
        if (ev.target.closest('a, button')) return;
        showPanel(r);
        selectRow(r.address);
        if (viz) setSelected(viz, r.address);
      });
      tr.addEventListener('dblclick', (ev) => {
        if (ev.target.closest('a, button')) return;
        zoom(r.address);
      });
      tr._toggle = toggle;
      return tr;
    };
    /** Hides the rows opened under tr, and theirs. */
    const collapse = (tr) => {
      for (const c of tr._kids || []) {
        c.hidden = true;
        collapse(c);
      }
      tr._toggle?.setAttribute('aria-expanded', 'false');
    };
    addRows(tree, null, 0);

    const byClass = (data.by_class || []).map((c) => h('tr', null,
      h('td', { class: 'mono' }, h('span', { class: 'swatch', style: { background: classColor(c.class) } }), c.class),
      h('td', { class: 'num' }, count(c.instances)),
      barCell(bytes(c.retained), c.retained / maxRetained)));

    panel.replaceChildren(
      crumbBar(fid, data, from ? from.object.address : null),
      h('div', { class: 'viz-bar' },
        h('div', { class: 'segmented', role: 'group', 'aria-label': 'drawing' }, btnTreemap, btnIcicle),
        focusLine,
        from ? link(`/heap/${enc(fid)}/path/${enc(from.object.address)}`, 'why is it alive?') : null),
      h('div', null, notes),
      h('div', { class: 'grid-main' }, h('div', null, vizHolder, coverage), panelBox),
      h('div', { class: 'grid-dom section' },
        h('div', null, h('h2', null, from ? 'What it retains (dominator tree)' : 'Biggest retainers (dominator tree from the roots)'),
          h('p', { class: 'small muted' }, 'An object\'s retained size is what would be freed without it. ▸ opens what it retains; double-click a row to zoom in.'),
          tree.length ? h('table', { class: 'table table-compact domtree', testid: 'domtree' },
            h('thead', null, h('tr', null, h('th', { class: 'num' }, 'retained'), h('th', { class: 'num' }, 'objects'), h('th', null, 'class'), h('th', null, 'info'), h('th', null, 'address'), h('th', null, ''))),
            rowsBody) : h('p', { class: 'muted', testid: 'domtree' }, 'It retains only itself.')),
        h('div', null, h('h2', null, 'Retained by class'),
          h('p', { class: 'small muted' }, 'Over the whole heap; outermost instances only, so nothing counts twice.'),
          table([['class'], ['instances', 'num'], ['retained', 'num']], byClass, { testid: 'by-class' }))));
    drawViz();
    if (from) showPanel({ ...from.object, retained: from.retained, retained_objects: from.retained_objects, current: true });
    else panelBox.replaceChildren(h('div', { class: 'object-panel placeholder' }, 'Click a box to see the object; double-click (or Zoom in) to see what it retains.'));
  };

  return { load };
}

/** roots → dominators (farthest first) → current, each a link zooming there. */
function crumbBar(fid, data, current) {
  const bar = h('nav', { class: 'breadcrumb', testid: 'breadcrumb', 'aria-label': 'dominator chain' });
  const crumb = (label, addr, title, isCurrent) => {
    const b = h('button', { type: 'button', class: 'crumb', title, 'aria-current': isCurrent ? 'true' : null, dataset: { address: addr || '' } }, label);
    if (!isCurrent) b.addEventListener('click', () => navigate(addr ? `/heap/${enc(fid)}?from=${enc(addr)}` : `/heap/${enc(fid)}`));
    return b;
  };
  const from = data && data.from;
  const chain = from ? [...(from.dominators || [])].reverse() : [];
  bar.append(crumb('roots', null, 'the GC roots', !current));
  const items = chain.map((d) => crumb(displayName(d), d.address, `${d.address} ${d.type}${d.info ? ` ${d.info}` : ''}`, false));
  const sep = () => h('span', { class: 'crumb-sep', 'aria-hidden': 'true' }, '›');
  if (items.length > 8) {
    const hiddenItems = items.slice(1, items.length - 5);
    const more = h('button', { type: 'button', class: 'crumb', title: 'show the whole chain' }, `… ${hiddenItems.length} more`);
    more.addEventListener('click', () => {
      const frag = [];
      for (const it of hiddenItems) frag.push(sep(), it);
      more.replaceWith(...frag.slice(1));
    });
    bar.append(sep(), items[0], sep(), more);
    for (const it of items.slice(items.length - 5)) bar.append(sep(), it);
  } else {
    for (const it of items) bar.append(sep(), it);
  }
  if (current) {
    const o = from ? from.object : { address: current };
    bar.append(sep(), crumb(from ? displayName(o) : current, o.address, `${o.address}${o.info ? ` ${o.info}` : ''}`, true));
  }
  return bar;
}

/** The selected object's details with "Zoom in" and "Why is it alive?". */
function objectPanel(fid, d, { zoom } = {}) {
  const rows = [];
  const kv = (k, v, cls) => { if (v !== null && v !== undefined && v !== '') rows.push(h('tr', null, h('th', null, k), h('td', { class: cls }, String(v)))); };
  kv('address', d.address);
  kv('type', d.type);
  kv('class', d.class);
  kv('info', d.info);
  kv('allocated at', site(d.file, d.line));
  kv('generation', d.generation);
  kv('memsize', d.memsize !== null && d.memsize !== undefined ? bytes(d.memsize) : null);
  kv('retained', d.retained !== undefined ? `${bytes(d.retained)} (${count(d.retained)} bytes)` : null);
  kv('retained objects', d.retained_objects !== undefined ? count(d.retained_objects) : null);
  const actions = h('div', { class: 'actions' });
  if (fid && zoom) {
    const zb = h('button', { type: 'button', class: 'btn btn-small', testid: 'zoom-in', disabled: !!d.current, title: d.current ? 'this is the object shown' : 'show what it retains' }, 'Zoom in');
    zb.addEventListener('click', () => zoom(d));
    actions.append(zb);
  }
  if (fid) {
    actions.append(h('a', { class: 'btn btn-small', testid: 'why-alive', href: `/heap/${enc(fid)}/path/${enc(d.address)}` }, 'Why is it alive?'));
  }
  actions.append(copyButton(d.address, { label: 'Copy address' }));
  return h('aside', { class: 'object-panel', testid: 'object-panel', 'aria-label': 'selected object' },
    h('h3', null, objectName(d)),
    h('table', { class: 'kv' }, h('tbody', null, rows)),
    actions);
}

// ------------------------------------------------------------------ /heap/FID/path/ADDR

export async function pathPage(ctx) {
  const { root, signal } = ctx;
  const [fid, addr] = ctx.params;
  const f = await fileInfo(fid, signal);
  if (f.kind !== 'heap') throw new ApiError(404, `File ${fid} (${f.name}) is not a heap dump: it is ${f.kind}.`);
  setTitle(`path ${addr}`, f.name);
  const input = h('input', { type: 'text', class: 'input', testid: 'address-input', value: addr, 'aria-label': 'object address', placeholder: '0x7f1c2b3d4e50', spellcheck: 'false' });
  const form = h('form', { class: 'address-form' }, h('label', { class: 'muted small', for: 'addr-in' }, 'Object'), input,
    h('button', { type: 'submit', class: 'btn' }, 'Look up'));
  input.id = 'addr-in';
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const a = input.value.trim();
    if (a) navigate(`/heap/${enc(fid)}/path/${enc(a)}`);
  });
  const body = h('div');
  root.append(
    crumbs(link('/files', 'Files'), link(`/heap/${enc(fid)}`, f.name), `why is ${addr} alive`),
    h('div', { class: 'page-head' }, h('h1', null, 'Why is it alive?'), form),
    body);
  let query = ctx.query;
  const load = async () => {
    const limit = Math.max(1, Math.min(50, Number(query.get('limit')) || 3));
    body.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
    try {
      const data = await ready(`/api/heap/${enc(fid)}/path?address=${enc(addr)}&limit=${limit}`, body, signal, 'Analysing the heap dump');
      body.replaceChildren(pathView(data, fid, {
        limit,
        more: limit < 10 ? () => {
          const q = new URLSearchParams(query);
          q.set('limit', '10');
          query = q;
          setQuery(q);
          load();
        } : null,
      }));
    } catch (e) {
      fail(ctx, e, body);
    }
  };
  load(); // not awaited: the page takes query changes while it loads
  return { onQuery(q) { query = q; load(); } };
}

function stepView(s, fid, isTarget) {
  if (s.root !== undefined) {
    return h('li', { class: 'path-step root', testid: 'path-step', dataset: { root: s.root } },
      h('span', { class: 'muted' }, 'root '), h('span', { class: 'root-name' }, s.root));
  }
  return h('li', { class: ['path-step', isTarget && 'target'], testid: 'path-step', dataset: { address: s.address } }, stepBody(s, fid));
}

function stepBody(s, fid) {
  return [
    fid ? link(`/heap/${enc(fid)}?from=${enc(s.address)}`, s.address) : h('span', null, s.address), ' ',
    h('span', { class: 'step-class' }, objectName(s)), s.type && String(s.type).toLowerCase() !== String(s.class).toLowerCase() ? h('span', { class: 'muted' }, ` (${s.type})`) : null,
    s.info ? h('span', { class: 'step-info' }, ` ${s.info}`) : null,
    s.file ? h('span', { class: 'step-site' }, ` allocated at ${site(s.file, s.line)}`) : null];
}

/** `heap path --json`: the object, whether it is reachable, the paths, the referrers. */
function pathView(data, fid, { more, limit = 3 } = {}) {
  const o = data.object || {};
  const out = h('div', { class: 'path-view' });
  out.append(h('div', { class: 'path-card', testid: 'path-object' },
    h('div', { class: 'object-line mono' }, stepBody(o, fid)),
    h('p', null, data.reachable ? h('span', { class: 'yes' }, 'Reachable') : h('span', { class: 'no' }, 'Not reachable'),
      data.reachable ? ` from the GC roots; referenced by ${count(data.referrer_count)} object(s)` : ': it is garbage the GC had not collected yet when the dump was written',
      (data.referenced_by_roots || []).length ? `, and directly by the roots ${data.referenced_by_roots.join(', ')}` : '', '.'),
    o.memsize !== undefined && o.memsize !== null ? h('p', { class: 'small muted' }, `memsize ${bytes(o.memsize)}${o.generation !== null && o.generation !== undefined ? ` · generation ${o.generation}` : ''}`) : null));
  const paths = data.paths || [];
  if (paths.length) {
    out.append(h('h2', { class: 'section' }, `Retention paths (${paths.length}, shortest first)`));
    out.append(h('div', { class: 'path-list' }, paths.map((p, k) => h('div', { class: 'path-card' },
      h('h3', null, `path ${k + 1}: ${p.length - 1} reference${p.length === 2 ? '' : 's'}`),
      h('ol', { class: 'path-steps' }, p.map((s, i) => stepView(s, fid, i === p.length - 1)))))));
    if (more && paths.length >= limit) {
      const b = h('button', { type: 'button', class: 'btn section' }, 'Show up to 10 paths');
      b.addEventListener('click', more);
      out.append(b);
    }
  } else if (data.reachable === false) {
    out.append(h('p', { class: 'muted section' }, 'No path: nothing reachable from a root refers to it.'));
  }
  const refs = data.referrers || [];
  if (refs.length) {
    out.append(h('div', { class: 'section' },
      h('h2', null, `Referrers (${count(data.referrer_count)}${data.referrer_count > refs.length ? `, first ${refs.length} shown` : ''})`),
      table([['address'], ['class'], ['type'], ['info'], ['allocated at']], refs.map((r) => h('tr', null,
        h('td', { class: 'mono' }, fid ? link(`/heap/${enc(fid)}/path/${enc(r.address)}`, r.address) : r.address),
        h('td', { class: 'mono' }, objectName(r)), h('td', { class: 'mono muted' }, r.type),
        h('td', { class: 'mono muted' }, r.info || ''), h('td', { class: 'mono small muted' }, site(r.file, r.line) || ''))), { testid: 'referrers' })));
  }
  return out;
}

// ------------------------------------------------------------------ /diff?files=...

export async function diffPage(ctx) {
  const { root, signal } = ctx;
  const ids = (ctx.query.get('files') || '').split(',').map((s) => s.trim()).filter(Boolean);
  setTitle('Diff');
  const body = h('div');
  root.append(crumbs(link('/files', 'Files'), 'diff'), h('div', { class: 'page-head' }, h('h1', null, 'What grew between dumps')), body);
  if (ids.length < 2 || ids.length > 3) {
    body.append(errorBox(new ApiError(400, 'A diff takes 2 or 3 heap dumps: /diff?files=ID,ID[,ID] (tick them on the Files page).')));
    return null;
  }
  const info = await getInfo({ signal }).catch(() => ({ files: [] }));
  const names = ids.map((id) => (info.files.find((f) => f.id === id) || { name: id }).name);
  try {
    const data = await ready(`/api/diff?files=${ids.map(enc).join(',')}&limit=100`, body, signal, 'Analysing the heap dumps');
    body.replaceChildren(diffView(data, { names, lastFid: ids[ids.length - 1], fids: ids }));
  } catch (e) {
    fail(ctx, e, body);
  }
  return null;
}

/** `heap diff --json`: the dumps, what is new, the groups. */
function diffView(d, { names = [], lastFid = null, fids = [] } = {}) {
  const dumps = d.dumps || [];
  const three = dumps.length === 3;
  const out = h('div', { class: 'diff' });
  out.append(h('div', { class: 'stat-cards' },
    dumps.map((x, i) => statCard(`dump ${i + 1}: ${names[i] || String(x.path).split('/').pop()}`,
      `${count(x.total.count)} objects`, `${bytes(x.total.bytes)}${x.allocation_traced_objects ? '' : ' · no allocation tracing'}`)),
    statCard('new in dump 2', `${count(d.new_in_second.count)} objects`, `${bytes(d.new_in_second.bytes)} (not in dump 1)`),
    three && d.retained_in_third ? statCard('still in dump 3', `${count(d.retained_in_third.count)} objects`, `${bytes(d.retained_in_third.bytes)}: leak candidates`) : null));
  dumps.forEach((x, i) => {
    if (fids[i]) out.lastChild.children[i].append(h('div', { class: 'sub' }, link(`/heap/${enc(fids[i])}`, 'open')));
  });
  if (dumps.some((x) => !x.allocation_traced_objects)) {
    out.append(h('p', { class: 'small muted' }, 'Without allocation tracing objects are matched by address, type and class only: objects moved by GC.compact count as new.'));
  }
  const groups = d.groups || [];
  if (groups.length === 0) {
    out.append(h('div', { class: 'empty' }, h('h2', null, three ? 'Nothing new in dump 2 is still in dump 3' : 'Nothing in dump 2 is new')));
    return out;
  }
  const maxB = Math.max(1, ...groups.map((g) => (three && g.retained ? g.retained.bytes : g.new.bytes)));
  const rows = groups.map((g) => {
    const leaked = three && g.retained ? g.retained : g.new;
    return h('tr', { testid: 'diff-row' },
      h('td', { class: 'mono' }, h('span', { class: 'swatch', style: { background: classColor(g.class) } }), g.class),
      h('td', { class: 'mono small' }, g.site || h('span', { class: 'muted' }, '–')),
      (g.counts || []).map((c) => h('td', { class: 'num' }, count(c.count))),
      h('td', { class: 'num plus' }, `+${count(leaked.count)}`),
      barCell(bytes(leaked.bytes), leaked.bytes / maxB),
      h('td', null, h('div', { class: 'samples' }, (g.samples || []).map((a) => (lastFid ? link(`/heap/${enc(lastFid)}/path/${enc(a)}`, a) : h('span', null, a))))));
  });
  out.append(h('div', { class: 'section' },
    h('h2', null, three ? 'New in dump 2 and still in dump 3' : 'New in dump 2'),
    table([['class'], ['allocation site'], ...dumps.map((x, i) => [`in ${i + 1}`, 'num']), [three ? 'new+kept' : 'new', 'num'], ['bytes', 'num'], [`sample addresses (dump ${dumps.length})`]], rows, { testid: 'diff-groups' }),
    d.groups_with_new_objects > groups.length ? h('p', { class: 'small muted' }, `${count(d.groups_with_new_objects - groups.length)} more groups not shown.`) : null));
  return out;
}

// ------------------------------------------------------------------ /saved/FID

export async function savedPage(ctx) {
  const { root, signal } = ctx;
  const fid = ctx.params[0];
  const f = await fileInfo(fid, signal);
  setTitle(f.name, 'Saved analysis');
  const { body: data } = await api(`/api/saved/${enc(fid)}`, { signal });
  // `kind` is "top", "summary" ... here (and "saved-top" ... in /api/info); the fields decide
  // when it is missing.
  const given = String(data.kind || f.kind || '').replace(/^saved-/, '');
  const sniffed = data.groups && data.dumps ? 'diff' : data.paths ? 'path' : data.tree ? 'top' : data.by_type ? 'summary' : 'unknown';
  const kind = `saved-${['summary', 'top', 'diff', 'path'].includes(given) ? given : sniffed}`;
  const what = { 'saved-summary': 'heap summary', 'saved-top': 'heap top', 'saved-diff': 'heap diff', 'saved-path': 'heap path' }[kind] || kind;
  const body = h('div');
  root.append(
    crumbs(link('/files', 'Files'), f.name),
    h('div', { class: 'page-head' }, h('h1', { class: 'mono' }, f.name), h('span', { class: 'sub' }, `saved rbscope ${what} --json`), data.dump ? h('span', { class: 'sub' }, `of ${data.dump}`) : null),
    body);
  if (kind === 'saved-summary') {
    body.append(summaryView(data));
  } else if (kind === 'saved-top') {
    const live = await dumpFid(data.dump, signal);
    body.append(savedTop(data, live));
  } else if (kind === 'saved-diff') {
    const fids = await Promise.all((data.dumps || []).map((x) => dumpFid(x.path, signal)));
    body.append(diffView(data, { lastFid: fids[fids.length - 1], fids }));
  } else if (kind === 'saved-path') {
    body.append(pathView(data, null));
  } else {
    body.append(h('p', { class: 'muted' }, 'This saved analysis is of a kind the page does not know; here is its JSON.'),
      h('pre', { class: 'code' }, JSON.stringify(data, null, 2)));
  }
  return null;
}

/** A saved `heap top --json`: the treemap of its depth-0 rows and the tree as a table. */
function savedTop(data, liveFid) {
  const out = h('div');
  const tree = nestRows(data.tree);
  const from = data.from;
  const total = from ? from.retained : (data.reachable ? data.reachable.bytes : tree.reduce((s, n) => s + n.row.retained, 0));
  if (from) {
    const chain = [...(from.dominators || [])].reverse();
    out.append(h('nav', { class: 'breadcrumb', testid: 'breadcrumb' },
      [h('span', { class: 'crumb' }, 'roots'), ...chain.map((d) => h('span', { class: 'crumb', title: d.address }, objectName(d))),
        h('span', { class: 'crumb', 'aria-current': 'true', title: from.object.address }, objectName(from.object))]
        .flatMap((c, i) => (i ? [h('span', { class: 'crumb-sep' }, '›'), c] : [c]))));
    out.append(h('p', { class: 'focus-line mono' }, `${objectName(from.object)} ${from.object.address}${from.object.info ? ` ${from.object.info}` : ''} retains ${bytes(from.retained)} in ${count(from.retained_objects)} objects`));
  } else if (data.reachable) {
    out.append(h('p', { class: 'focus-line mono' }, `${count(data.reachable.count)} objects reachable from the roots (${bytes(data.reachable.bytes)})${data.unreachable && data.unreachable.count ? `; ${count(data.unreachable.count)} unreachable (${bytes(data.unreachable.bytes)})` : ''}`));
  }
  if (liveFid) out.append(h('p', { class: 'small' }, 'The dump itself is loaded: ', link(`/heap/${enc(liveFid)}${from ? `?from=${enc(from.object.address)}` : ''}`, 'explore it'), '.'));
  const panelBox = h('div', null, h('div', { class: 'object-panel placeholder' }, 'Click a box to see the object.'));
  const model = {
    value: total,
    children: tree.map((n) => ({ ...vizNode(n), children: [] })),
    emptyText: 'No rows were saved.',
  };
  const tm = renderTreemap(model, {
    onSelect: (d) => panelBox.replaceChildren(objectPanel(liveFid, d, { zoom: liveFid ? (x) => navigate(`/heap/${enc(liveFid)}?from=${enc(x.address)}`) : null })),
    tooltip: nodeLines,
  });
  out.append(h('div', { class: 'grid-main' }, tm, panelBox));
  const maxR = Math.max(1, total);
  const rows = (data.tree || []).map((r) => {
    const name = h('td', { class: 'mono' }, h('span', { class: 'swatch', style: { background: classColor(objectName(r)) } }), objectName(r));
    name.style.paddingLeft = `${10 + (r.depth || 0) * 18}px`;
    return h('tr', { testid: 'domtree-row', dataset: { address: r.address, depth: String(r.depth || 0) } },
      barCell(bytes(r.retained), r.retained / maxR), h('td', { class: 'num' }, count(r.retained_objects)), name,
      h('td', { class: 'dt-info mono', title: r.info || '' }, r.info || ''), h('td', { class: 'dt-addr' }, r.address));
  });
  out.append(h('div', { class: 'grid-dom section' },
    h('div', null, h('h2', null, 'Dominator tree'),
      table([['retained', 'num'], ['objects', 'num'], ['class'], ['info'], ['address']], rows, { testid: 'domtree', cls: 'domtree' })),
    h('div', null, h('h2', null, 'Retained by class'),
      table([['class'], ['instances', 'num'], ['retained', 'num']], (data.by_class || []).map((c) => h('tr', null,
        h('td', { class: 'mono' }, c.class), h('td', { class: 'num' }, count(c.instances)), barCell(bytes(c.retained), c.retained / maxR))), { testid: 'by-class' }))));
  return out;
}

