//! Watches that recover on their own, each at its own pace.
//!
//! kube-runtime's `Controller` pauses *all* its trigger watches behind one backoff whenever any
//! of them yields an error, and that backoff only resets after two quiet minutes. After an API
//! server restart every watch gets its own `410 Gone` in turn, so the pauses stack up into
//! minutes with nothing reconciled. Every watch a controller of this project starts therefore
//! goes through [`Watches::resilient`], which keeps errors inside the watch that had them:
//!
//! - `410 Gone` (the resourceVersion is too old, e.g. after a restart or compaction): the watcher
//!   has already dropped its position; it re-lists at once, without any pause;
//! - any other error (server unreachable, 5xx, 403): this watch alone waits a short, jittered,
//!   bounded backoff ([`RetryDelays`]: 250 ms doubling to 5 s), reset by the next event;
//! - each interruption is a log line (which watch, why, how long it waits) and a count in
//!   `nbg_watch_restarts_total{controller,resource,reason}`; the first event after an
//!   interruption is logged with how long the watch was down, and announced on
//!   [`Watches::recoveries`] so the runner retries at once what failed while the server was away.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::watcher;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::time::Instant;

use crate::metrics::SharedRegistry;

/// Why a watch was interrupted: the metric label and the log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// 410: the position is too old; re-list now.
    Expired,
    /// The API server did not answer (connection refused, reset, timed out).
    Unreachable,
    /// 403: this controller's RBAC does not cover the watch.
    Forbidden,
    /// 404: the API server does not serve the resource (its CRD is not installed).
    NotServed,
    /// Any other error status from the API server.
    ServerError,
    /// The API server sent an object without a resourceVersion.
    NoResourceVersion,
}

impl Interruption {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "Expired",
            Self::Unreachable => "Unreachable",
            Self::Forbidden => "Forbidden",
            Self::NotServed => "NotServed",
            Self::ServerError => "ServerError",
            Self::NoResourceVersion => "NoResourceVersion",
        }
    }

    /// Classifies a watcher error.
    pub fn of(error: &watcher::Error) -> Self {
        let client = match error {
            watcher::Error::WatchError(status) => {
                return match status.code {
                    410 => Self::Expired,
                    403 => Self::Forbidden,
                    404 => Self::NotServed,
                    _ => Self::ServerError,
                };
            }
            watcher::Error::NoResourceVersion => return Self::NoResourceVersion,
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e) => e,
        };
        match client {
            kube::Error::Api(status) if status.code == 410 => Self::Expired,
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden,
            kube::Error::Api(status) if status.code == 404 => Self::NotServed,
            kube::Error::Api(_) => Self::ServerError,
            _ => Self::Unreachable,
        }
    }
}

/// The delays of one watch's retries: none after a `410`, otherwise 250 ms doubling up to
/// 5 s, with up to 25 % jitter so many watches do not retry in lockstep. Reset by any event.
#[derive(Debug, Clone)]
pub struct RetryDelays {
    failures: u32,
    first: Duration,
    max: Duration,
}

impl Default for RetryDelays {
    fn default() -> Self {
        Self {
            failures: 0,
            first: Duration::from_millis(250),
            max: Duration::from_secs(5),
        }
    }
}

