//! The real services behind the seed's `mysql` and `redis` pods: a MariaDB and a Redis of our own,
//! on free loopback ports with their data under the sandbox directory (never the system services,
//! so `sandbox fault mysql-down` can kill them). The kubelet simulator forwards port-forwards to
//! pods labelled app=mysql / app=redis here.
//!
//! MariaDB gets `root`@`%` with the seed's published password and the database `new-api`
//! (utf8mb4) through an idempotent `--init-file`, and on first start the New-API-shaped schema of
//! `fixtures/sandbox/newapi-schema.sql` with a few rows of fake data.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::SandboxError;
use super::binaries::Binaries;
use super::process::{self, Started};

/// The New-API schema and its fake rows.
pub const NEWAPI_SCHEMA: &str = include_str!("../../../fixtures/sandbox/newapi-schema.sql");

pub const MARIADB_TIMEOUT: Duration = Duration::from_secs(60);
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(20);

/// Where MariaDB lives and how to log in.
#[derive(Debug, Clone)]
pub struct MariaDbLayout {
    /// The sandbox directory (working directory of the server).
    pub dir: PathBuf,
    pub logs: PathBuf,
    pub datadir: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    pub init_file: PathBuf,
    /// The password of `root`@`%` (from the seed's Secret).
    pub password: String,
    pub database: String,
}

impl MariaDbLayout {
    pub fn new(dir: &Path, port: u16, password: String, database: String) -> Self {
        MariaDbLayout {
            dir: dir.to_path_buf(),
            logs: dir.join("logs"),
            datadir: dir.join("mysql"),
            socket: socket_path(dir, port),
            port,
            init_file: dir.join("mysql-init.sql"),
            password,
            database,
        }
    }
}

