//! `edge-node demo`: the whole picture in one process. A hub and two stores
//! on embedded SQLite in temporary directories, each store with a sample
//! catalog (stock items for pickup and a week of class slots, in its own
//! time zone), and a small simulated website placing orders now and then.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{ToSpan, Zoned};
use serde_json::json;
use shared::event::ResourceKind;
use shared::{LocationId, ParticipantId, PoolId, ResourceId};

use crate::auth::{Role, create_token};
use crate::store::ops::{self, NewPool, NewResource};
use crate::store::{self, Clock, Store, StoreError, StoreResult, SystemClock};

fn id<T>(parse: impl Fn(&str) -> Result<T, shared::IdError>, value: &str) -> StoreResult<T> {
    parse(value).map_err(|e| StoreError::Internal(e.to_string()))
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// What one demo store sells.
struct Catalog {
    stock: &'static [(&'static str, &'static str, i64)],
    class: (&'static str, &'static str, i8, i64),
}

const BERLIN: Catalog = Catalog {
    stock: &[
        ("beans-1kg", "Espresso beans, 1 kg", 25),
        ("sourdough", "Sourdough loaf", 12),
    ],
    class: ("barista-class", "Barista class", 10, 8),
};

const HAMBURG: Catalog = Catalog {
    stock: &[
        ("green-tea", "Sencha green tea, 250 g", 30),
        ("teapot", "Cast-iron teapot", 6),
    ],
    class: ("tea-tasting", "Tea tasting", 17, 10),
};

/// Creates the catalog, and a daily class at its local hour for a week
/// (DST-correct: each day's local time is resolved in the store's zone).
async fn seed(store: &Store, catalog: &'static Catalog) -> StoreResult<Vec<PoolId>> {
    let tz_name = store.node().timezone.clone();
    let prefix = store.node().location.to_string();
    let now_ms = store.now_ms();
    store
        .write(move |ctx| {
            let mut pools = Vec::new();
            for (slug, name, capacity) in catalog.stock {
                let resource = ops::create_resource(
                    ctx,
                    NewResource {
                        id: Some(id(ResourceId::parse, &format!("{prefix}:{slug}"))?),
                        name: (*name).into(),
                        kind: ResourceKind::Stock,
                    },
                )?;
                let pool = ops::create_pool(
                    ctx,
                    NewPool {
                        id: Some(id(PoolId::parse, &format!("{prefix}:{slug}"))?),
                        resource_id: resource.id,
                        capacity: *capacity,
                        starts_at_ms: None,
                        ends_at_ms: None,
                    },
                )?;
                pools.push(pool.id);
            }
            let (slug, name, hour, capacity) = catalog.class;
            let class = ops::create_resource(
                ctx,
                NewResource {
                    id: Some(id(ResourceId::parse, &format!("{prefix}:{slug}"))?),
                    name: name.into(),
                    kind: ResourceKind::Slot,
                },
            )?;
            let tz = TimeZone::get(&tz_name).map_err(internal)?;
            let today = jiff::Timestamp::from_millisecond(now_ms)
                .map_err(internal)?
                .to_zoned(tz.clone())
                .date();
            for day in 1..=7 {
                let date = today.checked_add(day.days()).map_err(internal)?;
                let start: Zoned = date
                    .to_datetime(Time::constant(hour, 0, 0, 0))
                    .to_zoned(tz.clone())
                    .map_err(internal)?;
                let end = start.checked_add(90.minutes()).map_err(internal)?;
                let pool = ops::create_pool(
                    ctx,
                    NewPool {
                        id: Some(id(PoolId::parse, &format!("{prefix}:{slug}:{date}"))?),
                        resource_id: class.id.clone(),
                        capacity,
                        starts_at_ms: Some(start.timestamp().as_millisecond()),
                        ends_at_ms: Some(end.timestamp().as_millisecond()),
                    },
                )?;
                pools.push(pool.id);
            }
            // The website may sell a few units even while the store is offline.
            if let Some(first) = pools.first() {
                ops::grant_allotment(ctx, first, &ParticipantId::Hub, 3)?;
            }
            Ok(pools)
        })
        .await
}

async fn bind(preferred: SocketAddr) -> Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(preferred).await {
        Ok(listener) => Ok(listener),
        Err(_) => Ok(tokio::net::TcpListener::bind(SocketAddr::new(preferred.ip(), 0)).await?),
    }
}

/// The people every demo store has, to sign in at its LAN UI by name and
/// PIN.
const DEMO_USERS: [(Role, &str); 2] = [(Role::Staff, "Sam"), (Role::Manager, "Maria")];

/// A random 6-digit PIN: even a demo's staff page shows customers' names.
fn demo_pin() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(format!("{:06}", u32::from_le_bytes(bytes) % 1_000_000))
}

