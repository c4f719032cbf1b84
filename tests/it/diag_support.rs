//! Throwaway MariaDB and Redis servers for the `diagnose` MySQL and Redis tests.
//!
//! Each test that changes server-wide state (max_connections, maxmemory, deadlocks, counters)
//! gets its own server: a free loopback port, data in a temporary directory, killed and removed
//! when the handle is dropped (also when the test panics). MariaDB's root may log in over TCP from
//! 127.0.0.1 without a password (`mariadb-install-db --auth-root-authentication-method=normal`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn find_program(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found in PATH or /usr/sbin: run scripts/setup.sh"))
}

fn running_as_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A MariaDB server of our own.
pub struct MariaDb {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl MariaDb {
    /// Initializes a data directory and starts `mariadbd` on it; waits until root can log in.
    pub async fn start() -> MariaDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let log = dir.path().join("install.log");
        // A tmpdir of its own: a starting server removes leftover `#sql*` files from its tmpdir,
        // which would be the temporary tables of another server bootstrapping at the same time.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        let tmpdir = format!("--tmpdir={}", tmp.display());
        let small = [
            "--innodb-log-file-size=8M",
            "--innodb-buffer-pool-size=16M",
            tmpdir.as_str(),
        ];
        let mut install = Command::new(find_program("mariadb-install-db"));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .args(small)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("install log"))
            .stderr(std::fs::File::create(dir.path().join("install.err")).expect("install log"));
        if running_as_root() {
            install.arg("--user=root");
        }
        let status = install.status().expect("run mariadb-install-db");
        assert!(
            status.success(),
            "mariadb-install-db failed ({status}):\n{}\n{}",
            tail(&log),
            tail(&dir.path().join("install.err"))
        );
        let port = free_port();
        let err_log = dir.path().join("mariadb.err");
        let mut cmd = Command::new(find_program("mariadbd"));
        cmd.arg("--no-defaults");
        if running_as_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--log-error={}", err_log.display()))
            .arg("--skip-name-resolve")
            .arg("--performance-schema=OFF")
            .args(small)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start mariadbd");
        let mut server = MariaDb { child, port, dir };
        let begin = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("mariadbd exited ({status}):\n{}", tail(&err_log));
            }
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                mysql_async::Conn::new(server.opts("root", None, None)),
            )
            .await;
            if let Ok(Ok(conn)) = attempt {
                let _ = conn.disconnect().await;
                return server;
            }
            assert!(
                begin.elapsed() < Duration::from_secs(60),
                "mariadbd on port {port} not ready after 60 s:\n{}",
                tail(&err_log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Options for `user` (with `password`, and `db` if given) over TCP.
    pub fn opts(&self, user: &str, password: Option<&str>, db: Option<&str>) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(user))
            .pass(password)
            .db_name(db)
            .prefer_socket(false)
            .into()
    }

    /// A root connection.
    pub async fn root(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(self.opts("root", None, None))
            .await
            .expect("root connects")
    }

    /// Runs statements as root.
    pub async fn exec(&self, statements: &[&str]) {
        let mut c = self.root().await;
        for s in statements {
            c.query_drop(*s)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        let _ = c.disconnect().await;
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis server of our own.
pub struct Redis {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts `redis-server` with `extra` arguments (e.g. `["--maxmemory", "2mb"]`); waits until
    /// it accepts connections.
    pub async fn start(extra: &[&str]) -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = dir.path().join("redis.log");
        let child = Command::new(find_program("redis-server"))
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let mut server = Redis { child, port, dir };
        let begin = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server exited ({status}):\n{}", tail(&log));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            assert!(
                begin.elapsed() < Duration::from_secs(20),
                "redis-server not ready:\n{}",
                tail(&log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client for `redis://[:password@]127.0.0.1:port`.
    pub fn client(&self, password: Option<&str>) -> redis::Client {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        };
        redis::Client::open(url).expect("redis url")
    }

    /// A connection (with `password`, if the server wants one).
    pub async fn conn(&self, password: Option<&str>) -> redis::aio::MultiplexedConnection {
        self.client(password)
            .get_multiplexed_async_connection()
            .await
            .expect("redis connects")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The findings of `check`, by id.
pub fn by_check<'a>(
    findings: &'a [newapi_ops::diagnose::finding::Finding],
    check: &str,
) -> Vec<&'a newapi_ops::diagnose::finding::Finding> {
    findings.iter().filter(|f| f.check == check).collect()
}

/// The one finding of `check`; fails the test showing all findings otherwise.
pub fn one<'a>(
    findings: &'a [newapi_ops::diagnose::finding::Finding],
    check: &str,
) -> &'a newapi_ops::diagnose::finding::Finding {
    let found = by_check(findings, check);
    assert_eq!(
        found.len(),
        1,
        "expected one {check} finding in {findings:#?}"
    );
    found[0]
}

/// Every finding has evidence and a next step, and none mentions `secret`.
pub fn assert_well_formed(findings: &[newapi_ops::diagnose::finding::Finding], secrets: &[&str]) {
    assert!(!findings.is_empty());
    for f in findings {
        assert!(!f.evidence.is_empty(), "no evidence: {f:#?}");
        assert!(
            f.next_step.as_deref().is_some_and(|n| !n.is_empty()),
            "no next step: {f:#?}"
        );
        let text = serde_json::to_string(f).expect("serialize");
        for s in secrets {
            assert!(!text.contains(s), "a secret leaked into {text}");
        }
    }
}
