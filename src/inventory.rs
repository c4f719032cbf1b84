//! A snapshot of the New-API namespace — its pods, Deployments and StatefulSets, one list call per
//! kind — and the roles of the deployment (master, slave, MySQL, Redis) found in it.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::api::ListParams;
use serde::Serialize;

use crate::config::{Settings, Workload};
use crate::error::{Error, Result};
use crate::k8s::Kube;

/// The parts of a New-API deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Slave,
    Mysql,
    Redis,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Master, Role::Slave, Role::Mysql, Role::Redis];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
            Role::Mysql => "mysql",
            Role::Redis => "redis",
        }
    }

    /// The configured workload of this role.
    pub fn workload(self, settings: &Settings) -> &Workload {
        let w = &settings.workloads;
        match self {
            Role::Master => &w.master,
            Role::Slave => &w.slave,
            Role::Mysql => &w.mysql,
            Role::Redis => &w.redis,
        }
    }
}

/// The controller that runs a role's pods.
#[derive(Debug, Clone, Serialize)]
pub struct Controller {
    pub role: Role,
    pub kind: &'static str,
    pub name: String,
    pub desired: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
    #[serde(skip)]
    pub template: Option<PodSpec>,
}

/// The namespace as listed once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub namespace: String,
    pub pods: Vec<Pod>,
    pub deployments: Vec<Deployment>,
    pub statefulsets: Vec<StatefulSet>,
}

impl Snapshot {
    /// Lists pods, Deployments and StatefulSets of the namespace concurrently (three calls).
    pub async fn load(kube: &Kube, settings: &Settings) -> Result<Snapshot> {
        let ns = settings.namespace.as_str();
        kube.ensure_namespace(ns).await?;
        let lp = ListParams::default();
        // Concurrent, but errors are reported in this order, whichever failed first.
        let (pods, deployments, statefulsets) = tokio::join!(
            kube.list::<Pod>(Some(ns), &lp),
            kube.list::<Deployment>(Some(ns), &lp),
            kube.list::<StatefulSet>(Some(ns), &lp),
        );
        let (pods, deployments, statefulsets) = (pods?, deployments?, statefulsets?);
        Ok(Snapshot {
            namespace: ns.to_string(),
            pods: pods.items,
            deployments: deployments.items,
            statefulsets: statefulsets.items,
        })
    }

    /// The role a pod plays, by the configured label selectors.
    pub fn role_of(pod: &Pod, settings: &Settings) -> Option<Role> {
        Role::ALL.into_iter().find(|r| {
            r.workload(settings)
                .selector
                .matches(pod.metadata.labels.as_ref())
        })
    }

    /// The controller (Deployment, else StatefulSet) of a role, if it exists.
    pub fn controller(&self, role: Role, settings: &Settings) -> Option<Controller> {
        let name = &role.workload(settings).name;
        if let Some(d) = self
            .deployments
            .iter()
            .find(|d| d.metadata.name.as_ref() == Some(name))
        {
            let s = d.status.clone().unwrap_or_default();
            return Some(Controller {
                role,
                kind: "Deployment",
                name: name.clone(),
                desired: d.spec.replicas.unwrap_or(1),
                ready: s.ready_replicas.unwrap_or(0),
                available: s.available_replicas.unwrap_or(0),
                updated: s.updated_replicas.unwrap_or(0),
                template: d.spec.template.spec.clone(),
            });
        }
        self.statefulsets
            .iter()
            .find(|s| s.metadata.name.as_ref() == Some(name))
            .map(|st| {
                let s = st.status.clone().unwrap_or_default();
                Controller {
                    role,
                    kind: "StatefulSet",
                    name: name.clone(),
                    desired: st.spec.replicas.unwrap_or(1),
                    ready: s.ready_replicas.unwrap_or(0),
                    available: s.available_replicas.unwrap_or(0),
                    updated: s.updated_replicas.unwrap_or(0),
                    template: st.spec.template.spec.clone(),
                }
            })
    }

    /// Like [`Snapshot::controller`], but a missing one is an error that lists what exists.
    pub fn require(&self, role: Role, settings: &Settings) -> Result<Controller> {
        self.controller(role, settings)
            .ok_or_else(|| Error::WorkloadNotFound {
                kind: "Deployment".into(),
                name: role.workload(settings).name.clone(),
                namespace: self.namespace.clone(),
                available: self.controller_names(),
            })
    }

    /// Names of every Deployment and StatefulSet in the namespace.
    pub fn controller_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .deployments
            .iter()
            .filter_map(|d| d.metadata.name.clone())
            .chain(self.statefulsets.iter().filter_map(|s| {
                s.metadata
                    .name
                    .as_ref()
                    .map(|n| format!("{n} (StatefulSet)"))
            }))
            .collect();
        names.sort();
        names
    }
}
