// The trace page: a per-thread timeline of method calls drawn on a canvas. Spans are indexed
// per thread and depth (sorted by start, with a running maximum of ends) so a frame draws only
// what overlaps the view, by binary search, even with 500,000 spans.

import { h, api, setTitle, fileInfo, link } from './main.js';
import { count, duration, bytes } from './format.js';
import { hashString, showTooltip, hideTooltip } from './treemap.js';

const ROW = 16; // height of one depth row
const LANE_PAD = 4; // space above a lane's first row
const LANE_MIN = 36; // a lane is at least this tall (room for its label)
const MIN_W = 1; // spans narrower than this (px) are drawn this wide, one per pixel column
const FONT = '11px ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace';

export async function tracePage(ctx) {
  const { root, signal } = ctx;
  const fid = ctx.params[0];
  const f = await fileInfo(fid, signal);
  setTitle(f.name, 'Trace');
  const status = h('p', { class: 'muted' }, 'Loading the trace…');
  root.append(
    h('nav', { class: 'crumbs', 'aria-label': 'breadcrumb' }, link('/files', 'Files'), h('span', { class: 'sep' }, '/'), h('span', { class: 'mono' }, f.name)),
    status);
  const { body: data } = await api(`/api/traces/${encodeURIComponent(fid)}`, { signal });
  status.remove();
  root.append(timelineView(data, f, signal));
  return null;
}

/** Per-(thread, depth) sorted arrays of one thread's spans. */
function indexThread(t) {
  const spans = t.spans || [];
  let maxDepth = 0;
  const perDepth = [];
  for (let i = 0; i < spans.length; i++) {
    const d = Math.max(0, spans[i][2] | 0);
    if (d > maxDepth) maxDepth = d;
    (perDepth[d] || (perDepth[d] = [])).push(i);
  }
  const rows = [];
  for (let d = 0; d <= maxDepth; d++) {
    const ids = perDepth[d] || [];
    ids.sort((a, b) => spans[a][0] - spans[b][0]);
    const n = ids.length;
    const start = new Float64Array(n);
    const end = new Float64Array(n);
    const maxEnd = new Float64Array(n);
    const idx = new Int32Array(n);
    let m = -Infinity;
    for (let k = 0; k < n; k++) {
      const s = spans[ids[k]];
      start[k] = s[0];
      end[k] = s[0] + s[1];
      m = Math.max(m, end[k]);
      maxEnd[k] = m;
      idx[k] = ids[k];
    }
    rows.push({ start, end, maxEnd, idx, n });
  }
  return { spans, rows, maxDepth: spans.length ? maxDepth : 0 };
}

/** First k with a[k] > v (a non-decreasing), or a.length. */
function firstAbove(a, v, n) {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] > v) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** First k with a[k] >= v, or n. */
function firstAtLeast(a, v, n) {
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] >= v) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function spanColor(name, open) {
  const x = hashString(name || '');
  const hue = (x % 300) + 190; // blues, purples, greens; reds are kept for GC
  return `hsl(${hue % 360} ${45 + ((x >>> 9) % 20)}% ${open ? 80 : 74 + ((x >>> 15) % 8)}%)`;
}

