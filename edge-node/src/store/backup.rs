//! A consistent copy of the store's database while the server runs, made
//! with SQLite's online backup API: the copy is one moment of the
//! database, every committed booking up to it and none half-written.
//! A data directory holding the copy as its database serves that state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::OpenFlags;
use rusqlite::backup::{Backup, StepResult};

use super::{DB_FILE, StoreError, StoreResult, open_connection};

/// Pages copied per step: small enough that the running server's writer
/// waits at most a few milliseconds for the copy between steps.
const PAGES_PER_STEP: std::ffi::c_int = 1024;

/// How long the copy pauses between steps, so a busy store keeps taking
/// bookings while it runs.
const PAUSE_BETWEEN_STEPS: Duration = Duration::from_millis(1);

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub path: PathBuf,
    /// The last event of this node's log in the copy.
    pub head_seq: u64,
    pub bookings: u64,
}

/// Copies the database of `data_dir` to `to` while a server may be using
/// it. Writes a file next to `to` first and renames it into place once it
/// is complete and on disk, so `to` is never a partial copy.
pub fn backup(data_dir: &Path, to: &Path) -> StoreResult<BackupSummary> {
    let source_path = data_dir.join(DB_FILE);
    if !source_path.exists() {
        return Err(StoreError::NotInitialized(data_dir.display().to_string()));
    }
    if to.is_dir() {
        return Err(StoreError::Invalid(format!(
            "{} is a directory; give the file to write, like {}/edge-backup.db",
            to.display(),
            to.display()
        )));
    }
    let source = open_connection(&source_path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let partial = to.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    {
        let mut target = rusqlite::Connection::open(&partial)
            .map_err(|e| StoreError::Setup(format!("cannot write {}: {e}", partial.display())))?;
        let backup = Backup::new(&source, &mut target)?;
        loop {
            match backup.step(PAGES_PER_STEP)? {
                StepResult::Done => break,
                // The server's writer holds the lock a moment: try again.
                StepResult::More | StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(PAUSE_BETWEEN_STEPS)
                }
                _ => std::thread::sleep(PAUSE_BETWEEN_STEPS),
            }
        }
        drop(backup);
        // A single file that needs nothing beside it.
        target.pragma_update(None, "journal_mode", "DELETE")?;
        let check: String = target.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Corrupt(format!(
                "the copy failed its check: {check}"
            )));
        }
    }
    let file = std::fs::File::open(&partial)
        .map_err(|e| StoreError::Setup(format!("cannot reopen {}: {e}", partial.display())))?;
    file.sync_all()
        .map_err(|e| StoreError::Setup(format!("cannot flush {}: {e}", partial.display())))?;
    std::fs::rename(&partial, to)
        .map_err(|e| StoreError::Setup(format!("cannot move the copy to {}: {e}", to.display())))?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
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
