//! The injected clock: every rule that depends on "now" asks a [`Clock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// Supplies the current instant; services receive one and never call `Utc::now()` for rules.
pub trait Clock: Send + Sync + 'static {
    /// Returns the current instant in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// A clock shared between tasks and services.
pub type SharedClock = Arc<dyn Clock>;

/// Reads the operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl SystemClock {
    /// Returns the system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Security time: access and refresh token lifetimes, login-code expiry, rate-limit
/// windows. It is the real clock in every running process; the business clock (the test
/// clock that `/v1/dev/clock` moves: activation, releases, periods, overdue) never moves
/// it, so a token issued with the test clock in the past or the future works for its real
/// lifetime. A distinct type, so that business time cannot be handed to security code.
#[derive(Clone)]
pub struct SecurityClock(Option<SharedClock>);

impl SecurityClock {
    /// The system clock: what every service runs on.
    pub fn system() -> SecurityClock {
        SecurityClock(None)
    }

    /// Security time read from `clock`, for a service's own tests of lifetimes and windows.
    pub fn for_tests(clock: SharedClock) -> SecurityClock {
        SecurityClock(Some(clock))
    }

    /// Returns the current instant in UTC.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Some(clock) => clock.now(),
            None => Utc::now(),
        }
    }
}

impl Default for SecurityClock {
    fn default() -> Self {
        SecurityClock::system()
    }
}

impl std::fmt::Debug for SecurityClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "SecurityClock(test)"
        } else {
            "SecurityClock(system)"
        })
    }
}

/// A clock that tests and the dev environment can move.
///
/// While running, it reads the system time plus an offset; once frozen, it stands still at
/// one instant until moved with [`AdjustableClock::advance`] or [`AdjustableClock::set`].
/// One instance is shared by all services in one process so that they agree on "now".
#[derive(Debug, Default)]
pub struct AdjustableClock {
    /// Offset added to the system time while running, in microseconds.
    offset_micros: AtomicI64,
    /// The instant the clock stands at while frozen, in microseconds since the epoch.
    frozen_micros: AtomicI64,
    frozen: AtomicBool,
}

impl AdjustableClock {
    /// Creates a running clock that starts at the system time.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Creates a clock that stands still at `at` until it is moved.
    pub fn frozen(at: DateTime<Utc>) -> Arc<Self> {
        let clock = Self::default();
        clock
            .frozen_micros
            .store(at.timestamp_micros(), Ordering::SeqCst);
        clock.frozen.store(true, Ordering::SeqCst);
        Arc::new(clock)
    }

    /// Moves the clock forward (or backward, for a negative duration) by `by`.
    pub fn advance(&self, by: Duration) {
        let micros = by.num_microseconds().unwrap_or(if by < Duration::zero() {
            i64::MIN
        } else {
            i64::MAX
        });
        if self.frozen.load(Ordering::SeqCst) {
            self.frozen_micros.fetch_add(micros, Ordering::SeqCst);
        } else {
            self.offset_micros.fetch_add(micros, Ordering::SeqCst);
        }
    }

    /// Moves the clock to `at`; a running clock keeps running from there.
    pub fn set(&self, at: DateTime<Utc>) {
        if self.frozen.load(Ordering::SeqCst) {
            self.frozen_micros
                .store(at.timestamp_micros(), Ordering::SeqCst);
        } else {
            let offset = at.timestamp_micros() - Utc::now().timestamp_micros();
            self.offset_micros.store(offset, Ordering::SeqCst);
        }
    }

    /// Lets a frozen clock run again from the instant it stands at.
    pub fn resume(&self) {
        if self.frozen.swap(false, Ordering::SeqCst) {
            let at = self.frozen_micros.load(Ordering::SeqCst);
            self.offset_micros
                .store(at - Utc::now().timestamp_micros(), Ordering::SeqCst);
        }
    }

    /// Returns the clock as a [`SharedClock`].
    pub fn shared(self: &Arc<Self>) -> SharedClock {
        self.clone()
    }
}

fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(if micros < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

impl Clock for AdjustableClock {
    fn now(&self) -> DateTime<Utc> {
        if self.frozen.load(Ordering::SeqCst) {
            return from_micros(self.frozen_micros.load(Ordering::SeqCst));
        }
        let offset = self.offset_micros.load(Ordering::SeqCst);
        from_micros(Utc::now().timestamp_micros().saturating_add(offset))
    }
}

/// Store key under which the dev clock's offset from system time is shared
/// between processes (split mode in dev only).
pub const DEV_CLOCK_KEY: &str = "dev:clock:offset_micros";

/// How often a follower reads the shared dev clock.
pub const DEV_CLOCK_POLL: std::time::Duration = std::time::Duration::from_millis(20);

impl AdjustableClock {
    /// Returns how far this clock is ahead of the system time, in microseconds.
    pub fn offset_micros(&self) -> i64 {
        self.now().timestamp_micros() - Utc::now().timestamp_micros()
    }
}

/// Publishes a dev clock's offset so that the services of a split topology
/// follow it (see [`process_clock`]).
pub async fn publish_dev_clock(
    clock: &AdjustableClock,
    store: &dyn crate::store::KvStore,
) -> anyhow::Result<()> {
    let offset = clock.offset_micros().to_string();
    store
        .set(
            DEV_CLOCK_KEY,
            &offset,
            std::time::Duration::from_secs(30 * 24 * 3600),
        )
        .await
}

/// Returns the clock a service process runs on: the system clock, or, when
/// `TAVANA_DEV_CLOCK=shared` (split mode in dev, never in production), a
/// dev clock that follows the offset the gateway publishes in the store.
pub fn process_clock(store: Arc<dyn crate::store::KvStore>) -> SharedClock {
    if std::env::var("TAVANA_DEV_CLOCK").as_deref() != Ok("shared") {
        return Arc::new(SystemClock);
    }
    tracing::warn!("dev clock: following the shared offset (never in production)");
    let clock = AdjustableClock::new();
    let follower = clock.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(DEV_CLOCK_POLL);
        let mut last = None;
        loop {
            interval.tick().await;
            let Ok(Some(offset)) = store.get(DEV_CLOCK_KEY).await else {
                continue;
            };
            if last.as_ref() == Some(&offset) {
                continue;
            }
            if let Ok(micros) = offset.parse::<i64>() {
                follower.set(from_micros(
                    Utc::now().timestamp_micros().saturating_add(micros),
                ));
                last = Some(offset);
            }
        }
    });
    clock
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn frozen_clock_stands_still_until_moved() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let clock = AdjustableClock::frozen(start);

        assert_eq!(clock.now(), start);
        clock.advance(Duration::days(3));
        assert_eq!(clock.now(), start + Duration::days(3));
        clock.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn running_clock_applies_its_offset() {
        let clock = AdjustableClock::new();

        clock.advance(Duration::days(10));

        let diff = clock.now() - Utc::now();
        assert!(diff > Duration::days(10) - Duration::seconds(5));
        assert!(diff < Duration::days(10) + Duration::seconds(5));
    }

    #[test]
    fn set_moves_a_running_clock() {
        let clock = AdjustableClock::new();
        let target = Utc.with_ymd_and_hms(2030, 6, 1, 0, 0, 0).unwrap();

        clock.set(target);

        let diff = clock.now() - target;
        assert!(diff >= Duration::zero() && diff < Duration::seconds(5));
    }

    #[test]
    fn resumed_clock_runs_from_where_it_stood() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let clock = AdjustableClock::frozen(start);

        clock.resume();

        let diff = clock.now() - start;
        assert!(diff >= Duration::zero() && diff < Duration::seconds(5));
    }
}