function timelineView(data, f, signal) {
  const names = data.names || [];
  const total = Math.max(1, (data.end_ns ?? 0) - (data.start_ns ?? 0));
  const threads = (data.threads || []).map((t) => ({ ...t, ix: indexThread(t) }));
  const gcSpans = (data.gc || []).map((g) => [g[0], g[1], 0, -1, 0, null]);
  const gc = gcSpans.length ? { gc: true, name: 'GC', ix: indexThread({ spans: gcSpans.sort((a, b) => a[0] - b[0]) }) } : null;
  const lanes = [...(gc ? [gc] : []), ...threads];
  let y = 0;
  for (const l of lanes) {
    l.y = y;
    l.h = Math.max(LANE_MIN, LANE_PAD + (l.ix.maxDepth + 1) * ROW + 4);
    y += l.h;
  }
  const totalH = Math.max(y, 60);
  const spanCount = threads.reduce((s, t) => s + t.ix.spans.length, 0);

  // ---- header and controls
  const zin = h('button', { type: 'button', class: 'btn btn-small', testid: 'zoom-in', title: 'zoom in (+)' }, 'Zoom in');
  const zout = h('button', { type: 'button', class: 'btn btn-small', testid: 'zoom-out', title: 'zoom out (−)' }, 'Zoom out');
  const zreset = h('button', { type: 'button', class: 'btn btn-small', testid: 'zoom-reset', title: 'show the whole trace (0)' }, 'Reset');
  const viewInfo = h('span', { class: 'small muted mono', role: 'status' });
  const header = h('div', { class: 'page-head' },
    h('h1', { class: 'mono' }, f.name),
    h('span', { class: 'sub', testid: 'trace-stats' },
      `${count(data.spans ?? spanCount)} spans`,
      (data.shown ?? spanCount) < (data.spans ?? spanCount) ? ` (${count(data.shown)} shown: the longest kept)` : ` (${count(data.shown ?? spanCount)} shown)`,
      ` · ${count(data.lost || 0)} events lost · ${count(threads.length)} threads · ${duration(total)}`,
      data.format ? ` · ${data.format}` : '', ` · ${bytes(f.bytes)}`));
  const legend = h('div', { class: 'legend' },
    h('span', null, 'wheel: zoom at the pointer · drag: pan · click a span for details'),
    h('span', null, h('span', { class: 'hatch' }), ' still running when the trace ended'));

  // ---- the drawing
  const axis = h('div', { class: 'timeline-axis', 'aria-hidden': 'true' });
  const canvas = h('canvas', { class: 'timeline-canvas', tabindex: '0', role: 'img', 'aria-label': 'timeline of method calls per thread; use + and - to zoom, arrows to pan' });
  const labels = h('div', { class: 'timeline-labels' });
  labels.style.height = `${totalH}px`;
  for (const l of lanes) {
    const el = l.gc
      ? h('div', { class: 'thread-label gc', testid: 'gc-label' }, h('span', { class: 'tl-name' }, 'GC'), h('span', { class: 'tl-meta' }, `${count(l.ix.spans.length)} collections`))
      : h('div', { class: 'thread-label', testid: 'thread-label', dataset: { tid: String(l.tid) } },
        h('span', { class: 'tl-name', title: l.name || '' }, l.name || '(unnamed thread)'),
        h('span', { class: 'tl-meta' }, `tid ${l.tid} · ${count(l.ix.spans.length)} spans`));
    el.style.top = `${l.y}px`;
    el.style.height = `${l.h}px`;
    labels.append(el);
  }
  const canvasCol = h('div', { class: 'timeline-canvas-col' }, canvas);
  canvasCol.style.height = `${totalH}px`;
  const inner = h('div', { class: 'timeline-inner' }, labels, canvasCol);
  const scroller = h('div', { class: 'timeline-scroll' }, inner);
  const wrap = h('div', { class: 'timeline-wrap', testid: 'timeline' },
    h('div', { class: 'timeline-axis-row' }, h('div', { class: 'timeline-axis-spacer' }, 'thread'), axis),
    scroller);
  const detail = h('div', { class: 'span-detail-box' });

  const view = { t0: 0, nsPerPx: 1, W: 0, H: 0 };
  let selected = null; // {lane, i}
  let frame = 0;
  const hatch = makeHatch();

  const fit = () => {
    view.t0 = 0;
    view.nsPerPx = total / Math.max(1, view.W);
  };
  const clamp = () => {
    const maxNs = total / Math.max(1, view.W);
    view.nsPerPx = Math.min(Math.max(view.nsPerPx, 0.001), maxNs * 1.0);
    const span = view.nsPerPx * view.W;
    view.t0 = Math.min(Math.max(view.t0, 0), Math.max(0, total - span));
  };
  const zoomAt = (px, factor) => {
    const t = view.t0 + px * view.nsPerPx;
    view.nsPerPx *= factor;
    clamp();
    view.t0 = t - px * view.nsPerPx;
    clamp();
    schedule();
  };

  const resize = () => {
    const W = Math.max(50, Math.floor(canvasCol.clientWidth));
    const H = Math.max(50, Math.floor(scroller.clientHeight));
    const first = view.W === 0;
    const keepScale = view.W ? view.nsPerPx * view.W : 0;
    view.W = W;
    view.H = H;
    if (first) fit();
    else if (keepScale) view.nsPerPx = keepScale / W;
    clamp();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
    canvas.style.width = `${W}px`;
    canvas.style.height = `${H}px`;
    draw();
  };

  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(); });
  };

  const draw = () => {
    if (!view.W) return;
    const dpr = window.devicePixelRatio || 1;
    const c = canvas.getContext('2d');
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.clearRect(0, 0, view.W, view.H);
    c.font = FONT;
    c.textBaseline = 'middle';
    const charW = c.measureText('M').width || 6.6;
    const top = scroller.scrollTop;
    const t0 = view.t0;
    const t1 = view.t0 + view.W * view.nsPerPx;
    const k = 1 / view.nsPerPx;
    let drawn = 0;
    for (const l of lanes) {
      if (l.y + l.h < top || l.y > top + view.H) continue;
      const ly = l.y - top;
      c.fillStyle = l.gc ? '#fdf3f2' : '#ffffff';
      c.fillRect(0, ly, view.W, l.h);
      c.fillStyle = '#e3e6ea';
      c.fillRect(0, ly, view.W, 1);
      for (let d = 0; d < l.ix.rows.length; d++) {
        const ry = ly + LANE_PAD + d * ROW;
        if (ry + ROW < 0 || ry > view.H) continue;
        const r = l.ix.rows[d];
        let i = firstAbove(r.maxEnd, t0, r.n);
        let lastPx = -1;
        for (; i < r.n && r.start[i] < t1; i++) {
          const s = r.start[i];
          const e = r.end[i];
          if (e <= t0) continue;
          const w = (e - s) * k;
          const x = (s - t0) * k;
          const xi = Math.floor(x);
          if (w < 2 && xi === lastPx) continue; // many tiny spans on one pixel: draw one
          lastPx = xi;
          const span = l.ix.spans[r.idx[i]];
          const name = l.gc ? 'GC' : names[span[3]] ?? `#${span[3]}`;
          const open = span[4] === 1;
          const cx = Math.max(x, -2);
          const cw = Math.min(x + w, view.W + 2) - cx;
          c.fillStyle = l.gc ? '#e8837b' : spanColor(name, open);
          c.fillRect(cx, ry + 1, Math.max(cw, MIN_W), ROW - 2);
          if (open) {
            c.fillStyle = hatch(c);
            c.fillRect(cx, ry + 1, Math.max(cw, MIN_W), ROW - 2);
          }
          if (cw > 3) {
            c.fillStyle = 'rgba(0,0,0,0.18)';
            c.fillRect(cx, ry + 1, 1, ROW - 2); // left edge; an open span has no right edge
            if (!open) c.fillRect(cx + cw - 1, ry + 1, 1, ROW - 2);
          }
          if (cw > 28 && !l.gc) {
            const room = Math.floor((cw - 6) / charW);
            const label = name.length > room ? `${name.slice(0, Math.max(1, room - 1))}…` : name;
            c.fillStyle = '#17202a';
            c.fillText(label, Math.max(cx, 0) + 3, ry + ROW / 2 + 0.5);
          }
          drawn++;
        }
      }
    }
    if (selected) {
      const l = selected.lane;
      const s = l.ix.spans[selected.i];
      const x = (s[0] - t0) * k;
      const w = Math.max(2, s[1] * k);
      const ry = l.y - top + LANE_PAD + (s[2] | 0) * ROW;
      c.strokeStyle = '#111';
      c.lineWidth = 2;
      c.strokeRect(x, ry + 1, w, ROW - 2);
    }
    drawAxis(axis, view);
    viewInfo.textContent = `${duration(t0)} – ${duration(t1)} (${duration(t1 - t0)} wide) · ${count(drawn)} spans drawn`;
    canvas.dataset.drawn = String(drawn);
  };

  // ---- hit testing and details
  const hit = (px, py) => {
    const yy = py + scroller.scrollTop;
    const l = lanes.find((x) => yy >= x.y && yy < x.y + x.h);
    if (!l) return null;
    const d = Math.floor((yy - l.y - LANE_PAD) / ROW);
    if (d < 0 || d >= l.ix.rows.length) return null;
    const r = l.ix.rows[d];
    const t = view.t0 + px * view.nsPerPx;
    const slack = 3 * view.nsPerPx;
    let i = firstAbove(r.maxEnd, t - slack, r.n);
    let best = null;
    let bestDist = Infinity;
    const stop = firstAtLeast(r.start, t + slack, r.n);
    for (; i < stop; i++) {
      if (r.end[i] < t - slack) continue;
      const dist = t < r.start[i] ? r.start[i] - t : t > r.end[i] ? t - r.end[i] : 0;
      if (dist < bestDist) {
        bestDist = dist;
        best = r.idx[i];
        if (dist === 0) break;
      }
    }
    return best === null ? null : { lane: l, i: best };
  };

  const showDetail = (sel) => {
    selected = sel;
    schedule();
    if (!sel) {
      detail.replaceChildren();
      return;
    }
    const s = sel.lane.ix.spans[sel.i];
    const name = sel.lane.gc ? 'GC' : names[s[3]] ?? `#${s[3]}`;
    const rows = [
      ['method', name],
      ['thread', sel.lane.gc ? 'garbage collector' : `${sel.lane.name || '(unnamed)'} (tid ${sel.lane.tid})`],
      ['start', `${duration(s[0])} after the trace started`],
      ['duration', `${duration(s[1])}${s[4] === 1 ? ' so far: still running when the trace ended' : ''}`],
      ['depth', String(s[2])],
    ];
    detail.replaceChildren(h('div', { class: 'span-detail', testid: 'span-detail' },
      h('h3', null, name),
      h('table', { class: 'kv' }, h('tbody', null, rows.map(([k, v]) => h('tr', null, h('th', null, k), h('td', null, v))))),
      s[5] !== null && s[5] !== undefined && s[5] !== '' ? h('div', null, h('div', { class: 'small muted' }, 'captured values'), h('pre', { class: 'code' }, String(s[5]))) : null));
  };

  // ---- input
  canvas.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const px = ev.clientX - rect.left;
    if (Math.abs(ev.deltaX) > Math.abs(ev.deltaY) || ev.shiftKey) {
      view.t0 += (ev.shiftKey ? ev.deltaY : ev.deltaX) * view.nsPerPx;
      clamp();
      schedule();
      return;
    }
    const unit = ev.deltaMode === 1 ? 33 : ev.deltaMode === 2 ? 400 : 1;
    zoomAt(px, Math.exp(ev.deltaY * unit * 0.0022));
  }, { passive: false });

  let drag = null;
  canvas.addEventListener('pointerdown', (ev) => {
    if (ev.button !== 0) return;
    canvas.setPointerCapture(ev.pointerId);
    drag = { x: ev.clientX, y: ev.clientY, t0: view.t0, top: scroller.scrollTop, moved: false };
    hideTooltip();
  });
  canvas.addEventListener('pointermove', (ev) => {
    const rect = canvas.getBoundingClientRect();
    if (drag) {
      const dx = ev.clientX - drag.x;
      const dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) {
        drag.moved = true;
        canvas.classList.add('dragging');
      }
      if (drag.moved) {
        view.t0 = drag.t0 - dx * view.nsPerPx;
        clamp();
        scroller.scrollTop = drag.top - dy;
        schedule();
      }
      return;
    }
    const sel = hit(ev.clientX - rect.left, ev.clientY - rect.top);
    if (sel) {
      const s = sel.lane.ix.spans[sel.i];
      const name = sel.lane.gc ? 'GC' : names[s[3]] ?? `#${s[3]}`;
      showTooltip(ev, [name, `${duration(s[1])}${s[4] === 1 ? ' (still running)' : ''} at ${duration(s[0])}`, ...(s[5] ? [{ text: String(s[5]).slice(0, 200), dim: true }] : [])]);
    } else hideTooltip();
  });
  const endDrag = (ev) => {
    if (!drag) return;
    const wasClick = !drag.moved;
    drag = null;
    canvas.classList.remove('dragging');
    if (wasClick && ev.type === 'pointerup') {
      const rect = canvas.getBoundingClientRect();
      showDetail(hit(ev.clientX - rect.left, ev.clientY - rect.top));
    }
  };
  canvas.addEventListener('pointerup', endDrag);
  canvas.addEventListener('pointercancel', endDrag);
  canvas.addEventListener('pointerleave', () => hideTooltip());
  canvas.addEventListener('keydown', (ev) => {
    const mid = view.W / 2;
    if (ev.key === '+' || ev.key === '=') zoomAt(mid, 0.5);
    else if (ev.key === '-' || ev.key === '_') zoomAt(mid, 2);
    else if (ev.key === '0') { fit(); schedule(); }
    else if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
      view.t0 += (ev.key === 'ArrowLeft' ? -0.15 : 0.15) * view.W * view.nsPerPx;
      clamp();
      schedule();
    } else if (ev.key === 'Escape') showDetail(null);
    else return;
    ev.preventDefault();
  });
  zin.addEventListener('click', () => zoomAt(view.W / 2, 0.5));
  zout.addEventListener('click', () => zoomAt(view.W / 2, 2));
  zreset.addEventListener('click', () => { fit(); schedule(); });
  scroller.addEventListener('scroll', schedule);

  const ro = new ResizeObserver(() => resize());
  ro.observe(scroller);
  signal.addEventListener('abort', () => {
    ro.disconnect();
    hideTooltip();
  });
  // Every lane on the page when they fit in a few screens (the page scrolls); else a scrolling
  // box whose canvas only ever covers what is visible.
  const FULL = 2400;
  scroller.style.height = totalH <= FULL ? `${totalH}px` : `${Math.max(300, Math.round(window.innerHeight * 0.75))}px`;
  if (totalH <= FULL) scroller.style.overflowY = 'hidden';

  return h('div', { class: 'trace' },
    header,
    h('div', { class: 'toolbar' }, zin, zout, zreset, viewInfo),
    legend,
    spanCount === 0 && !gc ? h('p', { class: 'muted' }, 'This trace has no spans.') : null,
    wrap,
    detail);
}

