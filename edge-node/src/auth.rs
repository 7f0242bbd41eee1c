//! LAN API tokens and roles. A token is 32 random bytes shown once at
//! creation; only its SHA-256 is stored, so a copy of the database does not
//! hand out working credentials. Tokens are high-entropy, so a fast hash is
//! the right one (PINs, which are not, get Argon2id).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use crate::store::{StoreError, StoreResult};

/// What a device may do. Each role may do everything the one before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Customers' kiosk: read availability, place bookings.
    Kiosk,
    /// Staff tablets: also confirm, cancel and fulfil.
    Staff,
    /// The manager: also change the catalog, adjust stock, grant allotments.
    Manager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kiosk => "kiosk",
            Self::Staff => "staff",
            Self::Manager => "manager",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "kiosk" => Some(Self::Kiosk),
            "staff" => Some(Self::Staff),
            "manager" => Some(Self::Manager),
            _ => None,
        }
    }
}

/// Prefix that makes our tokens recognisable in logs and secret scanners.
const TOKEN_PREFIX: &str = "edge_";

pub fn hash_token(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// Makes a token for `role`, stores its hash and returns the secret.
pub fn create_token(conn: &Connection, role: Role, now_ms: i64) -> StoreResult<String> {
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| StoreError::Internal("the system random source failed".into()))?;
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    conn.execute(
        "INSERT INTO api_tokens (token_hash, role, created_at_ms) VALUES (?1, ?2, ?3)",
        rusqlite::params![hash_token(&token), role.as_str(), now_ms],
    )?;
    Ok(token)
}

pub fn role_of_hash(conn: &Connection, hash: &str) -> StoreResult<Option<Role>> {
    let role: Option<String> = conn
        .prepare_cached("SELECT role FROM api_tokens WHERE token_hash = ?1")?
        .query_row([hash], |r| r.get(0))
        .optional()?;
    role.map(|r| Role::parse(&r).ok_or_else(|| StoreError::Corrupt(format!("token role {r}"))))
        .transpose()
}

/// Remembers recently seen valid tokens so each request does not cost a
/// read. Misses always go to the database, so a token created by the admin
/// command works at once.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Role, Instant)>>,
}

/// How long a verified token is trusted without looking again.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);
/// Entries kept; the cache is cleared when full rather than growing.
const TOKEN_CACHE_MAX: usize = 1024;

impl TokenCache {
    pub fn get(&self, hash: &str) -> Option<Role> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(role, _)| *role)
    }

    pub fn put(&self, hash: String, role: Role) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (role, Instant::now()));
    }
}
