//! The signed HTTP client of the sync protocol. Every request is signed with
//! the device key; every answer must carry the hub's signature over our
//! nonce, or it is not believed. Each exchange also measures the clock
//! offset to the hub.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use shared::LocationId;
use shared::protocol::{EnrollRequest, EnrollResponse, ErrorBody};
use shared::signing::{
    self, HEADER_DEVICE, HEADER_HUB_SIGNATURE, HEADER_HUB_TIME, HEADER_NONCE, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, SigningKey,
};

use crate::store::Clock;

/// How long one ordinary exchange may take before the hub counts as
/// unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error)]
pub enum HubError {
    #[error("the hub is unreachable: {0}")]
    Unreachable(String),
    /// Nothing listens at the hub's address: its host answered at once
    /// that the connection is refused (the hub is restarting, say). Asking
    /// again costs the hub's kernel a reset and nothing else, so the store
    /// asks again soon and is back within a moment of the hub.
    #[error("the hub is down: {0}")]
    Down(String),
    #[error("the hub refused ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        expected_seq: Option<u64>,
    },
    #[error("the hub's answer is not signed by the hub we enrolled with")]
    BadSignature,
    #[error("the hub's answer makes no sense: {0}")]
    Protocol(String),
}

impl HubError {
    /// The error of a request that did not get an answer.
    fn unanswered(error: reqwest::Error) -> Self {
        let refused = {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            let mut refused = false;
            while let Some(e) = source {
                if let Some(io) = e.downcast_ref::<std::io::Error>() {
                    refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
                }
                source = e.source();
            }
            refused
        };
        if refused {
            Self::Down(error.to_string())
        } else {
            Self::Unreachable(error.to_string())
        }
    }

    /// Whether the hub could not be reached at all (as opposed to
    /// answering with a refusal).
    pub fn unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Down(_))
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A verified answer and what the exchange measured.
#[derive(Debug)]
pub struct Exchange<T> {
    pub value: T,
    /// This node's clock minus the hub's, from the midpoint of the exchange;
    /// `None` when the exchange took too long to say (a long poll's wait is
    /// not network delay).
    pub clock_offset_ms: Option<i64>,
}

/// Longest round trip whose midpoint is taken for the hub's clock. The
/// hub stamps its answer when it sends it, so for a long poll that waited
/// seconds the midpoint is seconds off; below this, the error is at most
/// half of it.
pub const CLOCK_SAMPLE_ROUND_TRIP_MAX_MS: i64 = 1_000;

/// Largest clock offset believed, either way: a century, as the hub
/// accepts in reports (`sync-hub/src/api/sync.rs`). Beyond it an
/// `x-hub-time` is garbage (refusals are not signed), not a clock.
const CLOCK_OFFSET_MAX_MS: i64 = 100 * 366 * 24 * 3600 * 1000;

/// This node's clock minus the hub's, from an exchange sent at `sent_at` and
/// answered at `received_at` (our clock) that the hub stamped `hub_time`;
/// `None` when the exchange cannot say.
fn clock_sample(sent_at: i64, received_at: i64, hub_time: i64) -> Option<i64> {
    let round_trip = received_at.checked_sub(sent_at)?;
    if !(0..=CLOCK_SAMPLE_ROUND_TRIP_MAX_MS).contains(&round_trip) {
        return None;
    }
    (sent_at + round_trip / 2)
        .checked_sub(hub_time)
        .filter(|offset| offset.unsigned_abs() <= CLOCK_OFFSET_MAX_MS.unsigned_abs())
}

pub fn http_client() -> reqwest::Client {
    // reqwest links rustls without a provider; ring is ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

fn refused(status: u16, body: &[u8]) -> HubError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => HubError::Refused {
            status,
            code: error.error.code,
            message: error.error.message,
            expected_seq: error.error.expected_seq,
        },
        Err(_) => HubError::Refused {
            status,
            code: "unknown".into(),
            message: String::from_utf8_lossy(body).chars().take(200).collect(),
            expected_seq: None,
        },
    }
}

/// Presents a one-time token and a new public key to the hub (unsigned:
/// the hub learns our key from this very request).
pub async fn enroll(base: &str, request: &EnrollRequest) -> Result<EnrollResponse, HubError> {
    let url = format!("{}/v1/sync/enroll", base.trim_end_matches('/'));
    let response = http_client()
        .post(url)
        .json(request)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(HubError::unanswered)?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| HubError::Unreachable(e.to_string()))?;
    if status != 200 {
        return Err(refused(status, &body));
    }
    serde_json::from_slice(&body).map_err(|e| HubError::Protocol(e.to_string()))
}

#[derive(Debug, Clone)]
pub struct HubClient {
    base: String,
    http: reqwest::Client,
    key: Arc<SigningKey>,
    location: LocationId,
    hub_public_key: String,
    clock: Arc<dyn Clock>,
    /// Our clock minus the hub's, as last measured. Requests are stamped in
    /// the hub's time, so a store whose clock is off still syncs (and is
    /// flagged for it) instead of being refused as stale.
    offset_ms: Arc<std::sync::atomic::AtomicI64>,
    /// Whether `offset_ms` was measured yet.
    measured: Arc<std::sync::atomic::AtomicBool>,
}