/** A diagonal hatch pattern (created once per context). */
function makeHatch() {
  let pattern = null;
  return (c) => {
    if (pattern) return pattern;
    const t = document.createElement('canvas');
    t.width = 6;
    t.height = 6;
    const g = t.getContext('2d');
    g.strokeStyle = 'rgba(255,255,255,0.85)';
    g.lineWidth = 1.5;
    g.beginPath();
    g.moveTo(0, 6);
    g.lineTo(6, 0);
    g.moveTo(-1, 1);
    g.lineTo(1, -1);
    g.moveTo(5, 7);
    g.lineTo(7, 5);
    g.stroke();
    pattern = c.createPattern(t, 'repeat');
    return pattern;
  };
}

/** Tick marks every 1, 2 or 5 × 10^k ns, about every 110 px (a few DOM labels). */
function drawAxis(axis, view) {
  const W = axis.clientWidth;
  const target = 110 * view.nsPerPx;
  const p = 10 ** Math.floor(Math.log10(Math.max(target, 1e-3)));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= target) || 10 * p;
  const first = Math.ceil(view.t0 / step) * step;
  const end = view.t0 + W * view.nsPerPx;
  const ticks = [];
  for (let t = first; t <= end && ticks.length < 200; t += step) {
    const tick = document.createElement('span');
    tick.className = 'tick';
    tick.textContent = duration(t);
    tick.style.left = `${Math.round((t - view.t0) / view.nsPerPx)}px`;
    ticks.push(tick);
  }
  axis.replaceChildren(...ticks);
}
