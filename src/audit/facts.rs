//! Everything the rules read, gathered once and concurrently: a constant number of API calls
//! whatever the size of the deployment (one list per kind), one port-forward and one query each
//! to MySQL and Redis, and a read of the local backup store. What cannot be read is kept as
//! [`Read::NotChecked`] with the reason (RBAC denial, API not served, backend not reached), so
//! that a rule depending on it says "not checked" — never pass.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{DynamicObject, ListParams};
use serde_json::Value as Json;

use super::Options;
use super::discovery::{self, ApiVersions};
use crate::backends::{Backend, Reached};
use crate::backup::store::Entry;
use crate::capacity::NodeCapacity;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::inventory::Snapshot;
use crate::k8s::{Call, Kube};
use crate::scale::ClusterView;

/// A fact, or why it could not be read.
#[derive(Debug, Clone)]
pub enum Read<T> {
    Got(T),
    NotChecked(String),
}

impl<T> Read<T> {
    pub fn got(&self) -> Option<&T> {
        match self {
            Read::Got(t) => Some(t),
            Read::NotChecked(_) => None,
        }
    }

    /// Why it was not read (empty when it was).
    pub fn why(&self) -> &str {
        match self {
            Read::Got(_) => "",
            Read::NotChecked(why) => why,
        }
    }
}

/// MySQL as New-API reaches it.
#[derive(Debug, Clone)]
pub struct MysqlLive {
    pub via: String,
    pub max_connections: u64,
    pub wait_timeout: u64,
}

/// Redis as New-API reaches it.
#[derive(Debug, Clone)]
pub struct RedisLive {
    pub via: String,
    pub maxmemory: u64,
    pub policy: String,
    pub maxclients: Option<u64>,
}

/// What the rules and fixes read.
#[derive(Debug, Clone)]
pub struct Facts {
    pub namespace: String,
    pub settings: Settings,
    /// The namespace's Deployments, StatefulSets and active pods.
    pub snapshot: Snapshot,
    /// Every node with its active pods (None when nodes or pods of all namespaces may not be
    /// listed; `capacity_unknown` says why).
    pub nodes: Option<Vec<NodeCapacity>>,
    pub capacity_unknown: Option<String>,
    pub apis: ApiVersions,
    pub secrets: Read<Vec<Secret>>,
    pub configmaps: Read<Vec<ConfigMap>>,
    pub services: Read<Vec<Service>>,
    pub pvcs: Read<Vec<PersistentVolumeClaim>>,
    /// HorizontalPodAutoscalers (as JSON, at the served version).
    pub hpas: Read<Vec<Json>>,
    pub pdbs: Read<Vec<Json>>,
    pub network_policies: Read<Vec<NetworkPolicy>>,
    pub ingresses: Read<Vec<Json>>,
    pub cronjobs: Read<Vec<Json>>,
    pub jobs: Read<Vec<Job>>,
    /// DaemonSets of every namespace (log collectors run elsewhere).
    pub daemonsets: Read<Vec<DaemonSet>>,
    /// ServiceMonitors and PodMonitors, and PrometheusRules, of the namespace.
    pub monitors: Read<Vec<Json>>,
    pub prometheus_rules: Read<Vec<Json>>,
    pub mysql: Read<MysqlLive>,
    pub redis: Read<RedisLive>,
    /// The local backup store, oldest first.
    pub backups: Read<Vec<Entry>>,
    pub backup_dir: String,
    pub backup_max_age: Duration,
    /// newapi-ops runs inside a pod (then the local store is in the cluster too).
    pub in_cluster: bool,
    pub now: jiff::Timestamp,
}

/// A list call whose RBAC denial (or absence of the API) is a fact, not a failure.
fn soft<T>(r: Result<T>) -> Result<Read<T>> {
    match r {
        Ok(t) => Ok(Read::Got(t)),
        Err(e @ (Error::Forbidden { .. } | Error::Unauthorized { .. })) => {
            Ok(Read::NotChecked(format!("not allowed: {e}")))
        }
        Err(Error::Api {
            code: 404, call, ..
        }) => Ok(Read::NotChecked(format!(
            "not served by this server ({call})"
        ))),
        Err(e) => Err(e),
    }
}

