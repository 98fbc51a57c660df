//! The run's one source of time. Waits and durations use tokio's clock (so tests run on paused time); the
//! wall-clock stamps of the journal, deadlines and collection timeouts come from an injected [`Clock`].

use std::fmt::Debug;

use chrono::{DateTime, Utc};

/// Wall-clock time for the journal's stamps, the run deadline and collection timeouts.
pub trait Clock: Send + Sync + Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall-clock time that moves with tokio's clock: a fixed start plus the tokio time elapsed since. Under
/// `#[tokio::test(start_paused = true)]` it advances exactly as the run's waits do, so deadlines and
/// timeouts are reached without real waiting.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start: DateTime<Utc>,
    at: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start` now.
    pub fn starting_at(start: DateTime<Utc>) -> TokioClock {
        TokioClock {
            start,
            at: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed =
            chrono::Duration::from_std(self.at.elapsed()).unwrap_or(chrono::Duration::MAX);
        self.start + elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let start = DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let c = TokioClock::starting_at(start);
        assert_eq!(c.now(), start);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(c.now(), start + chrono::Duration::hours(1));
    }
}
