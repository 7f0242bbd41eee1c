//! Sync with the hub: enrollment, the background push and pull, and the
//! recoveries (restore onto a replacement PC, reset after a fork).

pub mod client;
pub mod task;

use std::path::Path;
use std::sync::Arc;

use reqwest::Method;
use rusqlite::params;
use shared::Event;
use shared::LocationId;
use shared::limits::LOG_PAGE_EVENTS_MAX;
use shared::protocol::{EnrollRequest, HeadResponse, LogResponse, ResetResponse};
use shared::signing::SigningKey;

use crate::store::{self, Clock, NodeInfo, StoreError, queries, rebuild};
use client::{HubClient, HubError};

/// The device's private key, PKCS#8, mode 0600.
pub const DEVICE_KEY_FILE: &str = "device.key";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("{0}")]
    Setup(String),
}

pub type SyncResult<T> = Result<T, SyncError>;

/// Whether `url` can be a hub's address, or what to write instead.
pub fn check_hub_url(url: &str) -> Result<(), String> {
    let with_scheme = |u: &str| format!("http://{}", u.trim_start_matches('/'));
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Err(format!(
            "{url:?} is not a URL: give the hub's address with http:// or https:// in front, like {}",
            with_scheme(url)
        ));
    };
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "{url:?} is not a hub address: it needs http:// or https:// and a host, like {}",
            with_scheme(url)
        ));
    }
    Ok(())
}

/// A failed enrollment in words that name the likely mistake and its fix.
pub fn explain_enrollment(url: &str, error: &HubError) -> String {
    match error {
        HubError::Down(_) => format!(
            "nothing answers at {url}: is `sync-hub serve` running there, and on that port? \
             (it prints `listening on http://ADDR` when it starts)"
        ),
        HubError::Unreachable(why) => format!(
            "no answer from {url} ({why}): check the address, and that this PC can reach the hub \
             (firewall, VPN, proxy)"
        ),
        // A store's LAN server answers a hub's path like this: the address
        // is a store's, not the hub's.
        HubError::Refused { status, code, .. }
            if (*status == 403 && code == "cross_site_request")
                || (*status == 404 && code == "not_found") =>
        {
            format!(
                "{url} answered, but not as a hub (it may be a store's own address): give the \
                 address `sync-hub serve` printed"
            )
        }
        HubError::Refused { status: 401, .. } => format!(
            "the hub at {url} refused the token: an enrollment token works once and for 24 hours. \
             Make a new one on the hub with `sync-hub location add --id ID --name NAME --timezone TZ`"
        ),
        other => format!("enrolling at {url} failed: {other}"),
    }
}

pub fn load_device_key(data_dir: &Path) -> SyncResult<SigningKey> {
    let path = data_dir.join(DEVICE_KEY_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        SyncError::Setup(format!(
            "cannot read the device key {}: {e}",
            path.display()
        ))
    })?;
    SigningKey::from_pkcs8(&bytes).map_err(|e| SyncError::Setup(format!("{}: {e}", path.display())))
}

/// Writes the device key readable by its owner only, replacing any older
/// one atomically.
fn store_device_key(data_dir: &Path, key: &SigningKey) -> SyncResult<()> {
    use std::io::Write;
    let path = data_dir.join(DEVICE_KEY_FILE);
    let temp = data_dir.join(format!("{DEVICE_KEY_FILE}.new"));
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&temp)?;
        file.write_all(key.pkcs8())?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    };
    write().map_err(|e| SyncError::Setup(format!("cannot write {}: {e}", path.display())))
}

/// A client for the hub this node is enrolled with.
pub fn hub_client(
    data_dir: &Path,
    node: &NodeInfo,
    clock: Arc<dyn Clock>,
) -> SyncResult<HubClient> {
    let hub = node
        .hub
        .as_ref()
        .ok_or_else(|| SyncError::Setup("this node is not enrolled with a hub".into()))?;
    Ok(HubClient::new(
        &hub.url,
        Arc::new(load_device_key(data_dir)?),
        node.location.clone(),
        hub.public_key.clone(),
        clock,
    ))
}

