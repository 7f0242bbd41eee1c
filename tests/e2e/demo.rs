//! `edge-node demo` shows the whole system working in one command.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::world::bins;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_a_hub_two_stores_and_a_website_whose_orders_the_stores_confirm() {
    let mut child = Command::new(bins().edge)
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let mut confirmed = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while confirmed.is_none() && std::time::Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if line.starts_with("website: ") && line.contains(" 201 ") {
            confirmed = Some(line.clone());
        }
        lines.push(line);
    }
    let output = lines.join("\n");
    let hub = lines
        .iter()
        .find_map(|l| l.strip_prefix("hub").map(str::trim))
        .expect("the hub's URL")
        .to_owned();
    let key = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("API key").map(str::trim))
        .expect("an API key")
        .to_owned();
    let (status, locations) = e2e::get(&e2e::http(), &format!("{hub}/v1/locations"), &key).await;
    // Each store prints its data directory and its people; the staff
    // member signs in with the PIN printed.
    let store = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("demo-berlin")
                .and_then(|rest| rest.split_whitespace().next())
        })
        .expect("the Berlin store's URL")
        .to_owned();
    let data = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("data").map(str::trim))
        .expect("a store's data directory");
    assert!(
        std::path::Path::new(data).join("edge.db").exists(),
        "{output}"
    );
    let (name, pin) = lines
        .iter()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("sign in")?.trim();
            let (name, rest) = rest.split_once(" (staff), PIN ")?;
            Some((name.to_owned(), rest.trim().to_owned()))
        })
        .unwrap_or_else(|| panic!("a staff member to sign in as: {output}"));
    let signed_in = e2e::sign_in(&e2e::form_client(), &store, &name, &pin).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{output}");
    assert!(
        e2e::session_cookie(&signed_in).is_some(),
        "{name} signs in with the printed PIN: {}",
        signed_in.status()
    );
    let ids: Vec<&str> = locations["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["demo-berlin", "demo-hamburg"]);
    assert!(
        output.matches("manager ").count() >= 2,
        "tokens for each store: {output}"
    );
    let confirmed = confirmed.unwrap_or_else(|| panic!("no web order was confirmed:\n{output}"));
    assert!(confirmed.contains("decided by demo-"), "{confirmed}");
}
