//! The agent's settings.
//!
//! `lib/rbscope.rb` merges `Rbscope.start(...)` options over `RBSCOPE_*` environment variables
//! and hands the result over as string pairs; parsing them here keeps one set of defaults and
//! one set of error messages.

use rbscope_snapshot::redact::Rules;

/// The largest store size, snapshot count or byte figure a setting takes (1 PiB).
const MAX_STORE_FIGURE: u64 = 1 << 50;

#[derive(Debug, Clone)]
pub struct Config {
    pub store: String,
    /// The signing key file (RBSCOPE_STORE_KEY); see rbscope-store's key.rs for the default.
    pub store_key: Option<String>,
    pub app_root: String,
    pub app_revision: Option<String>,
    /// Path prefixes of library code (gems, the standard library): frames there are skipped.
    pub library_prefixes: Vec<String>,
    pub capture_library_frames: bool,
    pub report_all_raises: bool,
    pub max_frames: usize,
    pub max_depth: u32,
    pub max_objects: usize,
    pub max_bytes: usize,
    pub max_string_bytes: usize,
    pub max_collection_items: usize,
    pub source_context_lines: usize,
    /// Snapshots per fingerprint per minute; 0 turns the limit off.
    pub rate_limit_per_minute: u32,
    pub max_store_bytes: Option<u64>,
    /// Snapshots kept in memory while the store is unreachable (then dropped and counted).
    pub store_backlog: usize,
    pub magic_roots: Vec<String>,
    pub redaction: Rules,
    pub log: bool,
    pub control_socket: bool,
    /// `rbscope eval -p PID` runs code in this process only when this is on.
    pub allow_eval: bool,
    /// Bytes of the event ring each tracing client gets.
    pub trace_buffer: usize,
    /// How many recent raises keep their frames until reported.
    pub pending_captures: usize,
    /// "auto": read the VM's frames directly when this Ruby's layout is known and verified;
    /// "inspector": always use the debug inspector (slower at raise).
    pub capture: String,
    /// Retention the writer applies (at most once a minute): oldest snapshots go first.
    pub retention: rbscope_store::Retention,
    /// Seconds a request or job may run before lib/rbscope/slow.rb's watchdog stores one live
    /// snapshot of its thread; None: off. Kept here so `rbscope doctor -p` shows it.
    pub slow_snapshot: Option<f64>,
}

/// The longest `slow_snapshot` budget, in seconds (settings.rb checks the same).
pub const MAX_SLOW_SNAPSHOT: f64 = 1_000_000.0;

impl Default for Config {
    fn default() -> Self {
        Config {
            store: String::new(),
            store_key: None,
            app_root: String::new(),
            app_revision: None,
            library_prefixes: Vec::new(),
            capture_library_frames: false,
            report_all_raises: false,
            max_frames: 50,
            max_depth: 8,
            max_objects: 10_000,
            max_bytes: 4 * 1024 * 1024,
            max_string_bytes: 4096,
            max_collection_items: 1000,
            source_context_lines: 5,
            rate_limit_per_minute: 10,
            max_store_bytes: Some(1024 * 1024 * 1024),
            store_backlog: 5000,
            magic_roots: Vec::new(),
            redaction: Rules::default(),
            log: true,
            control_socket: true,
            allow_eval: false,
            trace_buffer: 8 * 1024 * 1024,
            pending_captures: 32,
            capture: "auto".into(),
            retention: rbscope_store::Retention::default(),
            slow_snapshot: None,
        }
    }
}

