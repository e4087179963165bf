// Treemap and icicle drawings of retained sizes. The layouts are pure functions (squarified
// treemap after Bruls, Huizing and van Wijk; an icicle by depth); the renderers turn a small
// tree model into absolutely positioned elements, skipping anything under 2 px.

import { h } from './main.js';
import { bytes, count } from './format.js';

// ------------------------------------------------------------------ layouts

/**
 * Squarified treemap: rectangles for `values` inside {x, y, w, h}, in the order of `values`,
 * with areas proportional to the values. Non-positive values get empty rectangles.
 */
export function squarify(values, rect) {
  const out = values.map(() => ({ x: rect.x, y: rect.y, w: 0, h: 0 }));
  const total = values.reduce((s, v) => s + (v > 0 ? v : 0), 0);
  if (total <= 0 || rect.w <= 0 || rect.h <= 0) return out;
  const scale = (rect.w * rect.h) / total;
  const order = values.map((v, i) => i).filter((i) => values[i] > 0).sort((a, b) => values[b] - values[a]);
  let { x, y, w, h: ht } = rect;
  let row = [];
  let rowSum = 0;

  const worst = (sum, min, max, side) => {
    const s2 = sum * sum;
    const side2 = side * side;
    return Math.max((side2 * max) / s2, s2 / (side2 * min));
  };
  const layout = () => {
    if (row.length === 0) return;
    if (w >= ht) {
      const colW = ht > 0 ? rowSum / ht : 0;
      let yy = y;
      for (const [i, a] of row) {
        const hh = colW > 0 ? a / colW : 0;
        out[i] = { x, y: yy, w: colW, h: hh };
        yy += hh;
      }
      x += colW;
      w -= colW;
    } else {
      const rowH = w > 0 ? rowSum / w : 0;
      let xx = x;
      for (const [i, a] of row) {
        const ww = rowH > 0 ? a / rowH : 0;
        out[i] = { x: xx, y, w: ww, h: rowH };
        xx += ww;
      }
      y += rowH;
      ht -= rowH;
    }
    row = [];
    rowSum = 0;
  };

  let k = 0;
  while (k < order.length) {
    const i = order[k];
    const a = values[i] * scale;
    const side = Math.min(w, ht);
    if (row.length === 0) {
      row.push([i, a]);
      rowSum = a;
      k++;
      continue;
    }
    const min = Math.min(row[row.length - 1][1], a); // areas arrive in descending order
    const max = row[0][1];
    const before = worst(rowSum, row[row.length - 1][1], max, side);
    const after = worst(rowSum + a, min, Math.max(max, a), side);
    if (after <= before) {
      row.push([i, a]);
      rowSum += a;
      k++;
    } else {
      layout();
    }
  }
  layout();
  return out;
}

/**
 * Icicle: for a tree {value, children}, rectangles by depth: the root spans the width, each
 * child a share of its parent's span proportional to its value. Returns [{node, depth, x, w}].
 */
export function icicle(root, width) {
  const out = [];
  const walk = (node, depth, x, w) => {
    out.push({ node, depth, x, w });
    const kids = node.children || [];
    let cx = x;
    const total = Math.max(node.value, kids.reduce((s, c) => s + c.value, 0));
    if (total <= 0) return;
    for (const c of kids) {
      const cw = (w * c.value) / total;
      walk(c, depth + 1, cx, cw);
      cx += cw;
    }
  };
  walk(root, 0, 0, width);
  return out;
}

// ------------------------------------------------------------------ colours

/** A stable 32-bit hash of a string (FNV-1a). */
export function hashString(s) {
  let x = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    x ^= s.charCodeAt(i);
    x = Math.imul(x, 0x01000193);
  }
  return x >>> 0;
}

/** A soft colour for a class name; `lighter` for nested boxes. */
export function classColor(name, lighter = 0) {
  const x = hashString(String(name || '?'));
  const hue = x % 360;
  const sat = 42 + ((x >>> 9) % 20);
  const light = 70 + ((x >>> 17) % 8) + lighter;
  return `hsl(${hue} ${sat}% ${Math.min(light, 92)}%)`;
}

// ------------------------------------------------------------------ rendering

const MIN_PX = 2; // nodes smaller than this are not drawn
const HEADER = 16; // label strip of a top-level box

