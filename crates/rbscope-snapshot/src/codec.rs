//! The stored snapshot format.
//!
//! ```text
//! offset  size  field
//! 0       6     magic "RBSNAP"
//! 6       2     format version, little endian
//! 8       4     length of the decoded payload, little endian
//! 12      4     CRC-32 of the decoded payload
//! 16      ...   payload: postcard encoding of `Snapshot`, LZ4 block-compressed
//! ```
//!
//! Format 2 adds [`Extras`] (non-UTF-8 symbols, extended modules and singleton method names,
//! anonymous classes' paths, a Method's receiver): its payload is format 1's (the
//! `Snapshot` fields, with the new `Value::EncodedSymbol` variant last, so every format 1
//! value encodes as before) followed by the postcard encoding of `Extras`. A format 1
//! payload decodes with empty extras. Format 3 adds the class-level state (`Extras::classes`,
//! after format 2's `Extras::objects`) and what took a snapshot no exception caused
//! (`Extras::trigger`); a format 2 payload decodes with neither.
//!
//! The version comes first so that an old reader can say "written by a newer rbscope" instead
//! of failing somewhere in the payload. The payload length is bounded before anything is
//! allocated, and the checksum catches corruption that would otherwise decode into nonsense.
//! Decoding never panics: every failure is a [`DecodeError`].

use crate::model::{Extras, ObjectExtra, Snapshot};
use thiserror::Error;

pub const MAGIC: &[u8; 6] = b"RBSNAP";
/// The version this build writes. Version 1 is the first stored format; version 2 adds
/// [`Extras`]; version 3 adds the class-level state to them.
pub const FORMAT_VERSION: u16 = 3;
/// The oldest version this build can read.
pub const OLDEST_READABLE_VERSION: u16 = 1;
const HEADER_LEN: usize = 16;
/// Decoded payloads larger than this are refused rather than allocated.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not an rbscope snapshot (bad magic bytes)")]
    BadMagic,
    #[error("snapshot is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("snapshot format version {found} is newer than this rbscope understands (up to {supported}); upgrade rbscope")]
    TooNew { found: u16, supported: u16 },
    #[error("snapshot format version {0} is not supported")]
    TooOld(u16),
    #[error("snapshot declares {0} bytes of payload, over the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("snapshot payload is corrupt: {0}")]
    Corrupt(String),
}

