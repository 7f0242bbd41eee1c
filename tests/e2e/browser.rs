//! The LAN UI in a real browser: Debian's chromium, driven by
//! chromedriver through fantoccini. Screenshots of each mode are saved to
//! `target/e2e-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::{Served, eventually, free_port, get, last_line, post, run};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::world::bins;

struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (.ci/run installs chromium-driver)");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver(child, port)
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    e2e::install_crypto();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--window-size=1100,1000",
                     format!("--user-data-dir={}", profile.display())],
        }),
    );
    ClientBuilder::rustls()
        .expect("tls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a browser session")
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../e2e-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(artifacts().join(format!("{name}.png")), png).expect("save screenshot");
}

async fn fill(client: &Client, css: &str, text: &str) {
    let field = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("click");
}

struct Shop {
    _dir: tempfile::TempDir,
    served: Served,
    manager: String,
    kiosk: String,
}

async fn shop() -> Shop {
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
    let manager = last_line(&run(
        &bins.edge,
        dir.path(),
        &["token", "create", "--role", "manager"],
    ));
    let kiosk = last_line(&run(
        &bins.edge,
        dir.path(),
        &["token", "create", "--role", "kiosk"],
    ));
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
    let http = e2e::http();
    let api = |path: &str| format!("{}/api/v1{path}", served.base);
    for (path, body) in [
        (
            "/resources",
            json!({"name": "Barista class", "kind": "slot", "id": "cafe-1:class"}),
        ),
        (
            "/resources",
            json!({"name": "Espresso beans, 1 kg", "kind": "stock", "id": "cafe-1:beans"}),
        ),
        (
            "/pools",
            json!({"resource_id": "cafe-1:beans", "capacity": 12, "id": "cafe-1:beans"}),
        ),
    ] {
        let (status, body) = post(&http, &api(path), &manager, &body).await;
        assert_eq!(status, 201, "{body}");
    }
    let tomorrow = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::get("Europe/Berlin").expect("tz"))
        .date()
        .tomorrow()
        .expect("tomorrow");
    for hour in [10, 14] {
        let start = tomorrow
            .at(hour, 0, 0, 0)
            .in_tz("Europe/Berlin")
            .expect("local time")
            .timestamp();
        let end = start + jiff::SignedDuration::from_mins(90);
        let (status, body) = post(
            &http,
            &api("/pools"),
            &manager,
            &json!({"resource_id": "cafe-1:class", "capacity": 8, "id": format!("cafe-1:class-{hour}"),
                    "starts_at": start.to_string(), "ends_at": end.to_string()}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    Shop {
        _dir: dir,
        served,
        manager,
        kiosk,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kiosk_booking_appears_live_on_the_staff_page_and_is_confirmed_with_one_tap() {
    let shop = shop().await;
    let base = shop.served.base.clone();
    let driver = chromedriver();
    let profiles = tempfile::tempdir().expect("profiles");

    // The staff tablet, signed in with a PIN, is already showing the list.
    let staff = browser(&driver, &profiles.path().join("staff")).await;
    staff.goto(&format!("{base}/")).await.expect("goto");
    fill(&staff, "#name", "Alice").await;
    fill(&staff, "#pin", "2468").await;
    click(&staff, "form[action='/signin'] button").await;
    staff
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#live"))
        .await
        .expect("the staff page");

    // A customer at the kiosk reserves tomorrow's 10:00 class.
    let kiosk = browser(&driver, &profiles.path().join("kiosk")).await;
    kiosk.goto(&format!("{base}/signin")).await.expect("goto");
    fill(&kiosk, "#token", &shop.kiosk).await;
    click(&kiosk, "form[action='/signin/kiosk'] button").await;
    kiosk
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("details"))
        .await
        .expect("the kiosk page");
    screenshot(&kiosk, "kiosk").await;
    let summary = kiosk
        .find(Locator::XPath(
            "//h3[contains(., '10:00')]/following::details[1]/summary",
        ))
        .await
        .expect("the 10:00 class");
    summary.click().await.expect("open");
    fill(&kiosk, "[id='n-cafe-1:class-10']", "Grace Hopper").await;
    fill(&kiosk, "[id='p-cafe-1:class-10']", "+49 30 5550").await;
    click(
        &kiosk,
        "form[action='/kiosk/book'] input[value='cafe-1:class-10'] ~ div button",
    )
    .await;
    let code = kiosk
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(".code"))
        .await
        .expect("a confirmation with a code")
        .text()
        .await
        .expect("code");
    assert_eq!(code.trim().len(), 6, "{code}");
    // The style sheet applies under the page's Content-Security-Policy (the
    // card is centred by a class of it, not by an inline style).
    let align = kiosk
        .execute(
            "return getComputedStyle(document.querySelector('.card.centered')).textAlign",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(align, json!("center"));
    screenshot(&kiosk, "kiosk-confirmation").await;

    // The staff page shows it without a reload...
    let row = staff
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath(
            "//tr[contains(., 'Grace Hopper')][.//button[text()='Confirm']]",
        ))
        .await
        .expect("the booking appears live");
    screenshot(&staff, "staff").await;
    // ...and one tap confirms it.
    row.find(Locator::XPath(".//button[text()='Confirm']"))
        .await
        .expect("confirm button")
        .click()
        .await
        .expect("tap");
    let http = e2e::http();
    let booking = eventually(
        Duration::from_secs(10),
        "the booking to be confirmed",
        || async {
            let (_, list) = get(&http, &format!("{base}/api/v1/bookings"), &shop.manager).await;
            list["bookings"]
                .as_array()
                .and_then(|all| {
                    all.iter()
                        .find(|b| b["customer"]["name"] == "Grace Hopper")
                        .cloned()
                })
                .filter(|b| b["state"] == "confirmed")
        },
    )
    .await;
    assert_eq!(booking["code"], code.trim());
    assert_eq!(booking["channel"], "kiosk");

    // The manager's page, and recurring slots made there.
    let manager = browser(&driver, &profiles.path().join("manager")).await;
    manager.goto(&format!("{base}/signin")).await.expect("goto");
    fill(&manager, "#name", "Bob").await;
    fill(&manager, "#pin", "1357").await;
    click(&manager, "form[action='/signin'] button").await;
    manager
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form[action='/manager/slots']"))
        .await
        .expect("the manager page");
    screenshot(&manager, "manager").await;
    fill(&manager, "#lt", "07:00, 18:30").await;
    click(&manager, "form[action='/manager/slots'] button").await;
    let pools: Value = eventually(Duration::from_secs(10), "recurring slots", || async {
        let (_, pools) = get(
            &http,
            &format!("{base}/api/v1/pools?resource_id=cafe-1:class"),
            &shop.manager,
        )
        .await;
        (pools["pools"].as_array().map_or(0, Vec::len) > 10).then_some(pools)
    })
    .await;
    assert!(pools["pools"].as_array().map_or(0, Vec::len) >= 20);

    for client in [staff, kiosk, manager] {
        let _ = client.close().await;
    }
}
