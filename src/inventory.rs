//! A snapshot of the New-API namespace — its pods, Deployments and StatefulSets, one list call per
//! kind — the roles of the deployment (master, slave, MySQL, Redis) found in it, and each pod as
//! an operator wants to see it ([`PodView`]: status, readiness, restarts, last termination).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ListParams;
use serde::Serialize;

use crate::config::{Settings, Workload};
use crate::error::{Error, Result};
use crate::k8s::Kube;
use crate::units::{age, seconds_since};

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
    /// Lists pods, Deployments and StatefulSets of the namespace concurrently (one list each,
    /// paged). The pods' managed fields are dropped as each page arrives: nothing reads them.
    pub async fn load(kube: &Kube, settings: &Settings) -> Result<Snapshot> {
        Snapshot::load_with(kube, settings, |mut p| {
            p.metadata.managed_fields = None;
            p
        })
        .await
    }

    /// [`Snapshot::load`] with each pod reduced by `reduce` as its page arrives (diagnose keeps
    /// only what its checks read), so that a namespace of 10,000 pods is never held whole.
    pub async fn load_with(
        kube: &Kube,
        settings: &Settings,
        reduce: impl FnMut(Pod) -> Pod,
    ) -> Result<Snapshot> {
        kube.ensure_namespace(&settings.namespace).await?;
        Snapshot::load_listed(kube, settings, reduce).await
    }

    /// [`Snapshot::load_with`] without checking first that the namespace exists (the caller
    /// did).
    pub async fn load_listed(
        kube: &Kube,
        settings: &Settings,
        mut reduce: impl FnMut(Pod) -> Pod,
    ) -> Result<Snapshot> {
        let ns = settings.namespace.as_str();
        let lp = ListParams::default();
        let mut pods = Vec::new();
        // Concurrent, but errors are reported in this order, whichever failed first.
        let (listed, deployments, statefulsets) = tokio::join!(
            kube.list_each::<Pod>(Some(ns), &lp, |p| {
                pods.push(reduce(p));
                Ok(())
            }),
            kube.list::<Deployment>(Some(ns), &lp),
            kube.list::<StatefulSet>(Some(ns), &lp),
        );
        listed?;
        let (deployments, statefulsets) = (deployments?, statefulsets?);
        Ok(Snapshot {
            namespace: ns.to_string(),
            pods,
            deployments: deployments.items,
            statefulsets: statefulsets.items,
        })
    }

    /// Lists pods, Deployments and StatefulSets of the namespace concurrently (one list each,
    /// paged), handing `each` every pod as its page arrives, decoded straight into the fields
    /// [`reduced`] keeps ([`SlimPod`]: the rest of each pod is skipped by the decoder, never
    /// built). The snapshot returned has no pods: what is kept of them is what `each` keeps (a
    /// compact record per pod in `diagnose`, a [`PodView`] in `pods`, a name in `logs`).
    pub async fn load_each(
        kube: &Kube,
        settings: &Settings,
        mut each: impl FnMut(Pod) -> Result<()>,
    ) -> Result<Snapshot> {
        let ns = settings.namespace.as_str();
        let lp = ListParams::default();
        // Concurrent, but errors are reported in this order, whichever failed first.
        let (listed, deployments, statefulsets) = tokio::join!(
            kube.list_each_as::<Pod, SlimPod>(Some(ns), &lp, |p| each(p.into_pod())),
            kube.list::<Deployment>(Some(ns), &lp),
            kube.list::<StatefulSet>(Some(ns), &lp),
        );
        listed?;
        let (deployments, statefulsets) = (deployments?, statefulsets?);
        Ok(Snapshot {
            namespace: ns.to_string(),
            pods: Vec::new(),
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

/// A container status without the runtime's identifiers.
fn container_status(s: ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        name: s.name,
        image: s.image,
        ready: s.ready,
        restart_count: s.restart_count,
        started: s.started,
        state: s.state,
        last_state: s.last_state,
        ..Default::default()
    }
}

/// A pod reduced to what [`PodView`], [`Snapshot::role_of`] and diagnose's checks read — its
/// identity, labels and owners, deletion, node, containers' names, images and resources, and
/// its status (phase, reason, conditions, container states) — for lists that are reduced page by
/// page (`pods`, `diagnose`) instead of held whole: a few hundred bytes a pod instead of several
/// kilobytes (managed fields, environment, volumes, probes, annotations).
pub fn reduced(p: Pod) -> Pod {
    let m = p.metadata;
    SlimPod {
        metadata: SlimMeta {
            name: m.name,
            namespace: m.namespace,
            labels: m.labels,
            owner_references: m.owner_references,
            creation_timestamp: m.creation_timestamp,
            deletion_timestamp: m.deletion_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            finalizers: m.finalizers,
        },
        spec: p.spec.map(|s| SlimSpec {
            containers: s.containers.into_iter().map(SlimContainer::from).collect(),
            init_containers: s
                .init_containers
                .map(|cs| cs.into_iter().map(SlimContainer::from).collect()),
            node_name: s.node_name,
            overhead: s.overhead,
        }),
        status: p.status,
    }
    .into_pod()
}

/// A pod's status reduced to what [`PodView`] and the checks read.
fn reduced_status(s: PodStatus) -> PodStatus {
    PodStatus {
        phase: s.phase,
        reason: s.reason,
        message: s.message,
        start_time: s.start_time,
        // Only a pod that is not scheduled says why in its conditions (the scheduler's message).
        conditions: s
            .conditions
            .map(|cs| {
                cs.into_iter()
                    .filter(|c| c.type_ == "PodScheduled" && c.status != "True")
                    .map(|mut c| {
                        c.last_probe_time = None;
                        c.last_transition_time = None;
                        c
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|cs| !cs.is_empty()),
        container_statuses: s
            .container_statuses
            .map(|cs| cs.into_iter().map(container_status).collect()),
        ..Default::default()
    }
}

/// A pod as a list page is decoded when only [`reduced`]'s fields are read: the decoder skips
/// everything else (managed fields, environment, volumes, probes, annotations, the status's
/// runtime identifiers), so a page of 500 pods costs its text and these, not 500 whole pods.
#[derive(Debug, Default, serde::Deserialize)]
pub struct SlimPod {
    #[serde(default)]
    metadata: SlimMeta,
    spec: Option<SlimSpec>,
    status: Option<PodStatus>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMeta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<std::collections::BTreeMap<String, String>>,
    owner_references: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
    creation_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    deletion_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    deletion_grace_period_seconds: Option<i64>,
    finalizers: Option<Vec<String>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimSpec {
    #[serde(default)]
    containers: Vec<SlimContainer>,
    init_containers: Option<Vec<SlimContainer>>,
    node_name: Option<String>,
    overhead: Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
}

#[derive(Debug, Default, serde::Deserialize)]
struct SlimContainer {
    #[serde(default)]
    name: String,
    image: Option<String>,
    resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

impl From<Container> for SlimContainer {
    fn from(c: Container) -> SlimContainer {
        SlimContainer {
            name: c.name,
            image: c.image,
            resources: c.resources,
        }
    }
}

impl SlimContainer {
    fn into_container(self) -> Container {
        Container {
            name: self.name,
            image: self.image,
            resources: self.resources,
            ..Default::default()
        }
    }
}

impl SlimPod {
    /// The pod as [`reduced`] makes it.
    pub fn into_pod(self) -> Pod {
        let m = self.metadata;
        let to_containers = |cs: Vec<SlimContainer>| -> Vec<Container> {
            cs.into_iter().map(SlimContainer::into_container).collect()
        };
        Pod {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                labels: m.labels,
                owner_references: m.owner_references,
                creation_timestamp: m.creation_timestamp,
                deletion_timestamp: m.deletion_timestamp,
                deletion_grace_period_seconds: m.deletion_grace_period_seconds,
                finalizers: m.finalizers,
                ..Default::default()
            },
            spec: self.spec.map(|s| PodSpec {
                containers: to_containers(s.containers),
                init_containers: s.init_containers.map(to_containers),
                node_name: s.node_name,
                overhead: s.overhead,
                ..Default::default()
            }),
            status: self.status.map(reduced_status),
        }
    }
}

impl crate::k8s::Keyed for SlimPod {
    fn list_key(&self) -> (String, String) {
        (
            self.metadata.namespace.clone().unwrap_or_default(),
            self.metadata.name.clone().unwrap_or_default(),
        )
    }
}

/// How a container last ended.
#[derive(Debug, Clone, Serialize)]
pub struct Termination {
    pub container: String,
    pub reason: String,
    pub exit_code: i32,
    pub finished_secs_ago: Option<i64>,
}

impl std::fmt::Display for Termination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (exit {})", self.reason, self.exit_code)?;
        if let Some(ago) = self.finished_secs_ago {
            write!(f, " {} ago", age(ago))?;
        }
        Ok(())
    }
}

/// One pod as an operator wants to see it.
#[derive(Debug, Clone, Serialize)]
pub struct PodView {
    pub role: Role,
    pub name: String,
    /// kubectl's STATUS column: a waiting or terminated reason when there is one, else the phase.
    pub status: String,
    pub phase: String,
    pub ready_containers: usize,
    pub containers: usize,
    pub restarts: i32,
    pub last_termination: Option<Termination>,
    pub node: Option<String>,
    pub age_secs: Option<i64>,
}

impl PodView {
    pub fn new(pod: &Pod, role: Role) -> PodView {
        let status = pod.status.clone().unwrap_or_default();
        let statuses = status.container_statuses.clone().unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_else(|| "Unknown".into());
        let mut shown = status.reason.clone().unwrap_or_else(|| phase.clone());
        for cs in &statuses {
            let state = cs.state.clone().unwrap_or_default();
            if let Some(reason) = state.waiting.and_then(|w| w.reason) {
                shown = reason;
                break;
            }
            if let Some(reason) = state.terminated.and_then(|t| t.reason) {
                shown = reason;
                break;
            }
        }
        if pod.metadata.deletion_timestamp.is_some() {
            shown = "Terminating".into();
        }
        let last_termination = statuses
            .iter()
            .filter_map(|cs| {
                let t = cs.last_state.as_ref()?.terminated.as_ref()?;
                Some(Termination {
                    container: cs.name.clone(),
                    reason: t.reason.clone().unwrap_or_else(|| "Terminated".into()),
                    exit_code: t.exit_code,
                    finished_secs_ago: t.finished_at.as_ref().map(|f| seconds_since(&f.0)),
                })
            })
            .min_by_key(|t| t.finished_secs_ago.unwrap_or(i64::MAX));
        PodView {
            role,
            name: pod.metadata.name.clone().unwrap_or_default(),
            status: shown,
            phase,
            ready_containers: statuses.iter().filter(|c| c.ready).count(),
            containers: pod
                .spec
                .as_ref()
                .map_or(statuses.len(), |s| s.containers.len()),
            restarts: statuses.iter().map(|c| c.restart_count).sum(),
            last_termination,
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            age_secs: pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| seconds_since(&t.0)),
        }
    }

    /// Whether the pod is as it should be: running and ready (or finished successfully).
    pub fn healthy(&self) -> bool {
        (self.phase == "Running"
            && self.ready_containers == self.containers
            && self.status == "Running")
            || self.phase == "Succeeded"
    }
}

/// What `pods` prints.
#[derive(Debug, Serialize)]
pub struct PodsReport {
    pub namespace: String,
    pub context: Option<String>,
    pub workloads: Vec<Controller>,
    /// Roles whose controller was not found (MySQL or Redis may run outside the cluster).
    pub missing: Vec<MissingWorkload>,
    pub pods: Vec<PodView>,
}

#[derive(Debug, Serialize)]
pub struct MissingWorkload {
    pub role: Role,
    pub name: String,
}

impl PodsReport {
    /// The report of `pods`: each workload's controller (or that it is missing) and its pods'
    /// views (made as they were listed: `pods` keeps only these of each pod), of one role or
    /// all, sorted by role then name.
    pub fn from_views(
        snap: &Snapshot,
        settings: &Settings,
        wanted: Option<Role>,
        views: Vec<PodView>,
        context: Option<String>,
    ) -> PodsReport {
        let mut workloads = Vec::new();
        let mut missing = Vec::new();
        for role in Role::ALL
            .into_iter()
            .filter(|r| wanted.is_none_or(|w| w == *r))
        {
            match snap.controller(role, settings) {
                Some(c) => workloads.push(c),
                None => missing.push(MissingWorkload {
                    role,
                    name: role.workload(settings).name.clone(),
                }),
            }
        }
        let mut pods: Vec<PodView> = views
            .into_iter()
            .filter(|v| wanted.is_none_or(|w| w == v.role))
            .collect();
        pods.sort_by(|a, b| (a.role, &a.name).cmp(&(b.role, &b.name)));
        PodsReport {
            namespace: snap.namespace.clone(),
            context,
            workloads,
            missing,
            pods,
        }
    }
}

/// Whether an image reference names one version: a digest (`@sha256:…`) or a tag other than
/// `latest` (`repo:5000/app` has no tag: the colon is the registry's port).
pub fn image_is_pinned(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').is_some_and(|(_, tag)| tag != "latest")
}

#[cfg(test)]
mod tests {
    use super::image_is_pinned;

    #[test]
    fn an_image_is_pinned_by_a_digest_or_a_tag_other_than_latest() {
        for (image, pinned) in [
            ("calciumion/new-api:v0.9.0", true),
            ("registry:5000/new-api@sha256:0123", true),
            ("calciumion/new-api:latest", false),
            ("calciumion/new-api", false),
            ("registry:5000/new-api", false),
            ("", false),
        ] {
            assert_eq!(image_is_pinned(image), pinned, "{image}");
        }
    }
}
