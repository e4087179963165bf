// The expandable tree of captured Ruby values (a frame's self and locals). Values come tagged
// from the snapshot JSON; objects are shared by id, so cycles and shared references are shown
// once and linked from elsewhere. Children are rendered only when a row is opened.
// ActiveRecord records and ActionController::Parameters come with a view (the API's `views`,
// made by the CLI's views/records.rs, as `rbscope show` shows them): a record opens to its
// attributes, parameters to their entries, and either to its raw internals below.

import { h, add } from './main.js';
import { count, utcTime } from './format.js';

const CHUNK = 100; // children rendered per "show more"
const INLINE_TEXT = 120; // longer strings are cut in the row and shown whole when opened

/** How many references point at each object (so shared objects get a #N tag). */
export function refCounts(snap) {
  const counts = new Map();
  const see = (v) => {
    if (v && v.type === 'ref') counts.set(v.id, (counts.get(v.id) || 0) + 1);
  };
  const frames = [...(snap.frames || [])];
  for (const c of (snap.exception && snap.exception.causes) || []) frames.push(...(c.frames || []));
  for (const f of frames) {
    see(f.self);
    for (const l of f.locals || []) see(l.value);
  }
  for (const c of snap.class_state || []) for (const v of c.vars || []) see(v.value);
  for (const o of snap.objects || []) {
    for (const v of o.items || []) see(v);
    for (const e of o.entries || []) { see(e.key); see(e.value); }
    for (const m of o.members || []) see(m.value);
    for (const v of [o.default, o.default_proc, o.begin, o.end, o.numerator, o.denominator, o.real, o.imaginary]) see(v);
    for (const i of o.ivars || []) see(i.value);
  }
  return counts;
}

/**
 * A tree for one frame: entries are [{name, value}] (self first, then locals). All rows of one
 * tree share the "already shown" registry, so an object appears expanded once per frame.
 */
export function valueTree(snap, entries, { refs = refCounts(snap) } = {}) {
  const state = { objects: snap.objects || [], views: snap.views || {}, refs, firstRow: new Map() };
  const tree = h('div', { class: 'vt', role: 'tree', testid: 'value-tree' });
  for (const e of entries) tree.append(node(state, e.name, e.sep || '=', e.value, [], e.nameClass));
  tree.addEventListener('keydown', (ev) => treeKeys(tree, ev));
  return tree;
}

// ------------------------------------------------------------------ summaries

const CUT_REASON = {
  depth: 'depth limit',
  objects: 'object limit',
  bytes: 'byte limit',
  error: 'could not be captured',
};

/** Ruby's rendering of a Float (Rust writes non-finite ones as text). */
function floatText(v) {
  if (typeof v === 'string') {
    if (/^inf/i.test(v)) return 'Infinity';
    if (/^-inf/i.test(v)) return '-Infinity';
    if (/^nan/i.test(v)) return 'NaN';
    return v;
  }
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e16) return v.toFixed(1);
  return String(v);
}

/**
 * Text between double quotes, cut at max characters. Quotes and backslashes are shown as they
 * are; control characters as escapes (\n, \t, \u{1b}), which `parts` marks so they can be
 * drawn apart from the text: parts is [[text, isEscape], ...].
 */
export function quote(s, max = Infinity) {
  const parts = [['"', false]];
  let run = '';
  let n = 0;
  let cut = false;
  const esc = (e) => {
    if (run) parts.push([run, false]);
    run = '';
    parts.push([e, true]);
  };
  for (const ch of String(s)) {
    if (n >= max) {
      cut = true;
      break;
    }
    n++;
    if (ch === '\n') esc('\\n');
    else if (ch === '\t') esc('\\t');
    else if (ch === '\r') esc('\\r');
    else if (ch < ' ' || ch === '\x7f') esc(`\\u{${ch.codePointAt(0).toString(16)}}`);
    else run += ch;
  }
  if (run) parts.push([run, false]);
  if (cut) parts.push(['…', true]);
  parts.push(['"', false]);
  return { text: parts.map((p) => p[0]).join(''), cut, parts };
}

const BINARY = new Set(['ASCII-8BIT', 'BINARY']);

