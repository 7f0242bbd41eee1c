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

pub use shared::signin::{FAILED_ATTEMPTS_FREE, LOCKOUT_BASE_MS, LOCKOUT_MAX_MS, lockout_ms};

/// Failures are forgotten this long after the last one (unless a lock is
/// still in force): far longer than the longest lock, so the doubling
/// carries on for a guesser who waits out each lock.
pub const FAILURE_MEMORY_MS: i64 = 24 * 3600 * 1000;
const _: () = assert!(FAILURE_MEMORY_MS > LOCKOUT_MAX_MS);

/// Failure counters kept at most. Every name typed gets one, known or not
/// (so counters do not tell which names exist); beyond this the oldest
/// without a lock in force are dropped, whoever they are for, so a flood
/// of made-up names cannot fill the disk. At Argon2's pace (tens of checks
/// a second) a flood needs minutes to push out a real user's counter, and
/// a lock in force is never dropped.
pub const FAILURE_COUNTERS_MAX: i64 = 10_000;

/// Devices remembered per user; the oldest sign-in goes first. A user
/// signs in on a handful of tills and tablets, not more.
pub const SIGN_IN_DEVICES_PER_USER_MAX: i64 = 20;

/// Longest user name (see [`add_user`]); a counter keeps at most one
/// character more of what was typed, enough to never match a user.
pub const USER_NAME_MAX_CHARS: usize = 100;

/// Staff and managers are signed out after this long without a request.
pub const STAFF_IDLE_TIMEOUT_MS: i64 = shared::signin::SESSION_IDLE_TIMEOUT_MS;
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
    if name.is_empty()
        || name.chars().count() > USER_NAME_MAX_CHARS
        || shared::booking::has_hidden_characters(name)
    {
        return Err(StoreError::Invalid(format!(
            "a user name is 1 to {USER_NAME_MAX_CHARS} characters, without control or \
             text-direction characters"
        )));
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
}

pub fn user_by_name(conn: &Connection, name: &str) -> StoreResult<Option<UserRow>> {
    let row: Option<(i64, String, String, String)> = conn
        .prepare_cached("SELECT id, name, role, pin_hash FROM users WHERE name = ?1")?
        .query_row([name.trim()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    row.map(|(id, name, role, pin_hash)| {
        Ok(UserRow {
            id,
            name,
            role: Role::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("user role {role}")))?,
            pin_hash,
        })
    })
    .transpose()
}

/// The Argon2id hash checked when a name matches no user, so that an
/// unknown name costs what a wrong PIN costs and timing does not tell them
/// apart. Made once, with the same parameters as every PIN's hash; what it
/// hashes is not a PIN, and no PIN is ever checked against it to sign in.
static DUMMY_PIN_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // Hashing only fails on parameters we do not use; an empty hash would
    // fail fast, which is worse for timing but not for security.
    hash_pin("not a PIN: compared against unknown names").unwrap_or_default()
});

/// Makes the dummy hash now (slow: call off the async threads), so the
/// first unknown name does not pay for it and stand out.
pub fn prepare_dummy_pin_hash() {
    std::sync::LazyLock::force(&DUMMY_PIN_HASH);
}

/// Checks `pin` against `user`'s hash, or against the dummy hash when there
/// is no such user: both cost one Argon2id verification (slow on purpose).
pub fn pin_matches_user(pin: &str, user: Option<&UserRow>) -> bool {
    match user {
        Some(user) => pin_matches(pin, &user.pin_hash),
        None => {
            let _ = pin_matches(pin, &DUMMY_PIN_HASH);
            false
        }
    }
}

/// What counts against a sign-in attempt: a failure counter, by the name
/// as typed and a device.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The user with that name, if any.
    pub user: Option<UserRow>,
    /// The name the counter is kept under.
    pub name: String,
    /// The device's own counter when the user signed in on it before, else
    /// '' (every other device's).
    pub counter: String,
}

