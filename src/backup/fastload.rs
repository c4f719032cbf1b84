//! `restore --fast-load`: durability relaxed on the server for the time of the load, as
//! myloader offers, for a dedicated or scratch server only.
//!
//! [`check`] (before anything changes, with the rest of the restore's checks) tells MariaDB from
//! MySQL, refuses when other clients are connected (unless allowed), proves that the account may
//! set globals (by setting one to the value it has), and makes the [`Plan`]: the globals whose
//! value differs from the fast one, and on MySQL 8.0.21 and later the redo log.
//! [`Plan::apply`] records each original value, then changes it, on a connection of its own; the
//! [`Relaxed`] guard it returns puts everything back with [`Relaxed::put_back`] — on that
//! connection, or on a new one if it died — and, if it is dropped before that (the command cut
//! short by a second Ctrl-C), from its `Drop` on a thread of its own. What cannot be put back is
//! a [`BackupError::GlobalsLeft`], which names each global and the SQL that restores it.

use mysql_async::prelude::Queryable as _;
use serde::Serialize;

use super::conn::Db;
use super::error::{BackupError, Result};
use crate::backends::Endpoint;

/// One global that a fast load relaxes.
struct Relax {
    name: &'static str,
    /// The value during the load.
    fast: &'static str,
    /// Which servers have it.
    on: Flavor,
    /// Left alone (with a note) where the server has it read-only: MariaDB 10.11's
    /// `innodb_doublewrite` is (checked: `SET GLOBAL` gives error 1238), later versions made it
    /// dynamic.
    optional: bool,
}

/// The globals relaxed, in the order they are changed (put back in the reverse order).
const RELAX: &[Relax] = &[
    // Commits write the redo log but do not flush it: a crash of the server loses the last
    // second of commits (the whole restore is then redone anyway).
    Relax {
        name: "innodb_flush_log_at_trx_commit",
        fast: "0",
        on: Flavor::Any,
        optional: false,
    },
    // The binary log (when there is one) is not synced by the server at each commit.
    Relax {
        name: "sync_binlog",
        fast: "0",
        on: Flavor::Any,
        optional: false,
    },
    Relax {
        name: "innodb_doublewrite",
        fast: "0",
        on: Flavor::MariaDb,
        optional: true,
    },
];

/// Which server a [`Relax`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Any,
    MariaDb,
}

/// The server, as its version tells.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    /// `VERSION()`.
    pub version: String,
    pub mariadb: bool,
    /// MySQL 8.0.21 or later: `ALTER INSTANCE DISABLE INNODB REDO_LOG` exists.
    pub redo_log_switch: bool,
}

impl Server {
    /// From `VERSION()` and `@@version_comment`: MariaDB says so in one of them (`10.11.19-MariaDB-0+deb12u1`,
    /// `mariadb.org binary distribution`); anything else is MySQL (or a fork of it) whose version
    /// starts `MAJOR.MINOR.PATCH`.
    pub fn detect(version: &str, comment: &str) -> Server {
        let mariadb = version.to_ascii_lowercase().contains("mariadb")
            || comment.to_ascii_lowercase().contains("mariadb");
        let numbers: Vec<u32> = version
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        let at_least = |want: [u32; 3]| numbers.as_slice() >= want.as_slice();
        Server {
            version: version.to_string(),
            mariadb,
            redo_log_switch: !mariadb && at_least([8, 0, 21]),
        }
    }
}

/// A global changed by a fast load: its name, the value it had, the value during the load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub name: String,
    pub original: String,
    pub fast: String,
}

impl Change {
    /// The statement that puts it back.
    pub fn put_back_sql(&self) -> String {
        format!("SET GLOBAL {} = {};", self.name, literal(&self.original))
    }
}

/// The statement that turns the redo log on again (MySQL ≥ 8.0.21).
const REDO_LOG_ON: &str = "ALTER INSTANCE ENABLE INNODB REDO_LOG;";

/// What a fast load will change, decided before anything does.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub server: Server,
    /// Globals whose value differs from the fast one.
    pub changes: Vec<Change>,
    /// The redo log is on and will be disabled for the load (MySQL ≥ 8.0.21).
    pub redo_log: bool,
    /// What was left alone, and why (a read-only variable on this server).
    pub notes: Vec<String>,
    /// Other sessions connected, allowed by `--allow-other-clients`.
    pub others_allowed: Vec<String>,
}

