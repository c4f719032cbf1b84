//! `newapi-ops backup`: a consistent, parallel, compressed (optionally encrypted) backup of the
//! New-API database; `backup list`, `verify`, `prune`, `schedule` and `status` around it. The
//! engine is [`crate::backup`]; this module parses flags, reaches MySQL the way diagnose does,
//! shows progress and prints results.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::backup::{self, Progress, schedule, store, verify};
use crate::commands::GlobalArgs;
use crate::commands::flags::{self, DirArg, MysqlArgs};
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::exit;
use crate::k8s::{self, Kube};
use crate::printer::{Printer, render_table};
use crate::signals;
use crate::units;
use crate::units::age as human_age;

/// `backup` alone takes a backup; the subcommands manage backups.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// The complete backups in the directory: id, time, size, tables, rows, verified, encrypted.
    List(ListArgs),
    /// Check every file of a backup against its manifest; --restore-test also restores it into
    /// a scratch database and compares row counts and CHECKSUM TABLE.
    Verify(VerifyArgs),
    /// Delete old backups: keep the last N and one per day for D days, and always the newest
    /// verified one.
    Prune(PruneArgs),
    /// Scheduled backups in the cluster (a CronJob running `backup` then `prune`), or a crontab
    /// line for a host outside it.
    #[command(long_about = SCHEDULE_LONG)]
    Schedule(ScheduleArgs),
    /// The backup CronJob (schedule, suspended, API version), its last successful and last
    /// failed Job, and the newest backup in its volume with its age and whether it was verified.
    Status(StatusArgs),
}

const SCHEDULE_LONG: &str = "Scheduled backups in the cluster.

Creates (or with --dry-run prints) a ServiceAccount, a Role that may only `get` the master \
Deployment and the ConfigMaps/Secrets its environment names (and `get`/`patch` its own status \
ConfigMap), a RoleBinding, a PVC for the backups (or uses --pvc), a ConfigMap for the job's \
status, and a CronJob (concurrencyPolicy Forbid) whose pod runs `newapi-ops backup`, `backup \
verify latest`, `backup prune` (the retention: --keep-last/--keep-daily), then `backup status \
--publish`. The CronJob is batch/v1 where the server serves it, batch/v1beta1 otherwise \
(Kubernetes 1.20), as API discovery says; --dry-run prints what would be applied to this \
cluster. The job reads SQL_DSN with its service-account token at run time and reaches MySQL by \
its Service name; no password is copied into the objects.

--run-now then starts a Job from the CronJob's template (as `kubectl create job \
--from=cronjob/newapi-ops-backup` does) and follows it: the backup id on success; on failure \
exit 75 with the failed pod's last log lines. Ctrl-C, SIGTERM or --timeout (default 1h) stops \
following; the Job keeps running.

Outside the cluster, use cron instead: `newapi-ops backup schedule --crontab --dir DIR` prints \
a crontab line such as

  0 3 * * * newapi-ops backup --dir DIR -q -o json >> DIR/backup.log 2>&1 && newapi-ops backup prune --dir DIR --keep-last 14 --keep-daily 7 -q >> DIR/backup.log 2>&1