impl Config {
    /// Applies `key=value` settings; an unknown key or a bad value is an error naming it.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Config, String> {
        let mut c = Config::default();
        for (k, v) in pairs {
            // A whole number in `lo..=hi` (the ranges settings.rb checks too), never truncated.
            let num = |v: &str, lo: u64, hi: u64| -> Result<u64, String> {
                v.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (lo..=hi).contains(n))
                    .ok_or_else(|| {
                        format!("rbscope: setting {k} wants a whole number from {lo} to {hi}, got {v:?}")
                    })
            };
            let size = |v: &str, lo: u64, hi: u64| -> Result<usize, String> {
                num(v, lo, hi).and_then(|n| {
                    usize::try_from(n)
                        .map_err(|_| format!("rbscope: setting {k} is too large: {v:?}"))
                })
            };
            let small = |v: &str, lo: u64, hi: u64| -> Result<u32, String> {
                num(v, lo, hi).and_then(|n| {
                    u32::try_from(n)
                        .map_err(|_| format!("rbscope: setting {k} is too large: {v:?}"))
                })
            };
            let flag = |v: &str| -> Result<bool, String> {
                match v.trim() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" | "" => Ok(false),
                    _ => Err(format!(
                        "rbscope: setting {k} wants true or false, got {v:?}"
                    )),
                }
            };
            let list = |v: &str| -> Vec<String> {
                v.split(['\n', ','])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            };
            match k.as_str() {
                "store" => c.store = v.clone(),
                "store_key" => c.store_key = Some(v.clone()).filter(|s| !s.trim().is_empty()),
                "app_root" => c.app_root = v.clone(),
                "app_revision" => c.app_revision = Some(v.clone()).filter(|s| !s.is_empty()),
                "library_prefixes" => c.library_prefixes = list(v),
                "capture_library_frames" => c.capture_library_frames = flag(v)?,
                "report_all_raises" => c.report_all_raises = flag(v)?,
                "max_frames" => c.max_frames = size(v, 1, 10_000)?,
                "max_depth" => c.max_depth = small(v, 0, 1_000)?,
                "max_objects" => c.max_objects = size(v, 0, 10_000_000)?,
                "max_bytes" => c.max_bytes = size(v, 0, 4 << 30)?,
                "max_string_bytes" => c.max_string_bytes = size(v, 0, 1 << 30)?,
                "max_collection_items" => c.max_collection_items = size(v, 0, 10_000_000)?,
                "source_context_lines" => c.source_context_lines = size(v, 0, 1_000)?,
                "rate_limit" => c.rate_limit_per_minute = small(v, 0, 1_000_000)?,
                "max_store_bytes" => {
                    c.max_store_bytes = Some(num(v, 0, MAX_STORE_FIGURE)?).filter(|n| *n > 0)
                }
                "store_backlog" => c.store_backlog = size(v, 0, 1_000_000)?,
                "magic_roots" => c.magic_roots = list(v),
                "redact" => c.redaction.enabled = flag(v)?,
                "redact_names" => {
                    c.redaction.extra_names =
                        list(v).into_iter().map(|s| s.to_lowercase()).collect()
                }
                "log" => c.log = flag(v)?,
                "control_socket" => c.control_socket = flag(v)?,
                "allow_eval" => c.allow_eval = flag(v)?,
                "trace_buffer" => c.trace_buffer = size(v, 64 << 10, 1 << 30)?,
                "pending_captures" => c.pending_captures = size(v, 1, 4_096)?,
                "retention_days" => {
                    // At most 100,000 days: the milliseconds fit an i64 many times over.
                    c.retention.max_age_ms =
                        Some(num(v, 0, 100_000)? as i64 * 86_400_000).filter(|n| *n > 0)
                }
                "retention_count" => {
                    c.retention.max_count = Some(num(v, 0, MAX_STORE_FIGURE)?).filter(|n| *n > 0)
                }
                "retention_bytes" => {
                    c.retention.max_bytes = Some(num(v, 0, MAX_STORE_FIGURE)?).filter(|n| *n > 0)
                }
                "slow_snapshot" => c.slow_snapshot = Some(slow_seconds(v)?),
                "capture" => match v.trim() {
                    "auto" | "" => c.capture = "auto".into(),
                    "inspector" => c.capture = "inspector".into(),
                    other => {
                        return Err(format!(
                            "rbscope: setting capture wants auto or inspector, got {other:?}"
                        ))
                    }
                },
                other => return Err(format!("rbscope: unknown setting {other:?}")),
            }
        }
        Ok(c)
    }

    /// `slow_snapshot` as `doctor -p` shows it: `10s`, `0.25s`, or `off`.
    pub fn slow_snapshot_text(&self) -> String {
        self.slow_snapshot
            .map(|s| format!("{s}s"))
            .unwrap_or_else(|| "off".into())
    }

    /// The settings as `rbscope doctor -p` shows them.
    pub fn describe(&self) -> Vec<(String, String)> {
        vec![
            (
                "store".into(),
                rbscope_store::StoreLocation::parse(Some(&self.store))
                    .map(|l| l.describe())
                    .unwrap_or_else(|_| self.store.clone()),
            ),
            (
                "store_key".into(),
                self.store_key.clone().unwrap_or_else(|| "-".into()),
            ),
            ("app_root".into(), self.app_root.clone()),
            (
                "app_revision".into(),
                self.app_revision.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "report_all_raises".into(),
                self.report_all_raises.to_string(),
            ),
            (
                "capture_library_frames".into(),
                self.capture_library_frames.to_string(),
            ),
            ("allow_eval".into(), self.allow_eval.to_string()),
            ("trace_buffer".into(), self.trace_buffer.to_string()),
            ("max_frames".into(), self.max_frames.to_string()),
            ("max_depth".into(), self.max_depth.to_string()),
            ("max_objects".into(), self.max_objects.to_string()),
            ("max_bytes".into(), self.max_bytes.to_string()),
            ("max_string_bytes".into(), self.max_string_bytes.to_string()),
            (
                "rate_limit_per_minute".into(),
                self.rate_limit_per_minute.to_string(),
            ),
            (
                "max_store_bytes".into(),
                self.max_store_bytes
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "unlimited".into()),
            ),
            ("store_backlog".into(), self.store_backlog.to_string()),
            ("redact".into(), self.redaction.enabled.to_string()),
            ("slow_snapshot".into(), self.slow_snapshot_text()),
            (
                "retention".into(),
                format!(
                    "days {} count {} bytes {}",
                    self.retention
                        .max_age_ms
                        .map(|ms| (ms / 86_400_000).to_string())
                        .unwrap_or_else(|| "-".into()),
                    self.retention
                        .max_count
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "-".into()),
                    self.retention
                        .max_bytes
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "-".into())
                ),
            ),
        ]
    }
}

