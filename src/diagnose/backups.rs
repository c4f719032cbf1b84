//! The backup checks of `diagnose`: is the database backed up on a schedule (the deployment
//! notes' advice 7, 定期备份数据库), and did the schedule's runs succeed recently? Judged from
//! what [`crate::backup::schedule::status::gather`] read (the CronJob, its Jobs, the volume's
//! listing), against the schedule's own period (the longest wait between two runs, from its cron
//! expression).
//!
//! | id | what | severity |
//! |---|---|---|
//! | `backups.scheduled` | no CronJob `newapi-ops-backup` (or no CronJob API) | warning |
//! | `backups.suspended` | the CronJob is suspended | warning |
//! | `backups.schedule` | the cron expression cannot be read, or never fires | warning |
//! | `backups.last-failed` | the newest finished Job failed: its pod's log line as evidence | critical |
//! | `backups.stale` | the newest successful run is older than 2 periods (warning) or 3 (critical); none since the CronJob was created that long ago, the same | warning, critical |
//! | `backups.recent` | the newest successful run, within 2 periods | ok |
//! | `backups.volume` | the newest backup in the volume, its age, verified or not | ok; warning when not verified |

use super::finding::{Component, Finding, Severity};
use crate::backup::schedule::status::{JobRun, ScheduleStatus};
use crate::backup::schedule::{NAME, STATUS_CONFIGMAP};
use crate::units;

fn finding(check: &str, severity: Severity, summary: String) -> Finding {
    Finding::new(Component::Backups, check, severity, summary).subject(format!("cronjob/{NAME}"))
}

fn ts(t: Option<&str>) -> Option<jiff::Timestamp> {
    t.and_then(|t| t.parse().ok())
}

fn age(now: jiff::Timestamp, then: jiff::Timestamp) -> i64 {
    now.as_second() - then.as_second()
}

fn secs(s: i64) -> String {
    units::duration(std::time::Duration::from_secs(
        u64::try_from(s.max(0)).unwrap_or(0),
    ))
}

/// The findings of the schedule's state `st` at `now`.
pub fn check(st: &ScheduleStatus, now: jiff::Timestamp) -> Vec<Finding> {
    let ns = &st.namespace;
    let schedule_it = format!(
        "schedule one: `newapi-ops backup schedule --dry-run -n {ns}` shows the objects, `newapi-ops backup schedule --run-now -n {ns}` creates them and runs a first backup"
    );
    let Some(api) = &st.api_version else {
        return vec![
            finding(
                "backups.scheduled",
                Severity::Warning,
                "no scheduled backup: this cluster serves no CronJob API".into(),
            )
            .evidence(format!(
                "Kubernetes {}: neither batch/v1 nor batch/v1beta1 lists cronjobs",
                st.server_version.as_deref().unwrap_or("of unknown version")
            ))
            .next("back up from a host outside the cluster: `newapi-ops backup schedule --crontab --dir DIR`"),
        ];
    };
    let Some(cj) = &st.cronjob else {
        return vec![
            finding(
                "backups.scheduled",
                Severity::Warning,
                format!("no scheduled backup: no CronJob {NAME} in namespace {ns} (advice 7: back up the database on a schedule)"),
            )
            .evidence(format!("get cronjobs.batch/{NAME} ({api}) in namespace {ns}: not found"))
            .next(schedule_it),
        ];
    };
    let mut out = Vec::new();
    if cj.suspended {
        out.push(
            finding(
                "backups.suspended",
                Severity::Warning,
                format!("the backup CronJob {NAME} is suspended: no backup runs"),
            )
            .evidence("spec.suspend: true")
            .next(format!(
                "resume it: `kubectl -n {ns} patch cronjob {NAME} -p '{{\"spec\":{{\"suspend\":false}}}}'`"
            )),
        );
    }
    if let Some(why) = &cj.schedule_error {
        out.push(
            finding(
                "backups.schedule",
                Severity::Warning,
                format!(
                    "the backup schedule \"{}\" cannot be judged: {why}",
                    cj.schedule
                ),
            )
            .evidence(format!("spec.schedule: {}", cj.schedule))
            .next(format!(
                "set a standard schedule: `newapi-ops backup schedule --cron \"0 3 * * *\" -n {ns}`"
            )),
        );
    }
    if st.last_failed
        && let Some(failed) = &st.last_failure
    {
        out.push(last_failed(st, failed, now));
    }
    if let Some(period) = cj.period_secs.and_then(|p| i64::try_from(p).ok()) {
        out.push(staleness(st, period, now));
    }
    if let Some(v) = &st.volume
        && let Some(newest) = v.newest.first()
    {
        let old =
            ts(Some(&newest.started_at)).map_or_else(|| "?".into(), |t| units::age(age(now, t)));
        let (severity, verified) = match (&newest.verified, newest.verify_failed) {
            (Some(mode), _) => (Severity::Ok, format!("verified ({mode})")),
            (None, true) => (Severity::Warning, "its verification FAILED".to_string()),
            (None, false) => (Severity::Warning, "not verified".to_string()),
        };
        let mut f = finding(
            "backups.volume",
            severity,
            format!(
                "newest backup in the volume: {} ({old} old), {verified}; {} in all",
                newest.id,
                units::plural(v.backups, "backup", "backups")
            ),
        )
        .evidence(format!(
            "ConfigMap {STATUS_CONFIGMAP}, written by the job at {}",
            v.written_at
        ));
        if severity != Severity::Ok {
            f = f.next(format!(
                "check it from a host that mounts the volume: `newapi-ops backup verify {} --dir DIR`",
                newest.id
            ));
        }
        out.push(f);
    }
    out
}