(put the kubeconfig in the crontab's environment, or NEWAPI_OPS_MYSQL_URL with the password).";

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub dir: DirArg,

    #[command(flatten)]
    pub mysql: MysqlArgs,

    /// The database to back up [default: the one in SQL_DSN or --mysql-url].
    #[arg(long, value_name = "NAME", value_parser = flags::parse_database)]
    pub database: Option<String>,

    /// Only these tables (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "TABLE")]
    pub tables: Vec<String>,

    /// Connections reading in parallel.
    #[arg(long, default_value_t = backup::DEFAULT_THREADS, value_parser = flags::parse_threads)]
    pub threads: usize,

    /// Encrypt the data files with age to this recipient (`age1...`); repeat for several.
    /// Restoring then needs the identity (`restore --identity FILE`).
    #[arg(long, value_name = "RECIPIENT", env = "NEWAPI_OPS_BACKUP_RECIPIENT")]
    pub encrypt_to: Vec<String>,

    /// One connection and its own snapshot, without the brief global lock (for managed servers
    /// that forbid it); slower on large tables.
    #[arg(long)]
    pub single_connection: bool,

    /// Rows per chunk file (tables with an integer primary key are split by key ranges).
    #[arg(long, default_value_t = backup::DEFAULT_CHUNK_ROWS, value_name = "N",
          value_parser = flags::parse_chunk_rows)]
    pub chunk_rows: u64,

    /// zstd compression level (1-19).
    #[arg(long, default_value_t = backup::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub dir: DirArg,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The backup's id (as `backup list` shows it), or `latest`.
    pub id: String,

    #[command(flatten)]
    pub dir: DirArg,

    /// Also restore into a scratch database, compare row counts and CHECKSUM TABLE with the
    /// manifest, then drop the scratch database.
    #[arg(long)]
    pub restore_test: bool,

    /// The age identity file, for an encrypted backup's restore test.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,

    #[command(flatten)]
    pub mysql: MysqlArgs,

    /// Connections loading in parallel for the restore test.
    #[arg(long, default_value_t = backup::DEFAULT_THREADS, value_parser = flags::parse_threads)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub dir: DirArg,

    /// Keep the N newest backups.
    #[arg(long, value_name = "N")]
    pub keep_last: usize,

    /// Keep the newest backup of each of the D most recent days that have backups (UTC).
    #[arg(long, value_name = "D", default_value_t = 0)]
    pub keep_daily: usize,

    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// When to run, in cron syntax (in the cluster's time zone, usually UTC).
    #[arg(long, default_value = "0 3 * * *")]
    pub cron: String,

    /// Keep the N newest backups.
    #[arg(long, default_value_t = 14, value_name = "N")]
    pub keep_last: usize,

    /// Keep one backup per day for D days.
    #[arg(long, default_value_t = 7, value_name = "D")]
    pub keep_daily: usize,

    /// The newapi-ops container image the job runs.
    #[arg(long, default_value = concat!("newapi-ops:", env!("CARGO_PKG_VERSION")))]
    pub image: String,

    /// Keep the backups on this existing PersistentVolumeClaim instead of creating one.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["size", "storage_class"])]
    pub pvc: Option<String>,

    /// Size of the PVC created for the backups.
    #[arg(long, default_value = "20Gi")]
    pub size: String,

    /// StorageClass of the PVC created for the backups [default: the cluster's default].
    #[arg(long, value_name = "NAME")]
    pub storage_class: Option<String>,

    /// Connections the job's backup uses.
    #[arg(long, default_value_t = backup::DEFAULT_THREADS, value_parser = flags::parse_threads)]
    pub threads: usize,

    /// Encrypt the scheduled backups to this age recipient.
    #[arg(long, value_name = "RECIPIENT")]
    pub encrypt_to: Vec<String>,

    /// Print the objects (YAML; a v1 List with -o json) instead of creating them.
    #[arg(long)]
    pub dry_run: bool,

    /// Print a crontab line for a host outside the cluster instead (uses --dir).
    #[arg(long, conflicts_with = "run_now")]
    pub crontab: bool,

    /// After applying, run the backup once now (a Job from the CronJob) and follow it: prints
    /// the backup id, or the failed pod's last log lines (exit 75).
    #[arg(long, conflicts_with = "dry_run")]
    pub run_now: bool,

    /// With --run-now: how long to follow the Job before giving up on it (it keeps running;
    /// exit 75), e.g. 90s, 30m, 2h.
    #[arg(long, default_value = "1h", value_parser = crate::units::parse_timeout,
          requires = "run_now")]
    pub timeout: std::time::Duration,

    #[command(flatten)]
    pub dir: DirArg,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dir: DirArg,

    /// Write the listing of --dir into the ConfigMap newapi-ops-backup-status instead of
    /// showing the status: the last step of the scheduled job, whose volume is --dir.
    #[arg(long)]
    pub publish: bool,
}

pub async fn run(global: &GlobalArgs, args: BackupArgs, printer: &Printer) -> Result<u8> {
    match args.command {
        None => run_backup(global, args.run, printer).await,
        Some(BackupCommand::List(a)) => list(a, printer),
        Some(BackupCommand::Verify(a)) => run_verify(global, a, printer).await,
        Some(BackupCommand::Prune(a)) => prune(a, printer),
        Some(BackupCommand::Schedule(a)) => run_schedule(global, a, printer).await,
        Some(BackupCommand::Status(a)) => status(global, a, printer).await,
    }
}

