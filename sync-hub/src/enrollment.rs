//! Enrolling a store's device (docs/ARCHITECTURE.md, section 6), as a rule
//! over a [`Working`] set: which token binds which location, the epoch the
//! device starts, and when a data directory may restore from the hub.

use shared::LocationId;
use shared::protocol::{EnrollRequest, HeadRef};

use crate::error::{StorageError, StorageResult};
use crate::view;
use crate::working::{DeviceStatus, Working};

/// What a successful enrollment binds.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub location: LocationId,
    pub name: String,
    pub timezone: String,
    pub epoch: u32,
    pub epoch_start_seq: u64,
    pub hub_head: HeadRef,
}

/// Names what [`enroll`] reads.
pub fn want_enroll(w: &mut Working, token_hash: &str) {
    w.want_token(token_hash);
}

/// Binds the device's key to the token's location: once per token, before
/// it expires. A new device starts an epoch after the one before; a
/// replacement PC (`restore`) starts empty after the hub's head of its
/// log, which it rebuilds from.
pub fn enroll(
    w: &mut Working,
    request: &EnrollRequest,
    token_hash: &str,
    now_ms: i64,
) -> StorageResult<Enrolled> {
    let token = w
        .tokens
        .get(token_hash)
        .cloned()
        .flatten()
        .ok_or_else(|| StorageError::Unauthorized("unknown enrollment token".into()))?;
    if token.used_at_ms.is_some() {
        return Err(StorageError::Unauthorized(
            "this enrollment token was already used".into(),
        ));
    }
    if token.expires_at_ms <= now_ms {
        return Err(StorageError::Unauthorized(
            "this enrollment token has expired".into(),
        ));
    }
    let location = token.location;
    if let Some(claimed) = &request.location
        && *claimed != location
    {
        return Err(StorageError::Conflict(format!(
            "this data directory belongs to location {claimed}, but the token is for {location}"
        )));
    }
    let device = w
        .location(&location)?
        .ok_or_else(|| StorageError::not_found("location", &location))?
        .clone();
    let (epoch, epoch_start_seq) = if request.restore {
        if request.head_seq != 0 {
            return Err(StorageError::Conflict(
                "--restore rebuilds an empty data directory; this one already holds events".into(),
            ));
        }
        (device.epoch + 1, device.head.seq + 1)
    } else if device.head.seq > 0 {
        return Err(StorageError::Conflict(format!(
            "the hub already holds {} events of {location}; a replacement PC enrolls with --restore",
            device.head.seq
        )));
    } else {
        (device.epoch + 1, request.head_seq + 1)
    };
    w.used_tokens.push((token_hash.to_owned(), now_ms));
    let row = w.location_mut(&location)?;
    row.public_key = Some(request.public_key.clone());
    row.epoch = epoch;
    row.epoch_start_seq = epoch_start_seq;
    row.status = DeviceStatus::Active;
    row.quarantine_reason = None;
    row.enrolled_at_ms = Some(now_ms);
    if !request.restore {
        view::introduce(w, &location, now_ms)?;
    }
    Ok(Enrolled {
        location,
        name: device.name,
        timezone: device.timezone,
        epoch,
        epoch_start_seq,
        hub_head: device.head.into(),
    })
}
