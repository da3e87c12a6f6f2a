//! How a [`crate::Client`] reaches its brokers and how long it waits for them.

use std::time::Duration;

use hearth_proto::Limits;

/// Default overall deadline of one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time one attempt waits before the request is sent to the next broker.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(2500);

/// Where the brokers are and how patient a [`crate::Client`] is.
///
/// Fields are public so a caller can adjust the defaults set by [`ClientConfig::new`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Broker frontend endpoints, tried round-robin; one broker, or the two of a pair.
    pub brokers: Vec<String>,
    /// Overall deadline of one call, retries included.
    pub timeout: Duration,
    /// How long one attempt waits for its reply before the request is sent to the next
    /// broker; clamped to what is left of [`ClientConfig::timeout`].
    pub attempt_timeout: Duration,
    /// Bounds applied to replies, so a hostile broker cannot make the client allocate
    /// without limit, and checked on requests before they are sent. By default 64 frames of
    /// at most 8 MiB ([`hearth_proto::DEFAULT_MAX_FRAME_SIZE`], the broker's default too): a
    /// state request of up to 4 MiB goes out, and a larger one reaches the broker to be
    /// refused with its `{error}`. Raise `max_frame_size` to read larger replies, such as a
    /// `state.get` of every key of a big model.
    pub limits: Limits,
}

impl ClientConfig {
    /// A configuration for these broker endpoints with the default timeouts (5 s overall,
    /// 2500 ms per attempt) and the default decode limits.
    pub fn new(brokers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ClientConfig {
            brokers: brokers.into_iter().map(Into::into).collect(),
            timeout: DEFAULT_TIMEOUT,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            limits: Limits::default(),
        }
    }
}
