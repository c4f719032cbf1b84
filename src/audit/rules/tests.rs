//! The rules on hand-made facts: the seed deployment (as `fixtures/sandbox/` has it), then each
//! rule made to pass or fail by changing what it reads.

use super::*;
use crate::audit::discovery::ApiVersions;
use crate::audit::facts::{MysqlLive, RedisLive};
use crate::inventory::Snapshot;
use serde_json::json;

fn newapi(role: &str, replicas: i32, env: Json) -> Json {
    json!({
        "metadata": {"name": format!("new-api-{role}")},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "new-api", "role": role}},
            "template": {
                "metadata": {"labels": {"app": "new-api", "role": role}},
                "spec": {"containers": [{
                    "name": "new-api", "image": "calciumion/new-api:latest", "env": env,
                    "ports": [{"containerPort": 3000}],
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
                    "readinessProbe": {"httpGet": {"path": "/api/status", "port": 3000}},
                    "livenessProbe": {"httpGet": {"path": "/api/status", "port": 3000}}
                }]}
            }
        }
    })
}

fn shared_env() -> Json {
    json!([
        {"name": "SQL_DSN", "valueFrom": {"configMapKeyRef": {"name": "new-api-config", "key": "SQL_DSN"}}},
        {"name": "REDIS_CONN_STRING", "valueFrom": {"configMapKeyRef": {"name": "new-api-config", "key": "REDIS_CONN_STRING"}}},
        {"name": "SESSION_SECRET", "valueFrom": {"secretKeyRef": {"name": "new-api-secret", "key": "SESSION_SECRET"}}},
        {"name": "CRYPTO_SECRET", "valueFrom": {"secretKeyRef": {"name": "new-api-secret", "key": "CRYPTO_SECRET"}}}
    ])
}

fn with(mut env: Json, extra: Json) -> Json {
    if let (Some(a), Some(b)) = (env.as_array_mut(), extra.as_array()) {
        a.extend(b.iter().cloned());
    }
    env
}

fn backend(name: &str, image: &str, port: i32, volumes: Json, mounts: Json) -> Json {
    json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": name, "image": image, "ports": [{"containerPort": port}],
                        "env": [{"name": "MYSQL_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "new-api-secret", "key": "MYSQL_ROOT_PASSWORD"}}}],
                        "volumeMounts": mounts,
                        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}}],
                    "volumes": volumes
                }
            }
        }
    })
}

