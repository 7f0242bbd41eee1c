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
    dir: tempfile::TempDir,
    served: Served,
    manager: String,
    kiosk: String,
}

async fn shop() -> Shop {
    shop_with(&[]).await
}

/// [`shop`], served with the extra `serve` flags `args`.
async fn shop_with(args: &[&str]) -> Shop {
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
    let served = Served::start(&bins.edge, dir.path(), "127.0.0.1:0", args, &[]);
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
        dir,
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
            "//li[contains(., 'Grace Hopper')][.//button[text()='Confirm']]",
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

/// Signs `client` in with a name and PIN at `base` and waits for the page
/// it lands on.
async fn sign_in_as(client: &Client, base: &str, name: &str, pin: &str) {
    client.goto(&format!("{base}/signin")).await.expect("goto");
    fill(client, "#name", name).await;
    fill(client, "#pin", pin).await;
    click(client, "form[action='/signin'] button").await;
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("main"))
        .await
        .expect("signed in");
}

/// Starts the kiosk in `client` with the shop's kiosk token.
async fn start_kiosk(client: &Client, base: &str, token: &str) {
    client.goto(&format!("{base}/signin")).await.expect("goto");
    fill(client, "#token", token).await;
    click(client, "form[action='/signin/kiosk'] button").await;
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#live"))
        .await
        .expect("the kiosk page");
}

