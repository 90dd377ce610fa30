//! A throwaway PostgreSQL cluster on a loopback port, made with this machine's server binaries:
//! what `--dev` runs against and what the tests start (one per test binary).
//!
//! The server runs as a child of this process with a parent-death signal, so a crashed or killed
//! parent never leaves a cluster behind; its directory is removed on [`TempPostgres::stop`] and,
//! for a parent that died without stopping it, by the next start.

use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Directory names under the system temp dir start with this, followed by the owner's pid.
const DIR_PREFIX: &str = "ibex-pg-";

/// How to get PostgreSQL when it is missing, said once at the point of failure.
pub const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, postgres) were not found on PATH or under /usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql) or point IBEX_API_DATABASE_URL at a running server";

#[derive(Debug)]
pub struct TempPostgres {
    root: PathBuf,
    port: u16,
    pid: u32,
}

impl TempPostgres {
    /// Creates and starts a cluster whose superuser `postgres` needs no password (trust, loopback
    /// only). Blocks for about a second.
    pub fn start() -> Result<Self, String> {
        remove_orphans();
        let bin = server_bin_dir().ok_or_else(|| INSTALL_HINT.to_owned())?;
        let owner = ServerUser::for_this_process()?;
        let root = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let (data, sockets) = (root.join("data"), root.join("sockets"));
        for dir in [&root, &sockets] {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            owner.own(dir)?;
        }
        let mut initdb = owner.command(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .args(["--locale", "C"]);
        run_quietly(&mut initdb, "initdb")?;

        // A port is free when we look and may be taken when the server binds: try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let mut server = owner.command(bin.join("postgres"));
            server
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(&sockets)
                .args(["-c", "listen_addresses=127.0.0.1"])
                // Throwaway data: no flush to disk (a killed server still keeps what it
                // committed, which the outage tests rely on; only a machine crash loses it).
                .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
                .args(["-c", "max_connections=200"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(root.join("server.log"))
                        .map(Stdio::from)
                        .unwrap_or(Stdio::null()),
                );
            let pid = spawn_tied_to_this_process(server)?;
            let cluster = Self {
                root: root.clone(),
                port,
                pid,
            };
            match cluster.wait_ready(&data, Duration::from_secs(20)) {
                Ok(()) => return Ok(cluster),
                Err(problem) => {
                    last_error = problem;
                    cluster.signal(libc::SIGKILL);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&root);
        Err(format!("PostgreSQL did not start: {last_error}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as the cluster's superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The server writes "ready" into its pid file once it accepts connections (what `pg_ctl -w`
    /// waits for). The file must name this server's pid: a killed server leaves its own file,
    /// still saying "ready", until the new one rewrites it.
    fn wait_ready(&self, data: &Path, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if !self.is_running() {
                return Err(format!(
                    "the server exited; see {}",
                    self.root.join("server.log").display()
                ));
            }
            let pid_file = std::fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
            let lines: Vec<&str> = pid_file.lines().map(str::trim).collect();
            if lines.first() == Some(&self.pid.to_string().as_str())
                && lines.get(7) == Some(&"ready")
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("not ready within 20 s".into())
    }

    fn is_running(&self) -> bool {
        is_alive(self.pid)
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to the server process this value started.
        unsafe {
            libc::kill(self.pid as libc::pid_t, signal);
        }
    }

    /// Fast shutdown (SIGINT: running transactions are rolled back), then the directory goes.
    /// Idempotent.
    pub fn stop(&self) {
        if self.is_running() {
            self.signal(libc::SIGINT);
            let started = Instant::now();
            while self.is_running() && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.is_running() {
                self.signal(libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }

    /// Stops the server abruptly (SIGKILL), keeping the data: [`TempPostgres::restart`] brings
    /// it back on the same port. For outage tests.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let started = Instant::now();
        while self.is_running() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Children of the killed postmaster notice and exit; the next start waits them out.
    }

    /// Shuts the server down keeping the data, as `pg_ctl stop -m fast` (SIGINT: sessions are
    /// ended, transactions rolled back) or `-m immediate` (SIGQUIT: no shutdown checkpoint, crash
    /// recovery at the next start); [`TempPostgres::restart`] brings it back. For outage drills.
    pub fn halt(&mut self, immediate: bool) {
        self.signal(if immediate {
            libc::SIGQUIT
        } else {
            libc::SIGINT
        });
        let started = Instant::now();
        while self.is_running() && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port after [`TempPostgres::kill`].
    pub fn restart(&mut self) -> Result<(), String> {
        let bin = server_bin_dir().ok_or_else(|| INSTALL_HINT.to_owned())?;
        let owner = ServerUser::for_this_process()?;
        let data = self.root.join("data");
        let started = Instant::now();
        loop {
            let mut server = owner.command(bin.join("postgres"));
            server
                .arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-k")
                .arg(self.root.join("sockets"))
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .args(["-c", "max_connections=200"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            self.pid = spawn_tied_to_this_process(server)?;
            match self.wait_ready(&data, Duration::from_secs(20)) {
                Ok(()) => return Ok(()),
                // The old backends may still hold the shared memory or the port for a moment.
                Err(_) if started.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(problem) => return Err(problem),
            }
        }
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `initdb` and `postgres` from PATH, else the newest `/usr/lib/postgresql/<version>/bin`.
fn server_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// PostgreSQL refuses to run as root: as root, the server runs as the `postgres` system user.
struct ServerUser {
    ids: Option<(u32, u32)>,
}

impl ServerUser {
    fn for_this_process() -> Result<Self, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(Self { ids: None });
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let ids = passwd
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|fields| fields.first() == Some(&"postgres") && fields.len() > 3)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .ok_or("running as root, and there is no `postgres` user to run PostgreSQL as (create one, or run as another user)")?;
        Ok(Self { ids: Some(ids) })
    }

    fn own(&self, dir: &Path) -> Result<(), String> {
        match self.ids {
            Some((uid, gid)) => chown(dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display())),
            None => Ok(()),
        }
    }

    fn command(&self, program: PathBuf) -> Command {
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            command
                .uid(uid)
                .gid(gid)
                .env("HOME", "/tmp")
                .current_dir("/tmp");
        }
        command
    }
}

fn run_quietly(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Whether the child `pid` still runs: a reaped child has no /proc entry; a zombie (exited, not
/// yet reaped) has state Z.
pub(crate) fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split(' ').nth(2) != Some("Z"))
}

/// SIGKILLs the child `pid` and waits (at most 5 s) until it is gone.
pub(crate) fn kill_and_wait(pid: u32) {
    // SAFETY: signalling a server process this crate started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    let started = Instant::now();
    while is_alive(pid) && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Spawns `command` so that it receives SIGKILL when this process dies. The parent-death signal
/// fires when the *thread* that spawned the child ends, so the child is spawned from a thread
/// that lives exactly as long as the child (it waits for it, which also reaps it).
pub(crate) fn spawn_tied_to_this_process(mut command: Command) -> Result<u32, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ibex-child-keeper".into())
        .spawn(move || {
            // SAFETY: prctl in the forked child before exec; async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            match command.spawn() {
                Ok(mut child) => {
                    let _ = sender.send(Ok(child.id()));
                    let _ = child.wait();
                }
                Err(e) => {
                    let _ = sender.send(Err(format!("cannot start the server: {e}")));
                }
            }
        })
        .map_err(|e| format!("cannot start a keeper thread: {e}"))?;
    receiver
        .recv()
        .map_err(|_| "the keeper thread died".to_owned())?
}

/// Removes clusters left by processes that no longer exist.
fn remove_orphans() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
