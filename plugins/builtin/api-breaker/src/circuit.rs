//! One route's circuit as it is kept in the host's `kv`, and how an upstream answer moves it, with APISIX's
//! arithmetic: every `failures`-th unhealthy answer (re)opens it for `2^ceil(count / failures)` seconds,
//! capped at `max_breaker_sec` (2, 4, 8, ... seconds while an upstream keeps failing after each
//! reopening), and `successes` healthy answers forget everything.
//!
//! Pure functions of (state, answer, time), so the plugin's phases only read, compute and swap.

/// The whole state of one circuit. `Default` is the closed circuit with nothing counted, the same as no
/// record at all (a reset writes it instead of deleting, so it stays one compare-and-swap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Circuit {
    /// Unhealthy answers since the last reset.
    pub failures: u64,
    /// Healthy answers since the first failure.
    pub successes: u64,
    /// Wall-clock ms when it last opened.
    pub opened_at_ms: Option<u64>,
}

/// How the config classifies an upstream answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Unhealthy,
    Healthy,
}

/// The thresholds of one config.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// `unhealthy.failures`, at least 1.
    pub failures: u64,
    /// `healthy.successes`, at least 1.
    pub successes: u64,
    /// `max_breaker_sec`.
    pub max_open_secs: u64,
}

impl Circuit {
    /// `"<failures> <successes> <opened_at_ms or ->"`.
    pub fn encode(&self) -> Vec<u8> {
        let opened = self
            .opened_at_ms
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        format!("{} {} {opened}", self.failures, self.successes).into_bytes()
    }

    /// `None` for bytes [`Circuit::encode`] did not write (read as a closed circuit).
    pub fn decode(bytes: &[u8]) -> Option<Circuit> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        let failures = parts.next()?.parse().ok()?;
        let successes = parts.next()?.parse().ok()?;
        let opened_at_ms = match parts.next()? {
            "-" => None,
            t => Some(t.parse().ok()?),
        };
        Some(Circuit {
            failures,
            successes,
            opened_at_ms,
        })
    }

    /// How long it stays open after its last opening: `2^ceil(failures / threshold)` seconds, capped.
    pub fn open_secs(&self, t: Thresholds) -> u64 {
        let times = self.failures.div_ceil(t.failures).max(1);
        let secs = u32::try_from(times)
            .ok()
            .and_then(|n| 2u64.checked_pow(n))
            .unwrap_or(u64::MAX);
        secs.min(t.max_open_secs)
    }

    /// Whether requests are refused at `now_ms`.
    pub fn is_open(&self, now_ms: u64, t: Thresholds) -> bool {
        self.opened_at_ms
            .is_some_and(|at| now_ms < at.saturating_add(self.open_secs(t).saturating_mul(1000)))
    }

    /// The state after `answer` at `now_ms`; `None` when nothing changes (a healthy answer to a circuit
    /// that has seen no failure), so the caller need not write.
    pub fn after(self, answer: Answer, now_ms: u64, t: Thresholds) -> Option<Circuit> {
        match answer {
            Answer::Unhealthy => {
                let failures = self.failures.saturating_add(1);
                let reopens = failures.is_multiple_of(t.failures);
                Some(Circuit {
                    failures,
                    successes: self.successes,
                    opened_at_ms: if reopens {
                        Some(now_ms)
                    } else {
                        self.opened_at_ms
                    },
                })
            }
            Answer::Healthy if self.failures == 0 => None,
            Answer::Healthy => {
                let successes = self.successes.saturating_add(1);
                Some(if successes >= t.successes {
                    Circuit::default()
                } else {
                    Circuit { successes, ..self }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        failures: 3,
        successes: 2,
        max_open_secs: 10,
    };

    fn run(mut c: Circuit, answers: &[Answer], now: u64) -> Circuit {
        for a in answers {
            c = c.after(*a, now, T).unwrap_or(c);
        }
        c
    }

    #[test]
    fn encoding_round_trips_and_garbage_reads_as_nothing() {
        for c in [
            Circuit::default(),
            Circuit {
                failures: 7,
                successes: 1,
                opened_at_ms: Some(1_700_000_000_123),
            },
        ] {
            assert_eq!(Circuit::decode(&c.encode()), Some(c));
        }
        assert_eq!(Circuit::decode(b"1 2"), None);
        assert_eq!(Circuit::decode(b"x 2 -"), None);
    }

    #[test]
    fn every_failures_th_failure_opens_for_twice_as_long_up_to_the_cap() {
        use Answer::Unhealthy as U;
        let c = run(Circuit::default(), &[U, U], 0);
        assert!(!c.is_open(0, T), "two failures of three keep it closed");
        let c = run(c, &[U], 1_000);
        assert!(c.is_open(1_000, T) && c.is_open(2_999, T) && !c.is_open(3_000, T));
        assert_eq!(c.open_secs(T), 2);
        let c = run(c, &[U, U, U], 5_000);
        assert_eq!((c.open_secs(T), c.opened_at_ms), (4, Some(5_000)));
        let c = run(c, &[U, U, U], 9_000);
        assert_eq!(c.open_secs(T), 8);
        let c = run(c, &[U, U, U], 20_000);
        assert_eq!(c.open_secs(T), 10, "capped at max_breaker_sec");
        let huge = Circuit {
            failures: u64::MAX,
            ..c
        };
        assert_eq!(huge.open_secs(T), 10);
    }

    #[test]
    fn successes_close_and_forget_but_only_after_a_failure() {
        use Answer::{Healthy as H, Unhealthy as U};
        assert_eq!(Circuit::default().after(H, 0, T), None);
        let c = run(Circuit::default(), &[U, U, U, H], 0);
        assert_eq!((c.failures, c.successes), (3, 1));
        assert_eq!(run(c, &[H], 5_000), Circuit::default());
    }
}