/**
 * The text of a String object. Strings that are not UTF-8 carry their exact bytes (base64):
 * binary ones are shown with \xNN escapes, others decoded in their own encoding when the
 * browser knows it (Shift_JIS, EUC-JP, ISO-8859-1 ...), else shown lossily.
 */
function stringText(o) {
  const value = o.value ?? '';
  if (!o.base64) return { text: value };
  let bytes;
  try {
    const raw = atob(o.base64);
    bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  } catch {
    return { text: value, lossy: true };
  }
  if (BINARY.has(String(o.encoding).toUpperCase())) return { text: value, bytes, binary: true };
  try {
    return { text: new TextDecoder(o.encoding, { fatal: true }).decode(bytes), bytes };
  } catch {
    return { text: value, bytes, lossy: true };
  }
}

/** Binary strings as Ruby's inspect shows them, "\xFF\x00abc" (escapes marked in parts). */
function binaryQuote(bytes, max) {
  const parts = [['"', false]];
  let run = '';
  const n = Math.min(bytes.length, max);
  const esc = (e) => {
    if (run) parts.push([run, false]);
    run = '';
    parts.push([e, true]);
  };
  for (let i = 0; i < n; i++) {
    const b = bytes[i];
    if (b === 0x0a) esc('\\n');
    else if (b === 0x09) esc('\\t');
    else if (b >= 0x20 && b < 0x7f) run += String.fromCharCode(b);
    else esc(`\\x${b.toString(16).toUpperCase().padStart(2, '0')}`);
  }
  if (run) parts.push([run, false]);
  const cut = bytes.length > max;
  if (cut) parts.push(['…', true]);
  parts.push(['"', false]);
  return { text: parts.map((p) => p[0]).join(''), cut, parts };
}

function timeText(o) {
  const secs = Number(o.seconds);
  const off = Number(o.utc_offset) || 0;
  const base = utcTime((secs + off) * 1000).replace(/ UTC$/, '');
  const ns = Number(o.nanoseconds) || 0;
  const frac = ns > 0 ? `.${String(ns).padStart(9, '0').replace(/0+$/, '')}` : '';
  let zone;
  if (o.utc) zone = ' UTC';
  else {
    const a = Math.abs(off);
    zone = ` ${off < 0 ? '-' : '+'}${String(Math.floor(a / 3600)).padStart(2, '0')}${String(Math.floor((a % 3600) / 60)).padStart(2, '0')}`;
  }
  return `${base}${frac}${zone}`;
}

function location(loc) {
  if (Array.isArray(loc) && loc.length >= 2) return `${loc[0]}:${loc[1]}`;
  if (loc && typeof loc === 'object' && loc.path) return `${loc.path}:${loc.lineno ?? loc.line ?? ''}`;
  return '(native)';
}

function regexpText(o) {
  const opts = Number(o.options) || 0;
  let flags = '';
  if (opts & 1) flags += 'i';
  if (opts & 2) flags += 'x';
  if (opts & 4) flags += 'm';
  return `/${o.source}/${flags}`;
}

/** A one-line text for an immediate value or an object that reads inline, else null. */
function inlineText(state, v) {
  if (!v || typeof v !== 'object') return String(v);
  switch (v.type) {
    case 'nil': return 'nil';
    case 'true': return 'true';
    case 'false': return 'false';
    case 'integer': return String(v.value);
    case 'float': return floatText(v.value);
    case 'symbol': return `:${v.value}`;
    case 'redacted': return '[REDACTED]';
    case 'cut': return '…';
    case 'ref': {
      const o = state.objects[v.id];
      if (!o) return `<missing #${v.id}>`;
      if (o.kind === 'string') return quote(o.value, 40).text;
      return null;
    }
    default: return null;
  }
}

/**
 * What a row shows for a value: {text, cls, meta[], badges[], objectId, object, expandable}.
 * Badges are [text, class, testid] triples.
 */