/// What the load ran with and what was put back, for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct FastLoadReport {
    pub server: String,
    pub changed: Vec<Change>,
    pub redo_log_disabled: bool,
    /// Everything was put back (always true in a summary: otherwise the restore fails).
    pub put_back: bool,
}

/// A session of another client, as the process list shows it.
struct Session {
    id: u64,
    user: String,
    host: String,
}

/// Users that are the server's own threads, not clients.
const SYSTEM_USERS: &[&str] = &["system user", "event_scheduler"];

/// Checks that `db`'s server may be relaxed (no other client unless `allow_other_clients`; the
/// privilege to set globals) and plans what to change. Changes nothing.
pub async fn check(db: &mut Db, allow_other_clients: bool) -> Result<Plan> {
    let found: Vec<(String, String)> = db
        .rows(
            "SELECT VERSION(), @@version_comment",
            "asking the server's version",
        )
        .await?;
    let (version, comment) = found.into_iter().next().unwrap_or_default();
    let server = Server::detect(&version, &comment);
    let mut others = other_sessions(db).await?;
    if !others.is_empty() {
        // A client that has just disconnected (a backup run right before) can still be listed
        // for a moment: look once more before refusing.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        others = other_sessions(db).await?;
    }
    let others_allowed = if others.is_empty() {
        Vec::new()
    } else if allow_other_clients {
        describe(&others)
    } else {
        return Err(BackupError::OtherClients {
            endpoint: db.endpoint.clone(),
            sessions: describe(&others),
        });
    };
    let mut changes = Vec::new();
    let mut notes = Vec::new();
    for r in RELAX {
        if r.on == Flavor::MariaDb && !server.mariadb {
            continue;
        }
        let value: Vec<Option<String>> = db
            .rows(
                &format!("SELECT @@GLOBAL.{}", r.name),
                &format!("reading {}", r.name),
            )
            .await?;
        let Some(Some(original)) = value.into_iter().next() else {
            continue;
        };
        if same_value(&original, r.fast) {
            continue;
        }
        // Setting it to the value it has changes nothing, and needs the same privilege.
        let probe = format!("SET GLOBAL {} = {}", r.name, literal(&original));
        match db.conn.query_drop(probe.as_str()).await {
            Ok(()) => {}
            Err(mysql_async::Error::Server(e)) if e.code == READ_ONLY && r.optional => {
                notes.push(format!(
                    "{} is read-only on this server ({}): left as it is",
                    r.name, server.version
                ));
                continue;
            }
            Err(mysql_async::Error::Server(e)) if DENIED.contains(&e.code) => {
                return Err(BackupError::FastLoadDenied {
                    endpoint: db.endpoint.clone(),
                    mariadb: server.mariadb,
                    detail: format!("{} ({})", e.message, e.code),
                });
            }
            Err(e) => return Err(db.error(&format!("checking that {} can be set", r.name), &e)),
        }
        changes.push(Change {
            name: r.name.to_string(),
            original,
            fast: r.fast.to_string(),
        });
    }
    let redo_log = server.redo_log_switch && redo_log_enabled(db).await?;
    Ok(Plan {
        server,
        changes,
        redo_log,
        notes,
        others_allowed,
    })
}

/// "Variable 'x' is a read only variable".
const READ_ONLY: u16 = 1238;
/// "Access denied; you need (at least one of) the SUPER privilege(s)" (MariaDB, MySQL), and
/// MySQL 8's "...the SYSTEM_VARIABLES_ADMIN or SUPER privilege(s)" has the same code.
const DENIED: &[u16] = &[1227];

/// `Innodb_redo_log_enabled` is ON (MySQL ≥ 8.0.21).
async fn redo_log_enabled(db: &mut Db) -> Result<bool> {
    let status: Vec<(String, String)> = db
        .rows(
            "SHOW GLOBAL STATUS LIKE 'Innodb_redo_log_enabled'",
            "asking whether the redo log is enabled",
        )
        .await?;
    Ok(status
        .first()
        .is_some_and(|(_, v)| v.eq_ignore_ascii_case("ON")))
}

