//! The fixes computed for the seed, and the all-or-nothing application against a fake server.

use std::sync::Mutex;

use super::*;
use crate::audit::facts::Read;
use crate::audit::rules::{evaluate, tests::seed};

fn plan_seed(inputs: &FixInputs) -> FixPlan {
    let f = seed();
    plan(&f, &evaluate(&f), inputs)
}

fn inputs() -> FixInputs {
    FixInputs {
        ingress_host: Some("api.example.com".into()),
        backup_cron: "0 3 * * *".into(),
        backup_image: "newapi-ops:test".into(),
        ..FixInputs::default()
    }
}

fn fix<'a>(p: &'a FixPlan, id: &str) -> &'a Fix {
    p.fixes
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no fix {id}: {:?}", p.skipped))
}

#[test]
fn the_seed_on_kubernetes_1_20() {
    let p = plan_seed(&inputs());
    let ids: Vec<&str> = p.fixes.iter().map(|f| f.id).collect();
    assert_eq!(
        ids,
        [
            "hpa",
            "pdb",
            "ingress",
            "backup-schedule",
            "network-policy",
            "mysql-max-connections",
            "redis-maxmemory"
        ]
    );
    let hpa = &fix(&p, "hpa").changes[0].manifest;
    assert_eq!(hpa["apiVersion"], "autoscaling/v2beta2");
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    // Capacity unknown in this test: max = 2 × min.
    assert_eq!(hpa["spec"]["maxReplicas"], 6);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
    let pdbs = &fix(&p, "pdb").changes;
    assert_eq!(pdbs.len(), 2);
    assert!(pdbs.iter().all(|c| c.api_version == "policy/v1beta1"));
    assert_eq!(pdbs[0].manifest["spec"]["maxUnavailable"], 1);
    assert_eq!(pdbs[1].manifest["spec"]["minAvailable"], 1);
    let ing = &fix(&p, "ingress").changes[0].manifest;
    assert_eq!(ing["spec"]["rules"][0]["host"], "api.example.com");
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"],
        3000
    );
    let cron = fix(&p, "backup-schedule")
        .changes
        .iter()
        .find(|c| c.kind == "CronJob")
        .unwrap();
    assert_eq!(cron.api_version, "batch/v1beta1");
    let nps = &fix(&p, "network-policy").changes;
    assert_eq!(nps.len(), 2);
    assert_eq!(
        nps[0].manifest["spec"]["ingress"][0]["ports"][0]["port"],
        3306
    );
    // The pools with the planned HPA maximum: (1 + 6) × 1000 + 10.
    let my = &fix(&p, "mysql-max-connections").changes[0];
    assert_eq!(my.action, Action::Patch);
    assert_eq!(
        my.manifest["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "--max-connections=7010"
    );
    assert_eq!(
        my.undo.as_ref().unwrap()["spec"]["template"]["spec"]["containers"][0]["args"],
        Json::Null
    );
    let rd = &fix(&p, "redis-maxmemory").changes[0].manifest;
    assert_eq!(
        rd["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["--maxmemory", "3072mb", "--maxmemory-policy", "allkeys-lru"])
    );
    // No secret in any manifest.
    let yaml = to_yaml(&p.fixes).unwrap();
    for s in ["123456", "sandbox-session-secret"] {
        assert!(!yaml.contains(s), "{s} in the manifests");
    }
    assert!(yaml.contains("# strategic-merge patch of apps/v1 deployment/mysql"));
}

#[test]
fn newer_servers_get_newer_versions_and_no_host_no_ingress() {
    let mut f = seed();
    f.apis.hpa = Some("autoscaling/v2".into());
    f.apis.pdb = Some("policy/v1".into());
    f.apis.cronjob = Some("batch/v1".into());
    let p = plan(
        &f,
        &evaluate(&f),
        &FixInputs {
            ingress_host: None,
            ..inputs()
        },
    );
    assert_eq!(fix(&p, "hpa").changes[0].api_version, "autoscaling/v2");
    assert_eq!(fix(&p, "pdb").changes[0].api_version, "policy/v1");
    assert!(p.fixes.iter().all(|f| f.id != "ingress"));
    assert!(
        p.skipped.iter().any(|s| s.contains("--ingress-host")),
        "{:?}",
        p.skipped
    );
    f.apis.hpa = Some("autoscaling/v1".into());
    let p = plan(&f, &evaluate(&f), &inputs());
    assert_eq!(
        fix(&p, "hpa").changes[0].manifest["spec"]["targetCPUUtilizationPercentage"],
        80
    );
    // --fixes picks.
    let p = plan(
        &f,
        &evaluate(&f),
        &FixInputs {
            only: vec!["pdb".into()],
            ..inputs()
        },
    );
    assert_eq!(p.fixes.len(), 1);
    // A rule that passes gets no fix.
    f.hpas = Read::Got(vec![json!({"metadata": {"name": "h"}, "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "new-api-slave"}, "maxReplicas": 4}})]);
    let p = plan(&f, &evaluate(&f), &inputs());
    assert!(p.fixes.iter().all(|f| f.id != "hpa"));
}

/// A fake server: refuses the dry run or the apply of the change named, records every call.
#[derive(Default)]
struct Fake {
    refuse_dry_run: Option<String>,
    fail_apply: Option<String>,
    exists: Option<String>,
    /// Applying the change of this name, a signal comes (sent on `signal`) while it is in flight.
    signal_during: Option<String>,
    signal: Mutex<Option<tokio::sync::oneshot::Sender<Signal>>>,
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    /// The calls that were not dry runs (applies and undos), in order.
    fn writes(&self) -> Vec<String> {
        let mut calls = self.calls();
        calls.retain(|c| !c.starts_with("dry-run"));
        calls
    }
    fn forbidden(c: &Change) -> Error {
        Error::Forbidden {
            verb: "create".into(),
            resource: c.resource_name(),
            scope: " in namespace \"new-api\"".into(),
            message: "forbidden".into(),
        }
    }
}

impl Applier for Fake {
    fn dry_run<'a>(&'a self, c: &'a Change) -> BoxFuture<'a, Result<DryRun>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("dry-run {}", c.what()));
        let r = if self.refuse_dry_run.as_deref() == Some(c.name.as_str()) {
            Err(Fake::forbidden(c))
        } else if self.exists.as_deref() == Some(c.name.as_str()) {
            Ok(DryRun::Exists)
        } else {
            Ok(DryRun::Accepted)
        };
        Box::pin(async move { r })
    }
    fn apply<'a>(&'a self, c: &'a Change) -> BoxFuture<'a, Result<()>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("apply {}", c.what()));
        let r = if self.fail_apply.as_deref() == Some(c.name.as_str()) {
            Err(Fake::forbidden(c))
        } else {
            Ok(())
        };
        let signal = (self.signal_during.as_deref() == Some(c.name.as_str()))
            .then(|| self.signal.lock().unwrap().take())
            .flatten();
        Box::pin(async move {
            if let Some(tx) = signal {
                let _ = tx.send(Signal::Terminate);
                // Still in flight when the signal is seen.
                tokio::task::yield_now().await;
            }
            r
        })
    }
    fn undo<'a>(&'a self, c: &'a Change) -> BoxFuture<'a, Result<()>> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("undo {}", c.what()));
        Box::pin(async { Ok(()) })
    }
}