function describe(state, v) {
  if (v === null || v === undefined || typeof v !== 'object') {
    return { text: v === null || v === undefined ? '(none)' : String(v), cls: 'vt-unknown', meta: [], badges: [] };
  }
  const d = { text: '', cls: `vt-${v.type}`, meta: [], badges: [], expandable: false };
  switch (v.type) {
    case 'nil': d.text = 'nil'; break;
    case 'true': d.text = 'true'; break;
    case 'false': d.text = 'false'; break;
    case 'integer':
      d.text = String(v.value);
      if (typeof v.value === 'string') d.meta.push('Integer (bignum)');
      break;
    case 'float': d.text = floatText(v.value); break;
    case 'symbol': d.text = `:${v.value}`; break;
    case 'redacted':
      d.redacted = v.reason || 'redacted';
      break;
    case 'cut':
      d.cut = CUT_REASON[v.reason] || String(v.reason || 'cut');
      break;
    case 'ref':
      return describeObject(state, v.id);
    default:
      d.text = JSON.stringify(v);
      d.meta.push(`unknown value type ${v.type}`);
  }
  return d;
}

function describeObject(state, id) {
  const o = state.objects[id];
  if (!o) return { text: `<missing object #${id}>`, cls: 'vt-missing', meta: [], badges: [] };
  const view = state.views[id];
  if (view) return describeView(state, id, o, view);
  const d = { text: '', cls: `vt-obj vt-k-${o.kind}`, meta: [], badges: [], objectId: id, object: o, expandable: false };
  const ivars = (o.ivars || []).length;
  const cls = o.class || '?';
  const other = (base) => (cls !== base ? `${cls} ` : '');
  switch (o.kind) {
    case 'string': {
      const st = stringText(o);
      const q = st.binary ? binaryQuote(st.bytes, INLINE_TEXT) : quote(st.text, INLINE_TEXT);
      d.text = (cls !== 'String' ? `${cls} ` : '') + q.text;
      d.parts = cls !== 'String' ? [[`${cls} `, false], ...q.parts] : q.parts;
      const size = Number(o.bytesize);
      d.meta.push(`${count(size)} ${size === 1 ? 'byte' : 'bytes'}`);
      if (o.encoding && o.encoding !== 'UTF-8') d.meta.push(o.encoding);
      if (st.lossy) d.badges.push(['not valid UTF-8', 'badge-warn']);
      if (o.truncated) {
        const got = st.bytes ? st.bytes.length : new TextEncoder().encode(o.value ?? '').length;
        d.badges.push([`truncated: first ${count(Math.min(got, size))} of ${count(size)} bytes`, 'badge-warn', 'truncated']);
      }
      d.expandable = q.cut || /\n/.test(st.text) || ivars > 0;
      d.leaf = ivars === 0; // shown inline wherever it appears, never as a shared link
      break;
    }
    case 'array':
    case 'set': {
      const items = (o.items || []).length;
      const len = o.length ?? items;
      const open = o.kind === 'set' ? '{' : '[';
      const close = o.kind === 'set' ? '}' : ']';
      d.text = `${o.kind === 'set' || cls !== 'Array' ? `${cls} ` : ''}${open}${count(len)} ${len === 1 ? 'item' : 'items'}${close}`;
      if (len > items) d.badges.push([`truncated: ${count(items)} of ${count(len)} captured`, 'badge-warn', 'truncated']);
      d.expandable = items > 0 || ivars > 0;
      if (len === 0 && ivars === 0) d.text = `${other(o.kind === 'set' ? '' : 'Array')}${o.kind === 'set' ? `${cls} {}` : '[]'}`;
      break;
    }
    case 'hash': {
      const entries = (o.entries || []).length;
      const len = o.length ?? entries;
      d.text = `${other('Hash')}{${count(len)} ${len === 1 ? 'key' : 'keys'}}`;
      if (len > entries) d.badges.push([`truncated: ${count(entries)} of ${count(len)} captured`, 'badge-warn', 'truncated']);
      if (o.compare_by_identity) d.meta.push('compare_by_identity');
      if (o.default && o.default.type !== 'nil') d.meta.push('has default');
      if (o.default_proc && o.default_proc.type !== 'nil') d.meta.push('default proc');
      d.expandable = entries > 0 || ivars > 0 || !!(o.default && o.default.type !== 'nil') || !!(o.default_proc && o.default_proc.type !== 'nil');
      if (len === 0 && !d.expandable) d.text = `${other('Hash')}{}`;
      break;
    }
    case 'struct': {
      const n = (o.members || []).length;
      d.text = `#<struct ${cls}>`;
      d.meta.push(`${n} ${n === 1 ? 'member' : 'members'}`);
      d.expandable = n > 0 || ivars > 0;
      break;
    }
    case 'range': {
      const b = inlineText(state, o.begin);
      const e = inlineText(state, o.end);
      const dots = o.exclusive ? '...' : '..';
      if (b !== null && e !== null) {
        d.text = `${other('Range')}${o.begin?.type === 'nil' ? '' : b}${dots}${o.end?.type === 'nil' ? '' : e}`;
        d.expandable = ivars > 0;
      } else {
        d.text = `${cls} (${o.exclusive ? 'exclusive' : 'inclusive'})`;
        d.expandable = true;
      }
      break;
    }
    case 'regexp':
      d.text = `${other('Regexp')}${regexpText(o)}`;
      d.expandable = ivars > 0;
      break;
    case 'rational':
    case 'complex': {
      const a = inlineText(state, o.kind === 'rational' ? o.numerator : o.real);
      const b = inlineText(state, o.kind === 'rational' ? o.denominator : o.imaginary);
      if (a !== null && b !== null) {
        d.text = o.kind === 'rational' ? `(${a}/${b})` : `(${a}${b.startsWith('-') ? '' : '+'}${b}i)`;
        d.expandable = ivars > 0;
      } else {
        d.text = `#<${cls}>`;
        d.expandable = true;
      }
      break;
    }
    case 'time':
      d.text = `${other('Time')}${timeText(o)}`;
      d.expandable = ivars > 0;
      break;
    case 'date':
    case 'datetime':
      d.text = `${cls} ${o.iso8601}`;
      d.expandable = ivars > 0;
      break;
    case 'bigdecimal':
      d.text = `${cls} ${o.value}`;
      d.expandable = ivars > 0;
      break;
    case 'module':
      d.text = o.name || `#<anonymous ${o.is_class ? 'class' : 'module'}>`;
      d.meta.push(o.is_class ? 'Class' : 'Module');
      d.expandable = ivars > 0;
      break;
    case 'proc':
      d.text = `#<${cls}${o.lambda ? ' (lambda)' : ''}>`;
      d.meta.push(location(o.source_location), `arity ${o.arity}`);
      d.expandable = ivars > 0;
      break;
    case 'method':
      d.text = `#<${o.unbound ? 'UnboundMethod' : 'Method'} ${o.owner}#${o.name}>`;
      d.meta.push(location(o.source_location), `arity ${o.arity}`);
      d.expandable = ivars > 0;
      break;
    case 'exception': {
      const first = String(o.message ?? '').split('\n')[0];
      d.text = `#<${cls}: ${quote(first, INLINE_TEXT).text.slice(1, -1)}>`;
      d.expandable = ivars > 0 || String(o.message ?? '').includes('\n') || first.length > INLINE_TEXT;
      break;
    }
    case 'opaque':
      d.text = o.preview ? String(o.preview) : `#<${cls}>`;
      d.meta.push(`opaque ${cls}`);
      d.expandable = ivars > 0;
      break;
    case 'magic':
      d.text = String(o.path);
      d.meta.push(`magic root, ${cls}`);
      d.expandable = ivars > 0;
      break;
    case 'object':
      d.text = `#<${cls}>`;
      if (ivars) d.meta.push(`${ivars} ${ivars === 1 ? 'ivar' : 'ivars'}`);
      d.expandable = ivars > 0;
      break;
    default:
      d.text = `#<${cls}>`;
      d.meta.push(`kind ${o.kind}`);
      d.expandable = ivars > 0;
  }
  if (o.frozen && ['array', 'hash', 'set', 'struct', 'object'].includes(o.kind)) d.meta.push('frozen');
  if (!d.expandable && ivars === 0) d.leaf = true;
  return d;
}

