//! A throwaway `redis-server` on a loopback port (Debian's `redis-server` package), for `--dev`
//! and the tests: no persistence, tied to this process like the PostgreSQL cluster.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::postgres::{free_port, is_alive, kill_and_wait, spawn_tied_to_this_process};

#[derive(Debug)]
pub struct TempRedis {
    port: u16,
    pid: u32,
}

/// `redis-server` on PATH or in Debian's location.
pub fn server_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|bin| bin.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/bin/redis-server");
        debian.is_file().then_some(debian)
    })
}

impl TempRedis {
    pub fn start() -> Result<Self, String> {
        let bin = server_binary()
            .ok_or("redis-server not found (Debian: apt-get install redis-server)")?;
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let mut command = Command::new(&bin);
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let pid = spawn_tied_to_this_process(command)?;
            let server = Self { port, pid };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Ok(server);
                }
                if !server.is_running() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last_error = format!("no listener on port {port}");
            server.stop();
        }
        Err(format!("redis-server did not start: {last_error}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn is_running(&self) -> bool {
        is_alive(self.pid)
    }

    /// Stops the server (for outage tests, [`TempRedis::restart`] brings it back on its port).
    pub fn stop(&self) {
        kill_and_wait(self.pid);
    }

    pub fn restart(&mut self) -> Result<(), String> {
        let bin = server_binary().ok_or("redis-server not found")?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let mut command = Command::new(&bin);
            command
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            self.pid = spawn_tied_to_this_process(command)?;
            let attempt = Instant::now();
            while attempt.elapsed() < Duration::from_secs(2) {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return Ok(());
                }
                if !self.is_running() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("redis-server did not restart".into())
    }
}

impl Drop for TempRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