/** A tooltip element shared by every drawing on the page. */
let tip = null;
function tooltip() {
  if (!tip || !tip.isConnected) {
    tip = h('div', { class: 'tooltip', role: 'tooltip', hidden: true });
    document.body.append(tip);
  }
  return tip;
}

export function showTooltip(ev, lines) {
  const t = tooltip();
  t.replaceChildren(...lines.map((l, i) => h('div', { class: i === 0 ? 'tt-title' : l.dim ? 'tt-dim' : null }, l.text ?? l)));
  t.hidden = false;
  const pad = 14;
  const r = t.getBoundingClientRect();
  let x = ev.clientX + pad;
  let y = ev.clientY + pad;
  if (x + r.width > window.innerWidth - 4) x = ev.clientX - r.width - pad;
  if (y + r.height > window.innerHeight - 4) y = ev.clientY - r.height - pad;
  t.style.left = `${Math.max(4, x)}px`;
  t.style.top = `${Math.max(4, y)}px`;
}

export function hideTooltip() {
  if (tip) tip.hidden = true;
}

/** Tooltip lines for a heap tree row. */
export function nodeLines(d) {
  const lines = [`${d.class || d.type}${d.info ? `  ${d.info}` : ''}`];
  lines.push({ text: `${d.type} ${d.address}`, dim: true });
  if (d.retained !== undefined) lines.push(`retained ${bytes(d.retained)} in ${count(d.retained_objects)} objects`);
  if (d.memsize !== undefined && d.memsize !== null) lines.push({ text: `self ${bytes(d.memsize)}`, dim: true });
  if (d.file) lines.push({ text: `${d.file}${d.line ? `:${d.line}` : ''}`, dim: true });
  return lines;
}

/**
 * Draws a two-level treemap. model: {value, children: [{key, value, label, sub, color, data,
 * children: [...]}], emptyText}. A click selects the innermost box under the pointer (a box's
 * label strip selects the box itself). Handlers: onSelect(data, el), onZoom(data),
 * tooltip(data) → lines. Returns the element.
 */
export function renderTreemap(model, handlers = {}) {
  const el = h('div', { class: 'treemap', testid: 'treemap', role: 'group', 'aria-label': 'treemap of retained size' });
  attach(el, handlers);
  const draw = () => {
    const W = el.clientWidth;
    const H = el.clientHeight;
    el.replaceChildren();
    if (W <= 0 || H <= 0) return;
    const kids = model.children || [];
    if (kids.length === 0) {
      el.append(h('div', { class: 'tm-empty' }, model.emptyText || 'Nothing to show: it retains only itself.'));
      return;
    }
    // The listed rows share the whole area (the caption says how much they cover); inside a
    // box, its children take their true share and the rest shows the box's own colour.
    const rects = squarify(kids.map((c) => c.value), { x: 0, y: 0, w: W, h: H });
    kids.forEach((c, i) => {
      const r = rects[i];
      if (r.w < MIN_PX || r.h < MIN_PX) return;
      const box = nodeBox(c, r, 0);
      el.append(box);
      const inner = c.children || [];
      const header = r.h > HEADER * 2 && r.w > 30 ? HEADER : 0;
      const iw = r.w - 2 - 4;
      const ih = r.h - 2 - header - 3;
      if (inner.length && iw > MIN_PX && ih > MIN_PX) {
        const sum = inner.reduce((s, k) => s + k.value, 0);
        const vals = inner.map((k) => k.value);
        const own = Math.max(0, c.value - sum);
        if (own > 0) vals.push(own);
        const sub = squarify(vals, { x: 2, y: header + 1, w: iw, h: ih });
        inner.forEach((k, j) => {
          const rr = sub[j];
          if (rr.w < MIN_PX || rr.h < MIN_PX) return;
          box.append(nodeBox(k, rr, 1));
        });
      }
    });
    markSelected(el);
  };
  observeSize(el, draw);
  return el;
}

function place(el, r) {
  el.style.left = `${r.x}px`;
  el.style.top = `${r.y}px`;
  el.style.width = `${Math.max(0, r.w)}px`;
  el.style.height = `${Math.max(0, r.h)}px`;
}