/// The client sessions other than `db`'s own, the server's threads left out. An account without
/// PROCESS sees only its own sessions in the process list: sessions counted by
/// `Threads_connected` but not seen are other clients all the same (named as unseen).
async fn other_sessions(db: &mut Db) -> Result<Vec<Session>> {
    let during = "listing the server's sessions";
    let system = SYSTEM_USERS
        .iter()
        .map(|u| super::sql::quote(u))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(u64, String, String)> = db
        .rows(
            &format!(
                "SELECT ID, USER, HOST FROM information_schema.PROCESSLIST \
                 WHERE ID <> CONNECTION_ID() AND USER NOT IN ({system}) \
                 AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Killed') ORDER BY ID"
            ),
            during,
        )
        .await?;
    let mut sessions: Vec<Session> = rows
        .into_iter()
        .map(|(id, user, host)| Session { id, user, host })
        .collect();
    let connected: Vec<(String, u64)> = db
        .rows("SHOW GLOBAL STATUS LIKE 'Threads_connected'", during)
        .await?;
    let connected = connected.first().map_or(0, |(_, n)| *n);
    let seen = sessions.len() as u64 + 1;
    for _ in seen..connected {
        sessions.push(Session {
            id: 0,
            user: "(not visible to this account: it lacks PROCESS)".into(),
            host: String::new(),
        });
    }
    Ok(sessions)
}

/// `user@host (id N)` for each session.
fn describe(sessions: &[Session]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| {
            if s.id == 0 {
                s.user.clone()
            } else {
                // The client's port says nothing to the reader and changes on every connection.
                let host = s.host.rsplit_once(':').map_or(s.host.as_str(), |(h, _)| h);
                format!("{}@{host} (id {})", s.user, s.id)
            }
        })
        .collect()
}

/// Whether a value read back equals a fast value (`0` and `OFF` are the same setting).
fn same_value(value: &str, fast: &str) -> bool {
    let norm = |v: &str| match v.to_ascii_uppercase().as_str() {
        "OFF" | "FALSE" => "0".to_string(),
        "ON" | "TRUE" => "1".to_string(),
        other => other.to_string(),
    };
    norm(value) == norm(fast)
}

/// A value as it is written in `SET GLOBAL`: numbers bare (the server refuses a quoted number
/// for a numeric variable), anything else quoted.
fn literal(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        value.to_string()
    } else {
        super::sql::quote(value)
    }
}

/// The statements that put `changed` (and the redo log) back, in order: the last change first.
fn put_back_sql(changed: &[Change], redo_log: bool) -> Vec<String> {
    let mut sql: Vec<String> = Vec::new();
    if redo_log {
        sql.push(REDO_LOG_ON.to_string());
    }
    sql.extend(changed.iter().rev().map(Change::put_back_sql));
    sql
}

impl Plan {
    /// The statements that would put back what [`Plan::apply`] changes.
    pub fn put_back_sql(&self) -> Vec<String> {
        put_back_sql(&self.changes, self.redo_log)
    }

    /// Changes the globals on a connection of its own, each original recorded first; if one
    /// cannot be changed, those already changed are put back before the error is returned.
    pub async fn apply(&self, mysql: &Endpoint) -> Result<Relaxed> {
        let guard = Db::connect(mysql).await?;
        let mut relaxed = Relaxed {
            mysql: mysql.clone(),
            endpoint: guard.endpoint.clone(),
            server: self.server.version.clone(),
            guard: Some(guard),
            changed: Vec::new(),
            redo_log_disabled: false,
            done: false,
        };
        let mut failed = None;
        for c in &self.changes {
            let sql = format!("SET GLOBAL {} = {}", c.name, literal(&c.fast));
            let Some(db) = relaxed.guard.as_mut() else {
                break;
            };
            // Recorded first: a change whose answer is lost may have happened all the same.
            relaxed.changed.push(c.clone());
            if let Err(e) = db.exec(&sql, &format!("setting {}", c.name)).await {
                failed = Some(e);
                break;
            }
        }
        if failed.is_none()
            && self.redo_log
            && let Some(db) = relaxed.guard.as_mut()
        {
            relaxed.redo_log_disabled = true;
            if let Err(e) = db
                .exec(
                    "ALTER INSTANCE DISABLE INNODB REDO_LOG",
                    "disabling the redo log",
                )
                .await
            {
                failed = Some(e);
            }
        }
        match failed {
            None => Ok(relaxed),
            Some(e) => match relaxed.put_back().await {
                Ok(_) => Err(e),
                Err(BackupError::GlobalsLeft {
                    endpoint,
                    left,
                    detail,
                    ..
                }) => Err(BackupError::GlobalsLeft {
                    endpoint,
                    left,
                    detail,
                    cause: Some(Box::new(e)),
                }),
                Err(other) => Err(other),
            },
        }
    }
}

