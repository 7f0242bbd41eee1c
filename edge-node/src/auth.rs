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
use shared::Hash;

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

/// SHA-256 of a token in hex, as the database stores it. (The token cache
/// keys by the digest itself, [`Hash::of`] the token.)
pub fn hash_token(token: &str) -> String {
    Hash::of(token.as_bytes()).to_hex()
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
    entries: Mutex<HashMap<Hash, (Role, Instant)>>,
}

/// How long a verified token is trusted without looking again.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);
/// Entries kept; the cache is cleared when full rather than growing.
const TOKEN_CACHE_MAX: usize = 1024;

impl TokenCache {
    pub fn get(&self, digest: &Hash) -> Option<Role> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(digest)
            .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(role, _)| *role)
    }

    pub fn put(&self, digest: Hash, role: Role) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.clear();
        }
        entries.insert(digest, (role, Instant::now()));
    }
}

/// PIN length limits: long enough to be a PIN, short enough to type on a
/// till.
pub const PIN_DIGITS_MIN: usize = 4;
pub const PIN_DIGITS_MAX: usize = 12;

/// Failed sign-ins allowed before a user is locked out.
pub const FAILED_ATTEMPTS_FREE: i64 = 5;
/// First lockout; each further failure doubles it, up to the maximum.
pub const LOCKOUT_BASE_MS: i64 = 30_000;
pub const LOCKOUT_MAX_MS: i64 = 3_600_000;

/// Staff and managers are signed out after this long without a request.
pub const STAFF_IDLE_TIMEOUT_MS: i64 = 30 * 60 * 1000;
/// A kiosk stays signed in: it is a fixture, not a person.
pub const KIOSK_IDLE_TIMEOUT_MS: i64 = 30 * 24 * 3600 * 1000;

pub fn check_pin(pin: &str) -> Result<(), String> {
    let ok = (PIN_DIGITS_MIN..=PIN_DIGITS_MAX).contains(&pin.len())
        && pin.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a PIN is {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} digits"
        ))
    }
}

/// Hashes a PIN with Argon2id and a fresh salt (slow on purpose: call off
/// the async threads).
pub fn hash_pin(pin: &str) -> StoreResult<String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(pin.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| StoreError::Internal(format!("hashing a PIN failed: {e}")))
}

/// Whether `pin` matches the stored hash (slow on purpose).
pub fn pin_matches(pin: &str, stored: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    PasswordHash::new(stored).is_ok_and(|hash| {
        argon2::Argon2::default()
            .verify_password(pin.as_bytes(), &hash)
            .is_ok()
    })
}

/// `edge-node user add`: a staff member or manager with a PIN.
pub fn add_user(
    conn: &Connection,
    name: &str,
    role: Role,
    pin: &str,
    now_ms: i64,
) -> StoreResult<()> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(StoreError::Invalid(
            "a user name is 1 to 100 characters".into(),
        ));
    }
    if role == Role::Kiosk {
        return Err(StoreError::Invalid(
            "users are staff or managers; a kiosk signs in with a kiosk token".into(),
        ));
    }
    check_pin(pin).map_err(StoreError::Invalid)?;
    let hash = hash_pin(pin)?;
    conn.execute(
        "INSERT INTO users (name, role, pin_hash, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![name, role.as_str(), hash, now_ms],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(format!("a user named {name} exists already"))
        }
        other => other.into(),
    })?;
    Ok(())
}

/// A user as sign-in sees them.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub pin_hash: String,
    pub failed_attempts: i64,
    pub locked_until_ms: Option<i64>,
}

pub fn user_by_name(conn: &Connection, name: &str) -> StoreResult<Option<UserRow>> {
    let row: Option<(i64, String, String, String, i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT id, name, role, pin_hash, failed_attempts, locked_until_ms FROM users WHERE name = ?1",
        )?
        .query_row([name.trim()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .optional()?;
    row.map(
        |(id, name, role, pin_hash, failed_attempts, locked_until_ms)| {
            Ok(UserRow {
                id,
                name,
                role: Role::parse(&role)
                    .ok_or_else(|| StoreError::Corrupt(format!("user role {role}")))?,
                pin_hash,
                failed_attempts,
                locked_until_ms,
            })
        },
    )
    .transpose()
}

/// How long a user is locked out after `failed` consecutive failures.
pub fn lockout_ms(failed: i64) -> Option<i64> {
    (failed >= FAILED_ATTEMPTS_FREE).then(|| {
        let doublings = (failed - FAILED_ATTEMPTS_FREE).min(20) as u32;
        LOCKOUT_BASE_MS
            .saturating_mul(1 << doublings)
            .min(LOCKOUT_MAX_MS)
    })
}

/// A new random session secret and the hash stored for it.
pub fn new_session_secret() -> StoreResult<(String, String)> {
    let mut secret = [0u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| StoreError::Internal("the system random source failed".into()))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let hash = hash_token(&secret);
    Ok((secret, hash))
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub role: Role,
    pub user_name: Option<String>,
    pub last_seen_at_ms: i64,
    pub idle_timeout_ms: i64,
}

pub fn session(conn: &Connection, id_hash: &str) -> StoreResult<Option<SessionRow>> {
    let row: Option<(String, Option<String>, i64, i64)> = conn
        .prepare_cached(
            "SELECT role, user_name, last_seen_at_ms, idle_timeout_ms FROM sessions WHERE id_hash = ?1",
        )?
        .query_row([id_hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    row.map(|(role, user_name, last_seen_at_ms, idle_timeout_ms)| {
        Ok(SessionRow {
            role: Role::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("session role {role}")))?,
            user_name,
            last_seen_at_ms,
            idle_timeout_ms,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_start_after_five_failures_and_grow() {
        assert_eq!(lockout_ms(4), None);
        assert_eq!(lockout_ms(5), Some(30_000));
        assert_eq!(lockout_ms(6), Some(60_000));
        assert_eq!(lockout_ms(7), Some(120_000));
        assert_eq!(lockout_ms(40), Some(LOCKOUT_MAX_MS));
    }

    #[test]
    fn pins_are_hashed_with_a_salt_and_verify() {
        let one = hash_pin("1234").expect("hash");
        let two = hash_pin("1234").expect("hash");
        assert_ne!(one, two, "salted");
        assert!(one.starts_with("$argon2id$"));
        assert!(pin_matches("1234", &one));
        assert!(!pin_matches("4321", &one));
        assert!(check_pin("12a4").is_err());
        assert!(check_pin("123").is_err());
    }
}
