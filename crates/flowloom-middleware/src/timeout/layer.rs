use std::time::Duration;

use tower::Layer;

use super::Timeout;

/// Bounds the time of every call through the wrapped service. See the [module docs](super)
/// for per-attempt versus overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutLayer {
    duration: Duration,
}

impl TimeoutLayer {
    /// A layer cutting calls that take longer than `duration`.
    pub fn new(duration: Duration) -> Self {
        Self { duration }
    }

    /// The time allowed.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            duration: self.duration,
        }
    }
}
