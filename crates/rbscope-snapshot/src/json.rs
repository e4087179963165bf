//! The snapshot as JSON (`rbscope show --json`, and what a restore reads): strings as text,
//! values tagged by type.
//!
//! Values are `{"type": "integer", "value": 3}`-style objects; references into the object
//! list are `{"type": "ref", "id": 7}`, so cycles are expressed without repetition.

use crate::model::{CutReason, Frame, Object, ObjectExtra, ObjectKind, Snapshot, Value};
use serde_json::{json, Map, Value as J};
use std::collections::HashMap;

pub fn snapshot(s: &Snapshot) -> J {
    let e = &s.exception;
    let extras: HashMap<u32, &ObjectExtra> =
        s.extras.objects.iter().map(|x| (x.object, x)).collect();
    let objects: Vec<J> = s
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| object(i, o, extras.get(&(i as u32)).copied()))
        .collect();
    json!({
        "format_version": crate::codec::FORMAT_VERSION,
        "id": s.id,
        "reported_at_ms": s.reported_at_ms,
        "fingerprint": s.fingerprint,
        "exception": {
            "class": e.class_name,
            "message": e.message,
            "backtrace": e.backtrace,
            "causes": e.causes.iter().map(|c| json!({
                "class": c.class_name, "message": c.message, "backtrace": c.backtrace,
                "frames": c.frames.iter().map(frame).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        },
        "frames": s.frames.iter().map(frame).collect::<Vec<_>>(),
        "objects": objects,
        "class_state": s.extras.classes.iter().map(|c| json!({
            "class": c.class_path,
            "vars": c.vars.iter().map(|(n, v)| json!({"name": n, "value": value(v)})).collect::<Vec<_>>(),
            "vars_left_out": c.vars_left_out,
        })).collect::<Vec<_>>(),
        "trigger": s.extras.trigger.as_ref().map(|t| json!({
            "kind": t.kind, "thread": t.thread, "reason": t.reason,
        })),
        "context": snapshot_context(s),
        "stats": {
            "redacted": s.stats.redacted,
            "cut_depth": s.stats.cut_depth,
            "cut_objects": s.stats.cut_objects,
            "cut_bytes": s.stats.cut_bytes,
            "truncated_strings": s.stats.truncated_strings,
            "truncated_collections": s.stats.truncated_collections,
            "errors": s.stats.errors,
            "frames_skipped": s.stats.frames_skipped,
            "locals_missing": s.stats.locals_missing,
        },
    })
}

/// The context part of the JSON form.
pub fn snapshot_context(s: &Snapshot) -> J {
    json!({
        "hostname": s.context.hostname,
        "pid": s.context.pid,
        "process_title": s.context.process_title,
        "ruby_version": s.context.ruby_version,
        "ruby_platform": s.context.ruby_platform,
        "app_root": s.context.app_root,
        "app_revision": s.context.app_revision,
        "thread_name": s.context.thread_name,
        "agent_version": s.context.agent_version,
        "gems": s.context.gems.iter().map(|(n, v)| json!({"name": n, "version": v})).collect::<Vec<_>>(),
        "extra": s.context.extra.iter().map(|(k, v)| (k.clone(), J::String(v.clone()))).collect::<Map<_, _>>(),
    })
}

fn frame(f: &Frame) -> J {
    json!({
        "depth": f.depth,
        "label": f.label,
        "method": f.method_name,
        "path": f.path,
        "lineno": f.lineno,
        "source": f.source.as_ref().map(|src| json!({
            "first_lineno": src.first_lineno, "lines": src.lines,
        })),
        "self": value(&f.self_value),
        "locals": f.locals.iter().map(|(n, v)| json!({"name": n, "value": value(v)})).collect::<Vec<_>>(),
    })
}

pub fn value(v: &Value) -> J {
    match v {
        Value::Nil => json!({"type": "nil"}),
        Value::True => json!({"type": "true"}),
        Value::False => json!({"type": "false"}),
        Value::Integer(i) => json!({"type": "integer", "value": i}),
        Value::BigInteger(s) => json!({"type": "integer", "value": s}),
        Value::Float(f) if f.is_finite() => json!({"type": "float", "value": f}),
        Value::Float(f) => json!({"type": "float", "value": f.to_string()}),
        Value::Symbol(s) => json!({"type": "symbol", "value": s}),
        // Not UTF-8: the text as far as it reads, the exact bytes and their encoding.
        Value::EncodedSymbol { bytes, encoding } => json!({
            "type": "symbol", "value": String::from_utf8_lossy(bytes), "base64": base64(bytes),
            "encoding": encoding,
        }),
        Value::Ref(i) => json!({"type": "ref", "id": i}),
        Value::Redacted(why) => json!({"type": "redacted", "reason": why}),
        Value::Cut(r) => json!({"type": "cut", "reason": match r {
            CutReason::Depth => "depth", CutReason::Objects => "objects",
            CutReason::Bytes => "bytes", CutReason::Error => "error",
        }}),
    }
}

/// Standard base64 with padding (RFC 4648), as Ruby's `unpack1("m0")` reads it.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for (i, shift) in [18, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn object(id: usize, o: &Object, extra: Option<&ObjectExtra>) -> J {
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("class".into(), json!(o.class_name));
    m.insert("kind".into(), json!(o.kind.name()));
    if o.frozen {
        m.insert("frozen".into(), json!(true));
    }
    let vals = |vs: &[Value]| vs.iter().map(value).collect::<Vec<_>>();
    match &o.kind {
        ObjectKind::String {
            bytes,
            encoding,
            original_len,
        } => {
            m.insert("value".into(), json!(String::from_utf8_lossy(bytes)));
            if std::str::from_utf8(bytes).is_err() {
                // Not UTF-8: the exact bytes too, for a faithful restore.
                m.insert("base64".into(), json!(base64(bytes)));
            }
            m.insert("encoding".into(), json!(encoding));
            m.insert("bytesize".into(), json!(original_len));
            m.insert(
                "truncated".into(),
                json!((bytes.len() as u64) < *original_len),
            );
        }
        ObjectKind::Array {
            items,
            original_len,
        }
        | ObjectKind::Set {
            items,
            original_len,
        } => {
            m.insert("items".into(), json!(vals(items)));
            m.insert("length".into(), json!(original_len));
        }
        ObjectKind::Hash {
            entries,
            original_len,
            default,
            default_proc,
            compare_by_identity,
        } => {
            m.insert(
                "entries".into(),
                json!(entries
                    .iter()
                    .map(|(k, v)| json!({"key": value(k), "value": value(v)}))
                    .collect::<Vec<_>>()),
            );
            m.insert("length".into(), json!(original_len));
            m.insert(
                "default".into(),
                default.as_ref().map(value).unwrap_or(J::Null),
            );
            m.insert(
                "default_proc".into(),
                default_proc.as_ref().map(value).unwrap_or(J::Null),
            );
            m.insert("compare_by_identity".into(), json!(compare_by_identity));
        }
        ObjectKind::Struct { members } => {
            m.insert(
                "members".into(),
                json!(members
                    .iter()
                    .map(|(n, v)| json!({"name": n, "value": value(v)}))
                    .collect::<Vec<_>>()),
            );
        }
        ObjectKind::Range {
            begin,
            end,
            exclusive,
        } => {
            m.insert("begin".into(), value(begin));
            m.insert("end".into(), value(end));
            m.insert("exclusive".into(), json!(exclusive));
        }
        ObjectKind::Regexp { source, options } => {
            m.insert("source".into(), json!(source));
            m.insert("options".into(), json!(options));
        }
        ObjectKind::Rational {
            numerator,
            denominator,
        } => {
            m.insert("numerator".into(), value(numerator));
            m.insert("denominator".into(), value(denominator));
        }
        ObjectKind::Complex { real, imaginary } => {
            m.insert("real".into(), value(real));
            m.insert("imaginary".into(), value(imaginary));
        }
        ObjectKind::Time {
            seconds,
            nanoseconds,
            utc_offset,
            utc,
        } => {
            m.insert("seconds".into(), json!(seconds));
            m.insert("nanoseconds".into(), json!(nanoseconds));
            m.insert("utc_offset".into(), json!(utc_offset));
            m.insert("utc".into(), json!(utc));
        }
        ObjectKind::Date { iso8601 } | ObjectKind::DateTime { iso8601 } => {
            m.insert("iso8601".into(), json!(iso8601));
        }
        ObjectKind::BigDecimal { digits } => {
            m.insert("value".into(), json!(digits));
        }
        ObjectKind::Plain => {}
        ObjectKind::Module { name, is_class } => {
            m.insert("name".into(), json!(name));
            m.insert("anonymous".into(), json!(name.is_none()));
            m.insert("is_class".into(), json!(is_class));
        }
        ObjectKind::Proc {
            lambda,
            arity,
            source_location,
        } => {
            m.insert("lambda".into(), json!(lambda));
            m.insert("arity".into(), json!(arity));
            m.insert("source_location".into(), json!(source_location));
        }
        ObjectKind::Method {
            owner,
            name,
            arity,
            unbound,
            source_location,
        } => {
            m.insert("owner".into(), json!(owner));
            m.insert("name".into(), json!(name));
            m.insert("arity".into(), json!(arity));
            m.insert("unbound".into(), json!(unbound));
            m.insert("source_location".into(), json!(source_location));
        }
        ObjectKind::Exception { message } => {
            m.insert("message".into(), json!(message));
        }
        ObjectKind::Opaque { preview } => {
            m.insert("preview".into(), json!(preview));
        }
        ObjectKind::Magic { path } => {
            m.insert("path".into(), json!(path));
        }
    }
    m.insert(
        "ivars".into(),
        json!(o
            .ivars
            .iter()
            .map(|(n, v)| json!({"name": n, "value": value(v)}))
            .collect::<Vec<_>>()),
    );
    // Format 2's additions, only where there are any (a format 1 snapshot's JSON is as it was).
    if let Some(e) = extra {
        if !e.extended.is_empty() {
            m.insert("extended".into(), json!(e.extended));
        }
        if !e.singleton_methods.is_empty() {
            m.insert("singleton_methods".into(), json!(e.singleton_methods));
        }
        if let Some(p) = &e.anonymous_path {
            m.insert("anonymous_path".into(), json!(p));
        }
        if let Some(c) = &e.superclass {
            m.insert("superclass".into(), json!(c));
        }
        if let Some(r) = &e.receiver {
            m.insert("receiver".into(), value(r));
        }
    }
    J::Object(m)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(&[0xff, 0x00, 0xfe, 0x01]), "/wD+AQ==");
    }
}
