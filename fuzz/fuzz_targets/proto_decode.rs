//! Any bytes on the control socket give a message or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbscope_proto::{read_frame, AgentMessage, ClientMessage};

fuzz_target!(|data: &[u8]| {
    let _ = read_frame::<_, ClientMessage>(&mut &data[..]);
    let _ = read_frame::<_, AgentMessage>(&mut &data[..]);
});
