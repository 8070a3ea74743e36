//! How long to wait before a retry: [`Backoff`], a jittered exponential
//! back-off. It only computes durations; sleeping is the caller's, on
//! whatever runtime it has, so this module needs none.

use std::hash::BuildHasher as _;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An exponential back-off with "upper-half" (also called equal) jitter.
///
/// The *step* of attempt `n` (counted from 0) is `base · 2ⁿ`, at most `cap`;
/// the delay is drawn uniformly from the upper half of the step,
/// `[step / 2, step]`. So a delay is never longer than `cap` and never
/// shorter than half its step: unlike full jitter (`[0, step]`), a retry
/// never comes straight back, while callers that failed together still
/// spread over half a step instead of retrying in step.
///
/// [`delay`](Self::delay) draws from foldhash's per-process random seed
/// hashing a per-call counter: processes and calls draw differently, with no
/// lock, no system call and no UUID. [`delay_with`](Self::delay_with) is the
/// same rule for a caller's own random bits.
///
/// ```
/// use std::time::Duration;
/// use aether_core::backoff::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
/// assert_eq!(backoff.step(3), Duration::from_millis(40));
/// let delay = backoff.delay(3);
/// assert!(Duration::from_millis(20) <= delay && delay <= Duration::from_millis(40));
/// assert_eq!(backoff.step(10), Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    /// The step of attempt 0.
    pub base: Duration,
    /// The longest step, and so the longest delay.
    pub cap: Duration,
}

impl Backoff {
    /// A back-off from `base`, doubling per attempt up to `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap }
    }

    /// A back-off that does not grow: the step of every attempt is `delay`.
    pub const fn constant(delay: Duration) -> Self {
        Backoff::new(delay, delay)
    }

    /// The step of attempt `attempt`: `base · 2^attempt`, saturating at
    /// `cap` (and at `cap` for any attempt if `base > cap`).
    pub fn step(&self, attempt: u32) -> Duration {
        let grown = match 1u32.checked_shl(attempt) {
            Some(factor) => self.base.saturating_mul(factor),
            None if self.base.is_zero() => Duration::ZERO,
            None => Duration::MAX,
        };
        grown.min(self.cap)
    }

    /// The delay before attempt `attempt`: uniformly random in
    /// `[step / 2, step]` of its [`step`](Self::step).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, random())
    }

    /// [`delay`](Self::delay) with the random bits given: `random` maps
    /// linearly onto `[step / 2, step]`, `0` to the lower end and
    /// `u64::MAX` to the step itself. Pure.
    pub fn delay_with(&self, attempt: u32, random: u64) -> Duration {
        let step = self.step(attempt);
        let low = step / 2;
        let span = u64::try_from((step - low).as_nanos()).unwrap_or(u64::MAX);
        // random · (span + 1) / 2⁶⁴: every offset of 0..=span, no division.
        let offset = (u128::from(random) * (u128::from(span) + 1)) >> 64;
        low + Duration::from_nanos(u64::try_from(offset).unwrap_or(span))
    }
}

/// 64 random bits: the per-process seeded foldhash of a per-call counter.
fn random() -> u64 {
    static STATE: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);
    static CALLS: AtomicU64 = AtomicU64::new(0);
    STATE.hash_one(CALLS.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn samples() -> impl Iterator<Item = u64> {
        [0, 1, 2, u64::MAX / 3, u64::MAX / 2, u64::MAX - 1, u64::MAX]
            .into_iter()
            .chain((0..64).map(|_| random()))
    }

    #[test]
    fn a_delay_stays_in_the_upper_half_of_its_step_and_never_above_the_cap() {
        for backoff in [
            Backoff::new(2 * MS, 256 * MS),
            Backoff::new(5 * MS, 200 * MS),
            Backoff::new(Duration::from_nanos(3), Duration::from_nanos(7)),
            Backoff::new(Duration::from_secs(1), Duration::MAX),
            Backoff::constant(200 * MS),
        ] {
            for attempt in (0..70).chain([u32::MAX - 1, u32::MAX]) {
                let step = backoff.step(attempt);
                assert!(step <= backoff.cap, "{backoff:?} {attempt}");
                for r in samples() {
                    let d = backoff.delay_with(attempt, r);
                    assert!(
                        step / 2 <= d && d <= step,
                        "{backoff:?} {attempt} {r}: {d:?}"
                    );
                }
                let d = backoff.delay(attempt);
                assert!(step / 2 <= d && d <= step, "{backoff:?} {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn the_random_bits_span_the_whole_upper_half() {
        let b = Backoff::new(10 * MS, 80 * MS);
        assert_eq!(b.delay_with(2, 0), 20 * MS);
        assert_eq!(b.delay_with(2, u64::MAX), 40 * MS);
        assert_eq!(b.delay_with(2, 1 << 63), 30 * MS);
        // Draws differ from call to call.
        let draws: std::collections::HashSet<Duration> = (0..100).map(|_| b.delay(2)).collect();
        assert!(draws.len() > 90, "{draws:?}");
    }

    #[test]
    fn steps_double_with_the_attempt_until_they_saturate_at_the_cap() {
        let b = Backoff::new(2 * MS, 256 * MS);
        let steps: Vec<Duration> = (0..10).map(|a| b.step(a)).collect();
        assert_eq!(
            steps,
            [2, 4, 8, 16, 32, 64, 128, 256, 256, 256].map(|n| n * MS)
        );
        // The shortest delay of an attempt grows with it too.
        for a in 0..7 {
            assert!(b.delay_with(a + 1, 0) > b.delay_with(a, 0));
        }
        for a in [8, 31, 32, 64, u32::MAX] {
            assert_eq!(b.step(a), 256 * MS, "{a}");
        }
        let huge = Backoff::new(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(huge.step(40), Duration::MAX);
        assert_eq!(
            Backoff::new(MS, Duration::MAX).step(u32::MAX),
            Duration::MAX
        );
        // A base above the cap is cut to the cap; a zero base stays zero.
        assert_eq!(Backoff::new(10 * MS, MS).step(0), MS);
        let zero = Backoff::new(Duration::ZERO, MS);
        assert_eq!(
            (zero.step(u32::MAX), zero.delay(3)),
            (Duration::ZERO, Duration::ZERO)
        );
        assert_eq!(Backoff::constant(200 * MS).step(9), 200 * MS);
    }
}