/// Downloads this location's whole log as the hub holds it.
async fn download_log(client: &HubClient) -> SyncResult<Vec<Event>> {
    let mut events: Vec<Event> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.seq);
        let page = client
            .call::<LogResponse>(
                Method::GET,
                &format!("/v1/sync/log?after={after}&limit={LOG_PAGE_EVENTS_MAX}"),
                None,
                client::REQUEST_TIMEOUT,
            )
            .await?
            .value;
        let done =
            page.events.is_empty() || page.events.last().is_some_and(|e| e.seq >= page.head.seq);
        events.extend(page.events);
        if done {
            return Ok(events);
        }
    }
}

/// What `enroll` did.
#[derive(Debug)]
pub struct Enrollment {
    pub location: LocationId,
    pub epoch: u32,
    pub restored_events: usize,
}

/// Binds `data_dir` to a location at the hub. An empty directory becomes
/// that location (rebuilt from the hub's copy with `restore`); a standalone
/// node keeps its history and replays it once serving.
pub async fn enroll(
    data_dir: &Path,
    hub_url: &str,
    token: &str,
    restore: bool,
    clock: Arc<dyn Clock>,
) -> SyncResult<Enrollment> {
    check_hub_url(hub_url).map_err(SyncError::Setup)?;
    store::create_private_dir(data_dir)?;
    let _lock = store::lock_data_dir(data_dir)?;
    let existing = if data_dir.join(store::DB_FILE).exists() {
        let (conn, node) = store::open_admin(data_dir)?;
        if node.hub.is_some() {
            return Err(SyncError::Setup(format!(
                "{} is already enrolled as {}",
                data_dir.display(),
                node.location
            )));
        }
        Some((node.location, queries::log_stats(&conn)?.head_seq))
    } else {
        None
    };
    let key = SigningKey::generate().map_err(|e| SyncError::Setup(e.to_string()))?;
    let request = EnrollRequest {
        token: token.to_owned(),
        public_key: key.public_key_b64(),
        location: existing.as_ref().map(|(location, _)| location.clone()),
        head_seq: existing.as_ref().map_or(0, |(_, head)| *head),
        restore,
    };
    let enrolled = client::enroll(hub_url, &request)
        .await
        .map_err(|e| SyncError::Setup(explain_enrollment(hub_url, &e)))?;
    if existing.is_none() {
        store::init(
            data_dir,
            &enrolled.location,
            &enrolled.timezone,
            clock.now_ms(),
        )?;
    }
    store_device_key(data_dir, &key)?;
    let (mut conn, _) = store::open_admin(data_dir)?;
    let tx = conn.transaction().map_err(StoreError::from)?;
    tx.execute(
        "UPDATE node SET hub_url = ?1, hub_public_key = ?2, epoch = ?3, epoch_start_seq = ?4,
                         enrolled_at_ms = ?5 WHERE id = 1",
        params![
            hub_url.trim_end_matches('/'),
            enrolled.hub_public_key,
            enrolled.epoch,
            enrolled.epoch_start_seq as i64,
            clock.now_ms()
        ],
    )
    .map_err(StoreError::from)?;
    tx.commit().map_err(StoreError::from)?;
    let mut restored_events = 0;
    if restore && enrolled.hub_head.seq > 0 {
        let (_, node) = store::open_admin(data_dir)?;
        let client = hub_client(data_dir, &node, clock)?;
        let log = download_log(&client).await?;
        restored_events = log.len();
        let tx = conn.transaction().map_err(StoreError::from)?;
        let head = rebuild::replace_history(&tx, &node.participant(), &log)?;
        if head.seq != enrolled.hub_head.seq || head.hash != enrolled.hub_head.hash {
            return Err(SyncError::Setup(format!(
                "the downloaded log ends at {} but the hub announced {}",
                head.seq, enrolled.hub_head.seq
            )));
        }
        tx.execute(
            "UPDATE sync_state SET acked_seq = ?1 WHERE id = 1",
            [head.seq as i64],
        )
        .map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
    }
    Ok(Enrollment {
        location: enrolled.location,
        epoch: enrolled.epoch,
        restored_events,
    })
}

/// What `reset` did.
#[derive(Debug)]
pub struct Reset {
    pub epoch: u32,
    pub hub_events: usize,
    pub quarantined: usize,
}

