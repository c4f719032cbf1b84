//! InnoDB's deadlocks: the `LATEST DETECTED DEADLOCK` section of SHOW ENGINE INNODB STATUS read
//! into a [`Deadlock`], and the `mysql.deadlock` check that reports it.

use mysql_async::Params;

use super::connect::{Session, cell};
use super::{Pairs, QUERY_PREVIEW_CHARS, clip, finding, lookup_u64, one_line, step_failed};
use crate::diagnose::finding::{Finding, Severity};

/// The most recent deadlock InnoDB reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deadlock {
    /// When it happened, as the server printed it (server time).
    pub when: String,
    /// Per transaction: its number, thread line (thread id, host, user) and statement.
    pub transactions: Vec<DeadlockTransaction>,
    /// The transaction InnoDB rolled back, e.g. `(1)`.
    pub rolled_back: Option<String>,
    /// The tables whose locks were involved, e.g. `` `new-api`.`tokens` ``.
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadlockTransaction {
    pub number: String,
    pub thread: String,
    pub statement: String,
}

/// Extracts the `LATEST DETECTED DEADLOCK` section of SHOW ENGINE INNODB STATUS (MySQL 8 and
/// MariaDB print the same layout).
pub fn parse_latest_deadlock(status: &str) -> Option<Deadlock> {
    let start = status.find("LATEST DETECTED DEADLOCK")?;
    let section = &status[start..];
    let mut lines = section
        .lines()
        .skip(1)
        .skip_while(|l| l.trim().chars().all(|c| c == '-'));
    let when_line = lines.next()?.trim();
    let when = when_line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut deadlock = Deadlock {
        when,
        ..Deadlock::default()
    };
    let mut current: Option<DeadlockTransaction> = None;
    let mut in_statement = false;
    let all: Vec<&str> = lines.collect();
    for (i, raw) in all.iter().enumerate() {
        let line = raw.trim_end();
        // The section ends at the next "-----\nHEADER" block.
        if line.chars().all(|c| c == '-')
            && !line.is_empty()
            && all.get(i + 1).is_some_and(|n| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_uppercase() || c == ' ' || c == '/')
            })
        {
            break;
        }
        if let Some(rest) = line.strip_prefix("*** (")
            && let Some(num) = rest.strip_suffix(") TRANSACTION:")
        {
            if let Some(t) = current.take() {
                deadlock.transactions.push(t);
            }
            current = Some(DeadlockTransaction {
                number: format!("({num})"),
                ..DeadlockTransaction::default()
            });
            in_statement = false;
            continue;
        }
        if let Some(rest) = line.strip_prefix("*** WE ROLL BACK TRANSACTION ") {
            deadlock.rolled_back = Some(rest.trim().to_string());
            in_statement = false;
            continue;
        }
        if line.starts_with("***") {
            in_statement = false;
        }
        if let Some(at) = line.find(" of table ") {
            let table = line[at + " of table ".len()..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            if !table.is_empty() && !deadlock.tables.contains(&table) {
                deadlock.tables.push(table);
            }
        }
        if let Some(t) = current.as_mut() {
            if (line.starts_with("MySQL thread id") || line.starts_with("MariaDB thread id"))
                && t.thread.is_empty()
            {
                t.thread = line.to_string();
                in_statement = true;
                continue;
            }
            if in_statement && !line.trim().is_empty() {
                if !t.statement.is_empty() {
                    t.statement.push(' ');
                }
                t.statement.push_str(line.trim());
            }
        }
    }
    if let Some(t) = current.take() {
        deadlock.transactions.push(t);
    }
    Some(deadlock)
}

