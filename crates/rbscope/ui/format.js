// Number, size, duration and time formatting shared by every page, so a byte count or a
// timestamp reads the same way everywhere (and the same way as the CLI prints it).

/** 1,234,567 (BigInt and numeric strings too). */
export function count(n) {
  if (n === null || n === undefined || n === '') return '–';
  if (typeof n === 'bigint') return groupDigits(n.toString());
  const v = Number(n);
  if (!Number.isFinite(v)) return String(n);
  if (!Number.isInteger(v)) return v.toLocaleString('en-US', { maximumFractionDigits: 2 });
  return groupDigits(String(Math.trunc(v)));
}

function groupDigits(s) {
  const neg = s.startsWith('-');
  const d = neg ? s.slice(1) : s;
  let out = '';
  for (let i = 0; i < d.length; i++) {
    if (i > 0 && (d.length - i) % 3 === 0) out += ',';
    out += d[i];
  }
  return (neg ? '-' : '') + out;
}

/** 585.9 KiB, as the CLI prints sizes. */
export function bytes(n) {
  if (n === null || n === undefined) return '–';
  let v = Number(n);
  if (!Number.isFinite(v)) return String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (Math.abs(v) >= 1024 && u + 1 < units.length) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** A duration given in nanoseconds: 812 ns, 13.1 µs, 4.20 ms, 1.52 s, 3 min 5 s. */
export function duration(ns) {
  const v = Number(ns);
  if (!Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  // (bounds at 999.5 so that rounding never prints "1000 ms")
  if (a < 999.5) return `${Math.round(v)} ns`;
  if (a < 999.5e3) return `${trim(v / 1e3)} µs`;
  if (a < 999.5e6) return `${trim(v / 1e6)} ms`;
  if (a < 59.95e9) return `${trim(v / 1e9)} s`;
  const s = Math.round(v / 1e9);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Three significant digits at most: 13.1, 4.20 → "4.2", 152. */
function trim(x) {
  const a = Math.abs(x);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
  return String(Number(x.toFixed(digits)));
}

/** A share of a whole: 12.3%. */
export function percent(part, whole) {
  if (!whole) return '–';
  const p = (100 * part) / whole;
  if (p > 0 && p < 0.1) return '<0.1%';
  return `${p.toFixed(p >= 10 ? 0 : 1)}%`;
}

const pad2 = (n) => String(n).padStart(2, '0');

/** 2024-05-17 13:04:55 (local time) for ms since the epoch. */
export function exactTime(ms) {
  if (ms === null || ms === undefined) return '–';
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return '–';
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** The same instant in UTC, as the CLI prints it: 2024-05-17 11:04:55 UTC. */
export function utcTime(ms) {
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) return '–';
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/** "3 min ago", "2 h ago", "5 d ago" (or "in 2 min" for clocks ahead of ours). */
export function relativeTime(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return '–';
  const diff = now - Number(ms);
  const future = diff < 0;
  const s = Math.abs(diff) / 1000;
  let text;
  if (s < 45) text = 'just now';
  else if (s < 3600) text = `${Math.max(1, Math.round(s / 60))} min`;
  else if (s < 86400) text = `${Math.round(s / 3600)} h`;
  else if (s < 86400 * 60) text = `${Math.round(s / 86400)} d`;
  else if (s < 86400 * 730) text = `${Math.round(s / (86400 * 30.44))} mo`;
  else text = `${Math.round(s / (86400 * 365.25))} y`;
  if (text === 'just now') return text;
  return future ? `in ${text}` : `${text} ago`;
}

/** A <time> element showing the relative time, the exact time on hover. */
export function timeElement(ms) {
  const el = document.createElement('time');
  el.textContent = relativeTime(ms);
  const d = new Date(Number(ms));
  if (!Number.isNaN(d.getTime())) el.dateTime = d.toISOString();
  el.title = `${exactTime(ms)} (local)\n${utcTime(ms)}`;
  return el;
}
