//! `newapi-ops audit [--fail-on warning|critical] [--fix [--dry-run | --yes]] [--junit FILE]`:
//! the flags and their conversion into [`audit::Options`]; the rules, scoring and fixes are in
//! [`crate::audit`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::audit::{self, FixMode, Severity};
use crate::commands::GlobalArgs;
use crate::commands::flags::{BackendUrls, YesArg};
use crate::error::{Error, Result, audit_exit_code};
use crate::k8s;
use crate::printer::Printer;
use crate::units::{parse_duration, parse_timeout};

const LONG: &str = "The production advice of the deployment notes (生产环境建议), New-API's own \
rules and Kubernetes hygiene as a graded report: every rule with a stable id, a severity and the \
evidence it read; a score per section and an A–F grade.

With --fix, the manifests that fix the failing rules, computed from the live deployment (HPA, \
PodDisruptionBudgets, NetworkPolicies, Ingress, the backup CronJob, MySQL max_connections and \
Redis maxmemory), at the API versions this server serves. Every change is checked with a \
server-side dry run first, shown and confirmed (--yes), applied all or none (what a run created \
is deleted again when a later change fails), and recorded in a transcript.

Exit codes: 0; with --fail-on, 2 when a critical rule fails, 1 when a warning rule fails \
(--fail-on warning).";

#[derive(Debug, Args)]
#[command(long_about = LONG)]
pub struct AuditArgs {
    /// Exit non-zero when a rule of this severity (or worse) fails: 1 for warning, 2 for critical.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<FailOnArg>,

    /// Compute the manifests that fix the failing rules, and apply them (after a server-side dry
    /// run and the confirmation).
    #[arg(long)]
    pub fix: bool,

    /// With --fix: print the manifests only; change nothing.
    #[arg(long, requires = "fix", conflicts_with = "yes")]
    pub dry_run: bool,

    #[command(flatten)]
    pub confirm: YesArg,

    /// With --fix: only these fixes (comma-separated: hpa, pdb, ingress, backup-schedule,
    /// network-policy, mysql-max-connections, redis-maxmemory).
    #[arg(long, value_delimiter = ',', value_name = "ID,...", requires = "fix")]
    pub fixes: Vec<String>,

    /// Also write the report as JUnit XML (one test case per rule) to FILE; `-` prints it on
    /// stdout instead of the report.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// The host of the Ingress the ingress fix creates (without it there is no Ingress fix).
    #[arg(long, value_name = "HOST")]
    pub ingress_host: Option<String>,

    /// The IngressClass of that Ingress [default: the cluster's default class].
    #[arg(long, value_name = "NAME")]
    pub ingress_class: Option<String>,

    /// A TLS Secret (in the namespace) for the Ingress host.
    #[arg(long, value_name = "SECRET")]
    pub ingress_tls_secret: Option<String>,

    /// The schedule of the backup CronJob the backup fix creates.
    #[arg(long, default_value = "0 3 * * *", value_name = "CRON")]
    pub backup_cron: String,

    /// The newapi-ops image that CronJob runs.
    #[arg(long, default_value = concat!("newapi-ops:", env!("CARGO_PKG_VERSION")), value_name = "IMAGE")]
    pub backup_image: String,

    /// The newest backup must be younger than this.
    #[arg(long, default_value = "26h", value_parser = parse_duration, value_name = "DURATION")]
    pub backup_max_age: Duration,

    /// The local backup store the backup rules read (as `backup --dir`) [default: <data
    /// dir>/newapi-ops/backups].
    #[arg(long, env = "NEWAPI_OPS_BACKUP_DIR", value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,

    /// Time limit of each MySQL and Redis read (through a port-forward from outside the cluster).
    #[arg(long, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,

    #[command(flatten)]
    pub backends: BackendUrls,

    /// Where the transcripts of --fix go [default: $XDG_STATE_HOME/newapi-ops/runs].
    #[arg(long, value_name = "DIR", env = "NEWAPI_OPS_RUNS_DIR")]
    pub runs_dir: Option<PathBuf>,
}

/// `--fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOnArg {
    Warning,
    Critical,
}

impl From<FailOnArg> for Severity {
    fn from(f: FailOnArg) -> Severity {
        match f {
            FailOnArg::Warning => Severity::Warning,
            FailOnArg::Critical => Severity::Critical,
        }
    }
}