/// The counter a sign-in as `typed` from the device whose cookie hashes to
/// `device_hash` counts against. Reads the same rows for a known name as
/// for an unknown one.
pub fn attempt(conn: &Connection, typed: &str, device_hash: Option<&str>) -> StoreResult<Attempt> {
    let name: String = typed.trim().chars().take(USER_NAME_MAX_CHARS + 1).collect();
    let user = user_by_name(conn, &name)?;
    let trusted = match (&user, device_hash) {
        (Some(user), Some(device)) => conn
            .prepare_cached(
                "SELECT 1 FROM sign_in_devices WHERE user_id = ?1 AND device_hash = ?2",
            )?
            .exists(rusqlite::params![user.id, device])?,
        _ => false,
    };
    Ok(Attempt {
        counter: if trusted {
            device_hash.unwrap_or_default().to_owned()
        } else {
            String::new()
        },
        user,
        name,
    })
}

/// Counts a failure against `attempt`'s counter before its PIN is checked
/// (so parallel guesses each count), unless the counter is locked: then
/// nothing is counted and the lock's end is returned.
pub fn count_attempt(
    conn: &Connection,
    attempt: &Attempt,
    now_ms: i64,
) -> StoreResult<Option<i64>> {
    forget_old_failures(conn, now_ms)?;
    let row: Option<(i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT failed_attempts, locked_until_ms FROM sign_in_failures
             WHERE name = ?1 AND device_hash = ?2",
        )?
        .query_row(rusqlite::params![attempt.name, attempt.counter], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    if let Some(until) = row
        .and_then(|(_, until)| until)
        .filter(|until| *until > now_ms)
    {
        return Ok(Some(until));
    }
    let failed = row.map_or(0, |(failed, _)| failed).saturating_add(1);
    conn.prepare_cached(
        "INSERT INTO sign_in_failures (name, device_hash, failed_attempts, locked_until_ms, last_failed_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name, device_hash) DO UPDATE SET failed_attempts = excluded.failed_attempts,
             locked_until_ms = excluded.locked_until_ms, last_failed_at_ms = excluded.last_failed_at_ms",
    )?
    .execute(rusqlite::params![
        attempt.name,
        attempt.counter,
        failed,
        lockout_ms(failed).map(|ms| now_ms.saturating_add(ms)),
        now_ms
    ])?;
    Ok(None)
}

/// Drops counters whose last failure is older than [`FAILURE_MEMORY_MS`],
/// then the oldest beyond [`FAILURE_COUNTERS_MAX`]; never one whose lock is
/// in force.
fn forget_old_failures(conn: &Connection, now_ms: i64) -> StoreResult<()> {
    conn.prepare_cached(
        "DELETE FROM sign_in_failures
         WHERE last_failed_at_ms < ?1 AND coalesce(locked_until_ms, 0) <= ?2",
    )?
    .execute(rusqlite::params![
        now_ms.saturating_sub(FAILURE_MEMORY_MS),
        now_ms
    ])?;
    conn.prepare_cached(
        "DELETE FROM sign_in_failures WHERE rowid IN (
             SELECT rowid FROM sign_in_failures WHERE coalesce(locked_until_ms, 0) <= ?1
             ORDER BY last_failed_at_ms
             LIMIT max(0, (SELECT count(*) FROM sign_in_failures) - ?2 + 1))",
    )?
    .execute(rusqlite::params![now_ms, FAILURE_COUNTERS_MAX])?;
    Ok(())
}