/// A `slow_snapshot` budget: a number of seconds above 0 and at most [`MAX_SLOW_SNAPSHOT`].
fn slow_seconds(v: &str) -> Result<f64, String> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= MAX_SLOW_SNAPSHOT)
        .ok_or_else(|| {
            format!(
                "rbscope: setting slow_snapshot wants a number of seconds above 0 and at most \
                 {MAX_SLOW_SNAPSHOT}, got {v:?}"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), v.to_string())]
    }

    #[test]
    fn slow_snapshot_is_off_by_default_and_takes_positive_seconds() {
        let c = Config::default();
        assert_eq!(
            (c.slow_snapshot, c.slow_snapshot_text()),
            (None, "off".into())
        );
        for (text, secs, shown) in [
            ("10.0", 10.0, "10s"),
            (" 0.25 ", 0.25, "0.25s"),
            ("1000000", 1e6, "1000000s"),
        ] {
            let c = Config::from_pairs(&pairs("slow_snapshot", text)).unwrap();
            assert_eq!(c.slow_snapshot, Some(secs), "{text}");
            assert_eq!(c.slow_snapshot_text(), shown);
            assert!(c
                .describe()
                .contains(&("slow_snapshot".into(), shown.into())));
        }
        for bad in ["0", "-1", "", "NaN", "inf", "1000000.5", "ten", "1e400"] {
            let e = Config::from_pairs(&pairs("slow_snapshot", bad)).unwrap_err();
            assert!(
                e.contains("slow_snapshot wants a number of seconds above 0"),
                "{bad}: {e}"
            );
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn an_unknown_setting_or_a_bad_number_is_named() {
        let e = Config::from_pairs(&pairs("nope", "1")).unwrap_err();
        assert_eq!(e, "rbscope: unknown setting \"nope\"");
        let e = Config::from_pairs(&pairs("max_frames", "0")).unwrap_err();
        assert!(
            e.contains("max_frames wants a whole number from 1 to 10000"),
            "{e}"
        );
    }
}