impl AuditArgs {
    fn options(&self) -> Result<audit::Options> {
        let known: Vec<&str> = audit::fix::FIXES.iter().map(|(id, _)| *id).collect();
        for f in &self.fixes {
            if !known.contains(&f.as_str()) {
                return Err(Error::Usage(format!(
                    "--fixes {f}: no such fix; {}",
                    crate::runbook::diag::allowed_help(f, &known)
                )));
            }
        }
        if self.backup_cron.split_whitespace().count() != 5 {
            return Err(Error::Usage(format!(
                "--backup-cron {:?}: expected five fields (minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\"",
                self.backup_cron
            )));
        }
        Ok(audit::Options {
            timeout: self.timeout,
            mysql_url: self.backends.mysql.mysql_url.clone(),
            redis_url: self.backends.redis_url.clone(),
            backup_dir: crate::backup::store::dir_or_default(self.backup_dir.clone()),
            backup_max_age: self.backup_max_age,
            fix: audit::fix::FixInputs {
                ingress_host: self.ingress_host.clone(),
                ingress_class: self.ingress_class.clone(),
                ingress_tls_secret: self.ingress_tls_secret.clone(),
                backup_cron: self.backup_cron.clone(),
                backup_image: self.backup_image.clone(),
                only: self.fixes.clone(),
            },
        })
    }

    fn mode(&self) -> FixMode {
        match (self.fix, self.dry_run) {
            (false, _) => FixMode::Off,
            (true, true) => FixMode::DryRun,
            (true, false) => FixMode::Apply {
                runs_dir: self
                    .runs_dir
                    .clone()
                    .unwrap_or_else(crate::runbook::transcript::default_runs_dir),
                confirmations: if self.confirm.yes {
                    "--yes".into()
                } else {
                    "prompt".into()
                },
            },
        }
    }
}

pub async fn run(global: &GlobalArgs, args: AuditArgs, printer: &Printer) -> Result<u8> {
    let opts = args.options()?;
    let mode = args.mode();
    let settings = global.settings()?;
    let kube = k8s::connect(&settings).await?;
    let confirm = crate::confirm::from_flags(args.confirm.yes);
    let report = audit::run(&kube, &settings, &opts, &mode, confirm.as_ref(), printer).await?;
    let xml_on_stdout = args.junit.as_deref() == Some(std::path::Path::new("-"));
    if let Some(path) = args.junit.as_ref().filter(|_| !xml_on_stdout) {
        std::fs::write(path, audit::junit::render(&report))
            .map_err(|e| Error::io(format!("writing the JUnit report {}", path.display()), e))?;
        printer.note(&format!("JUnit report: {}", path.display()));
    }
    if xml_on_stdout {
        printer.text(&audit::junit::render(&report))?;
    } else if matches!(mode, FixMode::DryRun) && !printer.is_machine() {
        let fixes = report
            .fixes
            .as_ref()
            .map(|f| f.fixes.clone())
            .unwrap_or_default();
        let yaml = audit::fix::to_yaml(&fixes)
            .map_err(|e| Error::Internal(format!("writing YAML: {e}")))?;
        printer.text(&audit::render::render(&report, printer.style))?;
        printer.text(&format!(
            "\n{}\n{yaml}",
            printer.style.bold("the fixes (dry run: nothing applied)")
        ))?;
    } else {
        printer.data(&report, |style| audit::render::render(&report, style))?;
    }
    Ok(audit_exit_code(
        report.worst_failure(),
        args.fail_on.map(Severity::from),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &[&str]) -> std::result::Result<AuditArgs, clap::Error> {
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: AuditArgs,
        }
        let mut full = vec!["audit"];
        full.extend_from_slice(line);
        T::try_parse_from(full).map(|t| t.a)
    }

    #[test]
    fn flags_and_their_checks() {
        assert!(args(&["--dry-run"]).is_err(), "--dry-run needs --fix");
        assert!(args(&["--fix", "--dry-run", "--yes"]).is_err());
        assert!(matches!(
            args(&["--fix", "--dry-run"]).unwrap().mode(),
            FixMode::DryRun
        ));
        assert!(matches!(args(&[]).unwrap().mode(), FixMode::Off));
        let err = args(&["--fix", "--fixes", "hap"])
            .unwrap()
            .options()
            .unwrap_err();
        assert!(err.to_string().contains("did you mean `hpa`"), "{err}");
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        let err = args(&["--backup-cron", "daily"])
            .unwrap()
            .options()
            .unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        assert_eq!(
            args(&["--fail-on", "warning"]).unwrap().fail_on,
            Some(FailOnArg::Warning)
        );
    }

    #[test]
    fn fail_on_exit_codes() {
        use crate::exit;
        let c = |worst, on| audit_exit_code(worst, on);
        assert_eq!(c(Some(Severity::Critical), None), exit::OK);
        assert_eq!(
            c(Some(Severity::Warning), Some(Severity::Critical)),
            exit::OK
        );
        assert_eq!(
            c(Some(Severity::Critical), Some(Severity::Critical)),
            exit::CRITICAL
        );
        assert_eq!(
            c(Some(Severity::Critical), Some(Severity::Warning)),
            exit::CRITICAL
        );
        assert_eq!(
            c(Some(Severity::Warning), Some(Severity::Warning)),
            exit::WARNINGS
        );
        assert_eq!(c(Some(Severity::Info), Some(Severity::Warning)), exit::OK);
        assert_eq!(c(None, Some(Severity::Warning)), exit::OK);
    }
}