async fn list_typed<K>(kube: &Kube, ns: Option<&str>) -> Result<Read<Vec<K>>>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    soft(
        kube.list::<K>(ns, &ListParams::default())
            .await
            .map(|l| l.items),
    )
}

/// Lists `kind` at `api_version` (None: not served) in the namespace, as JSON.
async fn list_dynamic(
    kube: &Kube,
    ns: &str,
    api_version: Option<&str>,
    kind: &str,
) -> Result<Read<Vec<Json>>> {
    let Some(av) = api_version else {
        return Ok(Read::NotChecked(format!(
            "this server serves no API version of {kind}"
        )));
    };
    let ar = discovery::resource(av, kind);
    let api: Api<DynamicObject> = Api::namespaced_with(kube.client.clone(), ns, &ar);
    let call = Call::new("list", discovery::resource_name(av, kind), Some(ns));
    soft(
        api.list(&ListParams::default())
            .await
            .map_err(|e| kube.error(&call, e))
            .map(|l| {
                l.items
                    .into_iter()
                    .map(|o| serde_json::to_value(o).unwrap_or(Json::Null))
                    .collect()
            }),
    )
}

/// Gathers every fact. Only failures that leave nothing to audit are errors (the API server
/// unreachable, the namespace missing, the workloads unlistable).
pub async fn gather(kube: &Kube, settings: &Settings, opts: &Options) -> Result<Facts> {
    let ns = settings.namespace.as_str();
    let (view, apis) = tokio::join!(ClusterView::load(kube, settings), discovery::discover(kube));
    let (view, apis) = (view?, apis?);
    let (secrets, configmaps, services, pvcs, netpols, jobs, daemonsets) = tokio::join!(
        list_typed::<Secret>(kube, Some(ns)),
        list_typed::<ConfigMap>(kube, Some(ns)),
        list_typed::<Service>(kube, Some(ns)),
        list_typed::<PersistentVolumeClaim>(kube, Some(ns)),
        list_typed::<NetworkPolicy>(kube, Some(ns)),
        list_typed::<Job>(kube, Some(ns)),
        list_typed::<DaemonSet>(kube, None),
    );
    let mon = apis.monitoring.as_deref();
    let (hpas, pdbs, ingresses, cronjobs, service_monitors, pod_monitors, prometheus_rules) = tokio::join!(
        list_dynamic(kube, ns, apis.hpa.as_deref(), "HorizontalPodAutoscaler"),
        list_dynamic(kube, ns, apis.pdb.as_deref(), "PodDisruptionBudget"),
        list_dynamic(kube, ns, apis.ingress.as_deref(), "Ingress"),
        list_dynamic(kube, ns, apis.cronjob.as_deref(), "CronJob"),
        list_dynamic(kube, ns, mon, "ServiceMonitor"),
        list_dynamic(kube, ns, mon, "PodMonitor"),
        list_dynamic(kube, ns, mon, "PrometheusRule"),
    );
    let monitors = match (service_monitors?, pod_monitors?) {
        (Read::Got(mut a), Read::Got(b)) => {
            a.extend(b);
            Read::Got(a)
        }
        (Read::NotChecked(why), _) | (_, Read::NotChecked(why)) => {
            Read::NotChecked(if mon.is_none() {
                "monitoring.coreos.com is not served (no Prometheus Operator): ServiceMonitor, PodMonitor and PrometheusRule cannot exist here, and a Prometheus configured by hand is not visible through the API".to_string()
            } else {
                why
            })
        }
    };
    let prometheus_rules = match prometheus_rules? {
        Read::NotChecked(_) if mon.is_none() => {
            Read::NotChecked("monitoring.coreos.com is not served (no Prometheus Operator)".into())
        }
        other => other,
    };
    let (mysql, redis) = tokio::join!(
        read_mysql(kube, settings, opts),
        read_redis(kube, settings, opts)
    );
    let backup_dir = opts.backup_dir.display().to_string();
    let backups = match crate::backup::store::list(&opts.backup_dir) {
        Ok(list) => Read::Got(list),
        Err(e) => Read::NotChecked(format!("cannot read the backup store {backup_dir}: {e}")),
    };
    Ok(Facts {
        namespace: ns.to_string(),
        settings: settings.clone(),
        snapshot: view.snapshot,
        nodes: view.nodes,
        capacity_unknown: view.capacity_unknown,
        apis,
        secrets: secrets?,
        configmaps: configmaps?,
        services: services?,
        pvcs: pvcs?,
        hpas: hpas?,
        pdbs: pdbs?,
        network_policies: netpols?,
        ingresses: ingresses?,
        cronjobs: cronjobs?,
        jobs: jobs?,
        daemonsets: daemonsets?,
        monitors,
        prometheus_rules,
        mysql,
        redis,
        backups,
        backup_dir,
        backup_max_age: opts.backup_max_age,
        in_cluster: crate::backends::running_in_cluster(),
        now: jiff::Timestamp::now(),
    })
}

