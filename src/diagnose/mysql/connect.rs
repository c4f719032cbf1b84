//! The connection of the MySQL checks: why a connection could not be made ([`classify`]), and
//! one [`Session`] whose every query is bounded by the query timeout and the check's budget,
//! reconnecting after a timeout or a broken connection.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Params, Row, Value};

use super::one_line;

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectFailure {
    Refused,
    Timeout,
    /// 1045
    AccessDenied,
    /// 1049
    UnknownDatabase,
    /// 1040
    TooManyConnections,
    /// 1130: the server does not accept this user from this host.
    HostNotAllowed,
    /// 1044: the user may not use the database.
    DatabaseDenied,
    /// The host name does not resolve.
    UnknownHost,
    Other(String),
}

impl ConnectFailure {
    /// A short reason for the summary.
    pub fn reason(&self) -> String {
        match self {
            ConnectFailure::Refused => {
                "connection refused (nothing listens there: MySQL down or wrong port)".into()
            }
            ConnectFailure::Timeout => {
                "no answer in time (network, firewall or an overloaded server)".into()
            }
            ConnectFailure::AccessDenied => "access denied (1045): wrong user or password".into(),
            ConnectFailure::UnknownDatabase => "unknown database (1049)".into(),
            ConnectFailure::TooManyConnections => {
                "too many connections (1040): max_connections is exhausted".into()
            }
            ConnectFailure::HostNotAllowed => {
                "host not allowed (1130): the user may not connect from this address".into()
            }
            ConnectFailure::DatabaseDenied => "access to the database denied (1044)".into(),
            ConnectFailure::UnknownHost => "the host name does not resolve".into(),
            ConnectFailure::Other(detail) => detail.clone(),
        }
    }

    /// What to do about it.
    pub fn next_step(&self, database: &str) -> String {
        match self {
            ConnectFailure::Refused | ConnectFailure::Timeout | ConnectFailure::UnknownHost => {
                "newapi-ops pods (is the mysql pod Running and Ready?), then runbook run db-connection".into()
            }
            ConnectFailure::AccessDenied => {
                "compare the password in SQL_DSN with MYSQL_ROOT_PASSWORD in the Secret (runbook run db-connection)".into()
            }
            ConnectFailure::UnknownDatabase => format!(
                "CREATE DATABASE `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci (or fix the database name in SQL_DSN)",
                database.replace('`', "``")
            ),
            ConnectFailure::TooManyConnections => {
                "raise max_connections or lower SQL_MAX_OPEN_CONNS (runbook run db-connection)".into()
            }
            ConnectFailure::HostNotAllowed | ConnectFailure::DatabaseDenied => {
                "GRANT the user access from the pods' network (runbook run db-connection)".into()
            }
            ConnectFailure::Other(_) => "runbook run db-connection".into(),
        }
    }
}

/// Classifies a connection error.
pub fn classify(err: &mysql_async::Error) -> ConnectFailure {
    match err {
        mysql_async::Error::Server(e) => match e.code {
            1045 => ConnectFailure::AccessDenied,
            1049 => ConnectFailure::UnknownDatabase,
            1040 => ConnectFailure::TooManyConnections,
            1130 => ConnectFailure::HostNotAllowed,
            1044 => ConnectFailure::DatabaseDenied,
            code => ConnectFailure::Other(format!("server error {code}: {}", e.message)),
        },
        mysql_async::Error::Io(mysql_async::IoError::Io(e)) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            std::io::ErrorKind::TimedOut => ConnectFailure::Timeout,
            _ if is_lookup_failure(&e.to_string()) => ConnectFailure::UnknownHost,
            _ => ConnectFailure::Other(format!("I/O error: {e}")),
        },
        other => {
            let text = other.to_string();
            if is_lookup_failure(&text) {
                ConnectFailure::UnknownHost
            } else {
                ConnectFailure::Other(text)
            }
        }
    }
}

fn is_lookup_failure(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("lookup") || t.contains("name or service not known") || t.contains("name resolution")
}

/// A cell as text (the text protocol sends everything as bytes).
pub(super) fn cell(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(v) => Some(v.to_string()),
        Value::UInt(v) => Some(v.to_string()),
        Value::Float(v) => Some(v.to_string()),
        Value::Double(v) => Some(v.to_string()),
        other => Some(format!("{other:?}")),
    }
}

