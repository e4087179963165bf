//! The trace clock: monotonic nanoseconds, read as cheaply as the machine allows.
//!
//! Reading `CLOCK_MONOTONIC` costs a third of a traced call's overhead (the vDSO orders the
//! TSC read and converts it). When the kernel itself keeps time with the TSC (clocksource
//! `tsc`: invariant and synchronized across cores), the hooks read the TSC directly and convert
//! it with a rate measured against `CLOCK_MONOTONIC` over 20 ms once per process (on a
//! short-lived thread started with the control socket, never on an app thread); each session
//! anchors the conversion at its own start. Elsewhere, and for sessions that start before the
//! rate is known, records are stamped with `CLOCK_MONOTONIC`.

use std::sync::OnceLock;

/// Nanoseconds per TSC tick, as a 32.32 fixed-point number; None when the TSC is not used.
static RATE: OnceLock<Option<u64>> = OnceLock::new();

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(target_arch = "x86_64")]
fn tsc() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and has no preconditions.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc() -> u64 {
    0
}

/// Measures the TSC rate, once per process, if the kernel's clocksource is the TSC. Blocks the
/// calling thread for about 20 ms the first time: call it from a background thread.
pub fn calibrate() {
    RATE.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") {
            return None;
        }
        let source = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .unwrap_or_default();
        if source.trim() != "tsc" {
            return None;
        }
        let (n0, t0) = (mono_ns(), tsc());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (n1, t1) = (mono_ns(), tsc());
        let (dn, dt) = (n1.checked_sub(n0)?, t1.checked_sub(t0)?);
        if dt == 0 || dn == 0 {
            return None;
        }
        Some(((u128::from(dn) << 32) / u128::from(dt)) as u64)
    });
}

/// Whether the TSC's rate has been measured (or found not to be usable).
pub fn settled() -> bool {
    RATE.get().is_some()
}

/// One session's clock.
#[derive(Clone, Copy)]
pub struct Clock {
    /// (TSC at the anchor, nanoseconds at the anchor, rate), or None for CLOCK_MONOTONIC.
    tsc: Option<(u64, u64, u64)>,
}

impl Clock {
    /// A clock anchored now: the TSC when its rate is known, else CLOCK_MONOTONIC.
    pub fn new() -> Clock {
        let tsc = RATE
            .get()
            .copied()
            .flatten()
            .map(|rate| (tsc(), mono_ns(), rate));
        Clock { tsc }
    }

    /// `tsc` or `monotonic`: what this clock reads.
    pub fn name(&self) -> &'static str {
        if self.tsc.is_some() {
            "tsc"
        } else {
            "monotonic"
        }
    }

    /// Monotonic nanoseconds (on CLOCK_MONOTONIC's scale).
    #[inline]
    pub fn now(&self) -> u64 {
        match self.tsc {
            Some((t0, n0, rate)) => {
                let ticks = tsc().saturating_sub(t0);
                n0 + ((u128::from(ticks) * u128::from(rate)) >> 32) as u64
            }
            None => mono_ns(),
        }
    }
}