/// Where a backend is, as New-API reaches it (or the user's URL), within the timeout.
async fn reach(
    kube: &Kube,
    settings: &Settings,
    backend: Backend,
    url: Option<&str>,
    timeout: Duration,
) -> std::result::Result<Reached, String> {
    let call = Call::new("reach", backend.scheme(), Some(&settings.namespace));
    kube.within(timeout, &call, async {
        crate::backends::resolve_backend(backend, Some(kube), settings, url)
            .await
            .map_err(Error::from)
    })
    .await
    .map_err(|e| format!("{} not reached: {e}", backend.scheme()))
}

async fn read_mysql(kube: &Kube, settings: &Settings, opts: &Options) -> Read<MysqlLive> {
    let reached = match reach(
        kube,
        settings,
        Backend::Mysql,
        opts.mysql_url.as_deref(),
        opts.timeout,
    )
    .await
    {
        Ok(r) => r,
        Err(why) => return Read::NotChecked(why),
    };
    let query = async {
        use mysql_async::prelude::Queryable as _;
        let mut conn = mysql_async::Conn::new(reached.endpoint.mysql_opts()).await?;
        let row: Option<(u64, u64)> = conn
            .query_first("SELECT @@max_connections, @@wait_timeout")
            .await?;
        let _ = conn.disconnect().await;
        Ok::<_, mysql_async::Error>(row)
    };
    match tokio::time::timeout(opts.timeout, query).await {
        Ok(Ok(Some((max_connections, wait_timeout)))) => Read::Got(MysqlLive {
            via: reached.via,
            max_connections,
            wait_timeout,
        }),
        Ok(Ok(None)) => {
            Read::NotChecked("MySQL answered no row to SELECT @@max_connections".into())
        }
        Ok(Err(e)) => Read::NotChecked(format!(
            "MySQL at {} did not answer: {}",
            reached.via,
            crate::diagnose::mysql::classify(&e).reason()
        )),
        Err(_) => Read::NotChecked(format!(
            "MySQL at {} did not answer within {}",
            reached.via,
            crate::units::duration(opts.timeout)
        )),
    }
}

async fn read_redis(kube: &Kube, settings: &Settings, opts: &Options) -> Read<RedisLive> {
    let reached = match reach(
        kube,
        settings,
        Backend::Redis,
        opts.redis_url.as_deref(),
        opts.timeout,
    )
    .await
    {
        Ok(r) => r,
        Err(why) => return Read::NotChecked(why),
    };
    let query = async {
        let client = redis::Client::open(reached.endpoint.redis_info())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let pairs: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory*")
            .query_async(&mut conn)
            .await?;
        let clients: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxclients")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        Ok::<_, redis::RedisError>((pairs, clients))
    };
    match tokio::time::timeout(opts.timeout, query).await {
        Ok(Ok((pairs, clients))) => {
            let get = |list: &[String], key: &str| {
                list.chunks(2)
                    .find(|kv| kv.first().map(String::as_str) == Some(key))
                    .and_then(|kv| kv.get(1).cloned())
            };
            Read::Got(RedisLive {
                via: reached.via,
                maxmemory: get(&pairs, "maxmemory")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                policy: get(&pairs, "maxmemory-policy").unwrap_or_default(),
                maxclients: get(&clients, "maxclients").and_then(|v| v.parse().ok()),
            })
        }
        Ok(Err(e)) => Read::NotChecked(format!(
            "Redis at {} refused CONFIG GET: {}",
            reached.via,
            crate::diagnose::redis::classify(&e).reason()
        )),
        Err(_) => Read::NotChecked(format!(
            "Redis at {} did not answer within {}",
            reached.via,
            crate::units::duration(opts.timeout)
        )),
    }
}
