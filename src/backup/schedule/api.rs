//! Which CronJob API this cluster serves, asked of the server by discovery (never guessed from
//! its version number): batch/v1 where its resource list has `cronjobs` (Kubernetes 1.21+),
//! else batch/v1beta1 (1.8 to 1.24). The CronJob is then read and written through that version
//! as a dynamic object, so one code path serves every Kubernetes from 1.20 to today's.

use kube::Api;
use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::k8s::{Call, Kube};

/// The group versions that may serve CronJob, preferred first.
pub const CANDIDATES: [&str; 2] = ["batch/v1", "batch/v1beta1"];

/// What discovery said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CronJobApi {
    /// `batch/v1` or `batch/v1beta1`.
    pub api_version: String,
    /// `v1.20.2`, when the server says.
    pub server_version: Option<String>,
}

/// The version to use, given each candidate's resource list (None: the group version is not
/// served). Pure, for tests.
pub fn choose<'a>(answers: &[(&'a str, Option<Vec<String>>)]) -> Option<&'a str> {
    CANDIDATES.iter().find_map(|want| {
        answers.iter().find_map(|(gv, resources)| {
            (gv == want
                && resources
                    .as_ref()
                    .is_some_and(|r| r.iter().any(|n| n == "cronjobs")))
            .then_some(*gv)
        })
    })
}

/// Asks the server: the resource list of each candidate (a 404 is "not served"). Ok(None) when
/// it serves no CronJob at all.
pub async fn discover(kube: &Kube) -> Result<(Option<String>, Option<CronJobApi>)> {
    let server_version = kube
        .client
        .apiserver_version()
        .await
        .ok()
        .map(|v| v.git_version);
    let mut answers = Vec::new();
    for gv in CANDIDATES {
        let resources = match kube.client.list_api_group_resources(gv).await {
            Ok(list) => Some(list.resources.into_iter().map(|r| r.name).collect()),
            Err(kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => return Err(kube.error(&Call::new("get", format!("/apis/{gv}"), None), e)),
        };
        answers.push((gv, resources));
        if choose(&answers) == Some(CANDIDATES[0]) {
            break;
        }
    }
    let api = choose(&answers).map(|v| CronJobApi {
        api_version: v.to_string(),
        server_version: server_version.clone(),
    });
    Ok((server_version, api))
}

impl CronJobApi {
    /// The CronJob resource at this version.
    pub fn resource(&self) -> ApiResource {
        crate::audit::discovery::resource(&self.api_version, "CronJob")
    }

    /// The CronJobs of `namespace` at this version.
    pub fn api(&self, kube: &Kube, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(kube.client.clone(), namespace, &self.resource())
    }

    /// The CronJob `name`, Ok(None) when it does not exist.
    pub async fn get(&self, kube: &Kube, namespace: &str, name: &str) -> Result<Option<CronJob>> {
        let call = Call::new("get", "cronjobs.batch", Some(namespace));
        let Some(obj) = self
            .api(kube, namespace)
            .get_opt(name)
            .await
            .map_err(|e| kube.error(&call, e))?
        else {
            return Ok(None);
        };
        let wire: Wire = serde_json::from_value(obj.data.clone()).map_err(|e| {
            crate::error::Error::Internal(format!(
                "CronJob {name} ({}) has an unexpected shape: {e}",
                self.api_version
            ))
        })?;
        Ok(Some(CronJob {
            name: name.to_string(),
            uid: obj.metadata.uid.clone().unwrap_or_default(),
            api_version: self.api_version.clone(),
            created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
            schedule: wire.spec.schedule,
            suspended: wire.spec.suspend.unwrap_or(false),
            job_template: wire.spec.job_template,
            last_schedule: wire.status.last_schedule_time,
            active: wire.status.active.len(),
        }))
    }
}

/// The CronJob, in the shape batch/v1 and batch/v1beta1 share.
#[derive(Debug, Clone)]
pub struct CronJob {
    pub name: String,
    pub uid: String,
    pub api_version: String,
    pub created: Option<jiff::Timestamp>,
    pub schedule: String,
    pub suspended: bool,
    /// `spec.jobTemplate` as the server has it (metadata and spec).
    pub job_template: serde_json::Value,
    pub last_schedule: Option<jiff::Timestamp>,
    /// Jobs running now.
    pub active: usize,
}

#[derive(Deserialize)]
struct Wire {
    spec: WireSpec,
    #[serde(default)]
    status: WireStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSpec {
    schedule: String,
    suspend: Option<bool>,
    #[serde(default)]
    job_template: serde_json::Value,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    last_schedule_time: Option<jiff::Timestamp>,
    #[serde(default)]
    active: Vec<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| (*s).to_string()).collect())
    }

    #[test]
    fn discovery_decides_the_version() {
        // Kubernetes 1.20: batch/v1 has Jobs only, batch/v1beta1 has CronJobs.
        let k120 = [
            ("batch/v1", names(&["jobs", "jobs/status"])),
            ("batch/v1beta1", names(&["cronjobs", "cronjobs/status"])),
        ];
        assert_eq!(choose(&k120), Some("batch/v1beta1"));
        // 1.21 to 1.24 serve both: batch/v1 wins.
        let k123 = [
            ("batch/v1", names(&["cronjobs", "jobs"])),
            ("batch/v1beta1", names(&["cronjobs"])),
        ];
        assert_eq!(choose(&k123), Some("batch/v1"));
        // 1.25 and later: batch/v1beta1 is gone (404).
        let k130 = [
            ("batch/v1", names(&["cronjobs", "jobs"])),
            ("batch/v1beta1", None),
        ];
        assert_eq!(choose(&k130), Some("batch/v1"));
        // The answer is the resource list, not a version number: none has CronJobs, none.
        let none = [("batch/v1", names(&["jobs"])), ("batch/v1beta1", None)];
        assert_eq!(choose(&none), None);
    }
}
