//! Fixtures of the end-to-end tests: the hub and edge nodes as real
//! processes on 127.0.0.1, their command lines, and small HTTP helpers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub mod bench;
pub mod postgres;

/// Paths of the two commands, as built by cargo for this package's tests.
#[derive(Debug, Clone)]
pub struct Bins {
    pub edge: PathBuf,
    pub hub: PathBuf,
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn http() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// A client for the LAN UI's forms: redirects are answers to look at, not
/// to follow.
pub fn form_client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Posts the sign-in form of the store at `base` as its own page would.
pub async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    pin: &str,
) -> reqwest::Response {
    http.post(format!("{base}/signin"))
        .header("origin", base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name={name}&pin={pin}"))
        .send()
        .await
        .expect("sign in")
}

/// The `edge_session=...` cookie a sign-in set, if it set one.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("edge_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// Runs a command to completion; panics with its stderr if it fails.
pub fn run(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run command");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// Runs a command that is expected to fail; returns its stderr.
pub fn run_failing(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run command");
    assert!(!out.status.success(), "{args:?} should have failed");
    String::from_utf8(out.stderr).expect("utf8")
}

/// A number from the environment, for benchmark run lengths.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn last_line(out: &str) -> String {
    out.lines().last().expect("a line").trim().to_owned()
}

/// A free loopback port (for a hub that must come back on the same one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A served process; dropping it kills it.
#[derive(Debug)]
pub struct Served {
    child: Child,
    pub base: String,
    /// Every line the process printed on stdout so far.
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Served {
    /// Starts `bin --data-dir dir serve --listen listen [extra]` and waits
    /// for its `listening on` line.
    pub fn start(
        bin: &Path,
        dir: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(bin);
        command
            .arg("--data-dir")
            .arg(dir)
            .args(["serve", "--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            // E2E_LOG=1 shows the servers' logs, for debugging a test.
            .stderr(if std::env::var_os("E2E_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let lines: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
        let printed = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
                printed.lock().expect("lines").push(line);
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server announces its address");
        Self { child, base, lines }
    }

    /// The rest of the first stdout line starting with `prefix`, waiting
    /// for it up to 30 s (`metrics on ` gives the metrics URL).
    pub fn announced(&self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(rest) = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
            {
                return rest.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server never printed a line starting with {prefix:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, as systemd stops a service; how long the process took to
    /// exit, or `None` if it was still running after `limit` (it is then
    /// killed).
    pub fn terminate(mut self, limit: Duration) -> Option<Duration> {
        let asked = std::time::Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "kill -TERM failed");
        while asked.elapsed() < limit {
            if self.child.try_wait().expect("wait").is_some() {
                return Some(asked.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process id, to read its figures from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, nothing but what was committed survives.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it returns `Some` or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn get(http: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let response = http
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn post(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> (u16, Value) {
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What a [`Proxy`] lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Link {
    /// Everything passes.
    Open = 0,
    /// Nothing passes: the store is cut off from the hub.
    Cut = 1,
    /// The store hears the hub but its pushes are lost: an asymmetric cut.
    NoPush = 2,
}

/// An HTTP proxy between one store and the hub, to cut the link at will
/// while both keep running. Refused requests get 503 (a gateway error),
/// which a store takes for an unreachable hub.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    link: std::sync::Arc<std::sync::atomic::AtomicU8>,
    /// Where requests go: one hub process of several, as a load balancer
    /// would pick.
    upstream: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        use axum::body::Bytes;
        use axum::extract::Request;
        use axum::response::IntoResponse;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let link = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(Link::Open as u8));
        let upstream = std::sync::Arc::new(std::sync::Mutex::new(upstream));
        let state = (link.clone(), http(), upstream.clone());
        let app = axum::Router::new().fallback(move |request: Request| {
            let (link, client, upstream) = state.clone();
            async move {
                let upstream = upstream.lock().expect("upstream").clone();
                let mode = link.load(std::sync::atomic::Ordering::SeqCst);
                let (parts, body) = request.into_parts();
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|pq| pq.as_str().to_owned())
                    .unwrap_or_default();
                let blocked = mode == Link::Cut as u8
                    || (mode == Link::NoPush as u8 && path.starts_with("/v1/sync/push"));
                if blocked {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "link cut")
                        .into_response();
                }
                let body: Bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let mut forward = client.request(parts.method.clone(), format!("{upstream}{path}"));
                for (name, value) in &parts.headers {
                    if name != axum::http::header::HOST
                        && name != axum::http::header::CONTENT_LENGTH
                    {
                        forward = forward.header(name, value);
                    }
                }
                match forward.body(body).send().await {
                    Ok(response) => {
                        let status = response.status();
                        let headers = response.headers().clone();
                        let bytes = response.bytes().await.unwrap_or_default();
                        let mut answer = (status, bytes).into_response();
                        for (name, value) in &headers {
                            if name != axum::http::header::CONTENT_LENGTH
                                && name != axum::http::header::TRANSFER_ENCODING
                            {
                                answer.headers_mut().insert(name, value.clone());
                            }
                        }
                        answer
                    }
                    Err(_) => {
                        (axum::http::StatusCode::BAD_GATEWAY, "hub unreachable").into_response()
                    }
                }
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            link,
            upstream,
            task,
        }
    }

    /// Sends what comes next to `upstream` instead.
    pub fn set_upstream(&self, upstream: String) {
        *self.upstream.lock().expect("upstream") = upstream;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, link: Link) {
        self.link
            .store(link as u8, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
