//! Rails objects as their users think of them: an ActiveRecord record (or any ActiveModel
//! object with `ActiveModel::Attributes`) as its attributes, and `ActionController::Parameters`
//! as its parameters, instead of the objects Rails keeps them in.
//!
//! A record keeps its attributes in `@attributes`, an `ActiveModel::AttributeSet` whose
//! insides changed across Rails releases: 6.1's `LazyAttributeSet` holds the raw database row
//! in `@values`, the values read so far in `@casted_values` and materialized `Attribute`s in
//! `@attributes`; 5.x, 6.0 and 7+ hold a `LazyAttributeHash` with `@values` and
//! `@delegate_hash`; a new record holds a plain hash of `Attribute`s (`FromUser`,
//! `FromDatabase`, `Uninitialized` ...), each with `@value_before_type_cast` and, once read,
//! `@value`. [`view`] finds each attribute's value wherever the snapshot holds it, best first
//! (a value Ruby has cast, then the raw one), and says when the value is missing (a column the
//! query did not select, or one the capture did not reach). `rbscope show` and the web UI's
//! value tree ([`views_json`]) both render from here; `show --json` keeps the raw arena.

use rbscope_snapshot::{Object, ObjectKind, Snapshot, Value};
use serde_json::{json, Map, Value as J};

/// What an object is shown as, when it is one of the objects this module knows.
#[derive(Debug, PartialEq)]
pub enum View<'s> {
    Record(Record<'s>),
    Parameters(Parameters<'s>),
}

#[derive(Debug, PartialEq)]
pub struct Record<'s> {
    /// The attributes in column order; or, when the snapshot holds none of them, the value
    /// that stands in their place: the attribute set, or the hash inside it, cut by a limit
    /// (or redacted).
    pub attributes: Result<Vec<Attribute>, &'s Value>,
    /// What sets this record apart from a plain persisted one: `new record`, `destroyed`,
    /// `readonly`, `marked for destruction`.
    pub flags: Vec<&'static str>,
    /// The record's other instance variables worth showing (loaded associations, ...): the
    /// ones with a value that is not nil, false or empty, and not one of the bookkeeping
    /// ones the flags stand for.
    pub other_ivars: Vec<&'s (String, Value)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttributeValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// The value; `before_type_cast` when it is the raw value (from the database or the user)
    /// that Ruby had not cast yet and whose cast can differ (a time read as a string ...).
    Value {
        value: Value,
        before_type_cast: bool,
    },
    /// The record has no value for it: the query did not select the column.
    NotLoaded,
    /// The snapshot does not hold its value (a limit cut the attribute set).
    NotCaptured,
}

#[derive(Debug, PartialEq)]
pub struct Parameters<'s> {
    /// `@parameters`: the hash (a `HashWithIndifferentAccess`), or what was stored instead.
    pub parameters: &'s Value,
    pub permitted: Option<bool>,
    /// Other instance variables that are not nil, false or empty.
    pub other_ivars: Vec<&'s (String, Value)>,
}

/// The view of object `index`, if it is a record or parameters.
pub fn view(s: &Snapshot, index: u32) -> Option<View<'_>> {
    let obj = s.object(index)?;
    if !matches!(obj.kind, ObjectKind::Plain) {
        return None;
    }
    if let Some(v) = parameters(s, obj) {
        return Some(View::Parameters(v));
    }
    record(s, obj).map(View::Record)
}

fn ivar<'o>(obj: &'o Object, name: &str) -> Option<&'o Value> {
    obj.ivars.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn object_at<'s>(s: &'s Snapshot, v: &Value) -> Option<&'s Object> {
    match v {
        Value::Ref(i) => s.object(*i),
        _ => None,
    }
}

fn is_attribute_set(class_name: &str) -> bool {
    class_name.starts_with("ActiveModel::") && class_name.ends_with("AttributeSet")
}

