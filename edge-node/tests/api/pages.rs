//! The headers of pages and API answers: what a page may load, and that
//! nothing showing customer data is kept in a cache.

use edge_node::auth::Role;
use reqwest::StatusCode;

use crate::helpers::{TestNode, add_user, booking, form_client, set_cookie, sign_in};

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// Whether `html` has inline script or style: a `<script>` without `src`, a
/// `style` attribute or element, or an `on...=` event handler attribute.
fn inline_code(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    if let Some(at) = lower.find("<script").filter(|&at| {
        !lower[at..]
            .split_once('>')
            .is_some_and(|(tag, _)| tag.contains(" src="))
    }) {
        return Some(lower[at..].chars().take(60).collect());
    }
    for needle in ["style=", "<style"] {
        if let Some(at) = lower.find(needle) {
            return Some(lower[at..].chars().take(60).collect());
        }
    }
    lower.match_indices(" on").find_map(|(at, _)| {
        let rest = &lower[at + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        (name_len > 0 && rest[name_len..].starts_with('=')).then(|| rest.chars().take(60).collect())
    })
}

#[tokio::test]
async fn every_page_forbids_inline_code_and_nothing_with_customer_data_is_cached() {
    let node = TestNode::start().await;
    add_user(node.dir.path(), "Bob", Role::Manager, "1357");
    let pool = node.stock_pool("beans", 10).await;
    let (status, made) = node.post(&node.kiosk, "/bookings", booking(&pool, 1)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().expect("id").to_owned();
    let http = form_client();
    let signed_in = sign_in(&node, &http, "Bob", "1357", None).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookie(&signed_in, "edge_session").expect("a session");

    let page = |path: String, cookie: Option<String>| {
        let mut request = http.get(format!("{}{path}", node.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        async move { request.send().await.expect("page") }
    };
    let pages = [
        ("/signin".to_owned(), None, StatusCode::OK),
        ("/staff".to_owned(), Some(cookie.clone()), StatusCode::OK),
        (
            "/staff/list".to_owned(),
            Some(cookie.clone()),
            StatusCode::OK,
        ),
        ("/manager".to_owned(), Some(cookie.clone()), StatusCode::OK),
        ("/kiosk".to_owned(), Some(cookie.clone()), StatusCode::OK),
        (
            format!("/kiosk/booked/{id}"),
            Some(cookie.clone()),
            StatusCode::OK,
        ),
        (
            "/kiosk/booked/not-an-id".to_owned(),
            Some(cookie.clone()),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (path, cookie, status) in pages {
        let response = page(path.clone(), cookie).await;
        assert_eq!(response.status(), status, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            header("content-security-policy").as_deref(),
            Some(POLICY),
            "{path}"
        );
        assert_eq!(
            header("cache-control").as_deref(),
            Some("no-store"),
            "{path}"
        );
        let html = response.text().await.expect("html");
        if path == "/staff" {
            assert!(
                html.contains("Ada Lovelace"),
                "the page shows customer data"
            );
        }
        assert_eq!(inline_code(&html), None, "{path} has inline code");
    }

    // API answers carry customer names and phone numbers too.
    for (token, path) in [
        (&node.staff, "/bookings".to_owned()),
        (&node.kiosk, format!("/bookings/{id}")),
        (
            &node.staff,
            "/bookings/01a20573-4fb7-77e9-94b3-c08b90fba463".to_owned(),
        ),
    ] {
        let response = node
            .http
            .get(node.url(&path))
            .bearer_auth(token)
            .send()
            .await
            .expect("api");
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{path}"
        );
    }
    // The embedded assets hold no data and may be cached.
    for asset in ["/assets/app.css", "/assets/app.js"] {
        let response = page(asset.to_owned(), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("max-age=3600"),
            "{asset}"
        );
    }
    node.stop().await;
}

#[test]
fn the_inline_code_check_finds_what_it_looks_for() {
    assert_eq!(
        inline_code(r#"<script src="/assets/app.js" defer></script>"#),
        None
    );
    assert!(inline_code("<script>alert(1)</script>").is_some());
    assert!(inline_code(r#"<div style="color:red">"#).is_some());
    assert!(inline_code(r#"<b onclick="x()">"#).is_some());
    assert_eq!(inline_code("<p>Online: done</p>"), None);
}

#[tokio::test]
async fn the_kiosk_lists_days_and_times_in_order_whatever_the_resource() {
    let node = TestNode::start().await;
    add_user(node.dir.path(), "Bob", Role::Manager, "1357");
    let tz = jiff::tz::TimeZone::get("Europe/Berlin").expect("zone");
    let today = jiff::Timestamp::now().to_zoned(tz.clone()).date();
    let at = |days: i64, hour: i8| {
        today
            .checked_add(jiff::Span::new().days(days))
            .expect("date")
            .at(hour, 0, 0, 0)
            .to_zoned(tz.clone())
            .expect("local time")
            .timestamp()
            .to_string()
    };
    // Resource ids sort "a" first, but its only slot is the latest.
    for (id, name, slots) in [
        ("store-1:a-class", "Aquarell", vec![(2, 14)]),
        ("store-1:b-class", "Barista", vec![(1, 10), (2, 9)]),
    ] {
        let (status, body) = node
            .post(
                &node.manager,
                "/resources",
                serde_json::json!({"name": name, "kind": "slot", "id": id}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        for (day, hour) in slots {
            let (status, body) = node
                .post(
                    &node.manager,
                    "/pools",
                    serde_json::json!({"resource_id": id, "capacity": 4,
                                       "starts_at": at(day, hour), "ends_at": at(day, hour + 1)}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    let http = form_client();
    let signed_in = sign_in(&node, &http, "Bob", "1357", None).await;
    let cookie = set_cookie(&signed_in, "edge_session").expect("a session");
    let kiosk = |query: String| {
        let request = http
            .get(format!("{}/kiosk{query}", node.base))
            .header("cookie", cookie.clone());
        async move {
            request
                .send()
                .await
                .expect("kiosk")
                .text()
                .await
                .expect("html")
        }
    };
    let first = kiosk(String::new()).await;
    let position = |page: &str, needle: &str| {
        page.find(needle)
            .unwrap_or_else(|| panic!("{needle} on the kiosk page: {page}"))
    };
    // The day picker lists tomorrow, then the day after; tomorrow is shown.
    let (tomorrow, after) = (
        today.tomorrow().expect("day"),
        today.checked_add(jiff::Span::new().days(2)).expect("day"),
    );
    let picker = [
        position(&first, &format!("/kiosk?day={tomorrow}")),
        position(&first, &format!("/kiosk?day={after}")),
    ];
    assert!(picker[0] < picker[1], "days in order: {picker:?}");
    position(&first, "10:00–11:00 · Barista");
    assert!(
        !first.contains("09:00–10:00"),
        "only the chosen day's slots"
    );
    let second = kiosk(format!("?day={after}")).await;
    let order = [
        position(&second, "09:00–10:00 · Barista"),
        position(&second, "14:00–15:00 · Aquarell"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "within a day by time, whatever the resource: {order:?}"
    );
}
