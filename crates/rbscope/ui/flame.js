// The profile page: a flame graph of sampled stacks, drawn icicle-style (the root at the top,
// callees below their callers) as DOM boxes. Click a frame to zoom into it (its ancestors stay
// above, full width); search highlights matching frames and sums their samples.

import { h, api, setTitle, fileInfo, link } from './main.js';
import { count, percent, bytes, duration } from './format.js';
import { hashString, showTooltip, hideTooltip } from './treemap.js';

const ROW = 18; // px per stack level
const MIN_PX = 1; // frames narrower than this are not drawn (nor their callees)
const LABEL_PX = 28; // frames narrower than this carry no label

export async function profilePage(ctx) {
  const { root, signal } = ctx;
  const fid = ctx.params[0];
  const f = await fileInfo(fid, signal);
  setTitle(f.name, 'Profile');
  const status = h('p', { class: 'muted' }, 'Loading the profile…');
  root.append(
    h('nav', { class: 'crumbs', 'aria-label': 'breadcrumb' }, link('/files', 'Files'), h('span', { class: 'sep' }, '/'), h('span', { class: 'mono' }, f.name)),
    status);
  const { body: data } = await api(`/api/profiles/${encodeURIComponent(fid)}`, { signal });
  status.remove();
  root.append(flameView(data, f, signal));
  return null;
}

/** A weight in the profile's unit: samples, seconds (wall time), bytes ... */
function amount(v, unit) {
  switch (unit) {
    case 'seconds': return duration(v * 1e9);
    case 'milliseconds': return duration(v * 1e6);
    case 'microseconds': return duration(v * 1e3);
    case 'nanoseconds': return duration(v);
    case 'bytes': return bytes(v);
    case 'samples': return `${count(v)} ${v === 1 ? 'sample' : 'samples'}`;
    default: return `${count(v)} ${unit}`;
  }
}

function frameColor(name) {
  if (name === 'all') return '#d5d9df';
  const x = hashString(name);
  const hue = 8 + (x % 48); // reds to yellows
  return `hsl(${hue} ${62 + ((x >>> 8) % 18)}% ${68 + ((x >>> 16) % 10)}%)`;
}

/** Adds parent links and depth; returns the deepest level. */
function prepare(node, parent, depth) {
  Object.defineProperty(node, 'parent', { value: parent, enumerable: false, writable: true });
  node.depth = depth;
  node.c = Array.isArray(node.c) ? node.c : [];
  node.v = Number(node.v) || 0;
  let max = depth;
  for (const c of node.c) max = Math.max(max, prepare(c, node, depth + 1));
  return max;
}

