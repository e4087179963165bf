//! `rbscope eval -p PID CODE`: run Ruby code in a running process and print the result.
//!
//! The app must have opted in (`Rbscope.start(allow_eval: true)` or `RBSCOPE_ALLOW_EVAL=1`).
//! The code runs on a thread of its own inside the process (in the Rails executor when Rails
//! is loaded); the result's `inspect` is printed whole on stdout, an exception with its
//! backtrace on stderr (exit 1).

use crate::agent_client;
use std::time::Duration;

pub fn eval(pid: u32, code: &str, timeout: Duration) -> anyhow::Result<i32> {
    let target = agent_client::locate(pid)?;
    let mut client = agent_client::connect(&target)?;
    let result = client.eval(code, timeout)?;
    if result.ok {
        println!("{}", result.text);
        Ok(0)
    } else {
        eprintln!("{}", result.text);
        Ok(1)
    }
}
