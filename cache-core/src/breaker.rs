//! A per-tier circuit breaker.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Opens after `threshold` consecutive failures and skips the tier for `cooldown`; then lets one
/// probe through (half-open). A successful probe closes it, a failed one opens it again. A probe
/// that never reports back (its future was dropped) is forgotten after another `cooldown`.
#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
    /// 1 while open, 0 once closed, for the metrics facade.
    gauge: crate::metrics::Level,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probe_started: Option<Instant>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::default()),
            gauge: crate::metrics::Level::none(),
        }
    }

    /// Reports the breaker's state through `gauge`.
    pub(crate) fn exported(mut self, gauge: crate::metrics::Level) -> Self {
        gauge.set(0.0);
        self.gauge = gauge;
        self
    }

    /// Whether an operation may go to the tier now.
    pub(crate) fn allow(&self) -> bool {
        let mut s = self.state.lock();
        let Some(until) = s.open_until else {
            return true;
        };
        let now = Instant::now();
        if now < until {
            return false;
        }
        match s.probe_started {
            Some(started) if now.duration_since(started) < self.cooldown => false,
            _ => {
                s.probe_started = Some(now);
                true
            }
        }
    }

    pub(crate) fn success(&self) {
        let mut s = self.state.lock();
        s.consecutive_failures = 0;
        if s.open_until.take().is_some() {
            self.gauge.set(0.0);
        }
        s.probe_started = None;
    }

    pub(crate) fn failure(&self) {
        let mut s = self.state.lock();
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        let probing = s.probe_started.take().is_some();
        if probing || s.consecutive_failures >= self.threshold {
            if s.open_until.is_none() || probing {
                tracing::warn!(
                    failures = s.consecutive_failures,
                    cooldown = ?self.cooldown,
                    "tier circuit breaker opened"
                );
            }
            s.open_until = Some(Instant::now() + self.cooldown);
            self.gauge.set(1.0);
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        let s = self.state.lock();
        s.open_until.is_some_and(|until| Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_recovers_after_probe() {
        let b = Breaker::new(3, Duration::from_millis(30));
        b.failure();
        b.failure();
        assert!(b.allow());
        b.failure();
        assert!(!b.allow());
        assert!(b.is_open());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "one probe after cooldown");
        assert!(!b.allow(), "only one probe at a time");
        b.failure();
        assert!(!b.allow(), "failed probe reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        b.success();
        assert!(b.allow());
        assert!(b.allow());
        assert!(!b.is_open());
    }

    #[test]
    fn success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.failure();
        b.success();
        b.failure();
        assert!(b.allow());
    }
}
