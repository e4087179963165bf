//! Rendering snapshots for people (`text`) and programs (`json`).

pub mod json;
pub mod text;