/// A record: `@attributes` holds an attribute set, or (when the set itself was not captured)
/// the object also has ActiveRecord's `@new_record`. Rails' own objects that hold a record's
/// attribute set (ActiveModel's mutation trackers, ActiveRecord's too where a release has
/// them) are not records; ActiveRecord's own models (`ActiveRecord::SchemaMigration`) are.
fn record<'s>(s: &'s Snapshot, obj: &'s Object) -> Option<Record<'s>> {
    if obj.class_name.starts_with("ActiveModel::") || obj.class_name.ends_with("MutationTracker") {
        return None;
    }
    let held = ivar(obj, "@attributes")?;
    let attributes = match object_at(s, held) {
        Some(set) if is_attribute_set(&set.class_name) => attribute_set(s, set),
        Some(_) => return None,
        None if ivar(obj, "@new_record").is_some() && !matches!(held, Value::Nil) => Err(held),
        None => return None,
    };
    let mut flags = Vec::new();
    let mut consumed = vec!["@attributes", "@primary_key", "@previously_new_record"];
    for (ivar_name, flag) in [
        ("@new_record", "new record"),
        ("@destroyed", "destroyed"),
        ("@readonly", "readonly"),
        ("@marked_for_destruction", "marked for destruction"),
    ] {
        consumed.push(ivar_name);
        if ivar(obj, ivar_name) == Some(&Value::True) {
            flags.push(flag);
        }
    }
    let other_ivars = obj
        .ivars
        .iter()
        .filter(|(name, v)| {
            !consumed.contains(&name.as_str())
                && !BOOKKEEPING.contains(&name.as_str())
                && !name.starts_with("@_")
                && !blank(s, v)
        })
        .collect();
    Some(Record {
        attributes,
        flags,
        other_ivars,
    })
}

/// A record's instance variables that hold Rails' bookkeeping rather than the record's state
/// (besides the `@_`-prefixed ones): shown by `show --raw` and the UI's internals.
const BOOKKEEPING: &[&str] = &[
    "@mutations_before_last_save",
    "@mutations_from_database",
    "@strict_loading_mode",
    "@transaction_state",
];

fn parameters<'s>(s: &'s Snapshot, obj: &'s Object) -> Option<Parameters<'s>> {
    let held = ivar(obj, "@parameters")?;
    let permitted = ivar(obj, "@permitted")?;
    if !obj.class_name.ends_with("Parameters") {
        return None;
    }
    let permitted = match permitted {
        Value::True => Some(true),
        Value::False => Some(false),
        _ => None,
    };
    let other_ivars = obj
        .ivars
        .iter()
        .filter(|iv| iv.0 != "@parameters" && iv.0 != "@permitted" && !blank(s, &iv.1))
        .collect();
    Some(Parameters {
        parameters: held,
        permitted,
        other_ivars,
    })
}

/// nil, false, an empty hash or array with no instance variables, or an
/// `ActiveModel::Errors` with no errors.
fn blank(s: &Snapshot, v: &Value) -> bool {
    match v {
        Value::Nil | Value::False => true,
        Value::Ref(_) => match object_at(s, v) {
            Some(o) if o.class_name == "ActiveModel::Errors" => {
                ivar(o, "@errors").is_some_and(|e| blank(s, e))
            }
            Some(o) if o.ivars.is_empty() => match &o.kind {
                ObjectKind::Hash {
                    original_len,
                    default,
                    default_proc,
                    ..
                } => *original_len == 0 && default.is_none() && default_proc.is_none(),
                ObjectKind::Array { original_len, .. } => *original_len == 0,
                _ => false,
            },
            _ => false,
        },
        _ => false,
    }
}

/// A hash's entries by their string or symbol keys, and whether all of them were kept.
struct Entries<'s> {
    entries: Vec<(String, &'s Value)>,
    complete: bool,
}

impl<'s> Entries<'s> {
    /// The entries of the hash `v` refers to; None when `v` is not a captured hash.
    fn of(s: &'s Snapshot, v: Option<&'s Value>) -> Option<Entries<'s>> {
        let obj = object_at(s, v?)?;
        let ObjectKind::Hash {
            entries,
            original_len,
            ..
        } = &obj.kind
        else {
            return None;
        };
        Some(Entries {
            entries: entries
                .iter()
                .filter_map(|(k, v)| Some((key_text(s, k)?, v)))
                .collect(),
            complete: entries.len() as u64 >= *original_len,
        })
    }

    fn get(&self, name: &str) -> Option<&'s Value> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

fn key_text(s: &Snapshot, k: &Value) -> Option<String> {
    match k {
        Value::Symbol(name) => Some(name.clone()),
        Value::Ref(_) => match &object_at(s, k)?.kind {
            ObjectKind::String { bytes, .. } => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        },
        _ => None,
    }
}

