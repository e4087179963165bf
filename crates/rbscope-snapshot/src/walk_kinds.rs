//! How much of a string, an array and a hash the walk keeps, and what it costs against the
//! byte limit: policy, not reading. A [`Reader`] reads the raw parts (bytes, items, pairs) and
//! hands them here, so every reader keeps and charges them the same way.

use crate::walk::{Reader, Walk};
use crate::{ObjectKind, Value};

/// What a kept array item, and a kept hash entry, cost against the byte limit (an estimate).
const ITEM_BYTES: usize = 8;
const ENTRY_BYTES: usize = 16;

impl<V: Copy> Walk<'_, V> {
    /// A string of `bytes`: its first `max_string_bytes` kept (and charged).
    pub fn string_kind(&mut self, bytes: &[u8], encoding: String) -> ObjectKind {
        let max = self.limits().max_string_bytes;
        let kept = bytes.get(..max).unwrap_or(bytes).to_vec();
        self.charge(kept.len());
        ObjectKind::String {
            bytes: kept,
            encoding,
            original_len: bytes.len() as u64,
        }
    }

    /// An array of `len` items: its first `max_collection_items` captured at `depth` (and
    /// charged). `item(i)` reads item `i`, checked against the array's length now: None ends
    /// the array there.
    pub fn array_kind<R>(
        &mut self,
        r: &mut R,
        len: usize,
        depth: u32,
        mut item: impl FnMut(usize) -> Option<V>,
    ) -> ObjectKind
    where
        R: Reader<Value = V> + ?Sized,
    {
        let take = len.min(self.limits().max_collection_items);
        let mut items = Vec::with_capacity(take);
        for i in 0..take {
            let Some(v) = item(i) else {
                break;
            };
            items.push(self.value(r, v, depth));
        }
        self.charge(items.len() * ITEM_BYTES);
        ObjectKind::Array {
            items,
            original_len: len as u64,
        }
    }

    /// A hash's entries, from the pairs the reader kept: each key captured, then its value,
    /// under the key's name when `key_name` gives one (a String or Symbol key: a value under a
    /// secret-looking key is redacted); each entry charged.
    pub fn entries<R>(
        &mut self,
        r: &mut R,
        pairs: Vec<(V, V)>,
        depth: u32,
        key_name: impl Fn(V) -> Option<String>,
    ) -> Vec<(Value, Value)>
    where
        R: Reader<Value = V> + ?Sized,
    {
        let mut entries = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let name = key_name(k);
            let key = self.value(r, k, depth);
            let value = match name {
                Some(name) => self.named(r, &name, v, depth),
                None => self.value(r, v, depth),
            };
            entries.push((key, value));
        }
        self.charge(entries.len() * ENTRY_BYTES);
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Rules;
    use crate::walk::{AddrMap, Limits};
    use crate::CaptureStats;

    /// A graph of integers: all inline values (`Fake(true)`), or each an empty object.
    struct Fake(bool);
    impl Reader for Fake {
        type Value = i64;
        fn inline(&mut self, v: i64) -> Option<Value> {
            self.0.then_some(Value::Integer(v))
        }
        fn identity(&self, v: i64) -> usize {
            v as usize
        }
        fn read_string<T>(&self, _: i64, _: impl FnOnce(&[u8]) -> T) -> Option<T> {
            None
        }
        fn header(&mut self, _: i64) -> (String, bool) {
            (String::new(), false)
        }
        fn kind(&mut self, _: i64, _: u32, _: &mut Walk<i64>) -> ObjectKind {
            ObjectKind::Plain
        }
        fn ivars(&mut self, _: i64, _: u32, _: &mut Walk<i64>) -> Vec<(String, Value)> {
            Vec::new()
        }
    }

    fn limits(max_bytes: usize) -> Limits {
        Limits {
            max_depth: 5,
            max_objects: 10,
            max_bytes,
            max_string_bytes: 3,
            max_collection_items: 2,
        }
    }

    /// The walk's counts after `f`, with a byte limit of 0 so that anything charged shows as
    /// an object cut for bytes when one more object is offered.
    fn charged(f: impl FnOnce(&mut Walk<i64>)) -> CaptureStats {
        let (rules, magic) = (Rules::default(), AddrMap::default());
        let mut w = Walk::new(limits(0), &rules, &magic);
        f(&mut w);
        w.value(&mut Fake(false), 0x100, 0);
        w.finish(&mut Fake(false)).1 // the counts
    }

    #[test]
    fn a_string_keeps_its_first_bytes_and_its_length() {
        let (rules, magic) = (Rules::default(), AddrMap::default());
        let mut w: Walk<i64> = Walk::new(limits(1 << 20), &rules, &magic);
        let kind = w.string_kind(b"hello", "UTF-8".into());
        let ObjectKind::String {
            bytes,
            encoding,
            original_len,
        } = kind
        else {
            panic!("not a string: {kind:?}");
        };
        assert_eq!(
            (bytes.as_slice(), encoding.as_str(), original_len),
            (&b"hel"[..], "UTF-8", 5)
        );
        let short = w.string_kind(b"hi", String::new());
        assert!(matches!(short, ObjectKind::String { bytes, .. } if bytes == b"hi"));
        // Kept bytes are charged; nothing kept, nothing charged.
        assert_eq!(
            charged(|w| drop(w.string_kind(b"ab", String::new()))).cut_bytes,
            1
        );
        assert_eq!(
            charged(|w| drop(w.string_kind(b"", String::new()))).cut_bytes,
            0
        );
    }

    #[test]
    fn an_array_keeps_its_first_items_until_one_cannot_be_read() {
        let (rules, magic) = (Rules::default(), AddrMap::default());
        let mut w = Walk::new(limits(1 << 20), &rules, &magic);
        let kind = w.array_kind(&mut Fake(true), 5, 0, |i| Some(i as i64 * 10));
        assert!(matches!(&kind, ObjectKind::Array { items, original_len: 5 }
            if *items == vec![Value::Integer(0), Value::Integer(10)]));
        let kind = w.array_kind(&mut Fake(true), 5, 0, |i| (i < 1).then_some(7));
        assert!(matches!(&kind, ObjectKind::Array { items, original_len: 5 }
            if *items == vec![Value::Integer(7)]));
        assert_eq!(
            charged(|w| drop(w.array_kind(&mut Fake(true), 0, 0, |_| None))).cut_bytes,
            0
        );
        assert_eq!(
            charged(|w| drop(w.array_kind(&mut Fake(true), 1, 0, |_| Some(1)))).cut_bytes,
            1
        );
    }

    #[test]
    fn a_value_under_a_secret_key_is_redacted() {
        let (rules, magic) = (Rules::default(), AddrMap::default());
        let mut w = Walk::new(limits(1 << 20), &rules, &magic);
        let name = |k: i64| match k {
            1 => Some("password".to_string()),
            2 => Some("city".to_string()),
            _ => None,
        };
        let entries = w.entries(&mut Fake(true), vec![(1, 11), (2, 22), (3, 33)], 0, name);
        assert_eq!(entries.len(), 3);
        assert!(matches!(
            entries[0],
            (Value::Integer(1), Value::Redacted(_))
        ));
        assert_eq!(entries[1], (Value::Integer(2), Value::Integer(22)));
        assert_eq!(entries[2], (Value::Integer(3), Value::Integer(33)));
        assert_eq!(
            charged(|w| drop(w.entries(&mut Fake(true), vec![(4, 4)], 0, name))).cut_bytes,
            1
        );
    }
}