/// `DIR/mysql.sock`, unless that is longer than a Unix socket address allows (108 bytes); then a
/// file in the temporary directory named after the port.
pub fn socket_path(dir: &Path, port: u16) -> PathBuf {
    let preferred = dir.join("mysql.sock");
    if preferred.as_os_str().len() < 100 {
        preferred
    } else {
        std::env::temp_dir().join(format!("newapi-ops-mysql-{port}.sock"))
    }
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Creates the system tables in an empty data directory (`mariadb-install-db`); does nothing
/// when the directory is already initialized.
pub async fn install_mariadb(bins: &Binaries, l: &MariaDbLayout) -> Result<(), SandboxError> {
    if l.datadir.join("mysql").is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(&l.logs)
        .map_err(|e| SandboxError::io(format!("creating {}", l.logs.display()), e))?;
    let log = l.logs.join("mariadb-install.log");
    let out = std::fs::File::create(&log)
        .map_err(|e| SandboxError::io(format!("creating {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| SandboxError::io(format!("opening {}", log.display()), e))?;
    let mut cmd = tokio::process::Command::new(&bins.mariadb_install_db);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", l.datadir.display()))
        .arg("--auth-root-authentication-method=socket")
        .arg("--skip-test-db")
        .current_dir(&l.dir)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    if running_as_root() {
        cmd.arg("--user=root");
    }
    let status = cmd.status().await.map_err(|e| SandboxError::StartFailed {
        component: "mariadb-install-db".into(),
        detail: format!("cannot execute {}: {e}", bins.mariadb_install_db.display()),
        log: log.clone(),
        tail: String::new(),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(SandboxError::StartFailed {
            component: "mariadb-install-db".into(),
            detail: format!("it exited with {status}"),
            tail: process::tail_log(&log, 15),
            log,
        })
    }
}

/// The statements MariaDB runs at every start: idempotent, so a restart by `heal` is harmless and
/// a password changed on purpose stays changed.
pub fn init_sql(password: &str, database: &str) -> String {
    let pw = password.replace('\\', "\\\\").replace('\'', "\\'");
    let db = database.replace('`', "``");
    format!(
        "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '{pw}';\n\
         GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;\n\
         CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
    )
}

/// The server's command line.
pub fn mariadbd_args(l: &MariaDbLayout) -> Vec<OsString> {
    let mut a: Vec<String> = vec!["--no-defaults".into()];
    if running_as_root() {
        a.push("--user=root".into());
    }
    a.extend([
        format!("--datadir={}", l.datadir.display()),
        format!("--port={}", l.port),
        "--bind-address=127.0.0.1".into(),
        format!("--socket={}", l.socket.display()),
        format!("--pid-file={}", l.dir.join("mysql.pid").display()),
        "--skip-name-resolve".into(),
        format!("--init-file={}", l.init_file.display()),
        "--character-set-server=utf8mb4".into(),
        "--collation-server=utf8mb4_unicode_ci".into(),
        // Small: this is a rehearsal database, not a production one.
        "--innodb-buffer-pool-size=64M".into(),
        "--performance-schema=OFF".into(),
    ]);
    a.into_iter().map(OsString::from).collect()
}

/// Starts MariaDB (`mariadbd`) and waits until `root` can log in over TCP with the password.
pub async fn start_mariadb(bins: &Binaries, l: &MariaDbLayout) -> Result<Started, SandboxError> {
    super::pki::write_file(
        &l.init_file,
        init_sql(&l.password, &l.database).as_bytes(),
        0o600,
    )?;
    let mut started = process::spawn(
        "mariadb",
        &bins.mariadbd,
        &mariadbd_args(l),
        &l.logs,
        &l.dir,
    )?;
    let (port, password) = (l.port, l.password.clone());
    process::wait_ready(&mut started, MARIADB_TIMEOUT, || {
        let password = password.clone();
        async move {
            let mut conn = connect(port, &password, None).await?;
            conn.query_drop("SELECT 1")
                .await
                .map_err(|e| e.to_string())?;
            let _ = conn.disconnect().await;
            Ok(())
        }
    })
    .await?;
    Ok(started)
}

async fn connect(port: u16, password: &str, db: Option<&str>) -> Result<mysql_async::Conn, String> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("root"))
        .pass(Some(password))
        .db_name(db)
        .prefer_socket(false);
    tokio::time::timeout(Duration::from_secs(5), mysql_async::Conn::new(opts))
        .await
        .map_err(|_| format!("no answer from 127.0.0.1:{port} within 5s"))?
        .map_err(|e| e.to_string())
}

/// Loads the New-API schema and its fake rows, once: returns false when the `users` table was
/// already there.
pub async fn load_schema(l: &MariaDbLayout) -> Result<bool, SandboxError> {
    let err = |what: &str, detail: String| SandboxError::Mysql {
        port: l.port,
        what: what.to_string(),
        detail,
    };
    let mut conn = connect(l.port, &l.password, Some(&l.database))
        .await
        .map_err(|e| err("refused the login as root", e))?;
    let present: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = 'users'",
            (l.database.as_str(),),
        )
        .await
        .map_err(|e| err("could not list tables", e.to_string()))?;
    if present.unwrap_or(0) > 0 {
        let _ = conn.disconnect().await;
        return Ok(false);
    }
    for (i, statement) in split_sql(NEWAPI_SCHEMA).iter().enumerate() {
        conn.query_drop(statement.as_str()).await.map_err(|e| {
            err(
                "rejected fixtures/sandbox/newapi-schema.sql",
                format!("statement {}: {e}", i + 1),
            )
        })?;
    }
    let _ = conn.disconnect().await;
    Ok(true)
}

/// Splits a SQL script into statements at `;` ending a line; drops `--` comment lines.
pub fn split_sql(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            out.push(current.trim().trim_end_matches(';').to_string());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// Where Redis lives.
#[derive(Debug, Clone)]
pub struct RedisLayout {
    pub dir: PathBuf,
    pub logs: PathBuf,
    pub datadir: PathBuf,
    pub port: u16,
}

impl RedisLayout {
    pub fn new(dir: &Path, port: u16) -> Self {
        RedisLayout {
            dir: dir.to_path_buf(),
            logs: dir.join("logs"),
            datadir: dir.join("redis"),
            port,
        }
    }
}

/// The server's command line: no persistence, loopback only.
pub fn redis_args(l: &RedisLayout) -> Vec<OsString> {
    [
        "--port".to_string(),
        l.port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--dir".into(),
        l.datadir.display().to_string(),
        "--daemonize".into(),
        "no".into(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// Starts redis-server and waits for PONG.
pub async fn start_redis(bins: &Binaries, l: &RedisLayout) -> Result<Started, SandboxError> {
    std::fs::create_dir_all(&l.datadir)
        .map_err(|e| SandboxError::io(format!("creating {}", l.datadir.display()), e))?;
    let mut started = process::spawn("redis", &bins.redis_server, &redis_args(l), &l.logs, &l.dir)?;
    let port = l.port;
    process::wait_ready(&mut started, REDIS_TIMEOUT, || redis_ping(port)).await?;
    Ok(started)
}

/// Sends PING to 127.0.0.1:`port` and expects +PONG.
pub async fn redis_ping(port: u16) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connecting to 127.0.0.1:{port}: {e}"))?;
        s.write_all(b"PING\r\n").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        let answer = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        if answer == "+PONG" {
            Ok(())
        } else {
            Err(format!("PING answered {answer:?}"))
        }
    };
    tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| format!("no answer from 127.0.0.1:{port} within 3s"))?
}

/// Whether MariaDB answers a login (used by `status`).
pub async fn mariadb_ping(port: u16, password: &str) -> Result<(), String> {
    let mut conn = connect(port, password, None).await?;
    conn.query_drop("SELECT 1")
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_skips_comments() {
        let s = "-- a comment\nCREATE TABLE a (\n  x int\n);\n\nINSERT INTO a VALUES (1);\n";
        assert_eq!(
            split_sql(s),
            vec![
                "CREATE TABLE a (\n  x int\n)".to_string(),
                "INSERT INTO a VALUES (1)".into()
            ]
        );
    }

    #[test]
    fn schema_has_every_newapi_table() {
        let statements = split_sql(NEWAPI_SCHEMA);
        for table in [
            "users",
            "tokens",
            "channels",
            "abilities",
            "options",
            "logs",
            "redemptions",
            "top_ups",
            "quota_data",
            "midjourneys",
            "tasks",
        ] {
            let create = format!("CREATE TABLE IF NOT EXISTS `{table}`");
            assert!(
                statements.iter().any(|s| s.starts_with(&create)),
                "no {create}"
            );
        }
    }

    #[test]
    fn init_sql_quotes_the_password() {
        let sql = init_sql("it's", "new-api");
        assert!(sql.contains("IDENTIFIED BY 'it\\'s'"));
        assert!(sql.contains("`new-api`"));
    }

    #[test]
    fn long_directories_get_a_short_socket() {
        let long = PathBuf::from(format!("/tmp/{}", "d".repeat(120)));
        assert!(socket_path(&long, 4000).starts_with(std::env::temp_dir()));
        assert_eq!(
            socket_path(Path::new("/tmp/s"), 1),
            PathBuf::from("/tmp/s/mysql.sock")
        );
    }
}