/// The attributes of an attribute set (any of the shapes described at the top).
fn attribute_set<'s>(s: &'s Snapshot, set: &'s Object) -> Result<Vec<Attribute>, &'s Value> {
    // Where the lazy parts live: the set itself (6.1's LazyAttributeSet), or the
    // LazyAttributeHash in its `@attributes` (5.x, 6.0, 7+).
    let inner = ivar(set, "@attributes").and_then(|v| object_at(s, v));
    let lazy = if ivar(set, "@values").is_some() {
        Some(set)
    } else {
        inner.filter(|o| ivar(o, "@values").is_some() || ivar(o, "@delegate_hash").is_some())
    };
    let lazy_ivar = |name: &str| lazy.and_then(|l| ivar(l, name));
    let materialized = Entries::of(s, ivar(set, "@attributes"))
        .or_else(|| Entries::of(s, lazy_ivar("@delegate_hash")));
    let raw = Entries::of(s, lazy_ivar("@values"));
    let casted = Entries::of(s, lazy_ivar("@casted_values"));
    let types = Entries::of(s, lazy_ivar("@types"));
    let additional_types = Entries::of(s, lazy_ivar("@additional_types"));
    let defaults = Entries::of(s, lazy_ivar("@default_attributes"));

    // Column order (the types), then what only the row or the materialized ones name.
    let mut names: Vec<&str> = Vec::new();
    for e in [&types, &raw, &materialized, &defaults]
        .into_iter()
        .flatten()
    {
        for (k, _) in &e.entries {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
    }
    let type_of = |name: &str| {
        additional_types
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| types.as_ref().and_then(|t| t.get(name)))
    };
    // A lazy set whose row was cut (or not captured at all) may have had a value for a name
    // only the types list.
    let row_complete = match (&lazy, &raw) {
        (None, _) => true,
        (Some(_), Some(r)) => r.complete,
        (Some(_), None) => false,
    };
    let everything_complete = [&materialized, &casted]
        .into_iter()
        .flatten()
        .all(|e| e.complete)
        && row_complete;
    if names.is_empty() {
        // No name at all: when a limit cut what holds them, say so rather than "no
        // attributes".
        let cut = [Some(set), inner, lazy]
            .into_iter()
            .flatten()
            .flat_map(|o| o.ivars.iter().map(|(_, v)| v))
            .find(|v| matches!(v, Value::Cut(_)));
        if let Some(cut) = cut {
            return Err(cut);
        }
    }
    Ok(names
        .into_iter()
        .map(|name| {
            let value = if let Some(a) = materialized.as_ref().and_then(|m| m.get(name)) {
                from_attribute(s, a, type_of(name))
            } else if let Some(v) = casted.as_ref().and_then(|c| c.get(name)) {
                AttributeValue::Value {
                    value: v.clone(),
                    before_type_cast: false,
                }
            } else if let Some(v) = raw.as_ref().and_then(|r| r.get(name)) {
                AttributeValue::Value {
                    value: v.clone(),
                    before_type_cast: may_differ_when_cast(s, v, type_of(name)),
                }
            } else if !everything_complete {
                // The row (or the values read) were cut: a default would be a guess.
                AttributeValue::NotCaptured
            } else if let Some(a) = defaults.as_ref().and_then(|d| d.get(name)) {
                from_attribute(s, a, type_of(name))
            } else {
                AttributeValue::NotLoaded
            };
            Attribute {
                name: name.to_string(),
                value,
            }
        })
        .collect())
}

/// An `ActiveModel::Attribute`'s value: `@value` once Ruby has read it, else
/// `@value_before_type_cast`.
fn from_attribute(s: &Snapshot, a: &Value, type_hint: Option<&Value>) -> AttributeValue {
    let Some(obj) = object_at(s, a) else {
        // Redacted by its name, or cut: shown as such.
        return AttributeValue::Value {
            value: a.clone(),
            before_type_cast: false,
        };
    };
    if obj.class_name.ends_with("::Uninitialized") {
        return AttributeValue::NotLoaded;
    }
    if let Some(v) = ivar(obj, "@value") {
        return AttributeValue::Value {
            value: v.clone(),
            before_type_cast: false,
        };
    }
    match ivar(obj, "@value_before_type_cast") {
        Some(v) => AttributeValue::Value {
            value: v.clone(),
            before_type_cast: may_differ_when_cast(s, v, ivar(obj, "@type").or(type_hint)),
        },
        None => AttributeValue::NotCaptured,
    }
}

/// Whether casting raw value `v` with the attribute type `ty` can give something else: a
/// string, number or boolean for a type that is not of that kind (a time or JSON read as a
/// string, a boolean or enum read as an integer ...), or when the type is unknown. Nil, and
/// objects (a Time a user assigned ...), are taken as they are.
fn may_differ_when_cast(s: &Snapshot, v: &Value, ty: Option<&Value>) -> bool {
    let type_name = ty
        .and_then(|t| object_at(s, t))
        .map(|o| o.class_name.rsplit("::").next().unwrap_or("").to_string())
        .unwrap_or_default();
    let is = |words: &[&str]| words.iter().any(|w| type_name.contains(w));
    match v {
        Value::Nil | Value::Redacted(_) | Value::Cut(_) => false,
        Value::Integer(_) | Value::BigInteger(_) => !is(&["Integer"]),
        Value::Float(_) => !is(&["Float"]),
        Value::True | Value::False => !is(&["Boolean"]),
        Value::Ref(_) => match object_at(s, v).map(|o| &o.kind) {
            Some(ObjectKind::String { .. }) => !is(&["String", "Text", "Uuid"]),
            _ => false,
        },
        _ => false,
    }
}