/// A successful sign-in: the counter it counted against starts over, and
/// the device becomes one the user signed in on (its own counter from now
/// on). The user's oldest devices beyond [`SIGN_IN_DEVICES_PER_USER_MAX`]
/// are forgotten.
pub fn signed_in(
    conn: &Connection,
    attempt: &Attempt,
    user_id: i64,
    device_hash: &str,
    now_ms: i64,
) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM sign_in_failures WHERE name = ?1 AND device_hash = ?2")?
        .execute(rusqlite::params![attempt.name, attempt.counter])?;
    conn.prepare_cached(
        "INSERT INTO sign_in_devices (user_id, device_hash, signed_in_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (user_id, device_hash) DO UPDATE SET signed_in_at_ms = excluded.signed_in_at_ms",
    )?
    .execute(rusqlite::params![user_id, device_hash, now_ms])?;
    conn.prepare_cached(
        "DELETE FROM sign_in_devices WHERE user_id = ?1 AND device_hash NOT IN (
             SELECT device_hash FROM sign_in_devices WHERE user_id = ?1
             ORDER BY signed_in_at_ms DESC LIMIT ?2)",
    )?
    .execute(rusqlite::params![user_id, SIGN_IN_DEVICES_PER_USER_MAX])?;
    Ok(())
}

/// `edge-node user unlock` and the manager's button: every failure counter
/// of the user named `name` starts over, on every device. Refuses a name
/// no user has (the operator is told; a sign-in never is).
pub fn unlock_user(conn: &Connection, name: &str) -> StoreResult<String> {
    let user =
        user_by_name(conn, name)?.ok_or_else(|| StoreError::not_found("user", name.trim()))?;
    conn.execute("DELETE FROM sign_in_failures WHERE name = ?1", [&user.name])?;
    Ok(user.name)
}

/// A user as `edge-node user list` shows them.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub name: String,
    pub role: Role,
    pub created_at_ms: i64,
    /// The latest lock in force on any of the user's counters.
    pub locked_until_ms: Option<i64>,
}

/// Every user, by name, with any lock in force at `now_ms`.
pub fn list_users(conn: &Connection, now_ms: i64) -> StoreResult<Vec<UserSummary>> {
    let rows: Vec<(String, String, i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT u.name, u.role, u.created_at_ms,
                    (SELECT max(f.locked_until_ms) FROM sign_in_failures f
                     WHERE f.name = u.name AND f.locked_until_ms > ?1)
             FROM users u ORDER BY u.name",
        )?
        .query_map([now_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(name, role, created_at_ms, locked_until_ms)| {
            Ok(UserSummary {
                role: Role::parse(&role)
                    .ok_or_else(|| StoreError::Corrupt(format!("user role {role}")))?,
                name,
                created_at_ms,
                locked_until_ms,
            })
        })
        .collect()
}

/// Removes the user named `name`, their sessions (signed out at once),
/// their devices and their failure counters. Refuses a name no user has.
pub fn remove_user(conn: &mut Connection, name: &str) -> StoreResult<String> {
    let user =
        user_by_name(conn, name)?.ok_or_else(|| StoreError::not_found("user", name.trim()))?;
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM sessions WHERE user_name = ?1", [&user.name])?;
    tx.execute("DELETE FROM sign_in_devices WHERE user_id = ?1", [user.id])?;
    tx.execute("DELETE FROM sign_in_failures WHERE name = ?1", [&user.name])?;
    tx.execute("DELETE FROM users WHERE id = ?1", [user.id])?;
    tx.commit()?;
    Ok(user.name)
}

/// Gives the user named `name` a new PIN. Their sessions end (a PIN is
/// changed because someone else may know the old one) and their locks are
/// lifted.
pub fn set_pin(conn: &mut Connection, name: &str, pin: &str) -> StoreResult<String> {
    let user =
        user_by_name(conn, name)?.ok_or_else(|| StoreError::not_found("user", name.trim()))?;
    check_pin(pin).map_err(StoreError::Invalid)?;
    let hash = hash_pin(pin)?;
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE users SET pin_hash = ?1 WHERE id = ?2",
        rusqlite::params![hash, user.id],
    )?;
    tx.execute("DELETE FROM sessions WHERE user_name = ?1", [&user.name])?;
    tx.execute("DELETE FROM sign_in_failures WHERE name = ?1", [&user.name])?;
    tx.commit()?;
    Ok(user.name)
}

