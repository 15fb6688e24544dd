//! When to write an Application whose aggregate changed: a window opens at the first change
//! and the write happens when it closes, with everything that changed meanwhile. A burst shorter
//! than the window costs one write; a steady stream of changes one write per window; and no
//! change waits longer than the window (a window that restarted with every change would starve
//! an Application whose NVJs never stop changing). Pure, so the rule is unit-tested.

use std::time::{Duration, Instant};

/// What to do with an aggregate that differs from the Application's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Write now.
    Now,
    /// Look again after this long.
    After(Duration),
}

/// `pending_since`: when the window for this Application opened (`None`: this is the first
/// change seen).
pub fn timing(pending_since: Option<Instant>, now: Instant, window: Duration) -> Timing {
    match pending_since {
        _ if window.is_zero() => Timing::Now,
        None => Timing::After(window),
        Some(since) => {
            let waited = now.saturating_duration_since(since);
            if waited >= window {
                Timing::Now
            } else {
                Timing::After(window - waited)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_opens_at_the_first_change_and_never_restarts() {
        let t0 = Instant::now();
        let w = Duration::from_millis(250);
        assert_eq!(timing(None, t0, w), Timing::After(w));
        let later = t0 + Duration::from_millis(100);
        assert_eq!(
            timing(Some(t0), later, w),
            Timing::After(Duration::from_millis(150))
        );
        assert_eq!(timing(Some(t0), t0 + w, w), Timing::Now);
        assert_eq!(
            timing(Some(t0), t0 + Duration::from_secs(5), w),
            Timing::Now
        );
        assert_eq!(
            timing(None, t0, Duration::ZERO),
            Timing::Now,
            "no window: at once"
        );
    }
}
