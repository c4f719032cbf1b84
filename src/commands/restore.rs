//! `newapi-ops restore ID --database NAME`: checks the backup and the target, asks for
//! confirmation, then loads the backup in parallel (indexes after the data), and compares the
//! row counts with the manifest.

use std::path::PathBuf;

use clap::Args;

use crate::backup::{self, LoadMethod, RestoreOptions, store};
use crate::commands::GlobalArgs;
use crate::commands::backup::{Bars, cluster_for};
use crate::commands::flags::{DirArg, MysqlArgs, YesArg};
use crate::error::Result;
use crate::exit;
use crate::printer::Printer;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup's id (as `newapi-ops backup list` shows it), or `latest`.
    pub id: String,

    /// The database to restore into (created if missing).
    #[arg(long, value_name = "NAME", value_parser = crate::commands::flags::parse_database)]
    pub database: String,

    #[command(flatten)]
    pub dir: DirArg,

    #[command(flatten)]
    pub mysql: MysqlArgs,

    /// The age identity file, for an encrypted backup.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,

    /// Restore into a database that has tables: the backup's tables there are dropped and
    /// replaced (others are left alone).
    #[arg(long)]
    pub force: bool,

    /// For a dedicated or scratch server only: relax the server's durability during the load
    /// (innodb_flush_log_at_trx_commit=0, sync_binlog=0, innodb_doublewrite=0 where it is
    /// dynamic; MySQL 8.0.21 and later: the redo log disabled), every changed global put back
    /// afterwards — after an error, Ctrl-C or SIGTERM too. Needs SUPER (MariaDB) or
    /// SYSTEM_VARIABLES_ADMIN (MySQL); refused while other clients are connected, unless
    /// --allow-other-clients.
    #[arg(long)]
    pub fast_load: bool,

    /// With --fast-load: proceed while other clients are connected to the server (their writes
    /// run with relaxed durability too).
    #[arg(long, requires = "fast_load")]
    pub allow_other_clients: bool,

    #[command(flatten)]
    pub confirm: YesArg,

    /// Connections loading in parallel.
    #[arg(long, default_value_t = backup::DEFAULT_THREADS,
          value_parser = crate::commands::flags::parse_threads)]
    pub threads: usize,

    /// How rows are sent: `auto` uses LOAD DATA LOCAL INFILE when the server allows it
    /// (`local_infile`, on by default in MariaDB, off in MySQL 8) and multi-row INSERT otherwise.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = LoadWith::Auto)]
    pub load_with: LoadWith,
}

pub async fn run(global: &GlobalArgs, args: RestoreArgs, printer: &Printer) -> Result<u8> {
    let dir = args.dir.resolve();
    let path = store::find(&dir, &args.id)?;
    let settings = global.settings()?;
    let url = args.mysql.mysql_url.as_deref();
    let kube = cluster_for(&settings, url).await?;
    let reached = crate::backends::resolve_mysql(kube.as_ref(), &settings, url).await?;
    let prepared = backup::prepare_restore(
        &path,
        RestoreOptions {
            mysql: reached.endpoint.clone(),
            database: args.database.clone(),
            threads: args.threads,
            force: args.force,
            identity: args.identity.clone(),
            method: args.load_with.into(),
            fast_load: args.fast_load,
            allow_other_clients: args.allow_other_clients,
        },
    )
    .await?;
    let question = prepared.question();
    let confirm = crate::confirm::from_flags(args.confirm.yes);
    match confirm.confirm(&question) {
        Ok(true) => {}
        Ok(false) => {
            prepared.abandon().await;
            return Err(backup::BackupError::Declined {
                what: "restore".into(),
            }
            .into());
        }
        Err(e) => {
            prepared.abandon().await;
            return Err(e);
        }
    }
    printer.note(&format!(
        "restoring {} into `{}` on {}",
        args.id, args.database, reached.via
    ));
    if let Some(why) = &prepared.method_note {
        printer.note(why);
    }
    if let Some(plan) = &prepared.fast_load {
        printer.note(&fast_load_note(plan));
    }
    let prepared_note = prepared.method_note.is_some();
    let progress = Bars::new(printer);
    // Ctrl-C or SIGTERM stops the load; the error then names the half-loaded database.
    let mut signals = crate::signals::Handler::new();
    let summary = prepared.run_until(&progress, signals.recv()).await;
    progress.clear();
    drop(reached);
    let summary = summary?;
    // The fallback chosen before the load was noted then; anything after it is news.
    for n in summary.notes.iter().skip(usize::from(prepared_note)) {
        printer.note(n);
    }
    printer.data(&summary, |style| {
        let p = &summary.phases;
        let mut s = format!(
            "{} restored backup {} into `{}`: {} tables, {} rows in {:.1}s; row counts match the manifest\n  \
             {}: load {:.1}s, indexes {:.1}s (tables {:.1}s, foreign keys {:.1}s)\n",
            style.green("complete:"),
            summary.id,
            summary.database,
            summary.tables,
            summary.rows,
            secs(summary.duration_ms),
            summary.method.describe(),
            secs(p.load_ms),
            secs(p.indexes_ms),
            secs(p.create_ms),
            secs(p.foreign_keys_ms),
        );

        if let Some(f) = &summary.fast_load {
            let changed: Vec<String> = f
                .changed
                .iter()
                .map(|c| format!("{} {} → {} → {}", c.name, c.original, c.fast, c.original))
                .chain(f.redo_log_disabled.then(|| "redo log off → on".to_string()))
                .collect();
            s.push_str(&format!(
                "  fast load: {}; all put back\n",
                if changed.is_empty() {
                    "nothing needed relaxing".to_string()
                } else {
                    changed.join(", ")
                }
            ));
        }
        if !summary.replaced.is_empty() {
            s.push_str(&format!("  replaced: {}\n", summary.replaced.join(", ")));
        }
        s
    })?;
    Ok(exit::OK)
}

/// What `--fast-load` is about to change, with the SQL that puts it back by hand (for the case
/// where the process is killed outright: SIGKILL leaves no chance to do it).
fn fast_load_note(plan: &backup::fastload::Plan) -> String {
    let mut parts: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("{} {} → {}", c.name, c.original, c.fast))
        .collect();
    if plan.redo_log {
        parts.push("redo log disabled".into());
    }
    let mut note = if parts.is_empty() {
        format!(
            "fast load: nothing to relax on {} (already relaxed)",
            plan.server.version
        )
    } else {
        format!(
            "fast load: durability relaxed during the load ({}), put back afterwards; if this process is killed outright, put them back with: {}",
            parts.join(", "),
            plan.put_back_sql().join(" ")
        )
    };
    for n in &plan.notes {
        note.push_str(&format!("; {n}"));
    }
    if !plan.others_allowed.is_empty() {
        note.push_str(&format!(
            "; --allow-other-clients: other clients connected ({}) run with relaxed durability too",
            plan.others_allowed.join(", ")
        ));
    }
    note
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// `--load-with`: how rows are sent ([`LoadMethod`] below the commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadWith {
    /// LOAD DATA LOCAL INFILE if the server allows it (`local_infile`), else INSERT.
    Auto,
    /// LOAD DATA LOCAL INFILE; an error if the server refuses it.
    LoadData,
    /// The backup's multi-row INSERT statements as they are.
    Insert,
}

impl From<LoadWith> for LoadMethod {
    fn from(w: LoadWith) -> LoadMethod {
        match w {
            LoadWith::Auto => LoadMethod::Auto,
            LoadWith::LoadData => LoadMethod::LoadData,
            LoadWith::Insert => LoadMethod::Insert,
        }
    }
}
