//! The database New-API uses: whether it exists, the size and rows of each table (New-API's
//! `logs` table above all, which grows without bound) and utf8mb4 everywhere.

use mysql_async::{Params, Value};

use super::connect::{ConnectFailure, Session, cell, cell_u64};
use super::{MysqlCheckConfig, finding, step_failed};
use crate::diagnose::finding::{Finding, Severity};
use crate::units::bytes;

/// The charset a collation belongs to (`utf8mb4_unicode_ci` → `utf8mb4`).
pub fn charset_of(collation: &str) -> &str {
    collation.split('_').next().unwrap_or(collation)
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

struct Table {
    name: String,
    engine: String,
    rows: u64,
    data: u64,
    index: u64,
    collation: String,
}

pub(super) async fn schema(s: &mut Session, cfg: &MysqlCheckConfig, out: &mut Vec<Finding>) {
    let db = cfg.database.as_str();
    let subject = format!("database {db}");
    // MySQL 8 caches table statistics for a day by default; ask for fresh ones (MariaDB has no
    // such variable and refuses the statement, which is fine).
    let _ = s
        .rows(
            "SET SESSION information_schema_stats_expiry = 0",
            Params::Empty,
        )
        .await;
    let schemata = s
        .rows(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            Params::Positional(vec![Value::from(db)]),
        )
        .await;
    let (charset, collation) = match schemata {
        Ok(rows) => match rows.first() {
            Some(r) => (
                cell(r, 0).unwrap_or_default(),
                cell(r, 1).unwrap_or_default(),
            ),
            None => {
                out.push(
                    finding(
                        "mysql.database",
                        Severity::Critical,
                        format!("database {db} does not exist"),
                    )
                    .subject(subject)
                    .evidence(format!("information_schema.SCHEMATA has no {db}"))
                    .next(ConnectFailure::UnknownDatabase.next_step(db)),
                );
                return;
            }
        },
        Err(e) => {
            out.push(step_failed(
                "mysql.charset",
                "the database's charset",
                &e,
                &subject,
            ));
            return;
        }
    };
    let tables = s
        .rows(
            "SELECT TABLE_NAME, ENGINE, TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH, TABLE_COLLATION \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'",
            Params::Positional(vec![Value::from(db)]),
        )
        .await;
    let mut tables: Vec<Table> = match tables {
        Ok(rows) => rows
            .iter()
            .map(|r| Table {
                name: cell(r, 0).unwrap_or_default(),
                engine: cell(r, 1).unwrap_or_default(),
                rows: cell_u64(r, 2).unwrap_or(0),
                data: cell_u64(r, 3).unwrap_or(0),
                index: cell_u64(r, 4).unwrap_or(0),
                collation: cell(r, 5).unwrap_or_default(),
            })
            .collect(),
        Err(e) => {
            out.push(step_failed("mysql.tables", "the tables", &e, &subject));
            Vec::new()
        }
    };
    tables.sort_by(|a, b| {
        (b.data + b.index)
            .cmp(&(a.data + a.index))
            .then(a.name.cmp(&b.name))
    });

    // Sizes.
    if !tables.is_empty() {
        let total: u64 = tables.iter().map(|t| t.data + t.index).sum();
        let mut f = finding(
            "mysql.tables",
            Severity::Info,
            format!("{} tables, {} in total", tables.len(), bytes(total)),
        )
        .subject(subject.clone());
        for t in &tables {
            f = f.evidence(format!(
                "{}: {} (data {} + index {}), ~{} rows, {}",
                t.name,
                bytes(t.data + t.index),
                bytes(t.data),
                bytes(t.index),
                t.rows,
                t.engine
            ));
        }
        out.push(f.next("nothing to do (row counts are InnoDB's estimates)"));
    }
    if let Some(logs) = tables.iter().find(|t| t.name == "logs") {
        let size = logs.data + logs.index;
        if size > cfg.logs_warn_bytes {
            out.push(
                finding(
                    "mysql.logs_table",
                    Severity::Warning,
                    format!(
                        "New-API's logs table holds {} (~{} rows), above {}: it grows without bound",
                        bytes(size),
                        logs.rows,
                        bytes(cfg.logs_warn_bytes)
                    ),
                )
                .subject(format!("{db}.logs"))
                .evidence(format!("logs: data {} + index {}, ~{} rows", bytes(logs.data), bytes(logs.index), logs.rows))
                .evidence("New-API writes a row per request and never deletes them itself")
                .next(
                    "runbook run backup, then prune old logs: in New-API's admin settings (log settings → clear history logs), \
                     i.e. DELETE /api/log/?target_timestamp=<unix time> as an admin; or in SQL DELETE FROM logs WHERE created_at < <unix time> LIMIT 10000 \
                     (repeat), then OPTIMIZE TABLE logs to return the space",
                ),
            );
        } else {
            out.push(
                finding(
                    "mysql.logs_table",
                    Severity::Ok,
                    format!("New-API's logs table holds {}", bytes(size)),
                )
                .subject(format!("{db}.logs"))
                .evidence(format!(
                    "~{} rows; the warning threshold is {}",
                    logs.rows,
                    bytes(cfg.logs_warn_bytes)
                ))
                .next("nothing to do"),
            );
        }
    }

    // Charsets.
    let schema_cs = charset.to_ascii_lowercase();
    let bad_tables: Vec<&Table> = tables
        .iter()
        .filter(|t| {
            !t.collation.is_empty() && charset_of(&t.collation.to_ascii_lowercase()) != "utf8mb4"
        })
        .collect();
    let alter_db = format!(
        "ALTER DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        quote_ident(db)
    );
    if schema_cs != "utf8mb4" {
        out.push(
            finding(
                "mysql.charset",
                Severity::Warning,
                format!("database {db} defaults to {charset}, not utf8mb4: new tables cannot store emoji and some Chinese text"),
            )
            .subject(subject.clone())
            .evidence(format!("DEFAULT_CHARACTER_SET_NAME = {charset}, DEFAULT_COLLATION_NAME = {collation}"))
            .next(format!("runbook run backup, then {alter_db}")),
        );
    }
    if !bad_tables.is_empty() {
        let mut f = finding(
            "mysql.charset",
            Severity::Warning,
            format!("{} table(s) of {db} are not utf8mb4", bad_tables.len()),
        )
        .subject(subject.clone());
        for t in &bad_tables {
            f = f.evidence(format!(
                "{}: {} ({})",
                t.name,
                charset_of(&t.collation),
                t.collation
            ));
        }
        let example = bad_tables
            .first()
            .map(|t| quote_ident(&t.name))
            .unwrap_or_default();
        out.push(f.next(format!(
            "runbook run backup, then ALTER TABLE {example} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci (for each table listed)"
        )));
    }
    if schema_cs == "utf8mb4" && bad_tables.is_empty() {
        out.push(
            finding(
                "mysql.charset",
                Severity::Ok,
                format!("database {db} and its tables use utf8mb4"),
            )
            .subject(subject)
            .evidence(format!(
                "DEFAULT_CHARACTER_SET_NAME = {charset}, DEFAULT_COLLATION_NAME = {collation}"
            ))
            .next("nothing to do"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsets_of_collations() {
        assert_eq!(charset_of("utf8mb4_unicode_ci"), "utf8mb4");
        assert_eq!(charset_of("utf8mb4_0900_ai_ci"), "utf8mb4");
        assert_eq!(charset_of("latin1_swedish_ci"), "latin1");
        assert_eq!(charset_of("utf8mb3_general_ci"), "utf8mb3");
        assert_eq!(charset_of("binary"), "binary");
    }
}
