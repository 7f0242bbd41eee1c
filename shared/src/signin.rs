//! The sign-in rules people meet at a store's LAN UI and at the hub's fleet
//! dashboard alike: how many failures are free, how locks grow, and how
//! long a session lasts without use.

/// Failed sign-ins allowed on one counter before it locks.
pub const FAILED_ATTEMPTS_FREE: i64 = 5;
/// First lockout; each further failure doubles it, up to the maximum.
pub const LOCKOUT_BASE_MS: i64 = 30_000;
pub const LOCKOUT_MAX_MS: i64 = 3_600_000;

/// A person's session ends after this long without a request.
pub const SESSION_IDLE_TIMEOUT_MS: i64 = 30 * 60 * 1000;

/// How long a counter is locked after `failed` consecutive failures.
pub fn lockout_ms(failed: i64) -> Option<i64> {
    (failed >= FAILED_ATTEMPTS_FREE).then(|| {
        let doublings = (failed - FAILED_ATTEMPTS_FREE).min(20) as u32;
        LOCKOUT_BASE_MS
            .saturating_mul(1 << doublings)
            .min(LOCKOUT_MAX_MS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_are_free_then_locks_double_to_the_cap() {
        assert_eq!(lockout_ms(FAILED_ATTEMPTS_FREE - 1), None);
        assert_eq!(lockout_ms(FAILED_ATTEMPTS_FREE), Some(LOCKOUT_BASE_MS));
        assert_eq!(
            lockout_ms(FAILED_ATTEMPTS_FREE + 1),
            Some(2 * LOCKOUT_BASE_MS)
        );
        assert_eq!(lockout_ms(1000), Some(LOCKOUT_MAX_MS));
    }
}
