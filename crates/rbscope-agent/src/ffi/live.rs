//! Ruby C API calls used only by the agent's `live/` modules (safe wrappers; the raw
//! declarations rb-sys lacks are in `raw.rs`).
