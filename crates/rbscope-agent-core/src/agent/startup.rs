//! What a start of the agent tells the user (`rbscope doctor -p PID`, `Rbscope.warnings`):
//! the store as resolved, and the warnings and notes that follow from the settings and the
//! Ruby it runs in.

use rbscope_store::StoreLocation;

/// The store as the agent keeps it: resolved once (a relative path against today's
/// directory), so a forked child that changed directory still writes to the same store.
pub fn resolved_store(location: &StoreLocation) -> String {
    match location {
        StoreLocation::Sqlite(path) => path.display().to_string(),
        StoreLocation::Postgres(url) => url.clone(),
    }
}

/// The warnings of a start: PostgreSQL without a signing key, and YJIT on Ruby 3.1 (from 3.2
/// on the VM invalidates YJIT's code only for events compiled into instructions, which a
/// raise hook is not: vm_trace.c).
pub fn warnings(
    location: &StoreLocation,
    has_key: bool,
    yjit: bool,
    ruby_version: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if matches!(location, StoreLocation::Postgres(_)) && !has_key {
        out.push(
            "no signing key (RBSCOPE_STORE_KEY): snapshots go to PostgreSQL unsigned, and \
             restoring them needs --trust; make one with `rbscope key new FILE`"
                .into(),
        );
    }
    if yjit && ruby_version.starts_with("3.1.") {
        out.push(
            "YJIT is on: on Ruby 3.1 the raise hook makes YJIT discard compiled code, and code \
             compiled before stays slower until restart (see README, Performance)"
                .into(),
        );
    }
    out
}

/// Why the debug inspector is used when the settings ask for it.
pub const INSPECTOR_CONFIGURED: &str =
    "capture = inspector: using the debug inspector as configured";

/// The status note of the capture path in use (`fast`: the VM layout's version, or why not),
/// and the warning to show when the fast path was wanted but is not available.
pub fn capture_note(
    capture: &str,
    fast: Result<String, String>,
) -> ((String, String), Option<String>) {
    match fast {
        Ok(version) => (
            (
                "capture".into(),
                format!("fast: VM frames read directly (layout {version})"),
            ),
            None,
        ),
        Err(why) => (
            ("capture".into(), "debug inspector (slower at raise)".into()),
            (capture != "inspector").then_some(why),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_follow_the_settings() {
        let pg = StoreLocation::Postgres("postgres://db/x".into());
        let lite = StoreLocation::Sqlite("/tmp/x.db".into());
        assert!(warnings(&lite, false, false, "3.1.2").is_empty());
        assert!(warnings(&pg, true, true, "3.3.0").is_empty());
        let both = warnings(&pg, false, true, "3.1.2");
        assert_eq!(both.len(), 2);
        assert!(both.first().unwrap().starts_with("no signing key"));
        assert!(both.get(1).unwrap().starts_with("YJIT is on"));
        assert_eq!(resolved_store(&lite), "/tmp/x.db");
        assert_eq!(resolved_store(&pg), "postgres://db/x");
    }

    #[test]
    fn capture_notes() {
        let (note, warn) = capture_note("fast", Ok("3.4".into()));
        assert_eq!(note.1, "fast: VM frames read directly (layout 3.4)");
        assert_eq!(warn, None);
        let (note, warn) = capture_note("fast", Err("unknown layout".into()));
        assert_eq!(note.1, "debug inspector (slower at raise)");
        assert_eq!(warn.as_deref(), Some("unknown layout"));
        let (_, warn) = capture_note("inspector", Err(INSPECTOR_CONFIGURED.into()));
        assert_eq!(warn, None);
    }
}
