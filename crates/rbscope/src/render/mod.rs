//! Rendering snapshots for people (`text`) and programs (`json`).

pub mod text;
