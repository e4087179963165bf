//! The trace clock: monotonic nanoseconds, read as cheaply as the machine allows.
//!
//! Reading `CLOCK_MONOTONIC` costs a third of a traced call's overhead (the vDSO orders the
//! TSC read and converts it). When the kernel itself keeps time with the TSC (clocksource
//! `tsc`: invariant and synchronized across cores), the hooks read the TSC directly and convert
//! it with a rate measured against `CLOCK_MONOTONIC` over 20 ms once per process ([`calibrate`],
//! on a short-lived thread the agent starts with its control socket, never on an app thread);
//! each session anchors the conversion at its own start. Elsewhere, and for sessions that start
//! before the rate is known, records are stamped with `CLOCK_MONOTONIC`.
//!
//! Every hook reads this clock once: [`Clock::now`] and what it calls are `#[inline]`, so the
//! agent's hooks compile it in place.

use std::sync::OnceLock;

/// Nanoseconds per TSC tick, as a 32.32 fixed-point number; None when the TSC is not used.
static RATE: OnceLock<Option<u64>> = OnceLock::new();

/// `CLOCK_MONOTONIC` in nanoseconds.
#[inline]
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
#[inline]
fn tsc() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and has no preconditions.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
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
        rate(n1.checked_sub(n0)?, t1.checked_sub(t0)?)
    });
}

/// Nanoseconds per tick as a 32.32 fixed-point number, from `ns` nanoseconds measured over
/// `ticks` ticks; None when either is zero (no usable measurement).
pub fn rate(ns: u64, ticks: u64) -> Option<u64> {
    if ticks == 0 || ns == 0 {
        return None;
    }
    Some(((u128::from(ns) << 32) / u128::from(ticks)) as u64)
}

/// Whether the TSC's rate has been measured (or found not to be usable).
pub fn settled() -> bool {
    RATE.get().is_some()
}

/// Where a TSC clock's conversion starts, and its rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Anchor {
    tsc: u64,
    ns: u64,
    /// Nanoseconds per tick, 32.32 fixed point (see [`rate`]).
    rate: u64,
}

impl Anchor {
    /// The time at TSC reading `ticks`, on CLOCK_MONOTONIC's scale (readings from before the
    /// anchor give the anchor's time).
    #[inline]
    fn ns_at(&self, ticks: u64) -> u64 {
        let ticks = ticks.saturating_sub(self.tsc);
        self.ns + ((u128::from(ticks) * u128::from(self.rate)) >> 32) as u64
    }
}

/// One session's clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// None for CLOCK_MONOTONIC.
    tsc: Option<Anchor>,
}

impl Clock {
    /// A clock anchored now: the TSC when its rate is known, else CLOCK_MONOTONIC.
    pub fn start() -> Clock {
        Clock {
            tsc: RATE.get().copied().flatten().map(|rate| Anchor {
                tsc: tsc(),
                ns: mono_ns(),
                rate,
            }),
        }
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
            Some(anchor) => anchor.ns_at(tsc()),
            None => mono_ns(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_nanoseconds_per_tick_in_fixed_point() {
        // 1 GHz: one nanosecond per tick.
        assert_eq!(rate(20_000_000, 20_000_000), Some(1 << 32));
        // 3 GHz: a third of a nanosecond per tick (rounded down).
        assert_eq!(rate(20_000_000, 60_000_000), Some(0x5555_5555));
        // 500 MHz: two.
        assert_eq!(rate(20_000_000, 10_000_000), Some(2 << 32));
        assert_eq!(rate(0, 10), None);
        assert_eq!(rate(10, 0), None);
    }

    #[test]
    fn tsc_readings_convert_from_the_anchor() {
        let one_ghz = Anchor {
            tsc: 1_000,
            ns: 5_000_000,
            rate: 1 << 32,
        };
        assert_eq!(one_ghz.ns_at(1_000), 5_000_000);
        assert_eq!(one_ghz.ns_at(1_250), 5_000_250);
        // A reading from before the anchor (another core's TSC a hair behind) is the anchor.
        assert_eq!(one_ghz.ns_at(999), 5_000_000);
        let three_ghz = Anchor {
            tsc: 0,
            ns: 100,
            rate: rate(1, 3).unwrap_or(0),
        };
        // 3 million ticks are a millisecond, less the fixed point's rounding.
        assert_eq!(three_ghz.ns_at(3_000_000), 100 + 999_999);
        assert_eq!(three_ghz.ns_at(3), 100);
        assert_eq!(three_ghz.ns_at(6), 101);
    }

    #[test]
    fn a_clock_without_a_rate_reads_clock_monotonic() {
        let clock = Clock { tsc: None };
        assert_eq!(clock.name(), "monotonic");
        let before = mono_ns();
        let t = clock.now();
        assert!(t >= before && t <= mono_ns());
        let tsc_clock = Clock {
            tsc: Some(Anchor {
                tsc: 0,
                ns: 0,
                rate: 1 << 32,
            }),
        };
        assert_eq!(tsc_clock.name(), "tsc");
    }
}