impl Record<'_> {
    /// The line a record is shown by: `#<User> (new record, 6 attributes)`.
    pub fn head(&self, class_name: &str) -> String {
        let mut notes: Vec<String> = self.flags.iter().map(|f| f.to_string()).collect();
        match &self.attributes {
            Ok(a) => notes.push(format!(
                "{} attribute{}",
                a.len(),
                if a.len() == 1 { "" } else { "s" }
            )),
            Err(_) => notes.push("attributes not captured".into()),
        }
        format!("#<{class_name}> ({})", notes.join(", "))
    }
}

impl Parameters<'_> {
    /// The line parameters are shown by: `#<ActionController::Parameters permitted: false>`.
    pub fn head(&self, s: &Snapshot, class_name: &str) -> String {
        let permitted = match self.permitted {
            Some(true) => "true",
            Some(false) => "false",
            None => "?",
        };
        let n = match object_at(s, self.parameters).map(|o| &o.kind) {
            Some(ObjectKind::Hash { original_len, .. }) => format!(
                " ({original_len} entr{})",
                if *original_len == 1 { "y" } else { "ies" }
            ),
            _ => String::new(),
        };
        format!("#<{class_name} permitted: {permitted}>{n}")
    }
}

/// Every record and parameters object of the snapshot, by object id, for the web UI's value
/// tree: `{"12": {"kind": "record", "head": ..., "flags": [...], "attributes": [{"name",
/// "value"} | {"name", "missing"}], "ivars": [names]}, "14": {"kind": "parameters", "head",
/// "parameters": value, "permitted", "ivars"}}`. Values are in the snapshot document's form.
pub fn views_json(s: &Snapshot) -> J {
    let mut out = Map::new();
    for i in 0..s.objects.len() as u32 {
        let Some(v) = view(s, i) else { continue };
        let Some(obj) = s.object(i) else { continue };
        let names =
            |ivars: &[&(String, Value)]| ivars.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let doc = match &v {
            View::Record(r) => {
                let attributes = match &r.attributes {
                    Ok(list) => J::Array(list.iter().map(attribute_json).collect()),
                    Err(_) => J::Null,
                };
                let mut doc = json!({
                    "kind": "record",
                    "head": r.head(&obj.class_name),
                    "flags": r.flags,
                    "attributes": attributes,
                    "ivars": names(&r.other_ivars),
                });
                if let Err(held) = &r.attributes {
                    doc["attributes_value"] = rbscope_snapshot::json::value(held);
                }
                doc
            }
            View::Parameters(p) => json!({
                "kind": "parameters",
                "head": p.head(s, &obj.class_name),
                "parameters": rbscope_snapshot::json::value(p.parameters),
                "permitted": p.permitted,
                "ivars": names(&p.other_ivars),
            }),
        };
        out.insert(i.to_string(), doc);
    }
    J::Object(out)
}

fn attribute_json(a: &Attribute) -> J {
    match &a.value {
        AttributeValue::Value {
            value,
            before_type_cast,
        } => json!({
            "name": a.name,
            "value": rbscope_snapshot::json::value(value),
            "before_type_cast": before_type_cast,
        }),
        AttributeValue::NotLoaded => json!({"name": a.name, "missing": "not loaded"}),
        AttributeValue::NotCaptured => json!({"name": a.name, "missing": "not captured"}),
    }
}