/// Connects to the cluster only when MySQL must be found through it.
pub async fn cluster_for(settings: &Settings, mysql_url: Option<&str>) -> Result<Option<Kube>> {
    Ok(match mysql_url {
        Some(_) => None,
        None => Some(k8s::connect(settings).await?),
    })
}

async fn run_backup(global: &GlobalArgs, args: RunArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let url = args.mysql.mysql_url.as_deref();
    let kube = cluster_for(&settings, url).await?;
    if let Some(kube) = &kube {
        crate::secrets::learn(printer.redactor(), kube, &settings).await;
    }
    let dir = args.dir.resolve();
    printer.note(&format!("backing up into {}", dir.display()));
    let progress = Bars::new(printer);
    let backup = backup::backup_deployment(
        kube.as_ref(),
        &settings,
        url,
        dir,
        |opts| {
            opts.database = args.database;
            opts.tables = args.tables;
            opts.threads = args.threads;
            opts.encrypt_to = args.encrypt_to;
            opts.single_connection = args.single_connection;
            opts.chunk_rows = args.chunk_rows;
            opts.compression_level = args.level;
        },
        &progress,
    );
    // Ctrl-C or SIGTERM drops the backup, whose temporary directory goes with it.
    let mut signals = signals::Handler::new();
    let summary = tokio::select! {
        biased;
        signal = signals.recv() => Err(backup::BackupError::Interrupted {
            what: "backup".into(),
            signal,
        }
        .into()),
        r = backup => r,
    };
    progress.clear();
    let summary = summary?;
    for s in &summary.swept {
        printer.note(&format!(
            "removed {}, left by an interrupted backup ({})",
            s.name, s.why
        ));
    }
    if printer.is_machine() {
        let line = serde_json::to_string(&summary)
            .map_err(|e| Error::Internal(format!("serializing the summary: {e}")))?;
        printer.text(&format!("{line}\n"))?;
    } else {
        printer.data(&summary, |style| {
            format!(
                "{} {}\n  from {}\n  into {}\n",
                style.green("complete:"),
                summary.headline(),
                summary.source,
                summary.path.display()
            )
        })?;
    }
    Ok(exit::OK)
}

fn list(args: ListArgs, printer: &Printer) -> Result<u8> {
    let dir = args.dir.resolve();
    let entries = store::list(&dir)?;
    #[derive(Serialize)]
    struct Listing<'a> {
        dir: String,
        backups: &'a [store::Entry],
    }
    let listing = Listing {
        dir: dir.display().to_string(),
        backups: &entries,
    };
    printer.data(&listing, |style| {
        if entries.is_empty() {
            return format!("no backups in {}\n", dir.display());
        }
        let mut t = printer.table(&[
            "ID",
            "AGE",
            "SIZE",
            "TABLES",
            "ROWS",
            "VERIFIED",
            "ENCRYPTED",
        ]);
        for e in entries.iter().rev() {
            let age = e
                .started_at
                .parse::<jiff::Timestamp>()
                .map(|t| human_age(crate::units::seconds_since(&t)))
                .unwrap_or_default();
            let verified = match (&e.verified, e.verify_failed) {
                (Some(mode), _) => style.green(&format!("yes ({mode})")),
                (None, true) => style.red("FAILED"),
                (None, false) => "no".into(),
            };
            t.add_row(vec![
                e.id.clone(),
                age,
                units::bytes(e.bytes),
                e.tables.to_string(),
                e.rows.to_string(),
                verified,
                if e.encrypted { "yes" } else { "no" }.into(),
            ]);
        }
        render_table(&t)
    })?;
    Ok(exit::OK)
}