/// How many hex digits of a token's hash name it in `token list` and
/// `token revoke`: enough that two tokens of one store practically never
/// share them, and the secret itself is never shown again.
pub const TOKEN_ID_HEX: usize = 12;

/// A bearer token as `edge-node token list` shows it.
#[derive(Debug, Clone)]
pub struct TokenSummary {
    pub id: String,
    pub role: Role,
    pub created_at_ms: i64,
}

/// Every token, oldest first, named by the start of its hash.
pub fn list_tokens(conn: &Connection) -> StoreResult<Vec<TokenSummary>> {
    let rows: Vec<(String, String, i64)> = conn
        .prepare_cached("SELECT token_hash, role, created_at_ms FROM api_tokens ORDER BY created_at_ms, token_hash")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(hash, role, created_at_ms)| {
            Ok(TokenSummary {
                id: hash.chars().take(TOKEN_ID_HEX).collect(),
                role: Role::parse(&role)
                    .ok_or_else(|| StoreError::Corrupt(format!("token role {role}")))?,
                created_at_ms,
            })
        })
        .collect()
}

/// Revokes the token whose id (as `token list` shows it) is `id`. A kiosk
/// session a browser opened with it runs on until its idle timeout or
/// sign-out: the session is its own credential.
pub fn revoke_token(conn: &Connection, id: &str) -> StoreResult<()> {
    let id = id.trim().to_ascii_lowercase();
    if id.len() != TOKEN_ID_HEX || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::Invalid(format!(
            "a token id is the {TOKEN_ID_HEX} hex digits `edge-node token list` shows"
        )));
    }
    let removed = conn.execute(
        "DELETE FROM api_tokens WHERE substr(token_hash, 1, ?1) = ?2",
        rusqlite::params![TOKEN_ID_HEX as i64, id],
    )?;
    if removed == 0 {
        return Err(StoreError::not_found("token", &id));
    }
    Ok(())
}

/// A user locked out on some device, for the manager's page.
#[derive(Debug, Clone)]
pub struct LockedUser {
    pub id: i64,
    pub name: String,
    pub locked_until_ms: i64,
}

/// Users with a lock in force on any of their counters.
pub fn locked_users(conn: &Connection, now_ms: i64) -> StoreResult<Vec<LockedUser>> {
    conn.prepare_cached(
        "SELECT u.id, u.name, max(f.locked_until_ms) FROM users u
         JOIN sign_in_failures f ON f.name = u.name
         WHERE f.locked_until_ms > ?1
         GROUP BY u.id ORDER BY u.name",
    )?
    .query_map([now_ms], |r| {
        Ok(LockedUser {
            id: r.get(0)?,
            name: r.get(1)?,
            locked_until_ms: r.get(2)?,
        })
    })?
    .collect::<Result<_, _>>()
    .map_err(Into::into)
}

/// The name of the user with `id`, if any.
pub fn user_name(conn: &Connection, id: i64) -> StoreResult<Option<String>> {
    conn.prepare_cached("SELECT name FROM users WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()
        .map_err(Into::into)
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

/// Ends one session; how many ended (0 or 1).
pub fn end_session(conn: &Connection, id_hash: &str) -> StoreResult<usize> {
    Ok(conn.execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])?)
}

/// Marks a session as used now, restarting its idle timeout.
pub fn touch_session(conn: &Connection, id_hash: &str, now_ms: i64) -> StoreResult<()> {
    conn.execute(
        "UPDATE sessions SET last_seen_at_ms = ?2 WHERE id_hash = ?1",
        rusqlite::params![id_hash, now_ms],
    )?;
    Ok(())
}

/// A session that begins now.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id_hash: String,
    pub role: Role,
    pub user_name: Option<String>,
    pub idle_timeout_ms: i64,
}