const PREVIEW_TEXT = 100; // a record's summary lists its attributes up to this length

/** A record or parameters: a summary of what it holds, opening to it (see viewChildren). */
function describeView(state, id, o, view) {
  const cls = o.class || '?';
  const d = { text: '', cls: `vt-obj vt-view vt-${view.kind}`, meta: [], badges: [], objectId: id, object: o, view, expandable: true };
  if (view.kind === 'record') {
    const attrs = view.attributes || [];
    const parts = [];
    let len = 0;
    for (const a of attrs) {
      let t = a.missing ? `(${a.missing})` : inlineText(state, a.value);
      if (a.value && a.value.type === 'redacted') t = '[REDACTED]';
      if (t === null) t = describe(state, a.value).text || '…';
      const part = `${a.name}: ${t}`;
      if (len + part.length > PREVIEW_TEXT && parts.length) {
        parts.push('…');
        break;
      }
      parts.push(part);
      len += part.length + 2;
    }
    d.text = `#<${cls}${parts.length ? ' ' : ''}${parts.join(', ')}>`;
    for (const f of view.flags || []) d.meta.push(f);
    d.meta.push(view.attributes ? `${count(attrs.length)} ${attrs.length === 1 ? 'attribute' : 'attributes'}` : 'attributes not captured');
  } else {
    const p = view.parameters && view.parameters.type === 'ref' ? state.objects[view.parameters.id] : null;
    const n = p && p.kind === 'hash' ? (p.length ?? (p.entries || []).length) : null;
    d.text = `#<${cls}>`;
    if (n !== null) d.meta.push(`${count(n)} ${n === 1 ? 'entry' : 'entries'}`);
    d.meta.push(`permitted: ${view.permitted === null || view.permitted === undefined ? '?' : view.permitted}`);
  }
  return d;
}