async fn run_verify(global: &GlobalArgs, args: VerifyArgs, printer: &Printer) -> Result<u8> {
    let dir = args.dir.resolve();
    let path = store::find(&dir, &args.id)?;
    let progress = Bars::new(printer);
    let report = if args.restore_test {
        let settings = global.settings()?;
        let url = args.mysql.mysql_url.as_deref();
        let kube = cluster_for(&settings, url).await?;
        let reached = crate::backends::resolve_mysql(kube.as_ref(), &settings, url).await?;
        printer.note(&format!("restore test on {}", reached.via));
        // Ctrl-C or SIGTERM stops the restore test; its scratch database is dropped first.
        let mut signals = signals::Handler::new();
        let r = verify::verify_until(
            &path,
            Some((&reached.endpoint, args.threads, args.identity.as_deref())),
            &progress,
            signals.recv(),
        )
        .await;
        drop(reached);
        r
    } else {
        verify::verify(&path, None, &progress).await
    };
    progress.clear();
    let report = report?;
    printer.data(&report, |style| {
        let mut s = String::new();
        if report.ok {
            s.push_str(&format!(
                "{} backup {}: {} files match the manifest",
                style.green("ok:"),
                report.id,
                report.files
            ));
            if report.mode == "restore-test" {
                s.push_str(&format!(
                    "; restored into {} and every table's rows and CHECKSUM TABLE match (scratch database dropped)",
                    report.scratch_database.as_deref().unwrap_or("a scratch database")
                ));
            }
            s.push('\n');
        } else {
            s.push_str(&format!("{} backup {}:\n", style.red("DAMAGED:"), report.id));
            for p in &report.problems {
                s.push_str(&format!("  {p}\n"));
            }
        }
        s
    })?;
    if report.ok {
        Ok(exit::OK)
    } else {
        Err(backup::BackupError::Corrupt {
            id: report.id,
            problems: report.problems,
        }
        .into())
    }
}

fn prune(args: PruneArgs, printer: &Printer) -> Result<u8> {
    let dir = args.dir.resolve();
    if args.keep_last == 0 && args.keep_daily == 0 {
        return Err(Error::Usage(
            "--keep-last 0 --keep-daily 0 would delete every backup but the newest verified one: keep at least one (e.g. --keep-last 7), or delete by hand".into(),
        ));
    }
    let outcome = store::prune(&dir, args.keep_last, args.keep_daily, args.dry_run)?;
    printer.data(&outcome, |style| {
        let verb = if outcome.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        let mut s = String::new();
        for k in &outcome.kept {
            s.push_str(&format!("keep   {} ({})\n", k.id, k.reasons.join(", ")));
        }
        for d in &outcome.deleted {
            s.push_str(&format!("{} {d}\n", style.yellow(verb)));
        }
        for d in &outcome.removed_incomplete {
            s.push_str(&format!(
                "{} {} (an interrupted backup: {})\n",
                style.yellow(verb),
                d.name,
                d.why
            ));
        }
        if outcome.deleted.is_empty() && outcome.removed_incomplete.is_empty() {
            s.push_str("nothing to delete\n");
        }
        s
    })?;
    Ok(exit::OK)
}