/// The seed deployment of `fixtures/sandbox/`, as listed.
pub(crate) fn seed() -> Facts {
    let deployments = vec![
        newapi("master", 1, shared_env()),
        newapi(
            "slave",
            3,
            with(
                shared_env(),
                json!([{"name": "NODE_TYPE", "value": "slave"}, {"name": "SYNC_FREQUENCY", "value": "60"}]),
            ),
        ),
        backend(
            "mysql",
            "mysql:8.2",
            3306,
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "mysql-pvc"}}]),
            json!([{"name": "data", "mountPath": "/var/lib/mysql"}]),
        ),
        backend("redis", "redis:7", 6379, json!([]), json!([])),
    ];
    let secret = json!({"metadata": {"name": "new-api-secret"}, "data": {
        "SESSION_SECRET": b64("sandbox-session-secret-change-me"),
        "CRYPTO_SECRET": b64("sandbox-crypto-secret-change-me"),
        "MYSQL_ROOT_PASSWORD": b64("123456")}});
    let cm = json!({"metadata": {"name": "new-api-config"}, "data": {
        "SQL_DSN": "root:123456@tcp(mysql:3306)/new-api", "REDIS_CONN_STRING": "redis://redis:6379"}});
    let svc = json!({"metadata": {"name": "new-api"}, "spec": {"type": "NodePort", "selector": {"app": "new-api"},
        "ports": [{"port": 3000, "nodePort": 30000}]}});
    let pvc = json!({"metadata": {"name": "mysql-pvc"}, "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}}});
    Facts {
        namespace: "new-api".into(),
        settings: crate::config::Settings::resolve(&crate::config::Overrides {
            config: None,
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("settings: {e}")),
        snapshot: Snapshot {
            namespace: "new-api".into(),
            pods: Vec::new(),
            deployments: deployments
                .into_iter()
                .map(|d| serde_json::from_value(d).unwrap())
                .collect(),
            statefulsets: Vec::new(),
        },
        nodes: None,
        capacity_unknown: Some("not listed in this test".into()),
        apis: ApiVersions {
            server_version: Some("v1.20.2".into()),
            hpa: Some("autoscaling/v2beta2".into()),
            pdb: Some("policy/v1beta1".into()),
            cronjob: Some("batch/v1beta1".into()),
            ingress: Some("networking.k8s.io/v1".into()),
            monitoring: None,
        },
        secrets: Read::Got(vec![serde_json::from_value(secret).unwrap()]),
        configmaps: Read::Got(vec![serde_json::from_value(cm).unwrap()]),
        services: Read::Got(vec![serde_json::from_value(svc).unwrap()]),
        pvcs: Read::Got(vec![serde_json::from_value(pvc).unwrap()]),
        hpas: Read::Got(Vec::new()),
        pdbs: Read::Got(Vec::new()),
        network_policies: Read::Got(Vec::new()),
        ingresses: Read::Got(Vec::new()),
        cronjobs: Read::Got(Vec::new()),
        jobs: Read::Got(Vec::new()),
        daemonsets: Read::Got(Vec::new()),
        monitors: Read::NotChecked("monitoring.coreos.com is not served".into()),
        prometheus_rules: Read::NotChecked("monitoring.coreos.com is not served".into()),
        mysql: Read::Got(MysqlLive {
            via: "root@mysql:3306/new-api".into(),
            max_connections: 151,
            wait_timeout: 28800,
        }),
        redis: Read::Got(RedisLive {
            via: "redis:6379".into(),
            maxmemory: 0,
            policy: "noeviction".into(),
            maxclients: Some(10000),
        }),
        backups: Read::Got(Vec::new()),
        backup_dir: "/tmp/none".into(),
        backup_max_age: std::time::Duration::from_secs(26 * 3600),
        in_cluster: false,
        now: jiff::Timestamp::now(),
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn status(f: &Facts, id: &str) -> Status {
    outcome(f, id).status
}

fn outcome(f: &Facts, id: &str) -> Outcome {
    evaluate(f)
        .into_iter()
        .find(|o| o.id == id)
        .unwrap_or_else(|| panic!("no rule {id}"))
}

fn deployment_mut<'a>(
    f: &'a mut Facts,
    name: &str,
) -> &'a mut k8s_openapi::api::apps::v1::Deployment {
    f.snapshot
        .deployments
        .iter_mut()
        .find(|d| d.metadata.name.as_deref() == Some(name))
        .unwrap()
}

/// The first container of a Deployment's pod template.
fn container_mut<'a>(f: &'a mut Facts, name: &str) -> &'a mut Container {
    &mut deployment_mut(f, name)
        .spec
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
}

