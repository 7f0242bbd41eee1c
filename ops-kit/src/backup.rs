//! A consistent copy of a SQLite database while its server writes to it,
//! through SQLite's online backup API; the hub's `backup` command and the
//! store's both use it. The copy is one moment of the database, written
//! beside the target and renamed into place once it is checked and on
//! disk, so the target is never a partial copy.

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// Pages copied per step: small enough that the running server's writer
/// waits at most a few milliseconds for the copy between steps.
const PAGES_PER_STEP: std::ffi::c_int = 1024;

/// How long the copy pauses between steps, so a busy server keeps
/// committing while it runs.
const PAUSE_BETWEEN_STEPS: Duration = Duration::from_millis(1);

/// How long a step waits for the server's write lock before it retries.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Target(String),
    #[error("the copy failed its integrity check: {0}")]
    Check(String),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Copies the database at `source` to `to`.
pub fn copy(source: &Path, to: &Path) -> Result<(), BackupError> {
    if to.is_dir() {
        return Err(BackupError::Target(format!(
            "{} is a directory; give the file to write, like {}",
            to.display(),
            to.join("backup.db").display()
        )));
    }
    let source = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.busy_timeout(BUSY_TIMEOUT)?;
    let partial = to.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    let io = |what: &str, path: &Path, e: std::io::Error| {
        BackupError::Target(format!("cannot {what} {}: {e}", path.display()))
    };
    {
        let mut target = Connection::open(&partial)?;
        let backup = Backup::new(&source, &mut target)?;
        while backup.step(PAGES_PER_STEP)? != StepResult::Done {
            // More to copy, or the server's writer holds the lock a moment.
            std::thread::sleep(PAUSE_BETWEEN_STEPS);
        }
        drop(backup);
        // One file that needs nothing beside it.
        target.pragma_update(None, "journal_mode", "DELETE")?;
        let check: String = target.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(BackupError::Check(check));
        }
    }
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("flush", &partial, e))?;
    std::fs::rename(&partial, to).map_err(|e| io("move the copy to", to, e))?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}
