//! The staff's working day through the API and the pages: search and
//! paging with no silent cap, no-shows, and who changed a booking.

use std::collections::HashSet;

use edge_node::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestNode, add_user, assert_error, booking, form_client, set_cookie, sign_in};

/// Every booking of a search, page by page, following `next`.
async fn every_page(node: &TestNode, query: &str) -> (Vec<Value>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/bookings?{query}&after={a}"),
            None => format!("/bookings?{query}"),
        };
        let (status, body) = node.get(&node.staff, &path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        all.extend(
            body["bookings"]
                .as_array()
                .expect("bookings")
                .iter()
                .cloned(),
        );
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return (all, pages),
        }
    }
}

#[tokio::test]
async fn a_search_finds_by_code_name_or_phone_and_pages_through_every_match() {
    let node = TestNode::start().await;
    let pool = node.stock_pool("beans", 1000).await;
    let mut made = Vec::new();
    for i in 0..120 {
        let mut body = booking(&pool, 1);
        body["customer"] =
            json!({"name": format!("Customer {i}"), "phone": format!("+49 (30) 555-0{i:03}")});
        body["hold_seconds"] = json!(3600);
        let (status, view) = node.post(&node.kiosk, "/bookings", body).await;
        assert_eq!(status, StatusCode::CREATED, "{view}");
        made.push(view);
    }

    // Every booking, 50 at a time: nothing left out, nothing twice, newest first.
    let (all, pages) = every_page(&node, "limit=50").await;
    assert_eq!(pages, 3);
    let ids: Vec<&str> = all.iter().map(|b| b["id"].as_str().expect("id")).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 120);
    let newest_first: Vec<&str> = made
        .iter()
        .rev()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, newest_first);

    // By code, in either case.
    let wanted = &made[37];
    let code = wanted["code"].as_str().expect("code");
    let (by_code, _) = every_page(&node, &format!("q={}", code.to_lowercase())).await;
    assert!(
        by_code.iter().any(|b| b["id"] == wanted["id"]),
        "{by_code:?}"
    );

    // By part of the name: "Customer 7", "Customer 70".."79", "Customer 107".
    let (by_name, _) = every_page(&node, "q=customer%207").await;
    let mut names: Vec<&str> = by_name
        .iter()
        .map(|b| b["customer"]["name"].as_str().expect("name"))
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..120)
        .map(|i| format!("Customer {i}"))
        .filter(|n| n.contains("Customer 7"))
        .collect();
    expected.sort();
    assert_eq!(names, expected);

    // By the phone's digits, however it was written.
    let (by_phone, _) = every_page(&node, "q=5550042").await;
    assert_eq!(by_phone.len(), 1, "{by_phone:?}");
    assert_eq!(by_phone[0]["customer"]["name"], "Customer 42");

    // A search and a state together, paged.
    let (held, _) = every_page(&node, "q=customer&state=held&limit=7").await;
    assert_eq!(held.len(), 120);

    // Bad paging and searches are refused with the error shape.
    for bad in [
        "/bookings?limit=0".to_owned(),
        "/bookings?after=not-a-booking".to_owned(),
        format!("/bookings?q={}", "x".repeat(101)),
        "/bookings?state=lost".to_owned(),
    ] {
        let (status, body) = node.get(&node.staff, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_error(&body, "invalid_request");
    }
}