/** A view's rows: the attributes (or entries), the instance variables worth showing, then
 * the raw internals, closed. */
function viewChildren(state, o, view) {
  const out = [];
  if (view.kind === 'record') {
    if (view.attributes) {
      for (const a of view.attributes) {
        if (a.missing) out.push({ name: a.name, missing: a.missing });
        else out.push({ name: a.name, sep: '=', value: a.value, nameClass: 'vt-attr', meta: a.before_type_cast ? ['before type cast'] : [] });
      }
    } else {
      out.push({ name: '(attributes)', sep: '=', value: view.attributes_value, nameClass: 'vt-meta-name' });
    }
  } else {
    const p = view.parameters && view.parameters.type === 'ref' ? state.objects[view.parameters.id] : null;
    if (p && p.kind === 'hash') out.push(...childrenOf(state, p), ...trailerOf(p));
    else out.push({ name: '@parameters', sep: '=', value: view.parameters, nameClass: 'vt-ivar' });
  }
  const shown = new Set(view.ivars || []);
  for (const i of o.ivars || []) if (shown.has(i.name)) out.push({ name: i.name, sep: '=', value: i.value, nameClass: 'vt-ivar' });
  out.push({ internals: o });
  return out;
}

/** The children of object o: [{name, sep, value}] or {text} rows. */
function childrenOf(state, o) {
  const out = [];
  switch (o.kind) {
    case 'string': {
      const st = stringText(o);
      out.push({ text: st.binary ? binaryQuote(st.bytes, Infinity).text : st.text, label: st.binary ? 'bytes' : 'text' });
      break;
    }
    case 'array':
      (o.items || []).forEach((v, i) => out.push({ name: `[${i}]`, sep: '', value: v, nameClass: 'vt-index' }));
      break;
    case 'set':
      (o.items || []).forEach((v) => out.push({ name: '·', sep: '', value: v, nameClass: 'vt-index' }));
      break;
    case 'hash':
      for (const e of o.entries || []) {
        const key = describe(state, e.key);
        const keyText = key.redacted ? '[REDACTED]' : key.cut ? '…' : key.text;
        out.push({ name: keyText, sep: '=>', value: e.value, nameClass: `vt-key ${key.cls}` });
      }
      break;
    case 'struct':
      for (const m of o.members || []) out.push({ name: m.name, sep: '=', value: m.value });
      break;
    case 'range':
      out.push({ name: 'begin', sep: '=', value: o.begin }, { name: 'end', sep: '=', value: o.end });
      break;
    case 'rational':
      out.push({ name: 'numerator', sep: '=', value: o.numerator }, { name: 'denominator', sep: '=', value: o.denominator });
      break;
    case 'complex':
      out.push({ name: 'real', sep: '=', value: o.real }, { name: 'imaginary', sep: '=', value: o.imaginary });
      break;
    case 'exception':
      if (o.message !== undefined && o.message !== null) out.push({ text: String(o.message), label: 'message' });
      break;
    default:
      break;
  }
  return out;
}

