//! A consistent copy of the store's database while the server runs (see
//! `ops_kit::backup`): every committed booking up to one moment and none
//! half-written. A data directory holding the copy as its database, with
//! the store's `device.key`, serves that state.

use std::path::{Path, PathBuf};

use rusqlite::OpenFlags;

use super::{DB_FILE, StoreError, StoreResult};

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub path: PathBuf,
    /// The last event of this node's log in the copy.
    pub head_seq: u64,
    pub bookings: u64,
}

/// Copies the database of `data_dir` to `to` while a server may be using it.
pub fn backup(data_dir: &Path, to: &Path) -> StoreResult<BackupSummary> {
    let source = data_dir.join(DB_FILE);
    if !source.exists() {
        return Err(StoreError::NotInitialized(data_dir.display().to_string()));
    }
    ops_kit::backup::copy(&source, to).map_err(|e| match e {
        ops_kit::backup::BackupError::Target(why) => StoreError::Invalid(why),
        other => StoreError::Setup(other.to_string()),
    })?;
    let copy = rusqlite::Connection::open_with_flags(to, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let head_seq: i64 =
        copy.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |r| r.get(0))?;
    let bookings: i64 = copy.query_row("SELECT count(*) FROM bookings", [], |r| r.get(0))?;
    Ok(BackupSummary {
        path: to.to_owned(),
        head_seq: head_seq as u64,
        bookings: bookings as u64,
    })
}