async fn run_schedule(global: &GlobalArgs, args: ScheduleArgs, printer: &Printer) -> Result<u8> {
    if args.crontab {
        let dir = args.dir.resolve();
        let line = schedule::crontab_line(
            &args.cron,
            &dir.display().to_string(),
            args.keep_last,
            args.keep_daily,
        );
        #[derive(Serialize)]
        struct Crontab {
            crontab: String,
        }
        printer.data(
            &Crontab {
                crontab: line.clone(),
            },
            |_| format!("{line}\n"),
        )?;
        return Ok(exit::OK);
    }
    if let Err(why) = schedule::cron::parse(&args.cron) {
        return Err(Error::Usage(format!(
            "--cron {:?}: {why}; e.g. \"0 3 * * *\" (minute hour day-of-month month day-of-week) or @daily",
            args.cron
        )));
    }
    let settings = global.settings()?;
    let kube = k8s::connect(&settings).await?;
    let ns = settings.namespace.clone();
    let master = settings.workloads.master.name.clone();
    let spec_of_master = crate::backends::master_pod_spec(&kube, &ns, &master).await?;
    let Some(container) = spec_of_master.as_ref().and_then(|s| s.containers.first()) else {
        return Err(Error::WorkloadNotFound {
            kind: "Deployment".into(),
            name: master,
            namespace: ns,
            available: Vec::new(),
        });
    };
    let (configmaps, secrets) = crate::backends::env_references(container);
    let spec = schedule::ScheduleSpec {
        namespace: ns.clone(),
        cron: args.cron.clone(),
        keep_last: args.keep_last,
        keep_daily: args.keep_daily,
        image: args.image.clone(),
        existing_pvc: args.pvc.clone(),
        size: args.size.clone(),
        storage_class: args.storage_class.clone(),
        master,
        configmaps: configmaps.into_iter().collect(),
        secrets: secrets.into_iter().collect(),
        threads: args.threads,
        encrypt_to: args.encrypt_to.clone(),
        extra_args: Vec::new(),
    };
    let (server_version, api) = schedule::api::discover(&kube).await?;
    let version = server_version.unwrap_or_else(|| "of unknown version".into());
    let Some(api) = api else {
        return Err(backup::BackupError::CronJobUnsupported { version }.into());
    };
    let objects = schedule::at_version(schedule::objects(&spec), &api.api_version);
    if args.dry_run {
        printer.note(&format!(
            "CronJob as {}: what this cluster (Kubernetes {version}) serves, by API discovery",
            api.api_version
        ));
        if printer.format == crate::printer::Format::Json {
            printer.data(&schedule::to_list(&objects), |_| String::new())?;
        } else {
            // People and `-o yaml` both get the manifests, ready for `kubectl apply -f -`.
            let yaml = schedule::to_yaml(&objects)
                .map_err(|e| Error::Internal(format!("writing YAML: {e}")))?;
            printer.text(&yaml)?;
        }
        return Ok(exit::OK);
    }
    if let Some(pvc) = &args.pvc {
        schedule::require_pvc(&kube, &ns, pvc).await?;
    }
    let applied = schedule::apply(&kube, &ns, &objects).await?;
    #[derive(Serialize)]
    struct Applied {
        namespace: String,
        schedule: String,
        api_version: String,
        applied: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        run: Option<schedule::run::Finished>,
    }
    let mut out = Applied {
        namespace: ns.clone(),
        schedule: args.cron,
        api_version: api.api_version.clone(),
        applied,
        run: None,
    };
    let human = |out: &Applied, style: crate::printer::Style| {
        let mut s = format!(
            "{} scheduled backups in namespace {} at \"{}\" (CronJob {}):\n",
            style.green("ok:"),
            out.namespace,
            out.schedule,
            out.api_version
        );
        for a in &out.applied {
            s.push_str(&format!("  {a}\n"));
        }
        s
    };
    if !printer.is_machine() {
        printer.text(&human(&out, printer.style))?;
    }
    if !args.run_now {
        if printer.is_machine() {
            printer.data(&out, |_| String::new())?;
        }
        return Ok(exit::OK);
    }
    crate::secrets::learn(printer.redactor(), &kube, &settings).await;
    let finished = run_now(&kube, &api, &ns, args.timeout, printer).await?;
    let failure = finished.failure.clone();
    let (job, id) = (finished.job.clone(), finished.backup_id.clone());
    out.run = Some(finished);
    if printer.is_machine() {
        printer.data(&out, |_| String::new())?;
    } else if let Some(run) = &out.run
        && run.succeeded
    {
        let headline = run.backup.as_ref().and_then(|b| {
            Some(format!(
                "{} tables, {} rows, {}",
                b["tables"].as_u64()?,
                b["rows"].as_u64()?,
                units::bytes(b["bytes"].as_u64()?)
            ))
        });
        printer.data(&(), |style| match &id {
            Some(id) => format!(
                "{} job {job} complete in {}: backup {id}{}\n",
                style.green("ok:"),
                units::duration(std::time::Duration::from_secs(run.duration_secs)),
                headline.map(|h| format!(" ({h})")).unwrap_or_default()
            ),
            None => format!(
                "{} job {job} complete, but its backup container's summary line could not be read: `newapi-ops backup status` shows the volume\n",
                style.yellow("ok:")
            ),
        })?;
    }
    match failure {
        None => Ok(exit::OK),
        Some(f) => Err(backup::BackupError::JobFailed {
            job,
            namespace: ns,
            failure: Box::new(f),
        }
        .into()),
    }
}

