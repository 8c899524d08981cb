//! Exponential backoff with jitter: the one retry delay of the engine (reconnects, lake commits).
//!
//! Each delay is the current step plus up to 25 % at random, so engines that failed together
//! do not retry together; the step doubles up to the maximum and starts over after a success.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Delays between attempts.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            step: initial,
        }
    }

    /// The delay before the next attempt; the one after it is twice as long (up to the max).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.step + jitter(self.step / 4);
        self.step = (self.step * 2).min(self.max);
        delay
    }

    /// After progress: the next delay is the initial one again.
    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

/// A random duration in `[0, max]`.
fn jitter(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    // RandomState is seeded randomly per instance: enough randomness for a retry delay.
    let random = RandomState::new().build_hasher().finish();
    Duration::from_nanos(random % (nanos + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_max_with_at_most_a_quarter_of_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(3));
        let steps = [500, 1000, 2000, 3000, 3000];
        for step in steps {
            let delay = backoff.next_delay();
            let step = Duration::from_millis(step);
            assert!(
                delay >= step && delay <= step + step / 4,
                "{delay:?} for {step:?}"
            );
        }
        backoff.reset();
        let delay = backoff.next_delay();
        assert!(delay >= Duration::from_millis(500) && delay <= Duration::from_millis(625));
    }

    #[test]
    fn jitter_varies() {
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay())
            .collect();
        assert!(delays.len() > 1);
    }
}