function flameView(data, f, signal) {
  const root = data.root || { n: 'all', v: 0, c: [] };
  prepare(root, null, 0);
  const total = Number(data.total) || root.v || 1;
  const unit = data.unit || 'samples';
  let focus = root;
  let query = '';

  const container = h('div', { class: 'flame', testid: 'flamegraph', role: 'group', 'aria-label': 'flame graph, the root at the top' });
  const inner = h('div', { class: 'flame-inner' });
  container.append(inner);
  const detail = h('div', { class: 'flame-detail', role: 'status', 'aria-live': 'polite' });
  const search = h('input', { type: 'search', class: 'input input-wide mono', testid: 'flame-search', placeholder: 'Search frames (substring)', 'aria-label': 'search frames' });
  const matchInfo = h('span', { class: 'small muted' });
  const reset = h('button', { type: 'button', class: 'btn', testid: 'zoom-reset', disabled: true }, 'Reset zoom');

  const describe = (n) => {
    const parentShare = n.parent ? ` · ${percent(n.v, n.parent.v)} of its caller` : '';
    return `${n.n} — ${amount(n.v, unit)} · ${percent(n.v, total)} of all${parentShare}`;
  };
  const showDetail = (n) => {
    detail.replaceChildren(n ? h('span', null, describe(n)) : h('span', { class: 'muted' }, 'Hover a frame for its samples; click to zoom into it.'));
  };

  const matches = (n) => query && n.n.toLowerCase().includes(query);

  const render = () => {
    const W = Math.floor(container.clientWidth);
    inner.replaceChildren();
    if (W <= 0) return;
    const chain = [];
    for (let n = focus; n; n = n.parent) chain.unshift(n);
    let maxDepth = 0;
    const nodes = [];
    const place = (n, x, w, ancestor) => {
      const el = document.createElement('div');
      el.className = `flame-node${ancestor ? ' ancestor' : ''}${n === focus && focus !== root ? ' selected' : ''}`;
      el.dataset.testid = 'flame-node';
      el.dataset.name = n.n;
      el.style.left = `${x}px`;
      el.style.top = `${n.depth * ROW}px`;
      el.style.width = `${Math.max(1, w - 0)}px`;
      el.style.background = frameColor(n.n);
      if (w >= LABEL_PX) {
        el.textContent = n.n;
        el.tabIndex = 0;
        el.setAttribute('role', 'button');
      }
      el._node = n;
      if (matches(n)) el.classList.add('match');
      nodes.push(el);
      if (n.depth > maxDepth) maxDepth = n.depth;
    };
    for (const a of chain.slice(0, -1)) place(a, 0, W, true);
    const layout = (n, x, w) => {
      if (w < MIN_PX) return;
      place(n, x, w, false);
      let cx = x;
      const denom = n.v || 1;
      for (const c of n.c) {
        const cw = (w * c.v) / denom;
        layout(c, cx, cw);
        cx += cw;
      }
    };
    layout(focus, 0, W);
    inner.style.height = `${(maxDepth + 1) * ROW + 2}px`;
    inner.append(...nodes);
    reset.disabled = focus === root;
  };

  const updateSearch = () => {
    query = search.value.trim().toLowerCase();
    for (const el of inner.children) el.classList.toggle('match', !!matches(el._node));
    if (!query) {
      matchInfo.textContent = '';
      return;
    }
    // samples of matching frames, not counting a match inside another match twice
    let frames = 0;
    let samples = 0;
    const walk = (n, inMatch) => {
      const m = matches(n);
      if (m) frames++;
      if (m && !inMatch) samples += n.v;
      for (const c of n.c) walk(c, inMatch || m);
    };
    walk(root, false);
    matchInfo.textContent = frames ? `${count(frames)} matching ${frames === 1 ? 'frame' : 'frames'}: ${amount(samples, unit)}, ${percent(samples, total)} of the total` : 'no frame matches';
  };

  const zoom = (n) => {
    focus = n || root;
    render();
    showDetail(focus === root ? null : focus);
  };

  container.addEventListener('click', (ev) => {
    const el = ev.target.closest('.flame-node');
    if (el && el._node) zoom(el._node === focus && focus.parent ? focus.parent : el._node);
  });
  container.addEventListener('keydown', (ev) => {
    const el = ev.target.closest('.flame-node');
    if (ev.key === 'Enter' && el && el._node) {
      ev.preventDefault();
      zoom(el._node);
      const again = [...inner.children].find((x) => x._node === el._node && x.tabIndex === 0);
      again?.focus();
    } else if (ev.key === 'Escape') zoom(root);
  });
  container.addEventListener('mousemove', (ev) => {
    const el = ev.target.closest('.flame-node');
    if (!el || !el._node) {
      hideTooltip();
      return;
    }
    const n = el._node;
    showDetail(n);
    showTooltip(ev, [n.n, `${amount(n.v, unit)} (${percent(n.v, total)})`, { text: n.parent ? `${percent(n.v, n.parent.v)} of ${n.parent.n}` : 'the root', dim: true }]);
  });
  container.addEventListener('mouseleave', () => {
    hideTooltip();
    showDetail(focus === root ? null : focus);
  });
  reset.addEventListener('click', () => zoom(root));
  let typing = null;
  search.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(updateSearch, 120);
  });
  search.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') { clearTimeout(typing); updateSearch(); }
  });

  let lastW = -1;
  const ro = new ResizeObserver(() => {
    if (container.clientWidth !== lastW) {
      lastW = container.clientWidth;
      render();
    }
  });
  ro.observe(container);
  signal.addEventListener('abort', () => {
    ro.disconnect();
    hideTooltip();
  });
  showDetail(null);

  return h('div', { class: 'profile' },
    h('div', { class: 'page-head' },
      h('h1', { class: 'mono' }, f.name),
      h('span', { class: 'sub' }, `${amount(total, unit)}${data.threads ? ` · ${count(data.threads)} ${data.threads === 1 ? 'thread' : 'threads'}` : ''} · ${bytes(f.bytes)}`)),
    h('div', { class: 'toolbar' }, search, reset, matchInfo),
    h('p', { class: 'small muted' }, 'Icicle layout: the root at the top, each frame\'s callees below it, widths proportional to its share of the samples. Click a frame to zoom in (click it again to go up one level); Escape or Reset zoom shows everything.'),
    detail,
    root.v ? container : h('p', { class: 'muted' }, 'This profile has no samples.'));
}
