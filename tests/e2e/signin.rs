//! Sign-in and sessions of the LAN UI over plain HTTP: lockout per name and
//! device, answers that do not tell which names exist, the manager's
//! unlock, the same-origin rule, sign-out, and HTTPS for stores that want
//! it.

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Served, last_line, run, run_failing, session_cookie};
use reqwest::StatusCode;

use crate::world::bins;

struct Shop {
    dir: tempfile::TempDir,
    served: Served,
}

fn shop() -> Shop {
    let bins = bins();
    let dir = tempfile::tempdir().expect("tempdir");
    run(
        &bins.edge,
        dir.path(),
        &[
            "init",
            "--location",
            "cafe-1",
            "--timezone",
            "Europe/Berlin",
        ],
    );
    run(
        &bins.edge,
        dir.path(),
        &[
            "user", "add", "--name", "Alice", "--role", "staff", "--pin", "2468",
        ],
    );
    run(
        &bins.edge,
        dir.path(),
        &[
            "user", "add", "--name", "Bob", "--role", "manager", "--pin", "1357",
        ],
    );
    let served = Served::start(&bins.edge, dir.path(), "127.0.0.1:0", &[], &[]);
    Shop { dir, served }
}

fn client() -> reqwest::Client {
    e2e::form_client()
}

/// Signs Alice in with `pin`.
async fn sign_in(http: &reqwest::Client, base: &str, pin: &str) -> reqwest::Response {
    e2e::sign_in(http, base, "Alice", pin).await
}

/// A sign-in attempt from the browser holding `cookie` (none: a browser
/// that never loaded the page); the status, the page and the cookies set.
async fn attempt(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    pin: &str,
    cookie: Option<&str>,
) -> (StatusCode, String, Vec<String>) {
    let mut request = http
        .post(format!("{base}/signin"))
        .header("origin", base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name={name}&pin={pin}"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("sign in");
    let status = response.status();
    let cookies = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    (status, response.text().await.expect("page"), cookies)
}

/// A new browser's device cookie, as the answer to its first sign-in gives
/// it out (the attempt is for a name nobody has: it counts against nobody).
async fn new_device(http: &reqwest::Client, base: &str) -> String {
    let page = http
        .get(format!("{base}/signin"))
        .send()
        .await
        .expect("page");
    assert!(
        page.headers().get("set-cookie").is_none(),
        "the page itself sets no cookie"
    );
    let (_, _, cookies) = attempt(http, base, "Nobody", "0000", None).await;
    let header = cookies
        .into_iter()
        .find(|v| v.starts_with("edge_device="))
        .expect("the first sign-in sets a device cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Max-Age=34560000", "Path=/"] {
        assert!(header.contains(attribute), "{header}");
    }
    header.split(';').next().expect("pair").to_owned()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::test]
async fn an_unknown_name_and_a_wrong_pin_get_the_same_answer_in_about_the_same_time() {
    let shop = shop();
    let (http, base) = (client(), shop.served.base.clone());
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    let mut answers = Vec::new();
    // Five tries each (the fifth locks both counters): the first of each
    // warms up, the other four are timed, interleaved so load falls on both.
    for round in 0..5 {
        for (name, times) in [("Alice", &mut wrong), ("Mallory", &mut unknown)] {
            let started = Instant::now();
            let (status, page, _) = attempt(&http, &base, name, "0000", None).await;
            let took = started.elapsed();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}, try {round}");
            answers.push(page);
            if round > 0 {
                times.push(took);
            }
        }
    }
    assert!(
        answers.iter().all(|page| *page == answers[0]),
        "every refusal is the same page"
    );
    assert!(answers[0].contains("Unknown name or wrong PIN."));
    let (wrong, unknown) = (median(wrong), median(unknown));
    assert!(
        unknown * 3 >= wrong && wrong * 3 >= unknown,
        "an unknown name took {unknown:?}, a wrong PIN {wrong:?}"
    );
    // The sixth try is locked out, for the name that exists and for the
    // one that does not alike.
    let (alice, alice_page, _) = attempt(&http, &base, "Alice", "2468", None).await;
    let (mallory, mallory_page, _) = attempt(&http, &base, "Mallory", "2468", None).await;
    assert_eq!(alice, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(mallory, StatusCode::TOO_MANY_REQUESTS);
    let digits_out = |page: &str| page.replace(|c: char| c.is_ascii_digit(), "#");
    assert_eq!(digits_out(&alice_page), digits_out(&mallory_page));
    assert!(alice_page.contains("Try again in"), "{alice_page}");
}

#[tokio::test]
async fn failures_from_fresh_devices_do_not_lock_the_user_out_where_they_signed_in_before() {
    let shop = shop();
    let (http, base) = (client(), shop.served.base.clone());
    let till = new_device(&http, &base).await;
    let (status, _, cookies) = attempt(&http, &base, "Alice", "2468", Some(&till)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "signed in on the till");
    assert!(
        !cookies.iter().any(|c| c.starts_with("edge_device=")),
        "the till keeps its device cookie"
    );
    // Someone guesses from fresh browsers (new cookies, or none at all):
    // throttled as before, sharing one counter.
    for guess in 1..=7 {
        let stranger = if guess % 2 == 0 {
            Some(new_device(&http, &base).await)
        } else {
            None
        };
        let (status, _, cookies) =
            attempt(&http, &base, "Alice", "0000", stranger.as_deref()).await;
        let expected = if guess <= 5 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, expected, "guess {guess}");
        assert_eq!(
            stranger.is_none(),
            cookies.iter().any(|c| c.starts_with("edge_device=")),
            "a browser without a device cookie gets one"
        );
    }
    let (status, _, _) = attempt(&http, &base, "Alice", "2468", None).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "fresh devices are locked"
    );
    // Alice on her till is not.
    let (status, _, _) = attempt(&http, &base, "Alice", "2468", Some(&till)).await;
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "the till still signs Alice in"
    );
    // And her till counts its own failures.
    for _ in 1..=5 {
        let (status, _, _) = attempt(&http, &base, "Alice", "1111", Some(&till)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = attempt(&http, &base, "Alice", "2468", Some(&till)).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "five wrong PINs on the till"
    );
}

