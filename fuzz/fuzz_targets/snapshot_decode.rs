//! Any bytes given to the snapshot decoder give a snapshot or an error, never a panic; a
//! decoded snapshot re-encodes and decodes to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = rbscope_snapshot::decode(data) {
        let again = rbscope_snapshot::encode(&s).expect("a decoded snapshot encodes");
        assert_eq!(rbscope_snapshot::decode(&again).ok(), Some(s));
    }
});