/// Starts the Job and follows it for up to `timeout`, with a progress line on a terminal; the
/// timeout, Ctrl-C or SIGTERM stops following (the Job keeps running).
async fn run_now(
    kube: &Kube,
    api: &schedule::CronJobApi,
    ns: &str,
    timeout: std::time::Duration,
    printer: &Printer,
) -> Result<schedule::run::Finished> {
    use std::io::IsTerminal;
    // Listening before the Job exists and is named: a signal from then on stops the following.
    let mut signals = signals::Handler::new();
    let job = schedule::run::create(kube, api, ns).await?;
    printer.note(&format!("started job {job} in namespace {ns}"));
    let bar =
        (!printer.quiet && !printer.is_machine() && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
    let redactor = printer.redactor().clone();
    let progress = |line: &str| {
        if let Some(b) = &bar {
            b.set_message(redactor.text(line));
        }
    };
    let r = tokio::select! {
        biased;
        signal = signals.recv() => Err(backup::BackupError::StoppedFollowing {
            job: job.clone(),
            namespace: ns.to_string(),
            signal,
        }
        .into()),
        r = schedule::run::follow(kube, ns, &job, timeout, &progress) => r,
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    r
}

async fn status(global: &GlobalArgs, args: StatusArgs, printer: &Printer) -> Result<u8> {
    let settings = global.settings()?;
    let dir = args.dir.resolve();
    let entries = store::list(&dir)?;
    if args.publish {
        let kube = k8s::connect(&settings).await?;
        let listing = schedule::status::volume_status(&dir, &entries);
        schedule::status::publish(&kube, &settings.namespace, &listing).await?;
        printer.data(&listing, |_| {
            format!(
                "wrote the listing of {} ({}) into ConfigMap {} in namespace {}\n",
                dir.display(),
                units::plural(listing.backups, "backup", "backups"),
                schedule::STATUS_CONFIGMAP,
                settings.namespace
            )
        })?;
        return Ok(exit::OK);
    }
    #[derive(Serialize)]
    struct Newest {
        id: String,
        started_at: String,
        age_secs: i64,
        verified: Option<String>,
    }
    impl Newest {
        fn of(id: &str, started_at: &str, verified: Option<&String>) -> Newest {
            Newest {
                id: id.to_string(),
                started_at: started_at.to_string(),
                age_secs: started_at
                    .parse::<jiff::Timestamp>()
                    .map(|t| crate::units::seconds_since(&t))
                    .unwrap_or(0),
                verified: verified.cloned(),
            }
        }
    }
    #[derive(Serialize)]
    struct Local {
        dir: String,
        backups: usize,
        newest: Option<Newest>,
    }
    #[derive(Serialize)]
    struct Status {
        #[serde(flatten)]
        cluster: Option<schedule::status::ScheduleStatus>,
        /// The newest backup in the job's volume (from the status ConfigMap).
        newest_in_volume: Option<Newest>,
        cluster_note: Option<String>,
        /// The backups in --dir, here.
        local: Local,
    }
    let local = Local {
        dir: dir.display().to_string(),
        backups: entries.len(),
        newest: entries
            .last()
            .map(|e| Newest::of(&e.id, &e.started_at, e.verified.as_ref())),
    };
    let mut st = Status {
        cluster: None,
        newest_in_volume: None,
        cluster_note: None,
        local,
    };
    let gathered = match k8s::connect(&settings).await {
        Ok(kube) => schedule::status::gather(&kube, &settings.namespace).await,
        Err(e) => Err(e),
    };
    match gathered {
        Ok(c) => {
            if c.api_version.is_none() {
                st.cluster_note = Some(format!(
                    "this cluster (Kubernetes {}) serves no CronJob API",
                    c.server_version.as_deref().unwrap_or("of unknown version")
                ));
            } else if c.cronjob.is_none() {
                st.cluster_note = Some(format!(
                    "no CronJob {} in namespace {}: `newapi-ops backup schedule` creates it",
                    schedule::NAME,
                    settings.namespace
                ));
            }
            st.newest_in_volume = c
                .volume
                .as_ref()
                .and_then(|v| v.newest.first())
                .map(|b| Newest::of(&b.id, &b.started_at, b.verified.as_ref()));
            st.cluster = Some(c);
        }
        Err(e) => st.cluster_note = Some(format!("cluster not checked: {e}")),
    }
    printer.data(&st, |style| {
        let ago = |t: Option<&str>| {
            t.and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map_or_else(
                    || "never".to_string(),
                    |t| format!("{} ago ({t})", human_age(crate::units::seconds_since(&t))),
                )
        };
        let verified = |v: &Option<String>| {
            v.as_deref()
                .map_or_else(|| "not verified".to_string(), |m| format!("verified: {m}"))
        };
        let mut s = String::new();
        if let Some(n) = &st.cluster_note {
            s.push_str(&format!("{} {n}\n", style.yellow("note:")));
        }
        if let Some(c) = &st.cluster
            && let Some(cj) = &c.cronjob
        {
            let every = cj.period_secs.map_or_else(
                || format!(", {}", style.red(cj.schedule_error.as_deref().unwrap_or("?"))),
                |p| format!(", at most {} between runs", units::duration(std::time::Duration::from_secs(p))),
            );
            s.push_str(&format!(
                "CronJob {} ({}) \"{}\"{every}{}\n",
                cj.name,
                cj.api_version,
                cj.schedule,
                if cj.suspended { style.yellow(" SUSPENDED") } else { String::new() }
            ));
            s.push_str(&format!("  last scheduled: {}\n", ago(cj.last_schedule.as_deref())));
            let job_line = |r: &schedule::status::JobRun| {
                format!(
                    "job {}{}, finished {}",
                    r.name,
                    if r.manual { " (run now)" } else { "" },
                    ago(r.finished_at.as_deref())
                )
            };
            s.push_str(&format!(
                "  last success:   {}\n",
                c.last_success.as_ref().map_or_else(|| "none".to_string(), job_line)
            ));
            match &c.last_failure {
                Some(r) => {
                    s.push_str(&format!(
                        "  last failure:   {}{}\n",
                        job_line(r),
                        if c.last_failed { style.red(" (the newest run)") } else { String::new() }
                    ));
                    if let Some(f) = &r.failure {
                        s.push_str(&format!("                  {}\n", f.reason));
                        if let Some(l) = &f.log_line {
                            s.push_str(&format!(
                                "                  {}: {l}\n",
                                f.pod.as_deref().unwrap_or("its pod")
                            ));
                        }
                    }
                }
                None => s.push_str("  last failure:   none\n"),
            }
            for r in &c.running {
                s.push_str(&format!("  running:        job {r}\n"));
            }
        }
        if let Some(c) = &st.cluster {
            match (&c.volume, &st.newest_in_volume) {
                (Some(v), Some(n)) => s.push_str(&format!(
                    "newest backup in the volume: {} ({} old, {}), {} in all, {} (listed by the job {})\n",
                    n.id,
                    human_age(n.age_secs),
                    verified(&n.verified),
                    units::plural(v.backups, "backup", "backups"),
                    units::bytes(v.bytes),
                    ago(Some(&v.written_at))
                )),
                (Some(v), None) => s.push_str(&format!(
                    "no backups in the volume (listed by the job {})\n",
                    ago(Some(&v.written_at))
                )),
                (None, _) => {
                    if c.cronjob.is_some()
                        && let Some(n) = &c.volume_note
                    {
                        s.push_str(&format!("volume: {n}\n"));
                    }
                }
            }
        }
        match &st.local.newest {
            Some(n) => s.push_str(&format!(
                "newest backup in {}: {} ({} old, {}), {} backups in all\n",
                st.local.dir,
                n.id,
                human_age(n.age_secs),
                verified(&n.verified),
                st.local.backups
            )),
            None => s.push_str(&format!("no backups in {}\n", st.local.dir)),
        }
        s
    })?;
    Ok(exit::OK)
}

/// Progress bars per table on a terminal (stderr); nothing otherwise.
pub struct Bars {
    multi: Option<indicatif::MultiProgress>,
    bars: Mutex<HashMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    pub fn new(printer: &Printer) -> Bars {
        use std::io::IsTerminal;
        let on = !printer.quiet && !printer.is_machine() && std::io::stderr().is_terminal();
        Bars {
            multi: on.then(|| {
                indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr())
            }),
            bars: Mutex::new(HashMap::new()),
        }
    }

    pub fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

impl Progress for Bars {
    fn table_started(&self, table: &str, estimated_rows: u64) {
        let Some(m) = &self.multi else { return };
        let bar = m.add(indicatif::ProgressBar::new(estimated_rows.max(1)));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix:>24} [{bar:30}] {pos}/{len} rows {per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(table.to_string());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(table.to_string(), bar);
        }
    }

    fn rows(&self, table: &str, rows: u64) {
        if let Ok(bars) = self.bars.lock()
            && let Some(b) = bars.get(table)
        {
            b.inc(rows);
            if b.position() > b.length().unwrap_or(0) {
                b.set_length(b.position());
            }
        }
    }

    fn table_done(&self, table: &str, rows: u64) {
        if let Ok(bars) = self.bars.lock()
            && let Some(b) = bars.get(table)
        {
            b.set_length(rows.max(1));
            b.set_position(rows);
            b.finish();
        }
    }
}
