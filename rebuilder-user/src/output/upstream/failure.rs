//! Why one replay failed: the typed error a pool task matches on to decide whether to resend
//! (stale keep-alive connection), whether the breaker is concerned (connect failures) and which
//! `rebuilder_upstream_errors_total{kind}` to count.

use std::time::Duration;

use crate::output::metrics::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    #[error("upstream in reconnect backoff")]
    Unreachable,
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {addr}: timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("write: {0}")]
    Write(std::io::Error),
    #[error("no complete response within {0:?}")]
    ResponseTimeout(Duration),
    #[error("invalid response: {0}")]
    Invalid(String),
    #[error("connection closed before the response was complete{}", .source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Reset {
        got_bytes: bool,
        source: Option<std::io::Error>,
    },
}

impl Failure {
    pub(super) fn kind(&self) -> ErrorKind {
        match self {
            Failure::Unreachable => ErrorKind::Unreachable,
            Failure::Connect { .. } => ErrorKind::Connect,
            Failure::ConnectTimeout { .. } => ErrorKind::ConnectTimeout,
            Failure::Write(_) => ErrorKind::Write,
            Failure::ResponseTimeout(_) => ErrorKind::ResponseTimeout,
            Failure::Invalid(_) => ErrorKind::InvalidResponse,
            Failure::Reset { .. } => ErrorKind::Reset,
        }
    }

    /// Failed before the upstream said anything about this request, so resending it cannot
    /// duplicate it (modulo an upstream that processed it and closed without answering).
    pub(super) fn before_any_response(&self) -> bool {
        matches!(
            self,
            Failure::Write(_)
                | Failure::Reset {
                    got_bytes: false,
                    ..
                }
        )
    }

    pub(super) fn is_connect(&self) -> bool {
        matches!(
            self,
            Failure::Unreachable | Failure::Connect { .. } | Failure::ConnectTimeout { .. }
        )
    }
}