/// A slot resource with one pool starting in `starts_in_ms`; its id.
async fn slot(node: &TestNode, starts_in_ms: i64) -> String {
    let (status, body) = node
        .post(
            &node.manager,
            "/resources",
            json!({"name": "Barista class", "kind": "slot", "id": "store-1:class"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let start = node.store.now_ms() + starts_in_ms;
    let at = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .expect("ts")
            .to_string()
    };
    let (status, pool) = node
        .post(
            &node.manager,
            "/pools",
            json!({"resource_id": "store-1:class", "capacity": 8,
                   "starts_at": at(start), "ends_at": at(start + 3_600_000)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pool}");
    pool["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_no_show_is_marked_once_the_slot_started_and_keeps_its_places() {
    let node = TestNode::start().await;
    let class = slot(&node, 3_600_000).await;
    let (status, made) = node
        .post(&node.staff, "/bookings", booking(&class, 2))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["state"], "confirmed");
    let id = made["id"].as_str().expect("id");
    let no_show = format!("/bookings/{id}/no-show");

    // Before the slot starts: refused, nothing changes.
    let (status, body) = node.post(&node.staff, &no_show, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(node.available(&class).await, 6);

    node.clock.advance_ms(2 * 3_600_000);
    let (status, body) = node.post(&node.staff, &no_show, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "no_show");
    // The places stay taken: the class they were for has begun.
    assert_eq!(node.available(&class).await, 6);
    // And nothing else can happen to it here.
    let (status, body) = node
        .post(&node.staff, &format!("/bookings/{id}/fulfil"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "invalid_state");

    // Stock has no start: a no-show makes no sense there.
    let beans = node.stock_pool("beans", 5).await;
    let (_, walk_in) = node
        .post(&node.staff, "/bookings", booking(&beans, 1))
        .await;
    let (status, body) = node
        .post(
            &node.staff,
            &format!("/bookings/{}/no-show", walk_in["id"].as_str().expect("id")),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Kiosks do not mark anything.
    let (status, _) = node.post(&node.kiosk, &no_show, json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_bookings_page_names_who_confirmed_it_and_its_history() {
    let node = TestNode::start().await;
    add_user(node.dir.path(), "Alice", Role::Staff, "2468");
    let beans = node.stock_pool("beans", 5).await;
    let mut body = booking(&beans, 1);
    body["hold_seconds"] = json!(600);
    body["customer"]["email"] = json!("ada@example.org");
    let (_, held) = node.post(&node.kiosk, "/bookings", body).await;
    let id = held["id"].as_str().expect("id").to_owned();

    // Alice confirms it from the queue page, signed in with her PIN.
    let http = form_client();
    let signed_in = sign_in(&node, &http, "Alice", "2468", None).await;
    let cookie = set_cookie(&signed_in, "edge_session").expect("session");
    let confirmed = http
        .post(format!("{}/staff/bookings/{id}/confirm", node.base))
        .header("origin", &node.base)
        .header("cookie", &cookie)
        .header("x-requested-with", "fetch")
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirmed.status(), StatusCode::OK);
    // Confirming again is a conflict, said in words next to the button.
    let again = http
        .post(format!("{}/staff/bookings/{id}/confirm", node.base))
        .header("origin", &node.base)
        .header("cookie", &cookie)
        .header("x-requested-with", "fetch")
        .send()
        .await
        .expect("confirm");
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let said = again.text().await.expect("text");
    assert!(said.contains("Confirmed now"), "{said}");

    let page = http
        .get(format!("{}/staff/bookings/{id}", node.base))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("detail")
        .text()
        .await
        .expect("html");
    for needle in [
        "Confirmed by</dt><dd>Alice",
        r#"href="tel:+49301234""#,
        r#"href="mailto:ada@example.org""#,
        "at the kiosk",
        "Reserved, not paid yet",
    ] {
        assert!(page.contains(needle), "{needle} in {page}");
    }
    let history = page
        .split("<ol class=\"history\">")
        .nth(1)
        .expect("history");
    assert!(
        history.find("Reserved, not paid yet") < history.find("Confirmed"),
        "held, then confirmed: {history}"
    );
    assert!(history.contains("· Alice"), "{history}");

    // The event in the log names her too, for the hub and the owner.
    let (conn, _) = edge_node::store::open_admin(node.dir.path()).expect("admin");
    let by: String = conn
        .query_row(
            "SELECT body ->> 'by' FROM events WHERE kind = 'booking_confirmed'",
            [],
            |r| r.get(0),
        )
        .expect("confirmed event");
    assert_eq!(by, "Alice");
}

#[tokio::test]
async fn a_manager_form_that_fails_keeps_what_was_typed_and_says_why_beside_the_field() {
    let node = TestNode::start().await;
    add_user(node.dir.path(), "Bob", Role::Manager, "1357");
    let beans = node.stock_pool("beans", 24).await;
    let http = form_client();
    let signed_in = sign_in(&node, &http, "Bob", "1357", None).await;
    let cookie = set_cookie(&signed_in, "edge_session").expect("session");
    let post = |path: String, body: &'static str| {
        let request = http
            .post(format!("{}{path}", node.base))
            .header("origin", &node.base)
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move {
            let response = request.send().await.expect("post");
            (response.status(), response.text().await.expect("html"))
        }
    };

    let (status, page) = post(format!("/manager/pools/{beans}/adjust"), "delta=-500").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains(r#"value="-500""#),
        "what was typed stays: {page}"
    );
    assert!(
        page.contains("Stock can go down to 0 and up to 1000000000; there are 24 now."),
        "{page}"
    );
    assert!(page.contains(r#"aria-invalid="true""#));
    assert!(!page.contains("0..="), "no developer text: {page}");
    assert_eq!(node.pool(&beans).await["capacity"], 24, "nothing changed");

    let (status, page) = post(
        "/manager/slots".into(),
        "resource_id=store-1%3Abeans&weekday=mon&times=07%3A00%2C+25%3A00&minutes=45&capacity=6&from=2026-12-07&until=2026-12-20",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("“25:00” is not a time like 07:00."), "{page}");
    for kept in [
        r#"value="07:00, 25:00""#,
        r#"value="45""#,
        r#"value="6""#,
        r#"value="2026-12-20""#,
    ] {
        assert!(page.contains(kept), "{kept} kept in {page}");
    }

    // The same in German for a German browser.
    let german = http
        .post(format!("{}/manager/resources", node.base))
        .header("origin", &node.base)
        .header("cookie", &cookie)
        .header("accept-language", "de")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=&kind=stock")
        .send()
        .await
        .expect("post")
        .text()
        .await
        .expect("html");
    assert!(german.contains("Bitte einen Namen eingeben."), "{german}");
}

#[tokio::test]
async fn a_slots_roster_lists_who_is_booked_and_offers_no_show_once_it_started() {
    let node = TestNode::start().await;
    add_user(node.dir.path(), "Alice", Role::Staff, "2468");
    let class = slot(&node, 3_600_000).await;
    let mut body = booking(&class, 2);
    body["customer"]["name"] = json!("Rosa Roster");
    let (status, made) = node.post(&node.staff, "/bookings", body).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().expect("id").to_owned();
    // Someone else's stock booking is on no roster.
    let beans = node.stock_pool("beans", 5).await;
    node.post(&node.staff, "/bookings", booking(&beans, 1))
        .await;

    let http = form_client();
    let session = || async {
        let signed_in = sign_in(&node, &http, "Alice", "2468", None).await;
        set_cookie(&signed_in, "edge_session").expect("session")
    };
    let mut cookie = session().await;
    let page = |path: String, cookie: String| {
        let request = http
            .get(format!("{}{path}", node.base))
            .header("cookie", cookie);
        async move {
            request
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("html")
        }
    };
    let slots = page("/staff/slots".into(), cookie.clone()).await;
    assert!(
        slots.contains(&format!(r#"href="/staff/slots/{class}""#)),
        "{slots}"
    );
    assert!(slots.contains("2 of 8 booked"), "{slots}");

    let roster = page(format!("/staff/slots/{class}"), cookie.clone()).await;
    assert!(roster.contains("Rosa Roster"), "{roster}");
    assert!(
        !roster.contains("Ada Lovelace"),
        "only this slot's bookings: {roster}"
    );
    assert!(roster.contains("2 of 8 places taken"), "{roster}");
    assert!(
        !roster.contains("Did not come</button>"),
        "not before it starts"
    );

    node.clock.advance_ms(2 * 3_600_000);
    // Two hours on, Alice's session has long timed out: she signs in again.
    cookie = session().await;
    let roster = page(format!("/staff/slots/{class}"), cookie.clone()).await;
    assert!(roster.contains("Did not come</button>"), "{roster}");
    let marked = http
        .post(format!("{}/staff/bookings/{id}/no-show", node.base))
        .header("origin", &node.base)
        .header("cookie", &cookie)
        .header("x-requested-with", "fetch")
        .send()
        .await
        .expect("no-show");
    assert_eq!(marked.status(), StatusCode::OK);
    let roster = page(format!("/staff/slots/{class}"), cookie.clone()).await;
    assert!(
        roster.contains(r#"class="state no_show">Did not come"#),
        "{roster}"
    );
    // Still counted: the places were held for them.
    assert!(roster.contains("2 of 8 places taken"), "{roster}");
}
