//! How both servers take connections: hyper-util's server with bounds on
//! how long a client may take to send a request head and how long an idle
//! connection is kept, and a graceful shutdown with a bound on how long it
//! waits for requests in flight. Both servers take connections here, so
//! they cannot drift apart on these limits.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tower::{Service, ServiceExt as _};

/// How long a client may take to send a request's head (request line and
/// headers) once it has started one, how long an HTTP/1 connection may sit
/// idle between requests, and how long a new connection may take to start
/// its first request (TLS handshake included). A head is a few hundred
/// bytes: ten seconds is ample for a tablet on poor store Wi-Fi, and a
/// client that trickles bytes (slowloris) or says nothing holds a socket
/// and a task for no longer than that.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an HTTP/2 connection is pinged; one that does not answer
/// within [`HEADER_READ_TIMEOUT`] is closed. (HTTP/2 has no head timeout of
/// its own; a peer that answers pings is alive, like a kept-alive HTTP/1
/// client.)
pub const HTTP2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// How long requests in flight get to finish once the server is asked to
/// stop (SIGTERM, or the shutdown future); then their connections are
/// closed and the server returns anyway, so a stuck client cannot keep a
/// restart waiting. Answers are never cut short by less: a long poll
/// (`LONG_POLL_MAX_MS`) and a web order's wait (`WAIT_MS_MAX`) both end
/// within it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const _: () = assert!(
    SHUTDOWN_GRACE.as_millis() > shared::limits::LONG_POLL_MAX_MS as u128,
    "a long poll in flight finishes during a shutdown"
);
const _: () = assert!(
    SHUTDOWN_GRACE.as_millis() >= shared::limits::WAIT_MS_MAX as u128,
    "a web order waiting for its store finishes during a shutdown"
);

/// Pause after a failure to accept that is not about one connection (out
/// of file descriptors, say), so the loop does not spin while it lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The HTTP surface of a server: axum's request and response types.
pub trait App:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> App for T where
    T: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until
/// `shutdown` resolves; then stops accepting, gives requests in flight
/// [`SHUTDOWN_GRACE`] to finish, closes whatever is left and returns.
pub async fn serve(
    listener: TcpListener,
    app: impl App,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(HEADER_READ_TIMEOUT);
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Forget connections that are over, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        connections.spawn(connection(
            tcp,
            tls.clone(),
            builder.clone(),
            app.clone(),
            graceful.watcher(),
        ));
    }
    // New connections are refused from here.
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "requests still in flight after the shutdown grace; closing their connections"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// Failures to accept that concern one connection only (the client went
/// away during the handshake): the next accept is unaffected.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection: the TLS handshake if any, then HTTP until the
/// client leaves, a timeout closes it, or a shutdown finishes it.
async fn connection(
    tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    app: impl App,
    watcher: Watcher,
) {
    // Started at accept: the handshake and the first request head share
    // one deadline, so a client that says nothing is closed as surely as
    // one that trickles.
    let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
    match tls {
        None => http(TokioIo::new(tcp), deadline, builder, app, watcher).await,
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => http(TokioIo::new(stream), deadline, builder, app, watcher).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        },
    }
}

async fn http<I>(
    io: I,
    first_request_by: tokio::time::Instant,
    builder: auto::Builder<TokioExecutor>,
    app: impl App,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // hyper's head timeout starts only once it knows the protocol, and it
    // waits for the first bytes to tell: until the first request arrives,
    // our own deadline holds.
    let started = Arc::new(Notify::new());
    let service = TowerToHyperService::new(app.map_request({
        let started = started.clone();
        move |request: hyper::Request<Incoming>| {
            started.notify_one();
            request.map(axum::body::Body::new)
        }
    }));
    let served = watcher.watch(
        builder
            .serve_connection_with_upgrades(io, service)
            .into_owned(),
    );
    tokio::pin!(served);
    tokio::select! {
        _ = &mut served => return,
        () = started.notified() => {}
        () = tokio::time::sleep_until(first_request_by) => {
            tracing::debug!("no request within the header read timeout; closing");
            return;
        }
    }
    let _ = served.await;
}

/// File descriptors the hub keeps for itself whatever the fleet: the
/// database and its WAL, read connections, the listener, logs, and a
/// margin for webhooks deliveries and admin requests.
pub const RESERVED_OPEN_FILES: u64 = 64;

/// Connections a connected store holds at once: its long poll, and a push
/// or a health report beside it.
pub const CONNECTIONS_PER_STORE: u64 = 2;

/// Raises this process's soft limit on open files to its hard limit (the
/// ceiling the service manager or the operator set, e.g. `LimitNOFILE` in
/// the systemd unit), since every connected store holds a socket; returns
/// the limit now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    Ok(soft)
}

/// How many stores can stay connected under an open-file limit of
/// `limit`.
pub fn stores_for_open_files(limit: u64) -> u64 {
    limit.saturating_sub(RESERVED_OPEN_FILES) / CONNECTIONS_PER_STORE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let limit = raise_open_file_limit().unwrap();
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, hard);
        assert_eq!(limit, soft);
    }

    #[test]
    fn each_store_needs_two_files_beyond_the_reserve() {
        assert_eq!(stores_for_open_files(0), 0);
        assert_eq!(stores_for_open_files(RESERVED_OPEN_FILES), 0);
        assert_eq!(stores_for_open_files(1024), 480);
        assert_eq!(stores_for_open_files(1_048_576), 524_256);
    }
}