/// What `rbscope show` prints after an attribute's value when it is not the plain value.
pub fn missing_text(v: &AttributeValue) -> Option<&'static str> {
    match v {
        AttributeValue::Value { .. } => None,
        AttributeValue::NotLoaded => Some("(not loaded: the query did not select it)"),
        AttributeValue::NotCaptured => Some("(not captured: a capture limit cut it)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbscope_snapshot::{CaptureStats, Context, ExceptionInfo, Extras};

    /// An arena built object by object; `r(i)` refers to object `i`.
    #[derive(Default)]
    struct Arena {
        objects: Vec<Object>,
    }

    fn r(i: u32) -> Value {
        Value::Ref(i)
    }

    impl Arena {
        fn add(&mut self, class_name: &str, kind: ObjectKind, ivars: Vec<(&str, Value)>) -> Value {
            self.objects.push(Object {
                class_name: class_name.into(),
                frozen: false,
                kind,
                ivars: ivars.into_iter().map(|(n, v)| (n.into(), v)).collect(),
            });
            r(self.objects.len() as u32 - 1)
        }
        fn string(&mut self, text: &str) -> Value {
            let kind = ObjectKind::String {
                bytes: text.as_bytes().to_vec(),
                encoding: "UTF-8".into(),
                original_len: text.len() as u64,
            };
            self.add("String", kind, vec![])
        }
        fn hash_of(
            &mut self,
            class: &str,
            entries: Vec<(&str, Value)>,
            original_len: u64,
        ) -> Value {
            let entries = entries
                .into_iter()
                .map(|(k, v)| (self.string(k), v))
                .collect();
            let kind = ObjectKind::Hash {
                entries,
                original_len,
                default: None,
                default_proc: None,
                compare_by_identity: false,
            };
            self.add(class, kind, vec![])
        }
        fn hash(&mut self, entries: Vec<(&str, Value)>) -> Value {
            let n = entries.len() as u64;
            self.hash_of("Hash", entries, n)
        }
        fn plain(&mut self, class_name: &str, ivars: Vec<(&str, Value)>) -> Value {
            self.add(class_name, ObjectKind::Plain, ivars)
        }
        fn ty(&mut self, class_name: &str) -> Value {
            self.plain(class_name, vec![("@limit", Value::Nil)])
        }
        fn snapshot(self) -> Snapshot {
            Snapshot {
                id: "01TEST".into(),
                reported_at_ms: 0,
                fingerprint: String::new(),
                exception: ExceptionInfo {
                    class_name: "RuntimeError".into(),
                    message: "boom".into(),
                    backtrace: vec![],
                    causes: vec![],
                },
                frames: vec![],
                objects: self.objects,
                context: Context::default(),
                stats: CaptureStats::default(),
                extras: Extras::default(),
            }
        }
    }

    fn id_of(v: &Value) -> u32 {
        match v {
            Value::Ref(i) => *i,
            _ => panic!("not a reference: {v:?}"),
        }
    }

    fn value(v: Value, before_type_cast: bool) -> AttributeValue {
        AttributeValue::Value {
            value: v,
            before_type_cast,
        }
    }

    fn attributes(s: &Snapshot, record: &Value) -> Vec<(String, AttributeValue)> {
        match view(s, id_of(record)) {
            Some(View::Record(Record {
                attributes: Ok(list),
                ..
            })) => list.into_iter().map(|a| (a.name, a.value)).collect(),
            other => panic!("not a record with attributes: {other:?}"),
        }
    }

    fn string_at(s: &Snapshot, v: &AttributeValue) -> String {
        match v {
            AttributeValue::Value {
                value: Value::Ref(i),
                ..
            } => key_text(s, &Value::Ref(*i)).unwrap(),
            other => panic!("not a string: {other:?}"),
        }
    }

    /// A record as Rails 6.1 loads it: a LazyAttributeSet with the row, one value read.
    #[test]
    fn a_loaded_record_of_rails_6_1_reads_its_row_and_its_cast_values() {
        let mut a = Arena::default();
        let int = a.ty("ActiveRecord::ConnectionAdapters::SQLite3Adapter::SQLite3Integer");
        let string = a.ty("ActiveModel::Type::String");
        let time = a.ty("ActiveRecord::Type::DateTime");
        let raw_name = a.string("ada");
        let raw_time = a.string("2026-12-07 11:21:19.876566");
        let values = a.hash(vec![
            ("id", Value::Integer(1)),
            ("name", raw_name),
            ("password_digest", Value::Redacted("name".into())),
            ("age", Value::Integer(36)),
            ("created_at", raw_time),
        ]);
        let types = a.hash(vec![
            ("id", int.clone()),
            ("name", string),
            ("password_digest", Value::Redacted("name".into())),
            ("age", int),
            ("created_at", time),
        ]);
        let cast_name = a.string("Ada");
        let casted = a.hash(vec![("name", cast_name)]);
        let materialized = a.hash(vec![]);
        let set = a.plain(
            "ActiveModel::LazyAttributeSet",
            vec![
                ("@attributes", materialized),
                ("@values", values),
                ("@types", types),
                ("@casted_values", casted),
                ("@materialized", Value::False),
            ],
        );
        let cache = a.hash(vec![]);
        let user = a.plain(
            "User",
            vec![
                ("@new_record", Value::False),
                ("@attributes", set),
                ("@association_cache", cache),
                ("@primary_key", Value::Nil),
                ("@strict_loading", Value::False),
            ],
        );
        let s = a.snapshot();
        let got = attributes(&s, &user);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["id", "name", "password_digest", "age", "created_at"]
        );
        assert_eq!(got[0].1, value(Value::Integer(1), false));
        // The cast value wins over the row's.
        assert_eq!(string_at(&s, &got[1].1), "Ada");
        assert_eq!(got[2].1, value(Value::Redacted("name".into()), false));
        assert_eq!(got[3].1, value(Value::Integer(36), false));
        // A time still as the database gave it is marked.
        assert_eq!(string_at(&s, &got[4].1), "2026-12-07 11:21:19.876566");
        assert!(matches!(
            got[4].1,
            AttributeValue::Value {
                before_type_cast: true,
                ..
            }
        ));
        let Some(View::Record(rec)) = view(&s, id_of(&user)) else {
            panic!()
        };
        assert!(rec.flags.is_empty());
        assert!(rec.other_ivars.is_empty(), "{:?}", rec.other_ivars);
        assert_eq!(rec.head("User"), "#<User> (5 attributes)");
    }

    /// Rails 7's shape: an AttributeSet over a LazyAttributeHash, one attribute materialized
    /// (read and cast), one column not selected, an association loaded.
    #[test]
    fn a_lazy_attribute_hash_gives_materialized_values_first_and_marks_unselected_columns() {
        let mut a = Arena::default();
        let int = a.ty("ActiveModel::Type::Integer");
        let string = a.ty("ActiveModel::Type::String");
        let types = a.hash(vec![
            ("id", int.clone()),
            ("name", string.clone()),
            ("age", int.clone()),
            ("bio", string),
        ]);
        let raw_age = a.string("36");
        let values = a.hash(vec![("id", Value::Integer(7)), ("age", raw_age)]);
        let cast_name = a.string("ada");
        let name_attr = a.plain(
            "ActiveModel::Attribute::FromDatabase",
            vec![
                ("@name", Value::Nil),
                ("@value_before_type_cast", Value::Nil),
                ("@type", Value::Nil),
                ("@value", cast_name),
            ],
        );
        let bio_attr = a.plain(
            "ActiveModel::Attribute::Uninitialized",
            vec![("@name", Value::Nil), ("@type", Value::Nil)],
        );
        let delegate = a.hash(vec![("name", name_attr), ("bio", bio_attr)]);
        let lazy = a.plain(
            "ActiveModel::LazyAttributeHash",
            vec![
                ("@types", types),
                ("@values", values),
                ("@delegate_hash", delegate),
            ],
        );
        let set = a.plain("ActiveModel::AttributeSet", vec![("@attributes", lazy)]);
        let posts = a.plain("ActiveRecord::Associations::HasManyAssociation", vec![]);
        let cache = a.hash(vec![("posts", posts)]);
        let user = a.plain(
            "User",
            vec![
                ("@attributes", set),
                ("@new_record", Value::False),
                ("@association_cache", cache),
                ("@readonly", Value::True),
            ],
        );
        let s = a.snapshot();
        let got = attributes(&s, &user);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], ("id".into(), value(Value::Integer(7), false)));
        assert_eq!(string_at(&s, &got[1].1), "ada");
        // A string for an integer column is the raw value: marked.
        assert_eq!(string_at(&s, &got[2].1), "36");
        assert!(matches!(
            got[2].1,
            AttributeValue::Value {
                before_type_cast: true,
                ..
            }
        ));
        assert_eq!(got[3], ("bio".into(), AttributeValue::NotLoaded));
        let Some(View::Record(rec)) = view(&s, id_of(&user)) else {
            panic!()
        };
        assert_eq!(rec.flags, ["readonly"]);
        let shown: Vec<&str> = rec.other_ivars.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(shown, ["@association_cache"]);
        assert_eq!(rec.head("User"), "#<User> (readonly, 4 attributes)");
    }

    /// A new record: a plain hash of attributes set by the user (uncast), one redacted by its
    /// name.
    #[test]
    fn a_new_record_reads_its_attribute_objects() {
        let mut a = Arena::default();
        let int = a.ty("ActiveModel::Type::Integer");
        let id_attr = a.plain(
            "ActiveModel::Attribute::FromDatabase",
            vec![
                ("@value_before_type_cast", Value::Nil),
                ("@type", int.clone()),
            ],
        );
        let age_attr = a.plain(
            "ActiveModel::Attribute::FromUser",
            vec![
                ("@value_before_type_cast", Value::Integer(3)),
                ("@type", int),
            ],
        );
        let attrs = a.hash(vec![
            ("id", id_attr),
            ("age", age_attr),
            ("password", Value::Redacted("name".into())),
        ]);
        let set = a.plain("ActiveModel::AttributeSet", vec![("@attributes", attrs)]);
        let user = a.plain(
            "User",
            vec![("@new_record", Value::True), ("@attributes", set)],
        );
        let s = a.snapshot();
        assert_eq!(
            attributes(&s, &user),
            [
                ("id".into(), value(Value::Nil, false)),
                ("age".into(), value(Value::Integer(3), false)),
                (
                    "password".into(),
                    value(Value::Redacted("name".into()), false)
                ),
            ]
        );
        let Some(View::Record(rec)) = view(&s, id_of(&user)) else {
            panic!()
        };
        assert_eq!(rec.head("User"), "#<User> (new record, 3 attributes)");
    }

    /// What a limit took away is said, never guessed: a row cut short leaves the names only
    /// the types list as not captured, and an attribute set the capture did not reach is
    /// shown as the cut it is.
    #[test]
    fn cut_attributes_are_marked_not_captured() {
        let mut a = Arena::default();
        let int = a.ty("ActiveModel::Type::Integer");
        let types = a.hash(vec![("id", int.clone()), ("age", int)]);
        let values = a.hash_of("Hash", vec![("id", Value::Integer(1))], 2);
        let default_age = a.plain(
            "ActiveModel::Attribute::FromDatabase",
            vec![("@value_before_type_cast", Value::Nil)],
        );
        let defaults = a.hash(vec![("age", default_age)]);
        let set = a.plain(
            "ActiveModel::LazyAttributeSet",
            vec![
                ("@values", values),
                ("@types", types),
                ("@default_attributes", defaults),
            ],
        );
        let user = a.plain(
            "User",
            vec![("@new_record", Value::False), ("@attributes", set)],
        );
        let cut = Value::Cut(rbscope_snapshot::CutReason::Depth);
        let hollow_set = a.plain(
            "ActiveModel::LazyAttributeSet",
            vec![
                ("@attributes", cut.clone()),
                ("@values", cut.clone()),
                ("@types", cut.clone()),
            ],
        );
        let hollow = a.plain(
            "User",
            vec![("@new_record", Value::False), ("@attributes", hollow_set)],
        );
        let far = a.plain(
            "User",
            vec![("@new_record", Value::False), ("@attributes", cut.clone())],
        );
        let s = a.snapshot();
        assert_eq!(
            attributes(&s, &user)[1],
            ("age".into(), AttributeValue::NotCaptured)
        );
        let Some(View::Record(rec)) = view(&s, id_of(&far)) else {
            panic!()
        };
        assert_eq!(rec.attributes, Err(&cut));
        assert_eq!(rec.head("User"), "#<User> (attributes not captured)");
        let Some(View::Record(rec)) = view(&s, id_of(&hollow)) else {
            panic!()
        };
        assert_eq!(rec.attributes, Err(&cut));
    }

    #[test]
    fn parameters_are_their_hash_and_permitted_flag() {
        let mut a = Arena::default();
        let name = a.string("ada");
        let hash = a.hash_of(
            "ActiveSupport::HashWithIndifferentAccess",
            vec![("name", name), ("password", Value::Redacted("name".into()))],
            2,
        );
        let params = a.plain(
            "ActionController::Parameters",
            vec![("@parameters", hash.clone()), ("@permitted", Value::True)],
        );
        let s = a.snapshot();
        let Some(View::Parameters(p)) = view(&s, id_of(&params)) else {
            panic!()
        };
        assert_eq!(p.parameters, &hash);
        assert_eq!(p.permitted, Some(true));
        assert_eq!(
            p.head(&s, "ActionController::Parameters"),
            "#<ActionController::Parameters permitted: true> (2 entries)"
        );
        let doc = views_json(&s);
        let v = &doc[id_of(&params).to_string()];
        assert_eq!(v["kind"], "parameters");
        assert_eq!(v["permitted"], true);
        assert_eq!(v["parameters"]["id"], id_of(&hash));
    }

    /// Look-alikes stay plain objects: an `@attributes` that is a plain hash, a class that
    /// only happens to have `@parameters`.
    #[test]
    fn other_objects_have_no_view() {
        let mut a = Arena::default();
        let h = a.hash(vec![("id", Value::Integer(1))]);
        let form = a.plain("Form", vec![("@attributes", h.clone())]);
        let other = a.plain(
            "Query",
            vec![("@parameters", h), ("@permitted", Value::True)],
        );
        let nil_attrs = a.plain("Thing", vec![("@attributes", Value::Nil)]);
        let set = a.plain(
            "ActiveModel::AttributeSet",
            vec![("@attributes", Value::Nil)],
        );
        let tracker = a.plain(
            "ActiveModel::AttributeMutationTracker",
            vec![("@attributes", set.clone())],
        );
        let forced = a.plain(
            "ActiveRecord::ForcedMutationTracker",
            vec![("@attributes", set.clone())],
        );
        let migration = a.plain(
            "ActiveRecord::SchemaMigration",
            vec![("@attributes", set), ("@new_record", Value::False)],
        );
        let s = a.snapshot();
        assert!(matches!(view(&s, id_of(&migration)), Some(View::Record(_))));
        for o in [form, other, nil_attrs, tracker, forced] {
            assert_eq!(view(&s, id_of(&o)), None);
        }
        let doc = views_json(&s);
        let ids: Vec<&String> = doc.as_object().unwrap().keys().collect();
        assert_eq!(ids, [&id_of(&migration).to_string()]);
    }

    /// Rails' bookkeeping after a save stays in the internals; errors show when there are
    /// some; a Time assigned to a time column is not "before type cast".
    #[test]
    fn a_saved_record_hides_bookkeeping_and_keeps_what_matters() {
        let mut a = Arena::default();
        let time_type = a.ty("ActiveRecord::Type::DateTime");
        let int = a.ty("ActiveModel::Type::Integer");
        let at = a.add(
            "Time",
            ObjectKind::Time {
                seconds: 0,
                nanoseconds: 0,
                utc_offset: 0,
                utc: true,
            },
            vec![],
        );
        let created = a.plain(
            "ActiveModel::Attribute::FromUser",
            vec![("@value_before_type_cast", at), ("@type", time_type)],
        );
        let flag = a.plain(
            "ActiveModel::Attribute::FromUser",
            vec![("@value_before_type_cast", Value::True), ("@type", int)],
        );
        let attrs = a.hash(vec![("created_at", created), ("flag", flag)]);
        let set = a.plain("ActiveModel::AttributeSet", vec![("@attributes", attrs)]);
        let none = a.add(
            "Array",
            ObjectKind::Array {
                items: vec![],
                original_len: 0,
            },
            vec![],
        );
        let no_errors = a.plain("ActiveModel::Errors", vec![("@errors", none)]);
        let called = a.hash(vec![("validate", Value::False)]);
        let tracker = a.plain("ActiveModel::AttributeMutationTracker", vec![]);
        let user = a.plain(
            "User",
            vec![
                ("@new_record", Value::False),
                ("@attributes", set.clone()),
                ("@errors", no_errors),
                ("@_already_called", called),
                ("@mutations_before_last_save", tracker),
                ("@_touch_record", Value::True),
            ],
        );
        let error = a.plain("ActiveModel::Error", vec![]);
        let list = a.add(
            "Array",
            ObjectKind::Array {
                items: vec![error],
                original_len: 1,
            },
            vec![],
        );
        let errors = a.plain("ActiveModel::Errors", vec![("@errors", list)]);
        let invalid = a.plain(
            "User",
            vec![
                ("@new_record", Value::True),
                ("@attributes", set),
                ("@errors", errors),
            ],
        );
        let s = a.snapshot();
        let got = attributes(&s, &user);
        assert!(matches!(
            got[0].1,
            AttributeValue::Value {
                value: Value::Ref(_),
                before_type_cast: false
            }
        ));
        // true for an integer column is what the user gave; Ruby casts it to 1.
        assert_eq!(got[1].1, value(Value::True, true));
        let shown = |o: &Value| match view(&s, id_of(o)) {
            Some(View::Record(r)) => r
                .other_ivars
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
            _ => panic!(),
        };
        assert!(shown(&user).is_empty(), "{:?}", shown(&user));
        assert_eq!(shown(&invalid), ["@errors"]);
    }

    #[test]
    fn the_ui_gets_each_attribute_with_its_value_or_why_it_is_missing() {
        let mut a = Arena::default();
        let attr = a.plain(
            "ActiveModel::Attribute::Uninitialized",
            vec![("@name", Value::Nil)],
        );
        let attrs = a.hash(vec![("id", Value::Redacted("name".into())), ("bio", attr)]);
        let set = a.plain("ActiveModel::AttributeSet", vec![("@attributes", attrs)]);
        let user = a.plain(
            "User",
            vec![("@new_record", Value::True), ("@attributes", set)],
        );
        let s = a.snapshot();
        let doc = views_json(&s);
        let v = &doc[id_of(&user).to_string()];
        assert_eq!(v["kind"], "record");
        assert_eq!(v["head"], "#<User> (new record, 2 attributes)");
        assert_eq!(v["flags"], json!(["new record"]));
        assert_eq!(
            v["attributes"],
            json!([
                {"name": "id", "value": {"type": "redacted", "reason": "name"}, "before_type_cast": false},
                {"name": "bio", "missing": "not loaded"},
            ])
        );
        assert_eq!(doc.as_object().unwrap().len(), 1);
    }
}