#[tokio::test]
async fn a_locked_user_is_unlocked_from_the_command_line_while_the_server_runs() {
    let shop = shop();
    let (http, base) = (client(), shop.served.base.clone());
    for _ in 1..=5 {
        attempt(&http, &base, "Alice", "0000", None).await;
    }
    let (status, _, _) = attempt(&http, &base, "Alice", "2468", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let out = run(
        &crate::world::bins().edge,
        shop.dir.path(),
        &["user", "unlock", "--name", "alice"],
    );
    assert!(out.contains("Alice"), "{out}");
    let (status, _, _) = attempt(&http, &base, "Alice", "2468", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The operator is told about a name that no user has.
    let error = run_failing(
        &crate::world::bins().edge,
        shop.dir.path(),
        &["user", "unlock", "--name", "Mallory"],
    );
    assert!(error.contains("not found"), "{error}");
}

#[tokio::test]
async fn a_manager_unlocks_a_locked_user_with_one_button() {
    let shop = shop();
    let (http, base) = (client(), shop.served.base.clone());
    let bob = session_cookie(&e2e::sign_in(&http, &base, "Bob", "1357").await).expect("Bob");
    let manager_page = || async {
        http.get(format!("{base}/manager"))
            .header("cookie", &bob)
            .send()
            .await
            .expect("manager")
            .text()
            .await
            .expect("page")
    };
    assert!(manager_page().await.contains("Nobody is locked out."));
    for _ in 1..=6 {
        attempt(&http, &base, "Alice", "0000", None).await;
    }
    let page = manager_page().await;
    let action = page
        .split("action=\"")
        .map(|rest| rest.split('"').next().unwrap_or_default())
        .find(|action| action.starts_with("/manager/users/") && action.ends_with("/unlock"))
        .unwrap_or_else(|| panic!("an unlock button: {page}"))
        .to_owned();
    assert!(page.contains("<span>Alice</span>"), "{page}");
    let unlocked = http
        .post(format!("{base}{action}"))
        .header("cookie", &bob)
        .header("origin", &base)
        .send()
        .await
        .expect("unlock");
    assert_eq!(unlocked.status(), StatusCode::SEE_OTHER);
    assert!(manager_page().await.contains("Nobody is locked out."));
    let (status, _, _) = attempt(&http, &base, "Alice", "2468", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn five_wrong_pins_lock_the_user_out_even_with_the_right_one() {
    let shop = shop();
    let (http, base) = (client(), shop.served.base.clone());
    for attempt in 1..=5 {
        let response = sign_in(&http, &base, "0000").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
        assert!(session_cookie(&response).is_none());
    }
    let locked = sign_in(&http, &base, "2468").await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(session_cookie(&locked).is_none());
    assert!(locked.text().await.expect("body").contains("Try again in"));
}

#[tokio::test]
async fn a_session_is_httponly_strict_new_at_sign_in_and_dead_after_sign_out() {
    let shop = shop();
    let (http, base) = (client(), shop.served.base.clone());
    let first = sign_in(&http, &base, "2468").await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let header = first
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a cookie")
        .to_owned();
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Strict"),
        "{header}"
    );
    let cookie = session_cookie(&first).expect("session");
    let again = session_cookie(&sign_in(&http, &base, "2468").await).expect("session");
    assert_ne!(cookie, again, "a new session id at every sign-in");

    let staff = http
        .get(format!("{base}/staff"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("staff");
    assert_eq!(staff.status(), StatusCode::OK);
    // The session works for the API as well.
    let api = http
        .get(format!("{base}/api/v1/bookings"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), StatusCode::OK);

    let out = http
        .post(format!("{base}/signout"))
        .header("cookie", &cookie)
        .header("origin", &base)
        .send()
        .await
        .expect("sign out");
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = http
        .get(format!("{base}/staff"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("staff");
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "back to sign-in");
    assert_eq!(
        after
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        // The dead cookie's page is asked for again after sign-in.
        Some("/signin?expired=1&next=%2Fstaff")
    );
    let api = http
        .get(format!("{base}/api/v1/bookings"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_cross_site_form_post_is_refused() {
    let shop = shop();
    let (http, base) = (client(), shop.served.base.clone());
    let cookie = session_cookie(&sign_in(&http, &base, "2468").await).expect("session");
    let evil = http
        .post(format!("{base}/api/v1/resources"))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .header("content-type", "application/json")
        .body(r#"{"name": "x", "kind": "stock"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    let no_origin = http
        .post(format!("{base}/signout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("post");
    assert_eq!(
        no_origin.status(),
        StatusCode::FORBIDDEN,
        "no Origin, no Referer: refused"
    );
    let login_csrf = http
        .post(format!("{base}/signin"))
        .header("origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Alice&pin=2468")
        .send()
        .await
        .expect("post");
    assert_eq!(login_csrf.status(), StatusCode::FORBIDDEN);
    // An API client with no credentials at all is told to authenticate,
    // whatever its Origin says: it carries nothing a browser attached.
    for origin in [None, Some("http://evil.example")] {
        let mut bare = http
            .post(format!("{base}/api/v1/resources"))
            .header("content-type", "application/json")
            .body(r#"{"name": "x", "kind": "stock"}"#);
        if let Some(origin) = origin {
            bare = bare.header("origin", origin);
        }
        let bare = bare.send().await.expect("post");
        assert_eq!(bare.status(), StatusCode::UNAUTHORIZED, "{origin:?}");
        let body: serde_json::Value = bare.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }
    // Still signed in: the refused sign-out did nothing.
    let staff = http
        .get(format!("{base}/staff"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("staff");
    assert_eq!(staff.status(), StatusCode::OK);
    // Pages, refusals and API answers alike keep out of other sites' frames.
    let missing = http
        .get(format!("{base}/api/v1/no-such-thing"))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    for response in [&evil, &no_origin, &staff, &missing] {
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            header("x-frame-options"),
            Some("DENY"),
            "{}",
            response.url()
        );
        assert_eq!(header("x-content-type-options"), Some("nosniff"));
        assert_eq!(header("referrer-policy"), Some("same-origin"));
    }
}

#[tokio::test]
async fn a_store_can_serve_https_with_its_own_certificate() {
    let bins = bins();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
    std::fs::write(
        path("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A store's own little CA, and a certificate for this host signed by it.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Store CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    let data = dir.path().join("node");
    run(
        &bins.edge,
        &data,
        &[
            "init",
            "--location",
            "cafe-1",
            "--timezone",
            "Europe/Berlin",
        ],
    );
    let token = last_line(&run(
        &bins.edge,
        &data,
        &["token", "create", "--role", "kiosk"],
    ));
    let served = Served::start(
        &bins.edge,
        &data,
        "127.0.0.1:0",
        &[
            "--tls-cert",
            cert.to_str().expect("path"),
            "--tls-key",
            key.to_str().expect("path"),
        ],
        &[],
    );
    assert!(served.base.starts_with("https://"), "{}", served.base);
    e2e::install_crypto();
    let trusted = reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("ca")).expect("pem");
    let http = reqwest::Client::builder()
        .add_root_certificate(trusted)
        .build()
        .expect("client");
    let (status, body) = e2e::get(
        &http,
        &format!("{}/api/v1/sync/status", served.base),
        &token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page = http
        .get(format!("{}/signin", served.base))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_pending_hold_is_on_the_staff_page_however_many_bookings_came_after() {
    let shop = shop();
    let (http, base) = (client(), shop.served.base.clone());
    let token = e2e::last_line(&run(
        &bins().edge,
        shop.dir.path(),
        &["token", "create", "--role", "manager"],
    ));
    let api = |path: &str| format!("{base}/api/v1{path}");
    let (status, body) = e2e::post(
        &http,
        &api("/resources"),
        &token,
        &serde_json::json!({"name": "Cake", "kind": "stock", "id": "cafe-1:cake"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = e2e::post(
        &http,
        &api("/pools"),
        &token,
        &serde_json::json!({"resource_id": "cafe-1:cake", "capacity": 1000, "id": "cafe-1:cake"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut holds = Vec::new();
    for i in 0..3 {
        let (status, made) = e2e::post(
            &http,
            &api("/bookings"),
            &token,
            &serde_json::json!({"lines": [{"pool_id": "cafe-1:cake", "quantity": 1}],
                                "customer": {"name": format!("held {i}")}, "hold_seconds": 3600}),
        )
        .await;
        assert_eq!(status, 201, "{made}");
        assert_eq!(made["state"], "held", "{made}");
        holds.push(made["code"].as_str().expect("code").to_owned());
    }
    // More walk-ins after them than the recent list shows.
    for i in 0..101 {
        let (status, made) = e2e::post(
            &http,
            &api("/bookings"),
            &token,
            &serde_json::json!({"lines": [{"pool_id": "cafe-1:cake", "quantity": 1}],
                                "customer": {"name": format!("walk-in {i}")}}),
        )
        .await;
        assert_eq!(status, 201, "{made}");
    }
    let cookie = session_cookie(&sign_in(&http, &base, "2468").await).expect("session");
    let page = http
        .get(format!("{base}/staff"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("staff")
        .text()
        .await
        .expect("html");
    let (_, holds_on) = page.split_once(r#"id="group-holds""#).expect("the holds");
    let (pending, pickups) = holds_on
        .split_once(r#"id="group-pickups""#)
        .expect("the pickups");
    assert!(!pending.contains("No holds waiting."), "{pending}");
    // The walk-ins to hand over are counted in full, and linked to all.
    assert!(pickups.contains(r#"data-count="101""#), "{pickups}");
    assert!(pickups.contains("Show all 101"), "{pickups}");
    for code in &holds {
        assert!(
            pending.contains(code.as_str()),
            "hold {code} is listed as pending"
        );
    }
}

#[tokio::test]
async fn a_pin_read_from_standard_input_signs_the_user_in() {
    use std::io::Write;
    let shop = shop();
    let mut child = Command::new(&bins().edge)
        .arg("--data-dir")
        .arg(shop.dir.path())
        .args(["user", "add", "--name", "Carol", "--role", "staff"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"8642\n")
        .expect("write the PIN");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{out:?}");
    let (http, base) = (client(), shop.served.base.clone());
    let signed_in = e2e::sign_in(&http, &base, "Carol", "8642").await;
    assert!(
        session_cookie(&signed_in).is_some(),
        "the PIN from stdin signs in: {}",
        signed_in.status()
    );
    // Nothing on stdin: refused, with what to do.
    let said = Command::new(&bins().edge)
        .arg("--data-dir")
        .arg(shop.dir.path())
        .args(["user", "add", "--name", "Dave", "--role", "staff"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(!said.status.success());
    assert!(
        String::from_utf8_lossy(&said.stderr).contains("--pin"),
        "{said:?}"
    );
}

#[tokio::test]
async fn users_and_tokens_are_listed_changed_and_removed_from_the_command_line() {
    let shop = shop();
    let edge = bins().edge;
    let dir = shop.dir.path();
    let (http, base) = (client(), shop.served.base.clone());
    let listed = run(&edge, dir, &["user", "list"]);
    assert!(
        listed.contains("Alice") && listed.contains("staff"),
        "{listed}"
    );
    assert!(
        listed.contains("Bob") && listed.contains("manager"),
        "{listed}"
    );

    // A new PIN ends Alice's session and only the new PIN signs her in.
    let alice = session_cookie(&sign_in(&http, &base, "2468").await).expect("session");
    run(
        &edge,
        dir,
        &["user", "set-pin", "--name", "Alice", "--pin", "9753"],
    );
    let staff = |cookie: String| {
        let http = http.clone();
        let url = format!("{base}/staff");
        async move {
            http.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .expect("staff")
                .status()
        }
    };
    assert_ne!(staff(alice).await, StatusCode::OK, "the old session ended");
    assert!(session_cookie(&sign_in(&http, &base, "2468").await).is_none());
    let alice = session_cookie(&sign_in(&http, &base, "9753").await).expect("new PIN");
    assert_eq!(staff(alice).await, StatusCode::OK);

    // Removing Bob ends his session and his name signs in no more.
    let bob = session_cookie(&e2e::sign_in(&http, &base, "Bob", "1357").await).expect("session");
    run(&edge, dir, &["user", "remove", "--name", "Bob"]);
    assert_ne!(staff(bob).await, StatusCode::OK, "Bob's session ended");
    assert!(session_cookie(&e2e::sign_in(&http, &base, "Bob", "1357").await).is_none());
    assert!(!run(&edge, dir, &["user", "list"]).contains("Bob"));
    let said = run_failing(&edge, dir, &["user", "remove", "--name", "Bob"]);
    assert!(said.contains("Bob"), "{said}");

    // Tokens: listed by id, never by secret; a revoked one is refused.
    let kept = last_line(&run(&edge, dir, &["token", "create", "--role", "staff"]));
    let doomed = last_line(&run(&edge, dir, &["token", "create", "--role", "manager"]));
    let listed = run(&edge, dir, &["token", "list"]);
    assert!(
        !listed.contains(&kept) && !listed.contains(&doomed),
        "{listed}"
    );
    let doomed_id = &token_hash(&doomed)[..12];
    assert!(listed.contains(doomed_id), "{listed}");
    run(&edge, dir, &["token", "revoke", "--id", doomed_id]);
    let (status, _) = e2e::get(&http, &format!("{base}/api/v1/pools"), &doomed).await;
    assert_eq!(status, 401, "a revoked token is refused");
    let (status, _) = e2e::get(&http, &format!("{base}/api/v1/pools"), &kept).await;
    assert_eq!(status, 200, "the other token still works");
    assert!(!run(&edge, dir, &["token", "list"]).contains(doomed_id));
    let said = run_failing(&edge, dir, &["token", "revoke", "--id", "xyz"]);
    assert!(said.contains("token list"), "{said}");
}

/// The hash a store keeps of a token, whose start is the token's id.
fn token_hash(token: &str) -> String {
    edge_node::auth::hash_token(token)
}
