//! Running both servers as an operator does: settings layered from a file,
//! the environment and flags; Prometheus metrics scraped after real traffic
//! and read with a text-format parser; JSON logs carrying the request id;
//! the fleet dashboard's sign-in; alerts raised once and cleared.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{Proxy, eventually, free_port, run, run_failing};
use prometheus_parse::{Scrape, Value};
use serde_json::json;

use crate::world::{Store, World, bins};

/// A server started with `args` and `env`; its stdout and stderr lines as
/// they come. Killed when dropped.
struct Process {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn start(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(bin);
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn");
        let collect = |stream: Box<dyn std::io::Read + Send>| {
            let lines: Arc<Mutex<Vec<String>>> = Arc::default();
            let into = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    into.lock().expect("lines").push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// The rest of the first stdout line starting with `prefix`.
    fn announced(&self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(rest) = self
                .stdout
                .lock()
                .expect("lines")
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
            {
                return rest.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {prefix:?} line; stderr: {:?}",
                self.stderr.lock().expect("lines")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn standalone_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    run(
        &bins().edge,
        dir.path(),
        &["init", "--location", "shop", "--timezone", "Europe/Berlin"],
    );
    dir
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_config_file() {
    let bins = bins();
    let dir = standalone_store();
    let [from_file, from_env, from_flag] = [free_port(), free_port(), free_port()];
    let config = dir.path().join("edge-node.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{from_file}\"\nkiosk_idle_seconds = 30\n",
            dir.path().display()
        ),
    )
    .expect("config");
    let config = config.to_str().expect("path");
    let env_listen = format!("127.0.0.1:{from_env}");
    let flag_listen = format!("127.0.0.1:{from_flag}");
    let listens = |args: &[&str], env: &[(&str, &str)]| {
        Process::start(&bins.edge, args, env).announced("listening on http://")
    };
    // The file alone (its data_dir too: no --data-dir anywhere).
    assert_eq!(
        listens(&["--config", config, "serve"], &[]),
        format!("127.0.0.1:{from_file}")
    );
    // The environment over the file.
    assert_eq!(
        listens(
            &["--config", config, "serve"],
            &[("EDGE_NODE__LISTEN", &env_listen)]
        ),
        env_listen
    );
    // The flag over both.
    assert_eq!(
        listens(
            &["--config", config, "serve", "--listen", &flag_listen],
            &[("EDGE_NODE__LISTEN", &env_listen)]
        ),
        flag_listen
    );
    // A section's key through the environment: the metrics listener.
    let metrics = free_port();
    let server = Process::start(
        &bins.edge,
        &["--config", config, "serve", "--listen", "127.0.0.1:0"],
        &[(
            "EDGE_NODE__METRICS__LISTEN",
            &format!("127.0.0.1:{metrics}"),
        )],
    );
    assert_eq!(
        server.announced("metrics on http://"),
        format!("127.0.0.1:{metrics}/metrics")
    );
}

#[test]
fn an_unknown_key_or_a_value_out_of_range_fails_naming_the_key_and_where_it_came_from() {
    let bins = bins();
    let dir = standalone_store();
    let config = dir.path().join("edge-node.toml");
    std::fs::write(&config, "kiosk_idle_secs = 30\n").expect("config");
    let config_arg = config.to_str().expect("path");
    let said = run_failing(&bins.edge, dir.path(), &["--config", config_arg, "serve"]);
    assert!(
        said.contains("kiosk_idle_secs") && said.contains(config_arg),
        "{said}"
    );
    std::fs::write(&config, "kiosk_idle_seconds = 2\n").expect("config");
    let said = run_failing(&bins.edge, dir.path(), &["--config", config_arg, "serve"]);
    assert!(
        said.contains("kiosk_idle_seconds") && said.contains("5 to 3600"),
        "{said}"
    );
    // From the environment, the variable is named.
    let out = Command::new(&bins.edge)
        .args(["--data-dir", dir.path().to_str().expect("path"), "status"])
        .env("EDGE_NODE__SKEW_MARGIN_MS", "-1")
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("EDGE_NODE__SKEW_MARGIN_MS"), "{said}");
    // The hub checks how its settings relate: a long poll as long as the
    // time after which a store counts as gone would make waiting stores
    // look unreachable.
    let hub_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(&bins.hub)
        .args([
            "--data-dir",
            hub_dir.path().to_str().expect("path"),
            "serve",
            "--unreachable-after-ms",
            "3000",
        ])
        .env("SYNC_HUB__LONG_POLL_MAX_MS", "3000")
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        said.contains("long_poll_max_ms")
            && said.contains("SYNC_HUB__LONG_POLL_MAX_MS")
            && said.contains("--unreachable-after-ms"),
        "{said}"
    );
    assert!(
        !hub_dir.path().join("hub.db").exists(),
        "a refused configuration makes nothing"
    );
}

#[test]
fn default_config_prints_a_file_that_serves_as_it_says() {
    let bins = bins();
    let dir = standalone_store();
    let printed = run(&bins.edge, dir.path(), &["default-config"]);
    assert!(printed.contains("[metrics]") && printed.contains("[log]"));
    let config = dir.path().join("printed.toml");
    std::fs::write(&config, printed.replace("0.0.0.0:8080", "127.0.0.1:0")).expect("write");
    let server = Process::start(
        &bins.edge,
        &["--config", config.to_str().expect("path"), "serve"],
        &[],
    );
    assert!(
        server
            .announced("listening on http://")
            .starts_with("127.0.0.1:")
    );
    let hub_dir = tempfile::tempdir().expect("tempdir");
    let printed = run(&bins.hub, hub_dir.path(), &["default-config"]);
    assert!(printed.contains("[alerts]") && printed.contains("unreachable_after_ms = 5000"));
}

/// The sum of the samples of `metric` whose labels include `labels`; a
/// histogram's sample counts its observations.
fn total(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

async fn scrape(http: &reqwest::Client, url: &str) -> Scrape {
    let response = http.get(url).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .expect("type")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.expect("text");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_servers_metrics_move_with_the_traffic_sent() {
    let mut world = World::quick();
    world
        .hub_args
        .extend(["--metrics-listen", "127.0.0.1:0"].map(String::from));
    world.start_hub();
    let hub_metrics = format!(
        "http://{}",
        world
            .hub
            .as_ref()
            .expect("hub")
            .announced("metrics on http://")
    );
    let mut store = Store::enroll(&world, "store-1");
    store.args = ["--metrics-listen", "127.0.0.1:0"]
        .map(String::from)
        .to_vec();
    store.start(&world);
    let edge_metrics = format!(
        "http://{}",
        store
            .served
            .as_ref()
            .expect("store")
            .announced("metrics on http://")
    );
    store.stock(&world, "store-1:beans", 1000).await;
    store.synced(&world, Duration::from_secs(30)).await;
    let http = e2e::http();
    let edge_before = scrape(&http, &edge_metrics).await;
    let hub_before = scrape(&http, &hub_metrics).await;

    const BOOKINGS: usize = 25;
    store.book_many(&world, "store-1:beans", BOOKINGS, 5).await;
    let (status, order) = world
        .order(
            &json!({"lines": [{"pool_id": "store-1:beans", "quantity": 1}],
                    "customer": {"name": "Web customer"}}),
            5_000,
        )
        .await;
    assert_eq!(status, 201, "{order}");
    store.synced(&world, Duration::from_secs(30)).await;

    let edge = scrape(&http, &edge_metrics).await;
    let moved = |after: &Scrape, before: &Scrape, metric: &str, labels: &[(&str, &str)]| {
        total(after, metric, labels) - total(before, metric, labels)
    };
    let posted = [
        ("route", "/api/v1/bookings"),
        ("method", "POST"),
        ("status", "201"),
    ];
    assert_eq!(
        moved(
            &edge,
            &edge_before,
            "edge_node_http_requests_total",
            &posted
        ),
        BOOKINGS as f64
    );
    assert!(
        moved(
            &edge,
            &edge_before,
            "edge_node_commit_batch_size_count",
            &[]
        ) >= 1.0
    );
    assert!(
        moved(
            &edge,
            &edge_before,
            "edge_node_commit_duration_seconds_count",
            &[]
        ) >= 1.0
    );
    assert!(
        moved(
            &edge,
            &edge_before,
            "edge_node_sync_pushed_events_total",
            &[]
        ) >= BOOKINGS as f64
    );
    assert!(
        moved(
            &edge,
            &edge_before,
            "edge_node_sync_push_duration_seconds_count",
            &[]
        ) >= 1.0
    );
    assert!(
        moved(
            &edge,
            &edge_before,
            "edge_node_sync_pulled_events_total",
            &[]
        ) >= 1.0
    );
    // Gauges read at the scrape: every booking of this store, by state and
    // channel, and nothing waiting to sync.
    let booked = total(&edge, "edge_node_bookings", &[("state", "confirmed")]);
    assert_eq!(
        booked,
        (BOOKINGS + 1) as f64,
        "{:?}",
        edge.samples
            .iter()
            .filter(|s| s.metric == "edge_node_bookings")
            .collect::<Vec<_>>()
    );
    assert_eq!(total(&edge, "edge_node_sync_backlog_events", &[]), 0.0);
    assert_eq!(
        total(&edge, "edge_node_sync_state", &[("state", "online")]),
        1.0
    );

    let hub = scrape(&http, &hub_metrics).await;
    assert!(moved(&hub, &hub_before, "sync_hub_sync_pushed_events_total", &[]) >= BOOKINGS as f64);
    assert!(
        moved(
            &hub,
            &hub_before,
            "sync_hub_sync_push_duration_seconds_count",
            &[]
        ) >= 1.0
    );
    assert_eq!(
        moved(
            &hub,
            &hub_before,
            "sync_hub_web_orders_total",
            &[("outcome", "decided")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            &hub,
            &hub_before,
            "sync_hub_web_order_decision_seconds_count",
            &[]
        ),
        1.0
    );
    assert_eq!(
        moved(
            &hub,
            &hub_before,
            "sync_hub_http_requests_total",
            &[
                ("route", "/v1/bookings"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        1.0
    );
    assert_eq!(
        total(&hub, "sync_hub_locations", &[("state", "connected")]),
        1.0
    );
    assert_eq!(
        total(&hub, "sync_hub_locations", &[("state", "unreachable")]),
        0.0
    );
    assert!(total(&hub, "sync_hub_bookings", &[("state", "confirmed")]) >= (BOOKINGS + 1) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_on_every_line_of_a_request() {
    let bins = bins();
    let dir = standalone_store();
    let token = e2e::last_line(&run(
        &bins.edge,
        dir.path(),
        &["token", "create", "--role", "manager"],
    ));
    let server = Process::start(
        &bins.edge,
        &[
            "--data-dir",
            dir.path().to_str().expect("path"),
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
        &[("EDGE_NODE__LOG__LEVEL", "info,tower_http=debug")],
    );
    let base = format!("http://{}", server.announced("listening on http://"));
    let response = e2e::http()
        .post(format!("{base}/api/v1/resources"))
        .bearer_auth(&token)
        .header("x-request-id", "req-from-the-till-42")
        .json(&json!({"name": "Beans", "kind": "stock"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "req-from-the-till-42");
    let unnamed = e2e::http()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("request");
    let made_up = unnamed.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert!(!made_up.is_empty(), "a request without an id gets one");
    let lines = eventually(Duration::from_secs(10), "the request's log lines", || {
        let stderr = server.stderr.clone();
        async move {
            let lines: Vec<serde_json::Value> = stderr
                .lock()
                .expect("lines")
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect();
            let ours: Vec<_> = lines
                .into_iter()
                .filter(|l| l["span"]["request_id"] == "req-from-the-till-42")
                .collect();
            (ours.len() >= 2).then_some(ours)
        }
    })
    .await;
    assert!(
        lines
            .iter()
            .all(|l| l["span"]["path"] == "/api/v1/resources")
    );
}

fn encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn form(
    http: &reqwest::Client,
    url: &str,
    origin: &str,
    body: &[(&str, &str)],
) -> reqwest::Response {
    http.post(url)
        .header("origin", origin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(body))
        .send()
        .await
        .expect("post")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_sign_in_with_a_password_and_are_locked_out_after_repeated_failures() {
    let mut world = World::new();
    world.hub_command(&[
        "location",
        "add",
        "--id",
        "evil",
        "--name",
        "<img src=x onerror=alert(1)>",
        "--timezone",
        "UTC",
    ]);
    add_operator(&world, "ops", "a long enough password");
    let short = std::process::Command::new(&world.bins.hub)
        .args([
            "--data-dir",
            world.hub_dir.path().to_str().expect("path"),
            "user",
            "add",
            "--name",
            "bob",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(b"short\n")?;
            child.wait_with_output()
        })
        .expect("run");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12 characters"));
    world.start_hub();
    let base = world.hub_url();
    let http = e2e::form_client();
    // Without a session, the dashboard sends to sign-in, and its data is 401.
    let page = http.get(format!("{base}/")).send().await.expect("get");
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/signin");
    let fleet = http.get(format!("{base}/fleet")).send().await.expect("get");
    assert_eq!(fleet.status(), 401);
    // Another site's page cannot sign anyone in.
    let forged = form(
        &http,
        &format!("{base}/signin"),
        "http://evil.example",
        &[("name", "ops"), ("password", "a long enough password")],
    )
    .await;
    assert_eq!(forged.status(), 403);
    // Wrong passwords: refused in words; five of them lock the account,
    // and then even the right one waits.
    for _ in 0..5 {
        let wrong = form(
            &http,
            &format!("{base}/signin"),
            &base,
            &[("name", "ops"), ("password", "not the password")],
        )
        .await;
        assert_eq!(wrong.status(), 401);
        assert!(
            wrong
                .text()
                .await
                .expect("text")
                .contains("do not match an operator")
        );
    }
    let locked = form(
        &http,
        &format!("{base}/signin"),
        &base,
        &[("name", "ops"), ("password", "a long enough password")],
    )
    .await;
    assert_eq!(locked.status(), 401);
    assert!(locked.text().await.expect("text").contains("locked"));
    // Another operator signs in; the store's own name is shown as text.
    add_operator(&world, "second", "another long password");
    let signed = form(
        &http,
        &format!("{base}/signin"),
        &base,
        &[("name", "second"), ("password", "another long password")],
    )
    .await;
    assert_eq!(signed.status(), 303);
    let cookie = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("hub_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .expect("a session cookie");
    let flags = signed.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(
        flags.contains("HttpOnly") && flags.contains("SameSite=Strict"),
        "{flags}"
    );
    let page = http
        .get(format!("{base}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.expect("text");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert!(!html.contains("<img src=x"));
    let fleet: serde_json::Value = http
        .get(format!("{base}/fleet"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(fleet["locations"][0]["id"], "evil");
    assert_eq!(fleet["locations"][0]["state"], "never_seen");
    // Signing out needs the page's token; then the cookie is worthless.
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the sign-out form's token")
        .to_owned();
    let forged = http
        .post(format!("{base}/signout"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[("csrf", "wrong")]))
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 403);
    let out = http
        .post(format!("{base}/signout"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .expect("post");
    assert_eq!(out.status(), 303);
    let after = http
        .get(format!("{base}/fleet"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(after.status(), 401);
}

pub fn add_operator(world: &World, name: &str, password: &str) {
    use std::io::Write;
    let mut command = std::process::Command::new(&world.bins.hub);
    command.args(["--data-dir", world.hub_dir.path().to_str().expect("path")]);
    if let Some(url) = &world.database_url {
        command.args(["--database-url", url]);
    }
    let mut child = command
        .args(["user", "add", "--name", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A webhook receiver that keeps every body it gets.
pub async fn alert_receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let log = log.clone();
            async move {
                if let Ok(value) = serde_json::from_str(&body) {
                    log.lock().expect("lock").push(value);
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

/// The alert webhooks received for `key`, as (type) in order.
pub fn alert_types(seen: &Arc<Mutex<Vec<serde_json::Value>>>, key: &str) -> Vec<String> {
    seen.lock()
        .expect("lock")
        .iter()
        .filter(|v| v["alert"]["key"] == key)
        .map(|v| v["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_cut_off_raises_one_alert_and_clears_it_when_it_is_back() {
    let mut world = World::quick();
    world
        .hub_env
        .push(("SYNC_HUB__ALERTS__UNREACHABLE_FOR_MS".into(), "2500".into()));
    let (hook, seen) = alert_receiver().await;
    world.hub_command(&["webhook", "add", "--url", &hook]);
    world.start_hub();
    let proxy = Proxy::start(world.hub_url()).await;
    let mut store = Store::enroll_via(&world, "store-1", &proxy.url());
    store.start(&world);
    store.synced(&world, Duration::from_secs(30)).await;
    proxy.set(e2e::Link::Cut);
    eventually(Duration::from_secs(20), "an alert.raised webhook", || {
        let seen = seen.clone();
        async move { (!alert_types(&seen, "store_unreachable:store-1").is_empty()).then_some(()) }
    })
    .await;
    // Raised once, however many times the hub looked meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        alert_types(&seen, "store_unreachable:store-1"),
        ["alert.raised"]
    );
    let raised = seen
        .lock()
        .expect("lock")
        .iter()
        .find(|v| v["type"] == "alert.raised")
        .cloned()
        .expect("raised");
    assert_eq!(raised["alert"]["kind"], "store_unreachable");
    assert_eq!(raised["alert"]["subject"], "store-1");
    proxy.set(e2e::Link::Open);
    eventually(Duration::from_secs(20), "an alert.cleared webhook", || {
        let seen = seen.clone();
        async move {
            (alert_types(&seen, "store_unreachable:store-1") == ["alert.raised", "alert.cleared"])
                .then_some(())
        }
    })
    .await;
    let open: Vec<_> = world.hub_rows("SELECT key FROM alerts WHERE cleared_at_ms IS NULL", &[]);
    assert!(open.is_empty(), "{open:?}");
}

/// What a server tells systemd, read from a notify socket of our own.
fn notifications(socket: &std::os::unix::net::UnixDatagram, for_at_most: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + for_at_most;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while std::time::Instant::now() < deadline {
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        if let Ok(n) = socket.recv(&mut buf) {
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned),
            );
        }
    }
    got
}

#[test]
fn both_servers_say_ready_to_systemd_and_feed_its_watchdog_only_while_ready() {
    let bins = bins();
    let sockets = tempfile::tempdir().expect("tempdir");
    let dir = standalone_store();
    let hub_dir = tempfile::tempdir().expect("tempdir");
    run(&bins.hub, hub_dir.path(), &["init"]);
    for (bin, data, db) in [
        (&bins.edge, dir.path(), "edge.db"),
        (&bins.hub, hub_dir.path(), "hub.db"),
    ] {
        let path = sockets.path().join(format!("{db}.sock"));
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        let server = Process::start(
            bin,
            &[
                "--data-dir",
                data.to_str().expect("path"),
                "serve",
                "--listen",
                "127.0.0.1:0",
            ],
            // A watchdog of 400 ms: pinged every 200 ms.
            &[
                ("NOTIFY_SOCKET", path.to_str().expect("path")),
                ("WATCHDOG_USEC", "400000"),
            ],
        );
        server.announced("listening on http://");
        let said = notifications(&socket, Duration::from_secs(2));
        assert_eq!(
            said.first().map(String::as_str),
            Some("READY=1"),
            "{db}: {said:?}"
        );
        let pings = said.iter().filter(|l| *l == "WATCHDOG=1").count();
        assert!(pings >= 3, "{db}: {said:?}");
        // The database no longer holds this binary's schema: the pings stop,
        // so systemd would restart the service.
        let conn = rusqlite::Connection::open(data.join(db)).expect("db");
        conn.busy_timeout(Duration::from_secs(5)).expect("busy");
        conn.pragma_update(None, "user_version", 1)
            .expect("downgrade");
        notifications(&socket, Duration::from_millis(500));
        let said = notifications(&socket, Duration::from_secs(1));
        assert!(!said.iter().any(|l| l == "WATCHDOG=1"), "{db}: {said:?}");
    }
}