fn two_fixes() -> Vec<Fix> {
    let p = plan_seed(&FixInputs {
        only: vec!["hpa".into(), "pdb".into(), "mysql-max-connections".into()],
        ..inputs()
    });
    p.fixes
}

#[tokio::test]
async fn a_refused_dry_run_applies_nothing() {
    let fake = Fake {
        refuse_dry_run: Some("new-api-master-pdb".into()),
        ..Fake::default()
    };
    let mut fixes = two_fixes();
    let err = dry_run_all(&fake, &mut fixes).await.unwrap_err();
    assert!(matches!(err, AuditError::Rejected { .. }));
    assert!(err.to_string().contains("nothing changed"), "{err}");
    assert_eq!(
        crate::error::Error::from(err).exit_code(),
        crate::exit::PERMISSION
    );
    assert!(
        fake.calls().iter().all(|c| c.starts_with("dry-run")),
        "{:?}",
        fake.calls()
    );
}

#[tokio::test]
async fn a_failed_apply_rolls_back_in_reverse_order() {
    let fake = Fake {
        fail_apply: Some("mysql".into()),
        exists: Some("new-api-slave-pdb".into()),
        ..Fake::default()
    };
    let mut fixes = two_fixes();
    dry_run_all(&fake, &mut fixes).await.unwrap();
    let err = apply_all(&fake, &mut fixes, never().as_mut(), &|_| {})
        .await
        .unwrap_err();
    assert_eq!(
        fake.writes(),
        [
            "apply create horizontalpodautoscaler/new-api-slave",
            "apply create poddisruptionbudget/new-api-master-pdb",
            "apply patch deployment/mysql",
            "undo create poddisruptionbudget/new-api-master-pdb",
            "undo create horizontalpodautoscaler/new-api-slave",
        ]
    );
    let text = err.to_string();
    assert!(text.contains("rolled back"), "{text}");
    assert!(
        text.contains("HorizontalPodAutoscaler/new-api-slave"),
        "{text}"
    );
    assert_eq!(
        statuses(&fixes),
        [
            ChangeStatus::RolledBack,
            ChangeStatus::Exists,
            ChangeStatus::RolledBack,
            ChangeStatus::Failed
        ]
    );
}