/// Starts `session`, ending the one it `replaces` (the browser's previous
/// cookie); whether one ended.
pub fn start_session(
    conn: &Connection,
    session: &NewSession,
    replaces: Option<&str>,
    now_ms: i64,
) -> StoreResult<bool> {
    let ended = match replaces {
        Some(old) => end_session(conn, old)?,
        None => 0,
    };
    conn.execute(
        "INSERT INTO sessions (id_hash, role, user_name, created_at_ms, last_seen_at_ms, idle_timeout_ms)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
        rusqlite::params![
            session.id_hash,
            session.role.as_str(),
            session.user_name,
            now_ms,
            session.idle_timeout_ms
        ],
    )?;
    Ok(ended > 0)
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

    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().expect("open");
        crate::store::migrate(&mut conn).expect("migrate");
        add_user(&conn, "Alice", Role::Staff, "2468", 0).expect("user");
        conn
    }

    fn failures(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM sign_in_failures", [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn a_known_and_an_unknown_name_lock_alike_and_a_known_device_counts_alone() {
        let conn = database();
        let now = 1_000_000;
        for name in ["alice", "Nobody"] {
            let attempt = attempt(&conn, name, Some("fresh")).expect("attempt");
            assert_eq!(attempt.counter, "", "{name}: a device without history");
            for _ in 0..FAILED_ATTEMPTS_FREE {
                assert_eq!(count_attempt(&conn, &attempt, now).expect("count"), None);
            }
            assert_eq!(
                count_attempt(&conn, &attempt, now).expect("count"),
                Some(now + LOCKOUT_BASE_MS),
                "{name}"
            );
        }
        let alice = user_by_name(&conn, "Alice").expect("read").expect("Alice");
        let till = attempt(&conn, "Alice", Some("till")).expect("attempt");
        signed_in(&conn, &till, alice.id, "till", now).expect("signed in");
        let till = attempt(&conn, "Alice", Some("till")).expect("attempt");
        assert_eq!(till.counter, "till", "the till has its own counter now");
        assert_eq!(count_attempt(&conn, &till, now).expect("count"), None);
        assert_eq!(unlock_user(&conn, "ALICE").expect("unlock"), "Alice");
        let fresh = attempt(&conn, "Alice", None).expect("attempt");
        assert_eq!(count_attempt(&conn, &fresh, now).expect("count"), None);
        assert!(unlock_user(&conn, "Nobody").is_err(), "no such user");
    }

    #[test]
    fn counters_are_forgotten_with_age_and_bounded_in_number_but_never_while_locked() {
        let conn = database();
        let now = 10 * FAILURE_MEMORY_MS;
        let locked = attempt(&conn, "Alice", None).expect("attempt");
        for _ in 0..FAILED_ATTEMPTS_FREE {
            count_attempt(&conn, &locked, 0).expect("count");
        }
        // Locked until far ahead, so age does not drop it.
        conn.execute(
            "UPDATE sign_in_failures SET locked_until_ms = ?1",
            [now + LOCKOUT_MAX_MS],
        )
        .expect("lock");
        let old = attempt(&conn, "Old", None).expect("attempt");
        count_attempt(&conn, &old, now - FAILURE_MEMORY_MS - 1).expect("count");
        for i in 0..FAILURE_COUNTERS_MAX + 10 {
            let guess = attempt(&conn, &format!("made-up {i}"), None).expect("attempt");
            count_attempt(&conn, &guess, now).expect("count");
        }
        assert_eq!(failures(&conn), FAILURE_COUNTERS_MAX);
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sign_in_failures WHERE name IN ('Alice', 'Old')")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            names,
            ["Alice"],
            "the lock in force stays, the old one goes"
        );
        assert_eq!(
            count_attempt(&conn, &locked, now).expect("count"),
            Some(now + LOCKOUT_MAX_MS)
        );
    }

    #[test]
    fn an_unknown_name_costs_an_argon2_check_and_never_matches() {
        prepare_dummy_pin_hash();
        assert!(DUMMY_PIN_HASH.starts_with("$argon2id$"));
        assert!(!pin_matches_user("2468", None));
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