pub(super) fn cell_u64(row: &Row, i: usize) -> Option<u64> {
    let text = cell(row, i)?;
    let t = text.trim();
    t.parse::<u64>().ok().or_else(|| {
        t.parse::<f64>()
            .ok()
            .filter(|v| *v >= 0.0)
            .map(|v| v as u64)
    })
}

/// Why one query produced no answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error("no answer within {}", crate::units::duration(*.0))]
    Timeout(Duration),
    #[error("the time budget of the MySQL check ran out")]
    Budget,
    #[error("{}", one_line(&.0.to_string()))]
    Mysql(mysql_async::Error),
}

/// One connection, reopened after a timeout or an I/O failure; every query is bounded.
pub(super) struct Session {
    opts: Opts,
    conn: Option<Conn>,
    query_timeout: Duration,
    deadline: Option<Instant>,
}

impl Session {
    /// A session on `conn`, opened with `opts`; each query gets `query_timeout`, and none starts
    /// after `deadline`.
    pub(super) fn new(
        opts: Opts,
        conn: Conn,
        query_timeout: Duration,
        deadline: Option<Instant>,
    ) -> Session {
        Session {
            opts,
            conn: Some(conn),
            query_timeout,
            deadline,
        }
    }

    fn remaining(&self) -> Result<Duration, StepError> {
        match self.deadline {
            None => Ok(self.query_timeout),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(StepError::Budget)
                } else {
                    Ok(left.min(self.query_timeout))
                }
            }
        }
    }

    pub(super) async fn rows(&mut self, sql: &str, params: Params) -> Result<Vec<Row>, StepError> {
        let limit = self.remaining()?;
        if self.conn.is_none() {
            let opened = tokio::time::timeout(limit, Conn::new(self.opts.clone())).await;
            match opened {
                Ok(Ok(conn)) => self.conn = Some(conn),
                Ok(Err(e)) => return Err(StepError::Mysql(e)),
                Err(_) => return Err(StepError::Timeout(limit)),
            }
        }
        let limit = self.remaining()?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(StepError::Budget);
        };
        let result = match params {
            Params::Empty => tokio::time::timeout(limit, conn.query::<Row, _>(sql)).await,
            params => tokio::time::timeout(limit, conn.exec::<Row, _, _>(sql, params)).await,
        };
        match result {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => {
                if !matches!(e, mysql_async::Error::Server(_)) {
                    self.conn = None;
                }
                Err(StepError::Mysql(e))
            }
            Err(_) => {
                // The connection is in the middle of a reply: drop it, reconnect next time.
                self.conn = None;
                Err(StepError::Timeout(limit))
            }
        }
    }

    pub(super) async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.disconnect()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_connection_errors() {
        let server = |code: u16| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "m".into(),
                state: "HY000".into(),
            })
        };
        assert_eq!(classify(&server(1045)), ConnectFailure::AccessDenied);
        assert_eq!(classify(&server(1049)), ConnectFailure::UnknownDatabase);
        assert_eq!(classify(&server(1040)), ConnectFailure::TooManyConnections);
        assert_eq!(classify(&server(1130)), ConnectFailure::HostNotAllowed);
        assert!(matches!(classify(&server(1234)), ConnectFailure::Other(_)));
        let io = |kind: std::io::ErrorKind| {
            mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(kind, "x")))
        };
        assert_eq!(
            classify(&io(std::io::ErrorKind::ConnectionRefused)),
            ConnectFailure::Refused
        );
        assert_eq!(
            classify(&io(std::io::ErrorKind::TimedOut)),
            ConnectFailure::Timeout
        );
        let dns = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::other(
            "failed to lookup address information: Name or service not known",
        )));
        assert_eq!(classify(&dns), ConnectFailure::UnknownHost);
        assert!(
            ConnectFailure::AccessDenied
                .reason()
                .contains("wrong user or password")
        );
        assert!(
            ConnectFailure::UnknownDatabase
                .next_step("new-api")
                .contains("`new-api`")
        );
    }
}