#[test]
fn the_seed_fails_what_the_notes_say_it_lacks() {
    let f = seed();
    let out = evaluate(&f);
    assert_eq!(out.len(), RULES.len());
    let by = |id: &str| out.iter().find(|o| o.id == id).unwrap().status;
    for id in [
        "advice.external-database",
        "advice.redis-ha",
        "advice.hpa",
        "advice.pdb",
        "advice.ingress",
        "advice.scheduled-backups",
        "advice.network-policy",
        "advice.default-secrets",
        "advice.log-aggregation",
        "newapi.sql-pool",
        "kube.image-tags",
        "kube.probes",
        "kube.run-as-non-root",
        "kube.backend-replicas",
        "kube.slave-spread",
        "kube.redis-maxmemory",
        "backup.recent",
        "backup.verified",
        "backup.offsite",
    ] {
        assert_eq!(by(id), Status::Fail, "{id}");
    }
    for id in [
        "newapi.one-master",
        "newapi.node-type",
        "newapi.secrets-set",
        "newapi.secrets-identical",
        "newapi.redis-when-scaled",
        "newapi.sql-lifetime",
        "newapi.env-names",
        "kube.resources",
        "kube.mysql-pvc",
    ] {
        assert_eq!(by(id), Status::Pass, "{id}");
    }
    assert_eq!(by("advice.monitoring"), Status::NotChecked);
    // No secret value anywhere in the outcomes.
    let text = serde_json::to_string(&out).unwrap();
    for secret in [
        "sandbox-session-secret-change-me",
        "123456@",
        "sandbox-crypto",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn pool_arithmetic_uses_the_hpa_maximum_and_the_mysql_argument() {
    let mut f = seed();
    let o = outcome(&f, "newapi.sql-pool");
    assert!(o.summary.contains("4000"), "{}", o.summary);
    // Lower pools: 4 × 30 + 10 ≤ 151.
    for name in ["new-api-master", "new-api-slave"] {
        let c = container_mut(&mut f, name);
        c.env.get_or_insert_default().push(
            serde_json::from_value(json!({"name": "SQL_MAX_OPEN_CONNS", "value": "30"})).unwrap(),
        );
    }
    assert_eq!(status(&f, "newapi.sql-pool"), Status::Pass);
    // An HPA to 10 slaves: 11 × 30 + 10 > 151.
    f.hpas = Read::Got(vec![json!({"metadata": {"name": "h"}, "spec": {
        "scaleTargetRef": {"kind": "Deployment", "name": "new-api-slave"}, "minReplicas": 3, "maxReplicas": 10}})]);
    assert_eq!(status(&f, "newapi.sql-pool"), Status::Fail);
    assert_eq!(status(&f, "advice.hpa"), Status::Pass);
    // --max-connections=400 on MySQL's container wins over the live 151.
    let c = container_mut(&mut f, "mysql");
    c.args = Some(vec!["--max-connections=400".into()]);
    let o = outcome(&f, "newapi.sql-pool");
    assert_eq!(o.status, Status::Pass, "{:?}", o.evidence);
    // MySQL not reached and no argument: not checked, never pass.
    let mut f = seed();
    f.mysql = Read::NotChecked("mysql not reached: forbidden".into());
    assert_eq!(status(&f, "newapi.sql-pool"), Status::NotChecked);
}

#[test]
fn secrets_rules() {
    let mut f = seed();
    // Both unset on the slaves: New-API refuses to start.
    let c = container_mut(&mut f, "new-api-slave");
    c.env
        .as_mut()
        .unwrap()
        .retain(|e| !e.name.ends_with("_SECRET"));
    assert_eq!(status(&f, "newapi.secrets-set"), Status::Fail);
    // random_string anywhere: refused too.
    let mut f = seed();
    let c = container_mut(&mut f, "new-api-master");
    c.env.as_mut().unwrap().push(
        serde_json::from_value(json!({"name": "SESSION_SECRET", "value": "random_string"}))
            .unwrap(),
    );
    c.env.as_mut().unwrap().remove(2);
    assert_eq!(status(&f, "newapi.secrets-set"), Status::Fail);
    // Differing values: critical, shown only as fingerprints.
    assert_eq!(status(&f, "newapi.secrets-identical"), Status::Fail);
    let o = outcome(&f, "newapi.secrets-identical");
    assert!(
        o.evidence.iter().all(|e| !e.contains("random_string")),
        "{:?}",
        o.evidence
    );
    // Secrets not readable (RBAC): not checked.
    let mut f = seed();
    f.secrets = Read::NotChecked("not allowed".into());
    assert_eq!(status(&f, "newapi.secrets-set"), Status::NotChecked);
    assert_eq!(status(&f, "newapi.secrets-identical"), Status::NotChecked);
    // The default-secrets rule still sees the DSN in the ConfigMap.
    assert_eq!(status(&f, "advice.default-secrets"), Status::Fail);
}

#[test]
fn masters_node_types_and_names() {
    let mut f = seed();
    let c = container_mut(&mut f, "new-api-slave");
    for e in c.env.as_mut().unwrap() {
        if e.name == "NODE_TYPE" {
            e.value = Some("Slave".into());
        }
        if e.name == "SYNC_FREQUENCY" {
            e.name = "SYNC_FREQENCY".into();
        }
    }
    assert_eq!(status(&f, "newapi.one-master"), Status::Fail);
    assert_eq!(status(&f, "newapi.node-type"), Status::Fail);
    let o = outcome(&f, "newapi.env-names");
    assert_eq!(o.status, Status::Fail);
    assert!(
        o.evidence[0].contains("did you mean SYNC_FREQUENCY"),
        "{:?}",
        o.evidence
    );
    // SQL_MAX_LIFETIME with a unit, or in milliseconds.
    let mut f = seed();
    let c = container_mut(&mut f, "new-api-master");
    c.env
        .as_mut()
        .unwrap()
        .push(serde_json::from_value(json!({"name": "SQL_MAX_LIFETIME", "value": "60s"})).unwrap());
    assert_eq!(status(&f, "newapi.sql-lifetime"), Status::Fail);
    c_set(&mut f, "SQL_MAX_LIFETIME", "60000");
    assert!(outcome(&f, "newapi.sql-lifetime").evidence[0].contains("milliseconds"));
    c_set(&mut f, "SQL_MAX_LIFETIME", "55");
    assert_eq!(status(&f, "newapi.sql-lifetime"), Status::Pass);
    // No Redis with four pods.
    let mut f = seed();
    for name in ["new-api-master", "new-api-slave"] {
        let c = container_mut(&mut f, name);
        c.env
            .as_mut()
            .unwrap()
            .retain(|e| e.name != "REDIS_CONN_STRING");
    }
    assert_eq!(status(&f, "newapi.redis-when-scaled"), Status::Fail);
}

fn c_set(f: &mut Facts, var: &str, value: &str) {
    let c = container_mut(f, "new-api-master");
    for e in c.env.as_mut().unwrap() {
        if e.name == var {
            e.value = Some(value.into());
        }
    }
}

#[test]
fn objects_that_make_the_advice_pass() {
    let mut f = seed();
    f.pdbs = Read::Got(vec![
        json!({"metadata": {"name": "a"}, "spec": {"selector": {"matchLabels": {"app": "new-api", "role": "slave"}}}}),
        json!({"metadata": {"name": "b"}, "spec": {"selector": {"matchLabels": {"role": "master"}}}}),
    ]);
    f.ingresses = Read::Got(vec![
        json!({"metadata": {"name": "i"}, "spec": {"rules": [{"http": {"paths": [
        {"path": "/", "backend": {"service": {"name": "new-api", "port": {"number": 3000}}}}]}}]}}),
    ]);
    f.cronjobs = Read::Got(vec![
        json!({"metadata": {"name": "nightly"}, "spec": {"schedule": "0 3 * * *",
        "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "d", "image": "mysql:8", "command": ["mysqldump"]}]}}}}}}),
    ]);
    f.network_policies = Read::Got(vec![serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["mysql", "redis"]}]},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "new-api"}}}]}]}})).unwrap()]);
    f.daemonsets = Read::Got(vec![
        serde_json::from_value(
            json!({"metadata": {"name": "fluent-bit", "namespace": "logging"},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "f"}]}}}}),
        )
        .unwrap(),
    ]);
    for id in [
        "advice.pdb",
        "advice.ingress",
        "advice.scheduled-backups",
        "advice.network-policy",
        "advice.log-aggregation",
    ] {
        assert_eq!(
            status(&f, id),
            Status::Pass,
            "{id}: {:?}",
            outcome(&f, id).evidence
        );
    }
    // An ingress rule without `from` opens the policy again.
    f.network_policies = Read::Got(vec![
        serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {
        "podSelector": {}, "ingress": [{}]}}))
        .unwrap(),
    ]);
    assert_eq!(status(&f, "advice.network-policy"), Status::Fail);
    // A suspended backup CronJob is no schedule.
    f.cronjobs = Read::Got(vec![
        json!({"metadata": {"name": "db-backup"}, "spec": {"suspend": true}}),
    ]);
    assert_eq!(status(&f, "advice.scheduled-backups"), Status::Fail);
    // RBAC on DaemonSets of every namespace: not checked.
    f.daemonsets = Read::NotChecked("not allowed".into());
    assert_eq!(status(&f, "advice.log-aggregation"), Status::NotChecked);
}