/** Rows after the children: truncation notes, hash defaults, then the instance variables. */
function trailerOf(o) {
  const out = [];
  const captured = o.kind === 'hash' ? (o.entries || []).length : (o.items || []).length;
  if ((o.kind === 'array' || o.kind === 'set' || o.kind === 'hash') && (o.length ?? captured) > captured) {
    out.push({ note: `… ${count(o.length - captured)} more not captured (the collection had ${count(o.length)})`, testid: 'truncated' });
  }
  if (o.kind === 'hash') {
    if (o.default && o.default.type !== 'nil') out.push({ name: '(default)', sep: '=', value: o.default, nameClass: 'vt-meta-name' });
    if (o.default_proc && o.default_proc.type !== 'nil') out.push({ name: '(default proc)', sep: '=', value: o.default_proc, nameClass: 'vt-meta-name' });
  }
  for (const i of o.ivars || []) out.push({ name: i.name, sep: '=', value: i.value, nameClass: 'vt-ivar' });
  return out;
}

// ------------------------------------------------------------------ rows

function lockIcon() {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 12 12');
  svg.setAttribute('width', '11');
  svg.setAttribute('height', '11');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const body = document.createElementNS(ns, 'rect');
  body.setAttribute('x', '2'); body.setAttribute('y', '5'); body.setAttribute('width', '8'); body.setAttribute('height', '6'); body.setAttribute('rx', '1');
  const shackle = document.createElementNS(ns, 'path');
  shackle.setAttribute('d', 'M4 5V3.5a2 2 0 0 1 4 0V5');
  shackle.setAttribute('fill', 'none');
  shackle.setAttribute('stroke', 'currentColor');
  shackle.setAttribute('stroke-width', '1.3');
  body.setAttribute('fill', 'currentColor');
  svg.append(shackle, body);
  return svg;
}

/**
 * One value: a wrapper holding its row and (once opened) its children. `path` is the ids of the
 * objects on the way from the root to this row, for cycle detection.
 */