struct DemoStore {
    location: LocationId,
    url: String,
    dir: std::path::PathBuf,
    tokens: Vec<(Role, String)>,
    /// (role, name, PIN) of the people who sign in at the store.
    users: Vec<(Role, &'static str, String)>,
    pools: Vec<PoolId>,
}

async fn start_store(
    root: &Path,
    hub_url: &str,
    enrollment: &str,
    listen: SocketAddr,
    catalog: &'static Catalog,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<DemoStore> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
    let dir = root.join(enrollment.chars().rev().take(8).collect::<String>());
    let enrolled = crate::sync::enroll(&dir, hub_url, enrollment, false, clock.clone()).await?;
    let (conn, _) = store::open_admin(&dir)?;
    let tokens = [Role::Kiosk, Role::Staff, Role::Manager]
        .into_iter()
        .map(|role| Ok((role, create_token(&conn, role, clock.now_ms())?)))
        .collect::<Result<Vec<_>>>()?;
    let users = DEMO_USERS
        .iter()
        .map(|&(role, name)| {
            let pin = demo_pin()?;
            crate::auth::add_user(&conn, name, role, &pin, clock.now_ms())?;
            Ok((role, name, pin))
        })
        .collect::<Result<Vec<_>>>()?;
    drop(conn);
    let store = Store::open(&dir, clock)?;
    let pools = seed(&store, catalog).await?;
    let listener = bind(listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut stop = stop;
    tokio::spawn(crate::run(store, listener, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok(DemoStore {
        location: enrolled.location,
        url,
        dir,
        tokens,
        users,
        pools,
    })
}

/// A customer of the website now and then: a random item, one unit.
async fn website(
    hub_url: String,
    api_key: String,
    pools: Vec<PoolId>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let http = crate::sync::client::http_client();
    let names = [
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
    ];
    let mut n: usize = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(8)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        n += 1;
        let pool = &pools[(n * 7) % pools.len()];
        let body = json!({
            "lines": [{"pool_id": pool, "quantity": 1}],
            "customer": {"name": format!("{} (web)", names[n % names.len()])},
        });
        let answer = http
            .post(format!("{hub_url}/v1/bookings?wait_ms=3000"))
            .bearer_auth(&api_key)
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(response) => {
                let status = response.status();
                let booking: serde_json::Value = response.json().await.unwrap_or_default();
                let state = booking["state"]
                    .as_str()
                    .or_else(|| booking["booking"]["state"].as_str())
                    .unwrap_or("?");
                let by = booking["decided_by"].as_str().unwrap_or("-");
                println!("website: ordered 1 x {pool}: {status} {state} (decided by {by})");
            }
            Err(e) => println!("website: order failed: {e}"),
        }
    }
}

/// Runs the demo until Ctrl-C.
pub async fn run(shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let root = tempfile::Builder::new()
        .prefix("edge-node-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);

    let hub_dir = root.path().join("hub");
    let hub = sync_hub::open(&hub_dir, sync_hub::HubSettings::default())?;
    let now = jiff::Timestamp::now().as_millisecond();
    let mut enrollments = Vec::new();
    for (id, name, tz) in [
        ("demo-berlin", "Demo store Berlin", "Europe/Berlin"),
        ("demo-hamburg", "Demo store Hamburg", "Europe/Berlin"),
    ] {
        let (token, hash) = sync_hub::keys::new_secret("enroll_")?;
        hub.storage
            .add_location(
                &LocationId::parse(id)?,
                name,
                tz,
                &hash,
                now + 3_600_000,
                now,
            )
            .await?;
        enrollments.push(token);
    }
    let (api_key, key_hash) = sync_hub::keys::new_secret("hub_")?;
    hub.storage
        .add_api_key("demo website", &key_hash, now)
        .await?;
    let hub_listener = bind(SocketAddr::from(([127, 0, 0, 1], 7700))).await?;
    let hub_url = format!("http://{}", hub_listener.local_addr()?);
    let mut hub_stop = stop.clone();
    tokio::spawn(sync_hub::run(hub, hub_listener, async move {
        let _ = hub_stop.wait_for(|s| *s).await;
    }));

    let mut stores = Vec::new();
    for ((enrollment, port), catalog) in enrollments
        .iter()
        .zip([8080, 8081])
        .zip([&BERLIN, &HAMBURG])
    {
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        stores.push(
            start_store(
                root.path(),
                &hub_url,
                enrollment,
                listen,
                catalog,
                stop.clone(),
            )
            .await?,
        );
    }

    println!(
        "edge-node demo: a hub and two stores, data in {}",
        root.path().display()
    );
    println!();
    println!("hub        {hub_url}");
    println!("  API key  {api_key}");
    println!("  try      curl -H 'Authorization: Bearer {api_key}' {hub_url}/v1/locations");
    for store in &stores {
        println!();
        println!(
            "{:<10} {}   (LAN web UI: {}/)",
            store.location, store.url, store.url
        );
        println!("  data     {}", store.dir.display());
        for (role, token) in &store.tokens {
            println!("  {:<8} {token}", role.as_str());
        }
        for (role, name, pin) in &store.users {
            println!("  sign in  {name} ({}), PIN {pin}", role.as_str());
        }
    }
    println!();
    println!("The website places an order every few seconds; Ctrl-C stops everything.");
    let pools: Vec<PoolId> = stores
        .iter()
        .flat_map(|s| s.pools.iter().take(2).cloned())
        .collect();
    tokio::spawn(website(hub_url, api_key, pools, stop.clone()));
    shutdown.await;
    let _ = stop_tx.send(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(())
}
