//! Any bytes as heap dump lines give records or counted errors, never a panic; whatever is
//! read can be walked (references, unescaped strings) and grouped.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbscope_heap::input::read_records;
use rbscope_heap::names::{group_key, group_name, ClassTable, SubNames};

fuzz_target!(|data: &[u8]| {
    let mut classes = ClassTable::default();
    let mut subs = SubNames::default();
    let mut keys = Vec::new();
    let stats = read_records(data, |rec| {
        let _ = rec.references.iter().count();
        for t in [rec.file, rec.name, rec.real_class_name, rec.value, rec.struct_name, rec.method]
            .into_iter()
            .flatten()
        {
            let _ = t.to_string_lossy();
        }
        let _ = rec.is_old();
        classes.note(rec);
        keys.push(group_key(rec, &mut subs));
    });
    assert!(stats.objects + stats.roots + stats.shapes + stats.unreadable <= stats.lines);
    for k in &keys {
        let _ = group_name(k, &classes, &subs);
    }
});