/// A stop that never comes.
fn never() -> Pin<Box<dyn Future<Output = Signal> + Send>> {
    Box::pin(std::future::pending())
}

fn statuses(fixes: &[Fix]) -> Vec<ChangeStatus> {
    fixes
        .iter()
        .flat_map(|f| &f.changes)
        .map(|c| c.status)
        .collect()
}

#[tokio::test]
async fn a_signal_while_a_change_is_in_flight_lets_it_finish_then_rolls_everything_back() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let fake = Fake {
        signal_during: Some("new-api-master-pdb".into()),
        signal: Mutex::new(Some(tx)),
        ..Fake::default()
    };
    let mut fixes = two_fixes();
    dry_run_all(&fake, &mut fixes).await.unwrap();
    let mut stop: Pin<Box<dyn Future<Output = Signal> + Send>> =
        Box::pin(async move { rx.await.unwrap_or(Signal::Interrupt) });
    let notes = Mutex::new(Vec::new());
    let err = apply_all(&fake, &mut fixes, stop.as_mut(), &|n| {
        notes.lock().unwrap().push(n.to_string());
    })
    .await
    .unwrap_err();
    assert_eq!(
        fake.writes(),
        [
            "apply create horizontalpodautoscaler/new-api-slave",
            "apply create poddisruptionbudget/new-api-slave-pdb",
            "apply create poddisruptionbudget/new-api-master-pdb",
            "undo create poddisruptionbudget/new-api-master-pdb",
            "undo create poddisruptionbudget/new-api-slave-pdb",
            "undo create horizontalpodautoscaler/new-api-slave",
        ],
        "the change in flight finished and was undone; the MySQL patch was never sent"
    );
    assert_eq!(
        statuses(&fixes),
        [
            ChangeStatus::RolledBack,
            ChangeStatus::RolledBack,
            ChangeStatus::RolledBack,
            ChangeStatus::NotApplied
        ]
    );
    let text = err.to_string();
    assert!(
        text.starts_with("SIGTERM while applying the fixes"),
        "{text}"
    );
    assert!(
        text.contains("create poddisruptionbudget/new-api-master-pdb (fix pdb) was in flight"),
        "{text}"
    );
    assert!(
        text.contains("rolled back what this run had applied"),
        "{text}"
    );
    let notes = notes.into_inner().unwrap();
    assert!(
        notes[0].contains("letting create poddisruptionbudget/new-api-master-pdb (fix pdb) finish"),
        "{notes:?}"
    );
    let err = crate::error::Error::from(err);
    assert_eq!(err.exit_code(), crate::exit::TERMINATED);
    assert!(
        err.hint()
            .unwrap()
            .contains("nothing this run applied is left")
    );
}

#[tokio::test]
async fn a_signal_before_the_first_change_applies_nothing() {
    let fake = Fake::default();
    let mut fixes = two_fixes();
    dry_run_all(&fake, &mut fixes).await.unwrap();
    let mut stop: Pin<Box<dyn Future<Output = Signal> + Send>> =
        Box::pin(std::future::ready(Signal::Interrupt));
    let err = apply_all(&fake, &mut fixes, stop.as_mut(), &|_| {})
        .await
        .unwrap_err();
    assert!(fake.calls().iter().all(|c| c.starts_with("dry-run")));
    assert!(
        statuses(&fixes)
            .iter()
            .all(|s| *s == ChangeStatus::NotApplied)
    );
    assert!(
        err.to_string().contains("nothing had been applied"),
        "{err}"
    );
    assert_eq!(
        crate::error::Error::from(err).exit_code(),
        crate::exit::INTERRUPTED
    );
}