/// Globals changed on the server: put back by [`Relaxed::put_back`], or when dropped.
pub struct Relaxed {
    mysql: Endpoint,
    endpoint: String,
    server: String,
    /// The connection that changed them; `None` once closed.
    guard: Option<Db>,
    changed: Vec<Change>,
    redo_log_disabled: bool,
    done: bool,
}

impl Relaxed {
    fn put_back_sql(&self) -> Vec<String> {
        put_back_sql(&self.changed, self.redo_log_disabled)
    }

    /// What the load ran with.
    pub fn report(&self) -> FastLoadReport {
        FastLoadReport {
            server: self.server.clone(),
            changed: self.changed.clone(),
            redo_log_disabled: self.redo_log_disabled,
            put_back: self.done,
        }
    }

    /// Puts every changed global back: on the guard's connection, or on a new one if that
    /// fails (the load's connections may have died with it). The report of what was put back,
    /// or [`BackupError::GlobalsLeft`] naming what was not and how to do it by hand.
    pub async fn put_back(mut self) -> Result<FastLoadReport> {
        let statements = self.put_back_sql();
        let mut first = self.guard.take();
        let mut left = statements.clone();
        let mut detail = String::new();
        for attempt in 0..2 {
            let db = match first.take() {
                Some(db) => Ok(db),
                None => Db::connect(&self.mysql).await,
            };
            let mut db = match db {
                Ok(db) => db,
                Err(e) => {
                    detail = e.to_string();
                    continue;
                }
            };
            while let Some(sql) = left.first() {
                match db.exec(sql, "putting a global back").await {
                    Ok(()) => {
                        left.remove(0);
                    }
                    Err(e) => {
                        detail = e.to_string();
                        tracing::debug!("attempt {attempt} to put the globals back: {e}");
                        break;
                    }
                }
            }
            db.close().await;
            if left.is_empty() {
                break;
            }
        }
        self.done = true;
        if left.is_empty() {
            let mut report = self.report();
            report.put_back = true;
            Ok(report)
        } else {
            Err(BackupError::GlobalsLeft {
                endpoint: self.endpoint.clone(),
                left,
                detail,
                cause: None,
            })
        }
    }
}