function nodeBox(c, r, depth) {
  const box = h('div', {
    class: ['tm-node', `tm-depth${depth}`],
    testid: 'treemap-node',
    dataset: { address: c.key, depth: String(depth) },
    tabindex: depth === 0 ? '0' : '-1',
    role: 'button',
    'aria-label': `${c.label}, ${c.sub}`,
  });
  box._data = c.data;
  box.style.background = c.color;
  place(box, r);
  if ((depth === 0 && r.w > 34 && r.h > 13) || (depth === 1 && r.w > 44 && r.h > 14)) {
    box.append(h('span', { class: 'tm-label' }, h('b', null, c.label), h('span', { class: 'tm-size' }, c.sub)));
  }
  return box;
}

/**
 * Draws an icicle of the same model: the focus on top, then its children, then theirs.
 * Returns the element.
 */
export function renderIcicle(model, handlers = {}) {
  const el = h('div', { class: 'icicle', testid: 'icicle', role: 'group', 'aria-label': 'icicle of retained size' });
  attach(el, handlers);
  const ROW = 26;
  const draw = () => {
    const W = el.clientWidth;
    el.replaceChildren();
    if (W <= 0) return;
    const root = { key: null, value: model.value, children: model.children || [], label: model.label, sub: model.sub, color: '#d5dae1' };
    const laid = icicle(root, W);
    const depth = laid.reduce((m, r) => Math.max(m, r.depth), 0);
    el.style.height = `${Math.max(3, depth + 1) * ROW + 2}px`;
    for (const r of laid) {
      if (r.w < MIN_PX) continue;
      const rect = { x: r.x, y: r.depth * ROW, w: r.w, h: ROW - 1 };
      if (r.depth === 0) {
        const top = h('div', { class: 'tm-node tm-rest', title: r.node.label });
        top.style.background = r.node.color;
        place(top, rect);
        top.append(h('span', { class: 'tm-label' }, h('b', null, r.node.label), h('span', { class: 'tm-size' }, r.node.sub || '')));
        el.append(top);
        continue;
      }
      const box = nodeBox(r.node, rect, r.depth - 1);
      box.classList.add('ic-node');
      el.append(box);
    }
    if ((model.children || []).length === 0) {
      el.append(h('div', { class: 'tm-empty' }, model.emptyText || 'Nothing to show: it retains only itself.'));
    }
    markSelected(el);
  };
  observeSize(el, draw);
  return el;
}

/** Redraws whenever the element's width changes (and once it is in the document). */
function observeSize(el, draw) {
  let lastW = -1;
  const ro = new ResizeObserver(() => {
    if (el.clientWidth !== lastW) {
      lastW = el.clientWidth;
      draw();
    }
  });
  ro.observe(el);
  el._redraw = draw;
}

function markSelected(el) {
  const key = el.dataset.selected;
  for (const n of el.querySelectorAll('.tm-node.selected')) n.classList.remove('selected');
  if (!key) return;
  for (const n of el.querySelectorAll('[data-testid="treemap-node"]')) {
    if (n.dataset.address === key) n.classList.add('selected');
  }
}

/** Marks the node with this key as selected in a treemap or icicle element. */
export function setSelected(el, key) {
  if (key) el.dataset.selected = key;
  else delete el.dataset.selected;
  markSelected(el);
}

function attach(el, { onSelect, onZoom, tooltip: lines }) {
  const target = (ev) => {
    const n = ev.target.closest('[data-testid="treemap-node"]');
    return n && el.contains(n) ? n : null;
  };
  el.addEventListener('click', (ev) => {
    const n = target(ev);
    if (n && onSelect) {
      setSelected(el, n.dataset.address);
      onSelect(n._data, n);
    }
  });
  el.addEventListener('dblclick', (ev) => {
    const n = target(ev);
    if (n && onZoom) {
      hideTooltip();
      onZoom(n._data);
    }
  });
  el.addEventListener('keydown', (ev) => {
    const n = target(ev);
    if (!n) return;
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      if (ev.shiftKey && onZoom) onZoom(n._data);
      else if (onSelect) {
        setSelected(el, n.dataset.address);
        onSelect(n._data, n);
      }
    } else if ((ev.key === 'z' || ev.key === '+') && onZoom) {
      ev.preventDefault();
      onZoom(n._data);
    }
  });
  el.addEventListener('mousemove', (ev) => {
    const n = target(ev);
    if (n && lines) showTooltip(ev, lines(n._data));
    else hideTooltip();
  });
  el.addEventListener('mouseleave', hideTooltip);
}
