//! The one retry-with-backoff of the bridge: a session (a push or pull task, a topic discovery)
//! runs until it ends; after a failure it starts again after an exponential backoff with jitter
//! (100 ms doubling to 5 s, back to 100 ms after a session that ran 10 s).

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// First delay after a failure.
const FIRST_MS: u64 = 100;
/// Longest delay.
const MAX_MS: u64 = 5_000;
/// A session that ran this long resets the backoff.
const HEALTHY: Duration = Duration::from_secs(10);

/// A random number of milliseconds below `max` (backoff jitter).
pub fn jitter_ms(max: u64) -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return max / 2;
    }
    u64::from_le_bytes(b) % max.max(1)
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { ms: FIRST_MS }
    }
}

impl Backoff {
    /// The nominal delay of the next wait (what logs show).
    pub fn current(&self) -> Duration {
        Duration::from_millis(self.ms)
    }

    /// The next wait: half the nominal delay plus jitter up to the other half; doubles it.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.ms / 2 + jitter_ms(self.ms / 2 + 1);
        self.ms = (self.ms * 2).min(MAX_MS);
        Duration::from_millis(wait)
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.ms = FIRST_MS;
    }
}

/// Run `session` until it returns `Ok` or `shutdown` is cancelled. After an error, `on_error`
/// sees it with the coming backoff and says whether to go on (false: stop, e.g. the session
/// saw the shutdown itself).
pub async fn supervise<E, F, Fut>(
    shutdown: &CancellationToken,
    mut session: F,
    mut on_error: impl FnMut(&E, Duration) -> bool,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let err = match session().await {
            Ok(()) => return,
            Err(e) => e,
        };
        if started.elapsed() > HEALTHY {
            backoff.reset();
        }
        if !on_error(&err, backoff.current()) {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_wait()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::default();
        for nominal in [100u64, 200, 400, 800, 1600, 3200, 5000, 5000] {
            assert_eq!(b.current(), Duration::from_millis(nominal));
            let w = b.next_wait().as_millis() as u64;
            assert!(w >= nominal / 2 && w <= nominal, "{w} for {nominal}");
        }
        b.reset();
        assert_eq!(b.current(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_until_success_or_refusal() {
        let stop = CancellationToken::new();
        let mut runs = 0;
        let mut seen = Vec::new();
        supervise(
            &stop,
            || {
                runs += 1;
                let r = if runs < 3 { Err(runs) } else { Ok(()) };
                async move { r }
            },
            |e: &i32, _| {
                seen.push(*e);
                true
            },
        )
        .await;
        assert_eq!(seen, vec![1, 2]);
        let mut calls = 0;
        supervise(
            &stop,
            || {
                calls += 1;
                async { Err::<(), _>("stopped") }
            },
            |_, _| false,
        )
        .await;
        assert_eq!(calls, 1);
    }
}