function node(state, name, sep, value, path, nameClass, extraMeta = []) {
  const wrap = h('div', { class: 'vt-node', role: 'treeitem' });
  const row = h('div', { class: 'vt-row', testid: 'tree-node' });
  wrap.append(row);
  const d = describe(state, value);
  const toggle = h('button', { type: 'button', class: 'vt-toggle', testid: 'toggle', 'aria-expanded': 'false', 'aria-label': `expand ${name}` });
  const spacer = h('span', { class: 'vt-toggle-space', 'aria-hidden': 'true' });
  const nameEl = h('span', { class: ['vt-name', nameClass] }, name);
  const sepEl = sep ? h('span', { class: 'vt-sep' }, sep) : null;

  // A reference to an object already open above (cycle) or shown elsewhere in this frame.
  const id = d.objectId;
  if (id !== undefined && !d.leaf) {
    const cyc = path.includes(id);
    const first = state.firstRow.get(id);
    if (cyc || first) {
      const refBtn = h('button', { type: 'button', class: 'vt-ref', testid: 'ref-link', title: cyc ? `cycle: object #${id} is open above` : `object #${id} is shown above`, dataset: { refId: String(id) } },
        cyc ? `↺ #${id}` : `→ #${id}`);
      refBtn.addEventListener('click', () => reveal(state, id, state.firstRow.get(id)));
      add(row, spacer, nameEl, sepEl,
        h('span', { class: cyc ? 'vt-cycle' : 'vt-shared', testid: cyc ? 'cycle' : 'shared' }, refBtn),
        h('span', { class: 'vt-meta' }, `${d.object.class}${cyc ? ', cycle' : ', shared'}`));
      row.dataset.refId = String(id);
      return wrap;
    }
  }

  const summary = h('span', { class: ['vt-summary', d.cls] });
  if (d.redacted !== undefined) {
    summary.append(h('span', { class: 'vt-redacted', testid: 'redacted' }, lockIcon(), ` redacted: ${d.redacted}`));
  } else if (d.cut !== undefined) {
    summary.append(h('span', { class: 'vt-cut', testid: 'cut', title: 'the capture stopped here' }, `✂ cut: ${d.cut}`));
  } else {
    if (d.parts) {
      for (const [t, isEsc] of d.parts) summary.append(isEsc ? h('span', { class: 'vt-esc' }, t) : document.createTextNode(t));
    } else {
      summary.textContent = d.text;
    }
  }
  add(row, d.expandable ? toggle : spacer, nameEl, sepEl, summary);
  for (const m of d.meta) row.append(h('span', { class: 'vt-meta' }, m));
  for (const m of extraMeta) row.append(h('span', { class: 'vt-meta', testid: 'value-note' }, m));
  for (const [text, cls, testid] of d.badges) row.append(h('span', { class: ['badge', cls], testid }, text));
  if (id !== undefined) {
    row.dataset.objectId = String(id);
    if ((state.refs.get(id) || 0) > 1) row.append(h('span', { class: 'vt-tag', title: `object #${id} is referenced ${state.refs.get(id)} times` }, `#${id}`));
    if (!d.leaf) state.firstRow.set(id, wrap);
  }
  if (!d.expandable) return wrap;

  let kids = null;
  const open = () => {
    if (!kids) {
      kids = h('div', { class: 'vt-children', role: 'group' });
      const childPath = id !== undefined ? [...path, id] : path;
      const list = d.view ? viewChildren(state, d.object, d.view) : [...childrenOf(state, d.object), ...trailerOf(d.object)];
      renderChunk(state, kids, list, 0, childPath);
      wrap.append(kids);
    }
    kids.hidden = false;
    toggle.setAttribute('aria-expanded', 'true');
    wrap.classList.add('open');
  };
  const close = () => {
    if (kids) kids.hidden = true;
    toggle.setAttribute('aria-expanded', 'false');
    wrap.classList.remove('open');
  };
  wrap._open = open;
  wrap._close = close;
  wrap._isOpen = () => !!kids && !kids.hidden;
  toggle.addEventListener('click', () => (wrap._isOpen() ? close() : open()));
  row.addEventListener('click', (ev) => {
    if (ev.target === row || ev.target === summary || ev.target === nameEl) toggle.click();
  });
  row.classList.add('vt-expandable');
  return wrap;
}

/** Renders list[start .. start+size) into kids, then a "show more" row. */
function renderChunk(state, kids, list, start, path, size = CHUNK) {
  const end = Math.min(list.length, start + size);
  for (let i = start; i < end; i++) {
    const c = list[i];
    if (c.text !== undefined) {
      kids.append(h('div', { class: 'vt-text-row' },
        h('span', { class: 'vt-text-label' }, c.label || 'text'),
        h('pre', { class: 'vt-text' }, c.text)));
    } else if (c.note !== undefined) {
      kids.append(h('div', { class: 'vt-note', testid: c.testid }, c.note));
    } else if (c.missing !== undefined) {
      kids.append(h('div', { class: 'vt-node', role: 'treeitem' },
        h('div', { class: 'vt-row', testid: 'tree-node' },
          h('span', { class: 'vt-toggle-space', 'aria-hidden': 'true' }),
          h('span', { class: 'vt-name vt-attr' }, c.name),
          h('span', { class: 'vt-cut', testid: 'missing' }, c.missing))));
    } else if (c.internals !== undefined) {
      kids.append(internalsNode(state, c.internals, path));
    } else {
      kids.append(node(state, c.name, c.sep, c.value, path, c.nameClass, c.meta));
    }
  }
  if (end < list.length) {
    const rest = list.length - end;
    const more = h('button', { type: 'button', class: 'vt-more btn-link', testid: 'show-more' },
      `show ${count(Math.min(CHUNK, rest))} more (${count(rest)} left)`);
    const all = rest > CHUNK ? h('button', { type: 'button', class: 'vt-more btn-link' }, 'show all') : null;
    const row = h('div', { class: 'vt-more-row' }, more, all);
    more.addEventListener('click', () => {
      row.remove();
      renderChunk(state, kids, list, end, path);
    });
    all?.addEventListener('click', () => {
      row.remove();
      renderChunk(state, kids, list, end, path, rest);
    });
    kids.append(row);
  }
}