/// Held bookings of the shop's beans, one per customer `Guest i` with
/// phone `+49 170 000i`; their codes in order.
async fn hold_many(shop: &Shop, count: usize) -> Vec<String> {
    let http = e2e::http();
    let mut codes = Vec::new();
    for i in 0..count {
        let (status, body) = post(
            &http,
            &format!("{}/api/v1/bookings", shop.served.base),
            &shop.kiosk,
            &json!({"lines": [{"pool_id": "cafe-1:beans", "quantity": 1}],
                    "customer": {"name": format!("Guest {i}"), "phone": format!("+49 170 {i:04}")},
                    "hold_seconds": 7200}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        codes.push(body["code"].as_str().expect("code").to_owned());
    }
    codes
}

/// The texts of the bookings listed on the page, by their codes.
async fn listed_codes(client: &Client, css: &str) -> Vec<String> {
    let codes = client
        .execute(
            &format!(
                "return [...document.querySelectorAll({})].map(e => e.dataset.code)",
                json!(css)
            ),
            vec![],
        )
        .await
        .expect("script");
    serde_json::from_value(codes).expect("codes")
}

async fn search(client: &Client, text: &str) -> Vec<String> {
    fill(client, "#q", text).await;
    click(client, "form.search button").await;
    // The page of this search, not the one before it.
    eventually(Duration::from_secs(10), "the search's page", || async {
        let url = client.current_url().await.ok()?;
        let q = url.query_pairs().find(|(k, _)| k == "q")?.1.into_owned();
        (q == text).then_some(())
    })
    .await;
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#results"))
        .await
        .expect("results");
    listed_codes(client, "#results li.booking").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_one_of_150_holds_is_on_the_staff_page_and_found_by_code_name_or_phone() {
    let shop = shop().await;
    // The beans hold 12: more room for this test.
    let http = e2e::http();
    let (status, body) = post(
        &http,
        &format!("{}/api/v1/pools/cafe-1:beans/adjust", shop.served.base),
        &shop.manager,
        &json!({"delta": 200}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let codes = hold_many(&shop, 150).await;
    let driver = chromedriver();
    let profiles = tempfile::tempdir().expect("profiles");
    let staff = browser(&driver, &profiles.path().join("staff")).await;
    sign_in_as(&staff, &shop.served.base, "Alice", "2468").await;
    staff
        .goto(&format!("{}/staff", shop.served.base))
        .await
        .expect("staff");
    let mut listed = listed_codes(&staff, "#group-holds li.booking").await;
    let mut expected = codes.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "every hold is listed, none twice");

    // By code (as a customer reads it out, in lower case), name and phone.
    let found = search(&staff, &codes[77].to_lowercase()).await;
    assert!(found.contains(&codes[77]), "{found:?}");
    let row = staff
        .find(Locator::Css(&format!(
            "#results li[data-code='{}']",
            codes[77]
        )))
        .await
        .expect("the row");
    assert!(row.text().await.expect("text").contains("Guest 77"));
    let found = search(&staff, "Guest 77").await;
    assert_eq!(found, vec![codes[77].clone()]);
    let found = search(&staff, "170 0123").await;
    assert_eq!(found, vec![codes[123].clone()]);
    let found = search(&staff, "nobody by this name").await;
    assert!(found.is_empty());
    let _ = staff.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_web_order_shows_on_the_staff_page_with_its_signal_phone_and_pickup_time() {
    use crate::world::{Store, World};
    let mut world = World::new();
    world.start_hub();
    let mut store = Store::enroll(&world, "store-1");
    store.start(&world);
    store.stock(&world, "store-1:beans", 10).await;
    store.synced(&world, Duration::from_secs(30)).await;
    run(
        &world.bins.edge,
        store.path(),
        &[
            "user", "add", "--name", "Alice", "--role", "staff", "--pin", "2468",
        ],
    );
    let driver = chromedriver();
    let profiles = tempfile::tempdir().expect("profiles");
    let staff = browser(&driver, &profiles.path().join("staff")).await;
    sign_in_as(&staff, &store.base(), "Alice", "2468").await;
    staff
        .find(Locator::Css("#group-web"))
        .await
        .expect("the web orders group");

    let (status, booking) = world
        .order(
            &json!({"lines": [{"pool_id": "store-1:beans", "quantity": 2}],
                    "customer": {"name": "Web Customer", "phone": "+49 30 987654", "email": "web@example.com"},
                    "hold_seconds": 3600, "request_ttl_seconds": 900}),
            5000,
        )
        .await;
    assert_eq!(status, 201, "{booking}");
    assert_eq!(booking["state"], "held", "{booking}");
    let id = booking["id"].as_str().expect("id");
    let row = staff
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(&format!(
            "#group-web li[data-web-order='{id}'].fresh"
        )))
        .await
        .expect("the web order appears live, marked new");
    let text = row.text().await.expect("text");
    let expires: jiff::Timestamp = booking["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("timestamp");
    let pickup = expires
        .to_zoned(jiff::tz::TimeZone::get("Europe/Berlin").expect("tz"))
        .strftime("%H:%M")
        .to_string();
    for needle in [
        "Web order".to_owned(),
        "Web Customer".to_owned(),
        "+49 30 987654".to_owned(),
        format!("pick up by {pickup}"),
    ] {
        assert!(text.contains(&needle), "{needle} in {text}");
    }
    let phone = row
        .find(Locator::Css(".phone a"))
        .await
        .expect("phone link")
        .attr("href")
        .await
        .expect("href");
    assert_eq!(phone.as_deref(), Some("tel:+4930987654"));
    let notice = staff
        .find(Locator::Css("#notice"))
        .await
        .expect("notice")
        .text()
        .await
        .expect("text");
    assert!(notice.contains("A new web order arrived"), "{notice}");
    screenshot(&staff, "staff-web-order").await;

    // The sound can be switched off, and stays off.
    click(&staff, "#sound-toggle").await;
    staff.refresh().await.expect("reload");
    let pressed = staff
        .find(Locator::Css("#sound-toggle"))
        .await
        .expect("toggle")
        .attr("aria-pressed")
        .await
        .expect("attr");
    assert_eq!(pressed.as_deref(), Some("false"));
    let _ = staff.close().await;
}

/// Whether the page scrolls sideways, and the buttons and links meant to
/// be tapped that are less than 44 px high.
async fn layout_faults(client: &Client) -> Value {
    client
        .execute(
            r#"const small = [...document.querySelectorAll('button, .button, summary, nav a, .days a, a.lang, .phone a')]
                 .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && r.height < 44; })
                 .map(e => e.outerHTML.slice(0, 100));
               // WCAG 1.4.11: an input's border against what it sits on, 3:1.
               const lum = c => { const [r, g, b] = c.match(/[\d.]+/g).slice(0, 3).map(v => { v = v / 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
               const behind = e => { for (let p = e.parentElement; p; p = p.parentElement) { const c = getComputedStyle(p).backgroundColor; if (!c.endsWith(', 0)') && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };
               const faint = [...document.querySelectorAll('input:not([type=hidden]):not([type=checkbox]), select')]
                 .filter(e => e.getBoundingClientRect().height > 0)
                 .map(e => { const a = lum(getComputedStyle(e).borderTopColor), b = lum(behind(e)); return [e.id, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]; })
                 .filter(([, ratio]) => ratio < 3);
               return {wide: document.documentElement.scrollWidth > window.innerWidth,
                       scroll: document.documentElement.scrollWidth, inner: window.innerWidth, small, faint};"#,
            vec![],
        )
        .await
        .expect("script")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_fits_a_phone_a_tablet_and_a_desktop_without_sideways_scrolling() {
    let shop = shop().await;
    let base = shop.served.base.clone();
    let codes = hold_many(&shop, 3).await;
    let http = e2e::http();
    let (_, list) = get(
        &http,
        &format!("{base}/api/v1/bookings?q={}", codes[0]),
        &shop.manager,
    )
    .await;
    let booking_id = list["bookings"][0]["id"].as_str().expect("id").to_owned();
    let driver = chromedriver();
    let profiles = tempfile::tempdir().expect("profiles");
    let visitor = browser(&driver, &profiles.path().join("visitor")).await;
    let manager = browser(&driver, &profiles.path().join("manager")).await;
    sign_in_as(&manager, &base, "Bob", "1357").await;
    let kiosk = browser(&driver, &profiles.path().join("kiosk")).await;
    start_kiosk(&kiosk, &base, &shop.kiosk).await;
    let pages: Vec<(&Client, &str, String)> = vec![
        (&visitor, "signin", format!("{base}/signin")),
        (&kiosk, "kiosk", format!("{base}/kiosk")),
        (
            &kiosk,
            "kiosk-confirmation",
            format!("{base}/kiosk/booked/{booking_id}"),
        ),
        (&manager, "staff", format!("{base}/staff")),
        (&manager, "staff-search", format!("{base}/staff?q=Guest")),
        (
            &manager,
            "booking",
            format!("{base}/staff/bookings/{booking_id}"),
        ),
        (&manager, "rosters", format!("{base}/staff/slots")),
        (
            &manager,
            "roster",
            format!("{base}/staff/slots/cafe-1:class-10"),
        ),
        (&manager, "manager", format!("{base}/manager")),
        (&visitor, "api-docs", format!("{base}/docs")),
    ];
    let mut faults = Vec::new();
    for (width, height) in [(390, 844), (820, 1180), (1280, 900)] {
        for (client, name, url) in &pages {
            client.set_window_size(width, height).await.expect("size");
            client.goto(url).await.expect("goto");
            client
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("main"))
                .await
                .expect("page");
            // Open the kiosk's first form too: it is what a customer taps.
            if *name == "kiosk"
                && let Ok(summary) = client.find(Locator::Css("details summary")).await
            {
                summary.click().await.expect("open");
            }
            let found = layout_faults(client).await;
            if found["wide"] == json!(true)
                || found["small"] != json!([])
                || found["faint"] != json!([])
            {
                faults.push(format!("{name} at {width} px: {found}"));
            }
            screenshot(client, &format!("{name}-{width}")).await;
        }
    }
    assert!(faults.is_empty(), "{faults:#?}");
    for client in [visitor, manager, kiosk] {
        let _ = client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tap_after_the_session_timed_out_leads_to_sign_in_with_a_message_and_back() {
    let shop = shop().await;
    let base = shop.served.base.clone();
    let codes = hold_many(&shop, 2).await;
    let driver = chromedriver();
    let profiles = tempfile::tempdir().expect("profiles");
    let staff = browser(&driver, &profiles.path().join("staff")).await;
    sign_in_as(&staff, &base, "Alice", "2468").await;
    // A booking cancelled elsewhere since the page was drawn: the tap
    // says so beside the button instead of doing nothing.
    let http = e2e::http();
    let (_, list) = get(
        &http,
        &format!("{base}/api/v1/bookings?q={}", codes[1]),
        &shop.manager,
    )
    .await;
    let other = list["bookings"][0]["id"].as_str().expect("id").to_owned();
    staff
        .goto(&format!("{base}/staff/bookings/{other}"))
        .await
        .expect("detail");
    let (status, body) = post(
        &http,
        &format!("{base}/api/v1/bookings/{other}/cancel"),
        &shop.manager,
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    click_xpath(&staff, "//button[text()='Confirm']").await;
    let said = staff
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(".form-error"))
        .await
        .expect("the refusal, beside the button")
        .text()
        .await
        .expect("text");
    assert!(said.contains("This booking is Cancelled now"), "{said}");
    staff.goto(&format!("{base}/staff")).await.expect("staff");
    let confirm = staff
        .find(Locator::XPath(&format!(
            "//li[@data-code='{}']//button[text()='Confirm']",
            codes[0]
        )))
        .await
        .expect("confirm button");
    // The session runs out while the page stays open, as after a long
    // break: its row says it was last used long ago.
    let conn = rusqlite::Connection::open(shop.dir.path().join("edge.db")).expect("db");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    let changed = conn
        .execute("UPDATE sessions SET last_seen_at_ms = 0", [])
        .expect("age the session");
    assert_eq!(changed, 1);
    // The page may find out by itself first (its live stream ends with the
    // session, and it reloads): either way it must land on sign-in.
    let _ = confirm.click().await;
    staff
        .wait()
        .at_most(Duration::from_secs(10))
        .for_url(
            &format!("{base}/signin?expired=1&next=%2Fstaff")
                .parse()
                .expect("url"),
        )
        .await
        .expect("sign-in after the tap");
    let alert = staff
        .find(Locator::Css(".alert.bad"))
        .await
        .expect("a message")
        .text()
        .await
        .expect("text");
    assert!(alert.contains("Your session has ended"), "{alert}");
    screenshot(&staff, "signin-expired").await;
    fill(&staff, "#name", "Alice").await;
    fill(&staff, "#pin", "2468").await;
    click(&staff, "form[action='/signin'] button").await;
    staff
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#group-holds"))
        .await
        .expect("back on the staff page");
    assert_eq!(staff.current_url().await.expect("url").path(), "/staff");
    // Nothing was confirmed by the tap that found no session.
    let (_, list) = get(
        &http,
        &format!("{base}/api/v1/bookings?q={}", codes[0]),
        &shop.manager,
    )
    .await;
    assert_eq!(list["bookings"][0]["state"], "held");

    // Cancel asks once before it cancels; "Keep it" keeps it.
    let cancel = format!("//li[@data-code='{}']//button[text()='Cancel']", codes[0]);
    click_xpath(&staff, &cancel).await;
    click_xpath(&staff, "//div[@class='ask']//button[text()='Keep it']").await;
    let (_, list) = get(
        &http,
        &format!("{base}/api/v1/bookings?q={}", codes[0]),
        &shop.manager,
    )
    .await;
    assert_eq!(list["bookings"][0]["state"], "held");
    click_xpath(&staff, &cancel).await;
    click_xpath(
        &staff,
        "//div[@class='ask']//button[text()='Yes, cancel it']",
    )
    .await;
    eventually(Duration::from_secs(10), "the cancellation", || async {
        let (_, list) = get(
            &http,
            &format!("{base}/api/v1/bookings?q={}", codes[0]),
            &shop.manager,
        )
        .await;
        (list["bookings"][0]["state"] == "cancelled").then_some(())
    })
    .await;
    let _ = staff.close().await;
}

async fn click_xpath(client: &Client, xpath: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|e| panic!("{xpath}: {e}"))
        .click()
        .await
        .expect("click");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_kiosk_has_no_sign_out_lists_days_in_order_and_clears_itself_when_left_idle() {
    let shop = shop_with(&["--kiosk-idle-seconds", "5"]).await;
    let base = shop.served.base.clone();
    let driver = chromedriver();
    let profiles = tempfile::tempdir().expect("profiles");
    let kiosk = browser(&driver, &profiles.path().join("kiosk")).await;
    start_kiosk(&kiosk, &base, &shop.kiosk).await;
    assert!(
        kiosk
            .find(Locator::Css("form[action='/signout']"))
            .await
            .is_err(),
        "no sign-out on a kiosk"
    );
    assert!(
        kiosk.find(Locator::Css("#banner")).await.is_err(),
        "no sync state for customers"
    );
    // A customer cannot end kiosk mode behind the page's back either.
    let status = kiosk
        .execute(
            "return fetch('/signout', {method: 'POST'}).then(r => r.status)",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(status, json!(403));
    let days: Vec<String> = serde_json::from_value(
        kiosk
            .execute(
                "return [...document.querySelectorAll('.days a')].map(a => a.href.split('day=')[1])",
                vec![],
            )
            .await
            .expect("script"),
    )
    .expect("days");
    let mut sorted = days.clone();
    sorted.sort();
    assert!(!days.is_empty());
    assert_eq!(days, sorted, "days in order");

    // A customer starts typing and walks away.
    click(&kiosk, "details summary").await;
    fill(&kiosk, "input[name='name']", "Half Typed").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let left = kiosk
        .execute(
            "return {open: document.querySelectorAll('details[open]').length,
                     typed: [...document.querySelectorAll('input[name=name]')].map(i => i.value).join('')}",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(
        left,
        json!({"open": 0, "typed": ""}),
        "the next customer finds a clean kiosk"
    );

    // Staff leave kiosk mode with their PIN.
    click(&kiosk, ".leave a").await;
    fill(&kiosk, "#name", "Alice").await;
    fill(&kiosk, "#pin", "2468").await;
    click(&kiosk, "form[action='/signin'] button").await;
    kiosk
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#group-holds"))
        .await
        .expect("the staff page on the former kiosk");
    let _ = kiosk.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn german_is_served_for_accept_language_de_and_the_switch_changes_it() {
    let shop = shop().await;
    let base = shop.served.base.clone();
    let http = e2e::http();
    let german = http
        .get(format!("{base}/signin"))
        .header("accept-language", "de-DE,de;q=0.9,en;q=0.5")
        .send()
        .await
        .expect("signin")
        .text()
        .await
        .expect("html");
    assert!(german.contains(r#"<html lang="de">"#), "{german}");
    assert!(german.contains("Anmeldung für Personal"), "{german}");
    let english = http
        .get(format!("{base}/signin"))
        .header("accept-language", "fr, en;q=0.5")
        .send()
        .await
        .expect("signin")
        .text()
        .await
        .expect("html");
    assert!(english.contains("Staff sign-in"), "{english}");

    // In the browser: the switch, remembered across pages.
    let driver = chromedriver();
    let profiles = tempfile::tempdir().expect("profiles");
    let staff = browser(&driver, &profiles.path().join("staff")).await;
    sign_in_as(&staff, &base, "Alice", "2468").await;
    staff.goto(&format!("{base}/staff")).await.expect("staff");
    click(&staff, "a.lang[lang='de']").await;
    staff
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//h1[contains(., 'Warteschlange')]"))
        .await
        .expect("the queue in German");
    let holds = staff
        .find(Locator::Css("#group-holds h2"))
        .await
        .expect("group")
        .text()
        .await
        .expect("text");
    assert!(holds.contains("Reservierungen laufen ab"), "{holds}");
    screenshot(&staff, "staff-de").await;
    let _ = staff.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_dashboard_shows_a_store_cut_off_going_unreachable_live_with_one_alert() {
    use crate::running::{add_operator, alert_receiver, alert_types};
    let mut world = crate::world::World::quick();
    world
        .hub_env
        .push(("SYNC_HUB__ALERTS__UNREACHABLE_FOR_MS".into(), "2500".into()));
    let (hook, seen) = alert_receiver().await;
    world.hub_command(&["webhook", "add", "--url", &hook]);
    add_operator(&world, "Ops", "a long enough password");
    world.start_hub();
    let base = world.hub_url();
    let proxy = e2e::Proxy::start(base.clone()).await;
    let mut store = crate::world::Store::enroll_via(&world, "store-1", &proxy.url());
    store.start(&world);
    store.synced(&world, Duration::from_secs(30)).await;

    let driver = chromedriver();
    let profiles = tempfile::tempdir().expect("profiles");
    let client = browser(&driver, &profiles.path().join("operator")).await;
    client.goto(&format!("{base}/")).await.expect("goto");
    // Not signed in: the sign-in page; a wrong password is said beside it.
    fill(&client, "#name", "Ops").await;
    fill(&client, "#password", "wrong password!").await;
    click(&client, "button[type=submit]").await;
    let error = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#signin-error"))
        .await;
    let error = match error {
        Ok(error) => error,
        Err(e) => panic!(
            "no refusal shown ({e}): {}",
            client.source().await.unwrap_or_default()
        ),
    };
    assert!(error.text().await.expect("text").contains("do not match"));
    fill(&client, "#password", "a long enough password").await;
    click(&client, "button[type=submit]").await;
    let row = r#"tr[data-location="store-1"]"#;
    let state_of = |client: Client| async move {
        client
            .find(Locator::Css(r#"tr[data-location="store-1"]"#))
            .await
            .ok()?
            .attr("data-state")
            .await
            .ok()?
    };
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(row))
        .await
        .expect("the store is listed");
    eventually(Duration::from_secs(10), "the store shows connected", || {
        let client = client.clone();
        async move { (state_of(client).await.as_deref() == Some("connected")).then_some(()) }
    })
    .await;
    let mut faults = Vec::new();
    for (width, height) in [(390, 844), (820, 1180), (1280, 900)] {
        client.set_window_size(width, height).await.expect("size");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let found = layout_faults(&client).await;
        if found["wide"] == json!(true) || found["small"] != json!([]) {
            faults.push(format!("dashboard at {width} px: {found}"));
        }
        screenshot(&client, &format!("hub-dashboard-{width}")).await;
    }
    assert!(faults.is_empty(), "{faults:#?}");

    // The store is cut off: the open page turns it unreachable by itself
    // (no reload) and lists the alert; the receiver gets it once.
    proxy.set(e2e::Link::Cut);
    eventually(
        Duration::from_secs(20),
        "the store shows unreachable",
        || {
            let client = client.clone();
            async move { (state_of(client).await.as_deref() == Some("unreachable")).then_some(()) }
        },
    )
    .await;
    let alert = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(
            r#"li[data-alert="store_unreachable:store-1"]"#,
        ))
        .await
        .expect("the alert is on the dashboard");
    assert!(
        alert
            .text()
            .await
            .expect("text")
            .contains("Store unreachable")
    );
    screenshot(&client, "hub-dashboard-alert").await;
    eventually(Duration::from_secs(10), "the alert webhook", || {
        let seen = seen.clone();
        async move { (!alert_types(&seen, "store_unreachable:store-1").is_empty()).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        alert_types(&seen, "store_unreachable:store-1"),
        ["alert.raised"]
    );

    // Healed: connected again, the alert gone from the page and cleared.
    proxy.set(e2e::Link::Open);
    eventually(
        Duration::from_secs(20),
        "the store shows connected again",
        || {
            let client = client.clone();
            async move { (state_of(client).await.as_deref() == Some("connected")).then_some(()) }
        },
    )
    .await;
    eventually(Duration::from_secs(20), "the alert is cleared", || {
        let (client, seen) = (client.clone(), seen.clone());
        async move {
            let gone = client
                .find(Locator::Css(
                    r#"li[data-alert="store_unreachable:store-1"]"#,
                ))
                .await
                .is_err();
            let cleared = alert_types(&seen, "store_unreachable:store-1")
                == ["alert.raised", "alert.cleared"];
            (gone && cleared).then_some(())
        }
    })
    .await;
    let _ = client.close().await;
}