#[test]
fn monitoring_counts_monitors_and_rules() {
    let mut f = seed();
    f.monitors = Read::Got(vec![
        json!({"kind": "ServiceMonitor", "metadata": {"name": "m"},
        "spec": {"selector": {"matchLabels": {"app": "new-api"}}}}),
    ]);
    f.prometheus_rules = Read::Got(Vec::new());
    // Scraped (the Service is labelled app=new-api? not in the seed: no labels).
    let o = outcome(&f, "advice.monitoring");
    assert_eq!(o.status, Status::Fail, "{:?}", o.evidence);
    f.monitors = Read::Got(vec![
        json!({"kind": "PodMonitor", "metadata": {"name": "m"},
        "spec": {"selector": {"matchLabels": {"app": "new-api"}}}}),
    ]);
    assert!(
        outcome(&f, "advice.monitoring")
            .summary
            .contains("no PrometheusRule")
    );
    f.prometheus_rules = Read::Got(vec![json!({"metadata": {"name": "alerts"}})]);
    assert_eq!(status(&f, "advice.monitoring"), Status::Pass);
}

#[test]
fn managed_backends_and_ha_redis() {
    let mut f = seed();
    if let Read::Got(cms) = &mut f.configmaps {
        let d = cms[0].data.as_mut().unwrap();
        d.insert(
            "SQL_DSN".into(),
            "app:pw@tcp(db.abc.rds.amazonaws.com:3306)/newapi".into(),
        );
        d.insert(
            "REDIS_CONN_STRING".into(),
            "redis://cache.example.net:6379".into(),
        );
    }
    assert_eq!(status(&f, "advice.external-database"), Status::Pass);
    assert_eq!(status(&f, "advice.redis-ha"), Status::Pass);
    let mut f = seed();
    let c = container_mut(&mut f, "new-api-master");
    c.env.as_mut().unwrap().push(
        serde_json::from_value(
            json!({"name": "REDIS_HA_CONN_STRING", "value": "s1:26379,s2:26379,s3:26379"}),
        )
        .unwrap(),
    );
    c.env.as_mut().unwrap().push(
        serde_json::from_value(json!({"name": "REDIS_MASTER_NAME", "value": "mymaster"})).unwrap(),
    );
    let o = outcome(&f, "advice.redis-ha");
    assert_eq!(o.status, Status::Pass);
    assert!(o.summary.contains("3 addresses"), "{}", o.summary);
}