/// Encodes a snapshot in the current format version.
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, String> {
    let mut payload = postcard::to_stdvec(snapshot).map_err(|e| e.to_string())?;
    payload.extend(postcard::to_stdvec(&snapshot.extras).map_err(|e| e.to_string())?);
    if payload.len() > MAX_PAYLOAD {
        return Err(format!(
            "snapshot payload of {} bytes is over the {MAX_PAYLOAD}-byte limit",
            payload.len()
        ));
    }
    let compressed = lz4_flex::block::compress(&payload);
    let mut out = Vec::with_capacity(HEADER_LEN + compressed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// Reads only the header's format version, for messages and migrations.
pub fn peek_version(bytes: &[u8]) -> Result<u16, DecodeError> {
    if bytes.len() < 8 {
        return Err(DecodeError::Truncated(bytes.len()));
    }
    if &bytes[..6] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    Ok(u16::from_le_bytes([bytes[6], bytes[7]]))
}

/// Decodes a snapshot written by this or an older rbscope.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    let version = peek_version(bytes)?;
    if version > FORMAT_VERSION {
        return Err(DecodeError::TooNew {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version < OLDEST_READABLE_VERSION {
        return Err(DecodeError::TooOld(version));
    }
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated(bytes.len()));
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if len > MAX_PAYLOAD {
        return Err(DecodeError::TooLarge(len));
    }
    // LZ4 cannot expand more than 255x; a shorter body is certainly truncated.
    let body = &bytes[HEADER_LEN..];
    if body.len().saturating_mul(255) < len {
        return Err(DecodeError::Truncated(bytes.len()));
    }
    let payload = lz4_flex::block::decompress(body, len)
        .map_err(|e| DecodeError::Corrupt(format!("decompression failed: {e}")))?;
    if payload.len() != len {
        return Err(DecodeError::Corrupt(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        )));
    }
    if crc32fast::hash(&payload) != crc {
        return Err(DecodeError::Corrupt("checksum mismatch".into()));
    }
    let (mut snapshot, rest): (Snapshot, &[u8]) =
        postcard::take_from_bytes(&payload).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if version >= 3 {
        snapshot.extras = postcard::from_bytes::<Extras>(rest)
            .map_err(|e| DecodeError::Corrupt(format!("format {version} extras: {e}")))?;
    } else if version == 2 {
        let objects = postcard::from_bytes::<(Vec<ObjectExtra>,)>(rest)
            .map_err(|e| DecodeError::Corrupt(format!("format 2 extras: {e}")))?
            .0;
        snapshot.extras = Extras {
            objects,
            classes: Vec::new(),
            trigger: None,
        };
    }
    snapshot.validate().map_err(DecodeError::Corrupt)?;
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    pub(crate) fn sample() -> Snapshot {
        Snapshot {
            id: "01HZX0000000000000000000AA".into(),
            reported_at_ms: 1_700_000_000_000,
            fingerprint: fingerprint("NoMethodError", "Shop#checkout"),
            exception: ExceptionInfo {
                class_name: "NoMethodError".into(),
                message: "undefined method `total' for nil:NilClass".into(),
                backtrace: vec!["app.rb:3:in `checkout'".into()],
                causes: vec![CauseInfo {
                    class_name: "KeyError".into(),
                    message: "key not found: :x".into(),
                    backtrace: vec![],
                    frames: vec![],
                }],
            },
            frames: vec![Frame {
                depth: 0,
                label: "Shop#checkout".into(),
                method_name: Some("checkout".into()),
                path: "app.rb".into(),
                lineno: 3,
                self_value: Value::Ref(0),
                locals: vec![
                    ("cart".into(), Value::Ref(1)),
                    ("n".into(), Value::Integer(3)),
                    ("password".into(), Value::Redacted("name".into())),
                ],
                source: Some(SourceExcerpt {
                    first_lineno: 2,
                    lines: vec!["def checkout".into(), "  cart.total".into()],
                }),
            }],
            objects: vec![
                Object {
                    class_name: "Shop".into(),
                    frozen: false,
                    kind: ObjectKind::Plain,
                    ivars: vec![("@self".into(), Value::Ref(0))],
                },
                Object {
                    class_name: "Array".into(),
                    frozen: false,
                    kind: ObjectKind::Array {
                        items: vec![Value::Ref(1), Value::Float(1.5), Value::Nil],
                        original_len: 3,
                    },
                    ivars: vec![],
                },
            ],
            context: Context {
                hostname: "web-1".into(),
                pid: 42,
                ..Context::default()
            },
            stats: CaptureStats::default(),
            extras: Extras::default(),
        }
    }

    fn with_extras() -> Snapshot {
        let mut s = sample();
        s.frames[0].locals.push((
            "sym".into(),
            Value::EncodedSymbol {
                bytes: vec![0x82, 0xa0],
                encoding: "Shift_JIS".into(),
            },
        ));
        s.extras.objects.push(ObjectExtra {
            object: 0,
            extended: vec!["Comparable".into()],
            singleton_methods: vec!["shout".into()],
            receiver: Some(Value::Ref(1)),
            ..ObjectExtra::default()
        });
        s
    }

    #[test]
    fn format_3_round_trips_its_extras() {
        let mut s = with_extras();
        s.extras.classes.push(ClassState {
            class_path: "Cfg".into(),
            vars: vec![
                ("@limit".into(), Value::Integer(3)),
                ("@@seen".into(), Value::Ref(1)),
            ],
            vars_left_out: 1,
        });
        let bytes = encode(&s).unwrap();
        assert_eq!(peek_version(&bytes), Ok(3));
        assert_eq!(decode(&bytes).unwrap(), s);
        // A class state's reference is checked like any other.
        s.extras.classes[0].vars[1].1 = Value::Ref(99);
        assert!(matches!(
            decode(&encode(&s).unwrap()),
            Err(DecodeError::Corrupt(_))
        ));
    }

    /// A format 1 snapshot: the header says 1 and the payload is the `Snapshot` fields alone.
    fn encode_v1(s: &Snapshot) -> Vec<u8> {
        let payload = postcard::to_stdvec(s).unwrap();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&lz4_flex::block::compress(&payload));
        out
    }

    #[test]
    fn format_1_reads_with_empty_extras() {
        let s = sample();
        assert_eq!(decode(&encode_v1(&s)).unwrap(), s);
        // The extras of a format 2 snapshot are not in its format 1 part.
        let with = with_extras();
        let v1 = decode(&encode_v1(&with)).unwrap();
        assert!(v1.extras.objects.is_empty());
        assert_eq!(v1.frames, with.frames);
    }

    #[test]
    fn extras_pointing_outside_the_arena_are_corrupt() {
        let mut s = with_extras();
        s.extras.objects[0].object = 7;
        assert!(matches!(
            decode(&encode(&s).unwrap()),
            Err(DecodeError::Corrupt(_))
        ));
        let mut s = with_extras();
        s.extras.objects[0].receiver = Some(Value::Ref(9));
        assert!(matches!(
            decode(&encode(&s).unwrap()),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn round_trips() {
        let s = sample();
        let bytes = encode(&s).unwrap();
        assert_eq!(&bytes[..6], MAGIC);
        assert_eq!(decode(&bytes).unwrap(), s);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
    }

    #[test]
    fn newer_version_is_named() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[6..8].copy_from_slice(&9u16.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::TooNew {
                found: 9,
                supported: FORMAT_VERSION
            })
        );
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let bytes = encode(&sample()).unwrap();
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..20_000 {
            let mut b = bytes.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % b.len();
                b[i] ^= (seed >> 32) as u8 | 1;
            }
            let _ = decode(&b);
        }
    }

    #[test]
    fn huge_declared_length_is_refused_without_allocating() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(DecodeError::TooLarge(_))));
    }

    #[test]
    fn dangling_reference_is_corrupt() {
        let mut s = sample();
        s.frames[0].locals.push(("x".into(), Value::Ref(99)));
        let bytes = encode(&s).unwrap();
        assert!(matches!(decode(&bytes), Err(DecodeError::Corrupt(_))));
    }
}