fn last_failed(st: &ScheduleStatus, failed: &JobRun, now: jiff::Timestamp) -> Finding {
    let ns = &st.namespace;
    let when = ts(failed.finished_at.as_deref())
        .map_or_else(String::new, |t| format!(" {} ago", secs(age(now, t))));
    let mut f = finding(
        "backups.last-failed",
        Severity::Critical,
        format!("the last backup job failed: job {}{when}", failed.name),
    )
    .cause("the last backup job failed");
    let mut next = format!("`newapi-ops backup status -n {ns}`");
    if let Some(fail) = &failed.failure {
        f = f.evidence(format!("job {}: {}", failed.name, fail.reason));
        if let Some(line) = &fail.log_line {
            let pod = fail.pod.as_deref().unwrap_or("its pod");
            let container = fail
                .container
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            f = f.evidence(format!("{pod}{container}: {line}"));
        }
        if let Some(pod) = &fail.pod {
            next = format!("`newapi-ops logs {pod} -n {ns}`");
        }
    }
    f.next(format!(
        "read why: {next}; fix it, then run it again: `newapi-ops backup schedule --run-now -n {ns}`"
    ))
}

fn staleness(st: &ScheduleStatus, period: i64, now: jiff::Timestamp) -> Finding {
    let ns = &st.namespace;
    let Some(cj) = &st.cronjob else {
        return finding("backups.stale", Severity::Warning, "no CronJob".into());
    };
    let every = secs(period);
    let success = st.last_success.as_ref().and_then(|r| {
        ts(r.finished_at.as_deref()).map(|t| (t, format!("job {} finished at {t}", r.name)))
    });
    // The volume's newest backup counts too (its Job may have been cleaned up since).
    let in_volume = st
        .volume
        .as_ref()
        .and_then(|v| v.newest.first())
        .and_then(|b| {
            ts(Some(&b.started_at))
                .map(|t| (t, format!("backup {} in the volume, started at {t}", b.id)))
        });
    let newest = match (success, in_volume) {
        (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    let run_now = format!(
        "`newapi-ops backup schedule --run-now -n {ns}`, then `newapi-ops backup status -n {ns}`"
    );
    match newest {
        Some((at, seen)) => {
            let old = age(now, at);
            let severity = if old > 3 * period {
                Severity::Critical
            } else if old > 2 * period {
                Severity::Warning
            } else {
                Severity::Ok
            };
            if severity == Severity::Ok {
                return finding(
                    "backups.recent",
                    Severity::Ok,
                    format!(
                        "newest successful backup {} ago (\"{}\": at most {every} between runs)",
                        secs(old),
                        cj.schedule
                    ),
                )
                .evidence(seen);
            }
            finding(
                "backups.stale",
                severity,
                format!(
                    "newest successful backup is {} old: more than {} periods of \"{}\" ({every})",
                    secs(old),
                    if severity == Severity::Critical { 3 } else { 2 },
                    cj.schedule
                ),
            )
            .cause("the newest successful backup is older than the schedule allows")
            .evidence(seen)
            .evidence(format!(
                "last scheduled: {}",
                cj.last_schedule.as_deref().unwrap_or("never")
            ))
            .next(format!(
                "run one now and see why the schedule did not: {run_now}"
            ))
        }
        None => {
            let since = ts(cj.created.as_deref()).map_or(0, |t| age(now, t));
            let severity = if since > 3 * period {
                Severity::Critical
            } else if since > 2 * period {
                Severity::Warning
            } else {
                Severity::Info
            };
            finding(
                "backups.stale",
                severity,
                format!(
                    "no successful backup since the CronJob was created {} ago (\"{}\": at most {every} between runs)",
                    secs(since),
                    cj.schedule
                ),
            )
            .cause("no successful backup yet")
            .evidence(format!(
                "no Complete job of {NAME}; last scheduled: {}",
                cj.last_schedule.as_deref().unwrap_or("never")
            ))
            .next(format!("run the first one now: {run_now}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::schedule::status::{CronJobView, Failure};

    const DAY: i64 = 86_400;

    fn now() -> jiff::Timestamp {
        "2026-12-10T12:00:00Z".parse().unwrap()
    }

    fn at(secs_ago: i64) -> String {
        jiff::Timestamp::from_second(now().as_second() - secs_ago)
            .unwrap()
            .to_string()
    }

    fn status(schedule: &str, period: Option<u64>) -> ScheduleStatus {
        ScheduleStatus {
            namespace: "new-api".into(),
            server_version: Some("v1.20.2".into()),
            api_version: Some("batch/v1beta1".into()),
            cronjob: Some(CronJobView {
                name: NAME.into(),
                api_version: "batch/v1beta1".into(),
                schedule: schedule.into(),
                suspended: false,
                created: Some(at(30 * DAY)),
                last_schedule: Some(at(DAY / 2)),
                period_secs: period,
                schedule_error: period.is_none().then(|| "5 fields expected".to_string()),
            }),
            ..ScheduleStatus::default()
        }
    }

    fn run(name: &str, ago: i64, ok: bool) -> JobRun {
        JobRun {
            name: name.into(),
            manual: false,
            started_at: Some(at(ago + 10)),
            finished_at: Some(at(ago)),
            succeeded: ok,
            failure: (!ok).then(|| Failure {
                pod: Some(format!("{name}-x")),
                container: Some("backup".into()),
                exit_code: Some(69),
                reason: "Error (exit 69); BackoffLimitExceeded".into(),
                log_line: Some("error: cannot connect to MySQL at root@mysql:3306/new-api".into()),
                log_tail: Vec::new(),
            }),
        }
    }

    fn severity_of(fs: &[Finding], check: &str) -> Option<Severity> {
        fs.iter().find(|f| f.check == check).map(|f| f.severity)
    }

    #[test]
    fn no_schedule_is_a_warning() {
        let mut st = status("0 3 * * *", Some(DAY as u64));
        st.cronjob = None;
        let fs = check(&st, now());
        assert_eq!(
            severity_of(&fs, "backups.scheduled"),
            Some(Severity::Warning)
        );
        assert!(
            fs[0]
                .next_step
                .as_deref()
                .unwrap()
                .contains("backup schedule")
        );
        st.api_version = None;
        assert!(
            check(&st, now())[0]
                .next_step
                .as_deref()
                .unwrap()
                .contains("--crontab")
        );
    }

    #[test]
    fn age_against_two_and_three_periods() {
        let daily = Some(DAY as u64);
        for (ago, check_id, sev) in [
            (DAY, "backups.recent", Severity::Ok),
            (2 * DAY + 60, "backups.stale", Severity::Warning),
            (3 * DAY + 60, "backups.stale", Severity::Critical),
        ] {
            let mut st = status("0 3 * * *", daily);
            st.last_success = Some(run("good", ago, true));
            let fs = check(&st, now());
            assert_eq!(severity_of(&fs, check_id), Some(sev), "{ago}: {fs:#?}");
        }
        // Hourly: a day-old backup is far too old.
        let mut st = status("@hourly", Some(3600));
        st.last_success = Some(run("good", DAY, true));
        assert_eq!(
            severity_of(&check(&st, now()), "backups.stale"),
            Some(Severity::Critical)
        );
        // Never succeeded, created long ago: critical; created just now: info.
        let st = status("0 3 * * *", daily);
        assert_eq!(
            severity_of(&check(&st, now()), "backups.stale"),
            Some(Severity::Critical)
        );
        let mut st = status("0 3 * * *", daily);
        st.cronjob.as_mut().unwrap().created = Some(at(60));
        assert_eq!(
            severity_of(&check(&st, now()), "backups.stale"),
            Some(Severity::Info)
        );
    }

    #[test]
    fn a_failed_last_job_is_critical_with_its_log_line() {
        let mut st = status("0 3 * * *", Some(DAY as u64));
        st.last_success = Some(run("good", DAY / 2, true));
        st.last_failure = Some(run("bad", 60, false));
        st.last_failed = true;
        let fs = check(&st, now());
        let f = fs
            .iter()
            .find(|f| f.check == "backups.last-failed")
            .unwrap();
        assert_eq!(f.severity, Severity::Critical);
        assert!(
            f.evidence
                .iter()
                .any(|e| e.contains("cannot connect to MySQL")),
            "{f:#?}"
        );
        assert!(
            f.next_step
                .as_deref()
                .unwrap()
                .contains("newapi-ops logs bad-x")
        );
        // An older failure, followed by a success, is not.
        st.last_failed = false;
        assert_eq!(severity_of(&check(&st, now()), "backups.last-failed"), None);
    }

    #[test]
    fn an_unreadable_schedule_is_a_finding_not_a_crash() {
        let st = status("every night", None);
        let fs = check(&st, now());
        assert_eq!(
            severity_of(&fs, "backups.schedule"),
            Some(Severity::Warning)
        );
        assert_eq!(severity_of(&fs, "backups.stale"), None);
    }
}