impl Drop for Relaxed {
    /// The command was dropped before it put the globals back (a second Ctrl-C or SIGTERM while
    /// it was finishing): put them back now, on a new connection from a thread of its own, and
    /// say loudly if that fails.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let mysql = self.mysql.clone();
        let endpoint = self.endpoint.clone();
        let statements = self.put_back_sql();
        // The guard's connection belongs to this runtime: dropped here, a new one there.
        drop(self.guard.take());
        let shown = statements.join(" ");
        let worker = std::thread::Builder::new()
            .name("fast-load-put-back".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async move {
                    let mut db = Db::connect(&mysql).await.map_err(|e| e.to_string())?;
                    for sql in &statements {
                        db.exec(sql, "putting a global back")
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    db.close().await;
                    Ok::<(), String>(())
                })
            });
        let outcome = match worker {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err("the thread putting them back panicked".into())),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => tracing::warn!("fast load stopped: the globals of {endpoint} are put back"),
            Err(e) => tracing::error!(
                "fast load stopped: the globals of {endpoint} are LEFT CHANGED ({e}); put them back with: {shown}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_told_apart_by_their_version() {
        let m = Server::detect("10.11.19-MariaDB-0+deb12u1", "Debian 12");
        assert!(m.mariadb && !m.redo_log_switch);
        let m = Server::detect("11.4.2", "mariadb.org binary distribution");
        assert!(m.mariadb && !m.redo_log_switch, "{m:?}");
        let s = Server::detect("8.0.21", "MySQL Community Server - GPL");
        assert!(!s.mariadb && s.redo_log_switch);
        let s = Server::detect("8.4.3-commercial", "MySQL Enterprise Server");
        assert!(s.redo_log_switch);
        let s = Server::detect("8.0.20", "MySQL Community Server - GPL");
        assert!(!s.redo_log_switch);
        let s = Server::detect("5.7.44-log", "MySQL Community Server (GPL)");
        assert!(!s.redo_log_switch);
        let s = Server::detect("8.0.36-28", "Percona Server (GPL)");
        assert!(s.redo_log_switch && !s.mariadb);
    }

    #[test]
    fn values_are_written_as_set_global_reads_them() {
        assert_eq!(literal("1"), "1");
        assert_eq!(literal("ON"), "'ON'");
        assert_eq!(literal("fast"), "'fast'");
        assert!(same_value("OFF", "0") && same_value("0", "0"));
        assert!(!same_value("1", "0") && !same_value("ON", "0"));
        let c = Change {
            name: "innodb_flush_log_at_trx_commit".into(),
            original: "2".into(),
            fast: "0".into(),
        };
        assert_eq!(
            c.put_back_sql(),
            "SET GLOBAL innodb_flush_log_at_trx_commit = 2;"
        );
    }

    /// What cannot be put back is said loudly, with the SQL, and ends as the failure that came
    /// first (a signal: 143), or as an unreachable server (69) after a load that succeeded.
    #[test]
    fn globals_left_changed_name_the_sql_and_keep_the_first_failure() {
        let left = |cause: Option<BackupError>| BackupError::GlobalsLeft {
            endpoint: "ops@127.0.0.1:3306/new-api".into(),
            left: put_back_sql(
                &[Change {
                    name: "sync_binlog".into(),
                    original: "1".into(),
                    fast: "0".into(),
                }],
                true,
            ),
            detail: "cannot connect to MySQL at ops@127.0.0.1:3306/new-api: connection refused"
                .into(),
            cause: cause.map(Box::new),
        };
        let e = left(None);
        let text = e.to_string();
        assert!(text.contains("GLOBAL VARIABLES OF ops@127.0.0.1:3306/new-api ARE LEFT CHANGED"));
        assert!(
            text.ends_with(
                "put them back with: ALTER INSTANCE ENABLE INNODB REDO_LOG; SET GLOBAL sync_binlog = 1;"
            ),
            "{text}"
        );
        assert_eq!(
            crate::error::Error::from(e).exit_code(),
            crate::exit::UNAVAILABLE
        );
        let e = left(Some(BackupError::Interrupted {
            what: "restore".into(),
            signal: crate::signals::Signal::Terminate,
        }));
        assert!(
            e.to_string()
                .contains("the restore itself failed first: restore interrupted by SIGTERM")
        );
        assert_eq!(
            crate::error::Error::from(e).exit_code(),
            crate::exit::TERMINATED
        );
        let busy = BackupError::OtherClients {
            endpoint: "e".into(),
            sessions: vec!["app@10.0.0.7 (id 12)".into(), "app@10.0.0.8 (id 13)".into()],
        };
        assert!(busy.to_string().contains(
            "2 other clients are connected to e: app@10.0.0.7 (id 12), app@10.0.0.8 (id 13)"
        ));
        assert_eq!(
            crate::error::Error::from(busy).exit_code(),
            crate::exit::SERVER_BUSY
        );
    }

    #[test]
    fn sessions_are_named_without_their_port() {
        let s = [
            Session {
                id: 7,
                user: "app".into(),
                host: "10.1.2.3:51234".into(),
            },
            Session {
                id: 0,
                user: "(unseen)".into(),
                host: String::new(),
            },
        ];
        assert_eq!(describe(&s), ["app@10.1.2.3 (id 7)", "(unseen)"]);
    }
}