pub(super) async fn deadlocks(
    s: &mut Session,
    status: Option<&Pairs>,
    target: &str,
    out: &mut Vec<Finding>,
) {
    let counter = status.and_then(|st| lookup_u64(st, "Innodb_deadlocks"));
    let text = match s.rows("SHOW ENGINE INNODB STATUS", Params::Empty).await {
        Ok(rows) => rows.first().and_then(|r| cell(r, 2)).unwrap_or_default(),
        Err(e) => {
            let mut f = step_failed("mysql.deadlock", "InnoDB's latest deadlock", &e, target);
            if let Some(n) = counter {
                f = f.evidence(format!("Innodb_deadlocks = {n}"));
            }
            out.push(f);
            return;
        }
    };
    match parse_latest_deadlock(&text) {
        Some(d) => {
            let count = counter
                .map(|n| format!(" ({n} since the server started)"))
                .unwrap_or_default();
            let mut f = finding(
                "mysql.deadlock",
                Severity::Warning,
                format!("InnoDB detected a deadlock at {}{count}", d.when),
            )
            .subject(if d.tables.is_empty() {
                target.to_string()
            } else {
                d.tables.join(", ")
            })
            .evidence(format!(
                "LATEST DETECTED DEADLOCK at {} (server time)",
                d.when
            ));
            for t in &d.transactions {
                let rolled = if d.rolled_back.as_deref() == Some(t.number.as_str()) {
                    " — rolled back"
                } else {
                    ""
                };
                f = f.evidence(format!(
                    "{} {}: {}{rolled}",
                    t.number,
                    clip(&t.thread, 100),
                    clip(&one_line(&t.statement), QUERY_PREVIEW_CHARS)
                ));
            }
            if !d.tables.is_empty() {
                f = f.evidence(format!("tables: {}", d.tables.join(", ")));
            }
            if let Some(n) = counter {
                f = f.evidence(format!("Innodb_deadlocks = {n}"));
            }
            out.push(f.next(
                "New-API logs these as \"Error 1213\": newapi-ops logs master --grep 1213; frequent ones need shorter transactions or indexes (runbook run slow-response)",
            ));
        }
        None if counter.is_some_and(|n| n > 0) => {
            let n = counter.unwrap_or(0);
            out.push(
                finding("mysql.deadlock", Severity::Warning, format!("InnoDB counted {n} deadlocks since the server started"))
                    .subject(target.to_string())
                    .evidence(format!("Innodb_deadlocks = {n}; SHOW ENGINE INNODB STATUS has no LATEST DETECTED DEADLOCK section"))
                    .next("newapi-ops logs master --grep 1213; runbook run slow-response"),
            );
        }
        None => {
            let mut f = finding(
                "mysql.deadlock",
                Severity::Ok,
                "no InnoDB deadlock since the server started",
            )
            .subject(target.to_string())
            .evidence("SHOW ENGINE INNODB STATUS has no LATEST DETECTED DEADLOCK section");
            if let Some(n) = counter {
                f = f.evidence(format!("Innodb_deadlocks = {n}"));
            }
            out.push(f.next("nothing to do"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARIADB_STATUS: &str = "
=====================================
2026-11-25 03:53:36 0x7f03b00dd6c0 INNODB MONITOR OUTPUT
=====================================
------------------------
LATEST DETECTED DEADLOCK
------------------------
2026-11-25 03:53:35 0x7f03b00dd6c0
*** (1) TRANSACTION:
TRANSACTION 24, ACTIVE 2 sec starting index read
mysql tables in use 1, locked 1
LOCK WAIT 3 lock struct(s), heap size 1128, 2 row lock(s), undo log entries 1
MariaDB thread id 10, OS thread handle 139653815326400, query id 29 127.0.0.1 root Updating
update a set v=2 where id=1
*** WAITING FOR THIS LOCK TO BE GRANTED:
RECORD LOCKS space id 5 page no 3 n bits 320 index PRIMARY of table `t1`.`a` trx id 24 lock_mode X locks rec but not gap waiting
Record lock, heap no 2 PHYSICAL RECORD: n_fields 4; compact format; info bits 0
 0: len 4; hex 80000001; asc     ;;

*** CONFLICTING WITH:
RECORD LOCKS space id 5 page no 3 n bits 320 index PRIMARY of table `t1`.`a` trx id 23 lock_mode X locks rec but not gap

*** (2) TRANSACTION:
TRANSACTION 23, ACTIVE 2 sec starting index read
mysql tables in use 1, locked 1
MariaDB thread id 9, OS thread handle 139653815633600, query id 28 127.0.0.1 root Updating
update a
  set v=1 where id=2
*** WAITING FOR THIS LOCK TO BE GRANTED:
RECORD LOCKS space id 5 page no 3 n bits 320 index PRIMARY of table `t1`.`b` trx id 23 lock_mode X locks rec but not gap waiting

*** WE ROLL BACK TRANSACTION (1)
------------
TRANSACTIONS
------------
Trx id counter 26
";

    #[test]
    fn parses_the_latest_deadlock() {
        let d = parse_latest_deadlock(MARIADB_STATUS).unwrap();
        assert_eq!(d.when, "2026-11-25 03:53:35");
        assert_eq!(d.transactions.len(), 2);
        assert_eq!(d.transactions[0].number, "(1)");
        assert!(d.transactions[0].thread.starts_with("MariaDB thread id 10"));
        assert_eq!(d.transactions[0].statement, "update a set v=2 where id=1");
        assert_eq!(d.transactions[1].statement, "update a set v=1 where id=2");
        assert_eq!(d.rolled_back.as_deref(), Some("(1)"));
        assert_eq!(
            d.tables,
            vec!["`t1`.`a`".to_string(), "`t1`.`b`".to_string()]
        );
    }

    #[test]
    fn parses_a_mysql8_deadlock_and_none_without_one() {
        let mysql8 = "------------------------\nLATEST DETECTED DEADLOCK\n------------------------\n\
            2025-11-13 10:00:00 140000000000000\n*** (1) TRANSACTION:\nTRANSACTION 1, ACTIVE 1 sec starting index read\n\
            MySQL thread id 8, OS thread handle 1, query id 10 localhost root updating\nUPDATE tokens SET remain_quota = 1 WHERE id = 2\n\
            *** (1) HOLDS THE LOCK(S):\nRECORD LOCKS space id 2 page no 4 n bits 72 index PRIMARY of table `new-api`.`tokens` trx id 1 lock_mode X\n\
            *** (2) TRANSACTION:\nTRANSACTION 2, ACTIVE 1 sec starting index read\n\
            MySQL thread id 9, OS thread handle 2, query id 11 localhost root updating\nUPDATE tokens SET remain_quota = 1 WHERE id = 1\n\
            *** WE ROLL BACK TRANSACTION (2)\n------------\nTRANSACTIONS\n------------\n";
        let d = parse_latest_deadlock(mysql8).unwrap();
        assert_eq!(d.when, "2025-11-13 10:00:00");
        assert_eq!(d.transactions.len(), 2);
        assert_eq!(
            d.transactions[1].statement,
            "UPDATE tokens SET remain_quota = 1 WHERE id = 1"
        );
        assert_eq!(d.rolled_back.as_deref(), Some("(2)"));
        assert_eq!(d.tables, vec!["`new-api`.`tokens`".to_string()]);
        assert_eq!(
            parse_latest_deadlock("=====\nTRANSACTIONS\n------------\n"),
            None
        );
    }
}