/** A closed "(internals)" row that opens to object o's raw contents and instance variables. */
function internalsNode(state, o, path) {
  const wrap = h('div', { class: 'vt-node', role: 'treeitem' });
  const toggle = h('button', { type: 'button', class: 'vt-toggle', testid: 'toggle', 'aria-expanded': 'false', 'aria-label': 'expand internals' });
  const row = h('div', { class: 'vt-row vt-expandable', testid: 'tree-node' },
    toggle, h('span', { class: 'vt-name vt-meta-name' }, '(internals)'),
    h('span', { class: 'vt-meta' }, `the objects Rails keeps this in, as captured`));
  wrap.append(row);
  let kids = null;
  wrap._open = () => {
    if (!kids) {
      kids = h('div', { class: 'vt-children', role: 'group' });
      renderChunk(state, kids, [...childrenOf(state, o), ...trailerOf(o)], 0, path);
      wrap.append(kids);
    }
    kids.hidden = false;
    toggle.setAttribute('aria-expanded', 'true');
    wrap.classList.add('open');
  };
  wrap._close = () => {
    if (kids) kids.hidden = true;
    toggle.setAttribute('aria-expanded', 'false');
    wrap.classList.remove('open');
  };
  wrap._isOpen = () => !!kids && !kids.hidden;
  toggle.addEventListener('click', () => (wrap._isOpen() ? wrap._close() : wrap._open()));
  row.addEventListener('click', (ev) => {
    if (ev.target !== toggle) toggle.click();
  });
  return wrap;
}

/** Opens every collapsed row above target (and target), scrolls to it, flashes it. */
function reveal(state, id, target) {
  if (!target) return;
  const chain = [];
  let el = target.parentElement;
  while (el) {
    if (el.classList && el.classList.contains('vt-node')) chain.push(el);
    if (el.classList && el.classList.contains('vt')) break;
    el = el.parentElement;
  }
  for (const n of chain.reverse()) if (n._open && !n._isOpen()) n._open();
  if (target._open && !target._isOpen()) target._open();
  const row = target.firstElementChild;
  row.scrollIntoView({ block: 'center', behavior: 'smooth' });
  row.classList.remove('vt-flash');
  void row.offsetWidth; // restart the animation
  row.classList.add('vt-flash');
  setTimeout(() => row.classList.remove('vt-flash'), 1800);
  const focusable = row.querySelector('button');
  focusable?.focus({ preventScroll: true });
}

/** Arrow keys on the tree's buttons: up/down move, right opens, left closes or goes up. */
function treeKeys(tree, ev) {
  const btn = ev.target.closest('button');
  if (!btn || !tree.contains(btn)) return;
  const visible = () => [...tree.querySelectorAll('.vt-row > button')].filter((b) => b.offsetParent !== null);
  const wrap = btn.closest('.vt-node');
  switch (ev.key) {
    case 'ArrowDown':
    case 'ArrowUp': {
      const all = visible();
      const i = all.indexOf(btn);
      const next = all[i + (ev.key === 'ArrowDown' ? 1 : -1)];
      if (next) { next.focus(); ev.preventDefault(); }
      break;
    }
    case 'ArrowRight':
      if (wrap && wrap._open && !wrap._isOpen()) { wrap._open(); ev.preventDefault(); }
      break;
    case 'ArrowLeft':
      if (wrap && wrap._isOpen && wrap._isOpen()) { wrap._close(); ev.preventDefault(); }
      else {
        const parent = wrap && wrap.parentElement && wrap.parentElement.closest('.vt-node');
        const pb = parent && parent.querySelector(':scope > .vt-row > button');
        if (pb) { pb.focus(); ev.preventDefault(); }
      }
      break;
    default:
      break;
  }
}
