//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, a
//! server on a free loopback port with its socket in that dir, stopped and
//! removed when dropped. Tests share one cluster ([`TempPostgres::shared`])
//! and take a database each ([`TempPostgres::create_database`]), since
//! `initdb` costs seconds and a database costs milliseconds.
//!
//! What the hub stores in PostgreSQL belongs to sync-hub, not here: this
//! module only runs the server.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;

/// The cluster's superuser, made by `initdb -U`.
const SUPERUSER: &str = "hub";
/// The database every cluster starts with, the one [`TempPostgres::url`]
/// names.
const DEFAULT_DATABASE: &str = "hub";
/// Where Debian installs each major version's server binaries, off PATH.
const DEBIAN_BIN_ROOT: &str = "/usr/lib/postgresql";
/// The system user that runs the server when the tests run as root:
/// `initdb` and `postgres` refuse to run as root.
const SERVICE_USER: &str = "postgres";
/// Starts tried, each on a new free port: another process can take the
/// port between our picking it and the server binding it, but hardly five
/// times in a row.
const START_ATTEMPTS: u32 = 5;
/// How long `pg_ctl start -w` waits for the server to accept connections.
/// A fresh cluster starts in well under a second; a loaded 2-core machine
/// running other tests can take several.
const START_TIMEOUT_S: u32 = 60;
/// Tests open a pool per hub process, several processes per test and
/// several tests at once; PostgreSQL's default of 100 is too few.
const MAX_CONNECTIONS: u32 = 200;
/// PostgreSQL's limit on identifiers, database names included.
const NAME_LEN_MAX: usize = 63;

const INSTALL_HINT: &str = "install the PostgreSQL server (on Debian: apt-get install postgresql)";

/// A running throwaway cluster; dropping it stops the server and removes
/// its files.
#[derive(Debug)]
pub struct TempPostgres {
    pg_ctl: PathBuf,
    /// `runuser`, when the server's commands run as [`SERVICE_USER`].
    runuser: Option<PathBuf>,
    port: u16,
    // Last: dropped after `Drop::drop` has stopped the server.
    dir: TempDir,
}

impl TempPostgres {
    /// Makes a cluster in a new temp dir and starts it on a free loopback
    /// port, with a database named `hub` (see [`TempPostgres::url`]).
    pub fn start() -> anyhow::Result<Self> {
        let initdb = find_bin("initdb")?;
        let pg_ctl = find_bin("pg_ctl")?;
        let dir = tempfile::Builder::new()
            .prefix("temp-postgres-")
            .tempdir()
            .context("making a temp dir for PostgreSQL")?;
        let runuser = if nix::unistd::geteuid().is_root() {
            Some(hand_to_service_user(dir.path())?)
        } else {
            None
        };
        let data = dir.path().join("data");
        let initdb_output = service_command(runuser.as_deref(), &initdb)
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8"])
            // The C locale: text sorts bytewise as in SQLite, and initdb
            // does not depend on which locales the machine has generated.
            .arg("--no-locale")
            .output()
            .with_context(|| format!("running {}", initdb.display()))?;
        check(&initdb, &initdb_output)?;

        let mut pg = None;
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port()?;
            let log = dir.path().join(format!("postgres-{attempt}.log"));
            let output = service_command(runuser.as_deref(), &pg_ctl)
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(server_options(dir.path(), port)?)
                .args(["-w", "-t", &START_TIMEOUT_S.to_string(), "start"])
                // pg_ctl's own messages only; the server writes to `log`.
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {}", pg_ctl.display()))?;
            if output.status.success() {
                pg = Some(Self {
                    pg_ctl: pg_ctl.clone(),
                    runuser: runuser.clone(),
                    port,
                    dir,
                });
                break;
            }
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            if server_log.contains("Address already in use") && attempt < START_ATTEMPTS {
                continue;
            }
            let failed = failure(&pg_ctl, &output);
            bail!("{failed}\nserver log:\n{server_log}");
        }
        let pg = pg.ok_or_else(|| anyhow!("PostgreSQL did not start"))?;
        // From here on a failure drops `pg`, which stops the server.
        pg.admin(&format!("CREATE DATABASE {DEFAULT_DATABASE}"))?;
        Ok(pg)
    }

    /// One cluster for every test of this process that runs while another
    /// holds it; the last one to drop its handle stops it, so no server
    /// outlives the tests (a `static` would never be dropped).
    pub fn shared() -> anyhow::Result<Arc<Self>> {
        static SHARED: Mutex<Weak<TempPostgres>> = Mutex::new(Weak::new());
        // Held while starting, so tests that ask at once share one cluster.
        let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pg) = slot.upgrade() {
            return Ok(pg);
        }
        let pg = Arc::new(Self::start()?);
        *slot = Arc::downgrade(&pg);
        Ok(pg)
    }

    /// The URL of the cluster's `hub` database.
    pub fn url(&self) -> String {
        self.database_url(DEFAULT_DATABASE)
    }

    /// The port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database and returns its URL. `name` is a plain
    /// lowercase identifier (letters, digits, `_`), unique in the cluster.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let plain = !name.is_empty()
            && name.len() <= NAME_LEN_MAX
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            bail!(
                "database name {name:?} is not a plain lowercase identifier of at most \
                 {NAME_LEN_MAX} characters"
            );
        }
        self.admin(&format!("CREATE DATABASE {name}"))?;
        Ok(self.database_url(name))
    }

    fn database_url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL on the `postgres` database, on a runtime of its own in a
    /// thread of its own: callers may be inside a tokio runtime, where
    /// blocking on another one panics.
    fn admin(&self, sql: &str) -> anyhow::Result<()> {
        let url = self.database_url("postgres");
        let owned = sql.to_owned();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let sql = owned;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = connect(&url).await?;
                client
                    .batch_execute(&sql)
                    .await
                    .with_context(|| format!("running {sql:?} on {url}"))
            })
        })
        .join()
        .map_err(|_| anyhow!("the thread running {sql:?} panicked"))?
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        // Immediate: the files go next, so nothing needs a clean shutdown.
        let stopped = service_command(self.runuser.as_deref(), &self.pg_ctl)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !stopped.is_ok_and(|s| s.success()) {
            eprintln!(
                "could not stop the temporary PostgreSQL server on port {}",
                self.port
            );
        }
    }
}