impl RetryDelays {
    /// The pause before the watch tries again after `why`; `jitter` in [0, 1).
    pub fn next(&mut self, why: Interruption, jitter: f64) -> Duration {
        if why == Interruption::Expired {
            return Duration::ZERO;
        }
        let base = self
            .first
            .saturating_mul(2u32.saturating_pow(self.failures))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        base.mul_f64(1.0 + 0.25 * jitter.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestartLabels {
    controller: String,
    resource: String,
    reason: String,
}

/// Starts the watches of one controller process; counts and announces their interruptions.
#[derive(Clone)]
pub struct Watches {
    controller: &'static str,
    restarts: Family<RestartLabels, Counter>,
    recoveries: tokio::sync::watch::Sender<u64>,
    /// Each watch's delays start from these.
    delays: RetryDelays,
}

impl Watches {
    pub fn register(registry: &SharedRegistry, controller: &'static str) -> Self {
        let restarts = Family::<RestartLabels, Counter>::default();
        if let Ok(mut r) = registry.write() {
            r.register(
                "watch_restarts",
                "Watches interrupted and restarted, by resource and reason (Expired: re-listed at once)",
                restarts.clone(),
            );
        }
        Self {
            controller,
            restarts,
            recoveries: tokio::sync::watch::Sender::new(0),
            delays: RetryDelays::default(),
        }
    }

    /// The same watches with shorter delays: a test sees the backoff grow in milliseconds
    /// (tokio's paused clock would need its `test-util` feature, which changes the features of
    /// tokio - and so the build of every crate - between `cargo build` and `cargo test`).
    #[cfg(test)]
    fn with_delays(mut self, first: Duration, max: Duration) -> Self {
        self.delays = RetryDelays {
            failures: 0,
            first,
            max,
        };
        self
    }

    /// Yields once each time a watch of this process delivers an event again after an
    /// interruption: the API server is answering.
    pub fn recoveries(&self) -> impl Stream<Item = ()> + Send + 'static {
        let mut rx = self.recoveries.subscribe();
        rx.mark_unchanged();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }

    /// `stream` (a `watcher`), with its errors handled here: logged, counted, waited out by
    /// this watch alone. The result never yields an error, so nothing downstream backs off.
    /// `resource` names the watch in logs and metrics (e.g. `pods` or `deployments.apps`),
    /// `namespace` is where it watches (`None`: all namespaces).
    pub fn resilient<S, T>(
        &self,
        resource: impl Into<String>,
        namespace: Option<&str>,
        stream: S,
    ) -> impl Stream<Item = Result<T, watcher::Error>> + Send + 'static
    where
        S: Stream<Item = Result<T, watcher::Error>> + Send + 'static,
        T: Progress + Send + 'static,
    {
        let this = self.clone();
        let resource = resource.into();
        let namespace = namespace.unwrap_or("").to_string();
        let mut delays = self.delays.clone();
        let mut down_since: Option<Instant> = None;
        stream.filter_map(move |item| {
            let pause = match item {
                // `Init` only says a (re-)list begins: the list itself may still be refused, so
                // it neither ends the backoff nor counts as a recovery.
                Ok(event) if !event.is_progress() => {
                    return futures::future::Either::Left(futures::future::ready(Some(Ok(
                        event,
                    ))));
                }
                Ok(event) => {
                    delays.reset();
                    if let Some(since) = down_since.take() {
                        tracing::info!(controller = this.controller, watch = %resource, namespace = %namespace, down_for = ?since.elapsed(), "watch resumed");
                        this.recoveries.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    return futures::future::Either::Left(futures::future::ready(Some(Ok(
                        event,
                    ))));
                }
                Err(error) => {
                    let why = Interruption::of(&error);
                    let pause = delays.next(why, jitter());
                    down_since.get_or_insert_with(Instant::now);
                    this.restarts
                        .get_or_create(&RestartLabels {
                            controller: this.controller.to_string(),
                            resource: resource.clone(),
                            reason: why.as_str().to_string(),
                        })
                        .inc();
                    match why {
                        Interruption::Expired => {
                            tracing::info!(controller = this.controller, watch = %resource, namespace = %namespace, reason = why.as_str(), error = %error, "watch position expired; re-listing now")
                        }
                        Interruption::NotServed => {
                            tracing::warn!(controller = this.controller, watch = %resource, namespace = %namespace, reason = why.as_str(), error = %error, retry_in = ?pause, "the API server does not serve {resource} (is its CRD installed?); retrying")
                        }
                        _ => {
                            tracing::warn!(controller = this.controller, watch = %resource, namespace = %namespace, reason = why.as_str(), error = %error, retry_in = ?pause, "watch interrupted; retrying")
                        }
                    }
                    pause
                }
            };
            futures::future::Either::Right(async move {
                tokio::time::sleep(pause).await;
                None
            })
        })
    }
}

/// A watch item that says whether the watch got anywhere.
pub trait Progress {
    /// False for what a watch yields before it knows the server answers (the start of a list).
    fn is_progress(&self) -> bool;
}

impl<K> Progress for watcher::Event<K> {
    fn is_progress(&self) -> bool {
        !matches!(self, watcher::Event::Init)
    }
}

/// A number in [0, 1) that differs between calls and processes; jitter needs no better.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() % 10_000) as f64 / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn status(code: u16) -> watcher::Error {
        let mut s = Status::failure("x", "y");
        s.code = code;
        watcher::Error::WatchError(Box::new(s))
    }

    #[test]
    fn an_expired_position_is_relisted_at_once_and_other_errors_back_off_briefly() {
        let mut d = RetryDelays::default();
        assert_eq!(d.next(Interruption::Expired, 0.9), Duration::ZERO);
        assert_eq!(
            d.next(Interruption::Unreachable, 0.0),
            Duration::from_millis(250)
        );
        assert_eq!(
            d.next(Interruption::Expired, 0.5),
            Duration::ZERO,
            "410 never waits"
        );
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            last = d.next(Interruption::Unreachable, 0.999);
            assert!(last <= Duration::from_millis(6250), "{last:?}");
        }
        assert!(last >= Duration::from_secs(5), "{last:?}");
        d.reset();
        assert_eq!(
            d.next(Interruption::ServerError, 0.0),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(Interruption::of(&status(410)), Interruption::Expired);
        assert_eq!(Interruption::of(&status(403)), Interruption::Forbidden);
        assert_eq!(Interruption::of(&status(404)), Interruption::NotServed);
        assert_eq!(Interruption::of(&status(500)), Interruption::ServerError);
        assert_eq!(
            Interruption::of(&watcher::Error::NoResourceVersion),
            Interruption::NoResourceVersion
        );
        let refused = watcher::Error::WatchStartFailed(kube::Error::Service(
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into(),
        ));
        assert_eq!(Interruption::of(&refused), Interruption::Unreachable);
    }

    #[tokio::test]
    async fn errors_never_leave_the_watch_and_recovery_is_announced() {
        let registry = crate::metrics::new_registry();
        let watches = Watches::register(&registry, "test");
        let mut recovered = Box::pin(watches.recoveries());
        let items: Vec<Result<watcher::Event<u32>, watcher::Error>> = vec![
            Ok(watcher::Event::Apply(1)),
            Err(status(410)),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::Apply(2)),
        ];
        let out: Vec<_> = watches
            .resilient("things", Some("ns"), futures::stream::iter(items))
            .collect()
            .await;
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(Result::is_ok));
        assert_eq!(recovered.next().await, Some(()));
        let text = crate::metrics::encode(&registry);
        assert!(
            text.contains(
                r#"nbg_watch_restarts_total{controller="test",resource="things",reason="Expired"} 1"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_start_of_a_refused_list_is_no_recovery() {
        let registry = crate::metrics::new_registry();
        let watches = Watches::register(&registry, "test")
            .with_delays(Duration::from_millis(10), Duration::from_millis(200));
        // What kube's watcher yields while a list keeps failing (a CRD not installed): an
        // `Init`, then the error, again and again. The pause must grow, not restart.
        let mut items: Vec<Result<watcher::Event<u32>, watcher::Error>> = Vec::new();
        for _ in 0..6 {
            items.push(Ok(watcher::Event::Init));
            items.push(Err(status(404)));
        }
        let started = std::time::Instant::now();
        let out: Vec<_> = watches
            .resilient("things", None, futures::stream::iter(items))
            .collect()
            .await;
        assert_eq!(out.len(), 6, "the Init events pass through");
        // 10 ms doubling: at least 10+20+40+80+160+200 ms, far more than six fixed 10 ms
        // pauses (75 ms with the most jitter).
        assert!(
            started.elapsed() >= Duration::from_millis(510),
            "{:?}",
            started.elapsed()
        );
    }
}
