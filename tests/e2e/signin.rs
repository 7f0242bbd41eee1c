//! Sign-in and sessions of the LAN UI over plain HTTP: lockout, the
//! same-origin rule, sign-out, and HTTPS for stores that want it.

use std::process::Command;

use e2e::{Served, last_line, run, session_cookie};
use reqwest::StatusCode;

use crate::world::bins;

struct Shop {
    _dir: tempfile::TempDir,
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
    let served = Served::start(&bins.edge, dir.path(), "127.0.0.1:0", &[], &[]);
    Shop { _dir: dir, served }
}

fn client() -> reqwest::Client {
    e2e::form_client()
}

/// Signs Alice in with `pin`.
async fn sign_in(http: &reqwest::Client, base: &str, pin: &str) -> reqwest::Response {
    e2e::sign_in(http, base, "Alice", pin).await
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
        Some("/signin")
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