impl HubClient {
    pub fn new(
        base: &str,
        key: Arc<SigningKey>,
        location: LocationId,
        hub_public_key: String,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: http_client(),
            key,
            location,
            hub_public_key,
            clock,
            offset_ms: Arc::default(),
            measured: Arc::default(),
        }
    }

    /// The same client over a given HTTP client (a load test that speaks
    /// for thousands of stores shares one).
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// One signed exchange. `path_and_query` is signed exactly as sent,
    /// with our measured clock offset added to it once there is one (the
    /// hub cannot see it in timestamps we stamp in its time).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Exchange<T>, HubError> {
        let body = body.unwrap_or_default();
        let with_offset;
        let path_and_query = if self.measured.load(std::sync::atomic::Ordering::Relaxed)
            && !path_and_query.contains("clock_offset_ms=")
        {
            let sep = if path_and_query.contains('?') {
                '&'
            } else {
                '?'
            };
            with_offset = format!(
                "{path_and_query}{sep}clock_offset_ms={}",
                self.clock_offset_ms()
            );
            with_offset.as_str()
        } else {
            path_and_query
        };
        let nonce = signing::nonce().map_err(|e| HubError::Protocol(e.to_string()))?;
        use std::sync::atomic::Ordering;
        let sent_at = self.clock.now_ms();
        let stamped = sent_at - self.offset_ms.load(Ordering::Relaxed);
        let signature = self.key.sign_b64(&signing::request_message(
            method.as_str(),
            path_and_query,
            stamped,
            &nonce,
            &body,
        ));
        let response = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .header(HEADER_DEVICE, self.location.as_str())
            .header(HEADER_TIMESTAMP, stamped.to_string())
            .header(HEADER_NONCE, &nonce)
            .header(HEADER_SIGNATURE, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(HubError::unanswered)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| HubError::Unreachable(e.to_string()))?;
        let received_at = self.clock.now_ms();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let hub_time = header(HEADER_HUB_TIME).and_then(|t| t.parse::<i64>().ok());
        let offset = hub_time.and_then(|hub| clock_sample(sent_at, received_at, hub));
        if let Some(offset) = offset {
            self.offset_ms.store(offset, Ordering::Relaxed);
            self.measured.store(true, Ordering::Relaxed);
        }
        let (Some(hub_time), Some(hub_signature)) = (hub_time, header(HEADER_HUB_SIGNATURE)) else {
            // Refusals before the hub trusted the request are not signed; a
            // proxy's "bad gateway" means the hub is out of reach.
            return Err(match status {
                502..=504 => HubError::Unreachable(format!("the gateway answered {status}")),
                s if s >= 400 => refused(status, &bytes),
                _ => HubError::BadSignature,
            });
        };
        signing::verify_b64(
            &self.hub_public_key,
            &signing::response_message(&nonce, hub_time, status, &bytes),
            hub_signature,
        )
        .map_err(|_| HubError::BadSignature)?;
        if status != 200 {
            return Err(refused(status, &bytes));
        }
        let value =
            serde_json::from_slice(&bytes).map_err(|e| HubError::Protocol(e.to_string()))?;
        Ok(Exchange {
            value,
            clock_offset_ms: offset,
        })
    }

    /// The clock offset to the hub as last measured, if ever.
    pub fn clock_offset_ms(&self) -> i64 {
        self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_exchanges_measure_the_clock_and_nothing_overflows() {
        // Sent at 1000, answered at 1100, stamped 50 by the hub: we are
        // 1000 ahead.
        assert_eq!(clock_sample(1_000, 1_100, 50), Some(1_000));
        // A long poll answered after 4 s says nothing.
        assert_eq!(clock_sample(1_000, 5_000, 4_900), None);
        // Garbage from an unsigned answer.
        assert_eq!(clock_sample(1_000, 1_100, i64::MIN), None);
        assert_eq!(clock_sample(1_000, 1_100, i64::MAX), None);
        assert_eq!(clock_sample(1_000, 900, 50), None, "time ran back");
    }

    #[tokio::test]
    async fn a_refused_connection_says_the_hub_is_down_and_silence_that_it_is_unreachable() {
        // Nothing listens on a port just released: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let request = EnrollRequest {
            token: "t".into(),
            public_key: "k".into(),
            location: None,
            head_seq: 0,
            restore: false,
        };
        let error = enroll(&format!("http://127.0.0.1:{port}"), &request)
            .await
            .expect_err("nothing listens");
        assert!(matches!(error, HubError::Down(_)), "{error:?}");
        assert!(error.unreachable());
        // A listener that never answers: the request times out, which is
        // no sign that the hub is restarting.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("addr");
        let answer = http_client()
            .get(format!("http://{addr}/"))
            .timeout(std::time::Duration::from_millis(200))
            .send()
            .await
            .expect_err("no answer");
        let error = HubError::unanswered(answer);
        assert!(matches!(error, HubError::Unreachable(_)), "{error:?}");
        assert!(error.unreachable());
    }
}