/// Recovers a forked node (restored from an old backup): takes the hub's
/// copy of our log as the truth, keeps our divergent events in the
/// quarantine for staff to review, and continues under a new epoch.
pub async fn reset(data_dir: &Path, clock: Arc<dyn Clock>) -> SyncResult<Reset> {
    let _lock = store::lock_data_dir(data_dir)?;
    let (mut conn, node) = store::open_admin(data_dir)?;
    let client = hub_client(data_dir, &node, clock.clone())?;
    let hub = client
        .call::<HeadResponse>(Method::GET, "/v1/sync/head", None, client::REQUEST_TIMEOUT)
        .await?
        .value;
    let local_head = queries::log_stats(&conn)?.head_seq;
    let prefix_matches =
        hub.head.seq == 0 || queries::event_hash(&conn, hub.head.seq)? == Some(hub.head.hash);
    if hub.status != "quarantined" && local_head >= hub.head.seq && prefix_matches {
        return Err(SyncError::Setup(
            "nothing to reset: this node's log extends what the hub holds, and it will sync".into(),
        ));
    }
    let log = download_log(&client).await?;
    // Where our log leaves the hub's: the first seq we hold differently, or
    // the first seq beyond the hub's head.
    let mut diverges_at = log.len() as u64 + 1;
    for event in &log {
        if queries::event_hash(&conn, event.seq)? != Some(event.hash()) {
            diverges_at = event.seq;
            break;
        }
    }
    let now = clock.now_ms();
    let tx = conn.transaction().map_err(StoreError::from)?;
    let quarantined = rebuild::quarantine_from(&tx, diverges_at, now)?;
    // Ask for the new epoch only once our divergent events are safe.
    let answer: ResetResponse = client
        .call(
            Method::POST,
            "/v1/sync/reset",
            Some(b"{}".to_vec()),
            client::REQUEST_TIMEOUT,
        )
        .await?
        .value;
    // The hub's log may have grown between download and reset only if
    // another device pushed for us, which the reset fences from now on.
    let log = if answer.head.seq as usize == log.len() {
        log
    } else {
        download_log(&client).await?
    };
    let head = rebuild::replace_history(&tx, &node.participant(), &log)?;
    if head.seq != answer.head.seq || head.hash != answer.head.hash {
        return Err(SyncError::Setup(format!(
            "the downloaded log ends at {} but the hub's head is {}",
            head.seq, answer.head.seq
        )));
    }
    tx.execute(
        "UPDATE node SET epoch = ?1, epoch_start_seq = ?2 WHERE id = 1",
        params![answer.epoch, answer.epoch_start_seq as i64],
    )
    .map_err(StoreError::from)?;
    tx.execute(
        "UPDATE sync_state SET acked_seq = ?1, state = 'offline', error = NULL WHERE id = 1",
        [head.seq as i64],
    )
    .map_err(StoreError::from)?;
    tx.commit().map_err(StoreError::from)?;
    Ok(Reset {
        epoch: answer.epoch,
        hub_events: log.len(),
        quarantined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hub_address_without_a_scheme_is_refused_with_the_fix() {
        let said = check_hub_url("127.0.0.1:7710").expect_err("no scheme");
        assert!(said.contains("http://127.0.0.1:7710"), "{said}");
        let said = check_hub_url("hub.example").expect_err("no scheme");
        assert!(said.contains("http://hub.example"), "{said}");
        assert!(check_hub_url("ftp://hub.example").is_err());
        assert!(check_hub_url("http://127.0.0.1:7710").is_ok());
        assert!(check_hub_url("https://hub.example/").is_ok());
    }

    #[test]
    fn each_failure_names_its_likely_mistake() {
        let url = "http://127.0.0.1:9";
        assert!(
            explain_enrollment(url, &HubError::Down("refused".into())).contains("on that port")
        );
        let store = HubError::Refused {
            status: 403,
            code: "cross_site_request".into(),
            message: String::new(),
            expected_seq: None,
        };
        assert!(explain_enrollment(url, &store).contains("store's own address"));
        let token = HubError::Refused {
            status: 401,
            code: "unauthorized".into(),
            message: String::new(),
            expected_seq: None,
        };
        assert!(explain_enrollment(url, &token).contains("sync-hub location add"));
    }
}