/// Connects to `url` without TLS and drives the connection on a task of
/// the current runtime until the client is dropped.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("PostgreSQL connection failed: {e}");
        }
    });
    Ok(client)
}

/// `name` from PATH, else from the newest `/usr/lib/postgresql/*/bin`.
fn find_bin(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(found) = find_bin_in(name, []) {
        return Ok(found);
    }
    newest_debian_bin(name).ok_or_else(|| {
        anyhow!(
            "PostgreSQL's {name} was found neither on PATH nor in {DEBIAN_BIN_ROOT}/*/bin: \
             {INSTALL_HINT}"
        )
    })
}

/// `name` from PATH, else from one of `also`.
fn find_bin_in<const N: usize>(name: &str, also: [&str; N]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(also.into_iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn newest_debian_bin(name: &str) -> Option<PathBuf> {
    std::fs::read_dir(DEBIAN_BIN_ROOT)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = parse_version(&entry.file_name())?;
            let candidate = entry.path().join("bin").join(name);
            is_executable(&candidate).then_some((version, candidate))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// A major version directory's name as numbers: `15` or `9.6`.
fn parse_version(name: &OsStr) -> Option<Vec<u32>> {
    name.to_str()?
        .split('.')
        .map(|part| part.parse().ok())
        .collect()
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Gives the temp dir to [`SERVICE_USER`], who will create the cluster in
/// it; returns `runuser`, to run commands as that user.
fn hand_to_service_user(dir: &Path) -> anyhow::Result<PathBuf> {
    let user = nix::unistd::User::from_name(SERVICE_USER)
        .context("looking up the postgres system user")?
        .ok_or_else(|| {
            anyhow!(
                "running as root, but there is no `{SERVICE_USER}` system user to run \
                 PostgreSQL as (initdb refuses root): Debian's postgresql package creates it \
                 (apt-get install postgresql), or run the tests as a normal user"
            )
        })?;
    nix::unistd::chown(dir, Some(user.uid), Some(user.gid))
        .with_context(|| format!("giving {} to {SERVICE_USER}", dir.display()))?;
    // Debian keeps runuser in /usr/sbin, which a root shell may not have
    // on PATH.
    find_bin_in("runuser", ["/usr/sbin", "/sbin"]).ok_or_else(|| {
        anyhow!(
            "running as root, PostgreSQL must run as `{SERVICE_USER}` through runuser, which \
             is not on PATH: install Debian's util-linux package"
        )
    })
}

/// `program`, run as [`SERVICE_USER`] through `runuser` when given.
fn service_command(runuser: Option<&Path>, program: &Path) -> Command {
    match runuser {
        Some(runuser) => {
            let mut command = Command::new(runuser);
            command.args(["-u", SERVICE_USER, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// The server's options, as `pg_ctl -o` passes them through `/bin/sh`:
/// loopback only, the socket in our dir (not the system's, which may not
/// exist or belong to another cluster), and durable commits like
/// production.
fn server_options(dir: &Path, port: u16) -> anyhow::Result<String> {
    let dir = dir
        .to_str()
        .filter(|d| !d.contains('\''))
        .ok_or_else(|| anyhow!("temp dir {} cannot be quoted for pg_ctl", dir.display()))?;
    Ok(format!(
        "-c listen_addresses=127.0.0.1 -p {port} -k '{dir}' -c fsync=on \
         -c max_connections={MAX_CONNECTIONS}"
    ))
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn check(program: &Path, output: &Output) -> anyhow::Result<()> {
    if output.status.success() {
        Ok(())
    } else {
        Err(failure(program, output))
    }
}

fn failure(program: &Path, output: &Output) -> anyhow::Error {
    anyhow!(
        "{} failed ({}):\n{}{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