#[test]
fn mysql_storage_and_redis_memory() {
    let mut f = seed();
    let spec = deployment_mut(&mut f, "mysql")
        .spec
        .template
        .spec
        .as_mut()
        .unwrap();
    spec.volumes = Some(vec![
        serde_json::from_value(json!({"name": "data", "emptyDir": {}})).unwrap(),
    ]);
    let o = outcome(&f, "kube.mysql-pvc");
    assert_eq!(o.status, Status::Fail);
    assert!(o.summary.contains("emptyDir"), "{}", o.summary);
    let mut f = seed();
    let c = container_mut(&mut f, "redis");
    c.args = Some(vec!["--maxmemory".into(), "3072mb".into()]);
    assert_eq!(status(&f, "kube.redis-maxmemory"), Status::Pass);
    c_redis(&mut f, "8gb");
    assert_eq!(status(&f, "kube.redis-maxmemory"), Status::Fail);
    assert_eq!(redis_bytes("3gb"), Some(3 << 30));
    assert_eq!(redis_bytes("100"), Some(100));
    assert_eq!(redis_bytes("3tb"), None);
}

fn c_redis(f: &mut Facts, v: &str) {
    let c = container_mut(f, "redis");
    c.args = Some(vec!["--maxmemory".into(), v.into()]);
}

#[test]
fn backups_recent_verified_offsite() {
    let mut f = seed();
    let entry = |id: &str, age_h: i64, verified: bool| crate::backup::store::Entry {
        id: id.into(),
        path: std::path::PathBuf::from("/tmp"),
        started_at: (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(age_h)).to_string(),
        database: "new-api".into(),
        bytes: 1,
        tables: 1,
        rows: 1,
        encrypted: false,
        verified: verified.then(|| "files".to_string()),
        verify_failed: false,
    };
    f.backups = Read::Got(vec![entry("old", 100, true), entry("new", 2, false)]);
    assert_eq!(status(&f, "backup.recent"), Status::Pass);
    assert_eq!(status(&f, "backup.offsite"), Status::Pass);
    assert_eq!(status(&f, "backup.verified"), Status::Fail);
    f.backups = Read::Got(vec![entry("new", 2, true)]);
    assert_eq!(status(&f, "backup.verified"), Status::Pass);
    f.backups = Read::Got(vec![entry("stale", 50, true)]);
    assert_eq!(status(&f, "backup.recent"), Status::Fail);
    assert_eq!(status(&f, "backup.offsite"), Status::Fail);
    f.in_cluster = true;
    assert_eq!(status(&f, "backup.offsite"), Status::NotChecked);
}

#[test]
fn rule_ids_are_unique_and_the_ten_recommendations_are_there() {
    let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), RULES.len());
    let mut advice: Vec<u8> = RULES.iter().filter_map(|r| r.advice).collect();
    advice.sort();
    assert_eq!(advice, (1..=10).collect::<Vec<u8>>());
}
