//! MySQL connections for backups and restores: the same session settings on every connection
//! (UTF-8, UTC, no auto-value on zero), and errors typed with the endpoint and the step.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::error::{BackupError, Result};
use crate::backends::Endpoint;

/// A connection and the endpoint it reaches, for messages.
pub struct Db {
    pub conn: Conn,
    pub endpoint: String,
}

/// Session settings of every connection: values are read and written in utf8mb4 and UTC, `0`
/// in an AUTO_INCREMENT column stays `0`, and slow clients are not cut off.
const SESSION: &[&str] = &[
    "SET NAMES utf8mb4",
    "SET SESSION time_zone = '+00:00', sql_mode = 'NO_AUTO_VALUE_ON_ZERO', net_read_timeout = 3600, net_write_timeout = 3600, wait_timeout = 86400",
];

impl Db {
    /// Connects without a default database (names are qualified) and sets the session up.
    pub async fn connect(ep: &Endpoint) -> Result<Db> {
        let endpoint = ep.to_string();
        let mut opts = mysql_async::OptsBuilder::from_opts(ep.mysql_opts());
        opts = opts.db_name(None::<String>);
        let conn = Conn::new(opts).await.map_err(|e| match &e {
            mysql_async::Error::Server(_) => BackupError::mysql(&endpoint, "the login", &e),
            _ => BackupError::Connect {
                endpoint: endpoint.clone(),
                detail: connect_detail(&e),
            },
        })?;
        let mut db = Db { conn, endpoint };
        for s in SESSION {
            db.exec(s, "setting up the session").await?;
        }
        Ok(db)
    }

    /// Runs a statement, discarding any result.
    pub async fn exec(&mut self, sql: &str, during: &str) -> Result<()> {
        self.conn
            .query_drop(sql)
            .await
            .map_err(|e| BackupError::mysql(&self.endpoint, during, &e))
    }

    /// Runs a query returning rows of `T`.
    pub async fn rows<T: mysql_async::prelude::FromRow + Send + 'static>(
        &mut self,
        sql: &str,
        during: &str,
    ) -> Result<Vec<T>> {
        self.conn
            .query(sql)
            .await
            .map_err(|e| BackupError::mysql(&self.endpoint, during, &e))
    }

    /// The error of a failed step, typed.
    pub fn error(&self, during: &str, e: &mysql_async::Error) -> BackupError {
        BackupError::mysql(&self.endpoint, during, e)
    }

    /// Closes the connection politely (errors are of no interest any more).
    pub async fn close(self) {
        let _ = self.conn.disconnect().await;
    }
}

fn connect_detail(e: &mysql_async::Error) -> String {
    if let mysql_async::Error::Io(mysql_async::IoError::Io(io)) = e {
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                return "connection refused (nothing listens there)".into();
            }
            std::io::ErrorKind::TimedOut => return "no answer (timed out)".into(),
            _ => {}
        }
    }
    e.to_string()
}
