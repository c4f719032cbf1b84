//! Which pods the per-pod checks look at when there are many, and how that work is kept within
//! the time limit. Probing every one of 1,000 pods through its own port-forward (or reading every
//! slave's log) does not fit in a few seconds, and does not need to: pods of one ReplicaSet and
//! image run the same code against the same backends. So a check looks at
//!
//! 1. every pod when there are at most [`ALL_UP_TO`];
//! 2. otherwise every master, every pod that is *suspect* (not ready, or a container that
//!    restarted in the last 10 minutes), and a *sample* of [`PER_GROUP`] pods of each group (same
//!    owner and image), spread over nodes;
//! 3. and, when a sampled pod of a group fails, more of that group ([`more_of`]).
//!
//! The rest are judged by what the API server says of them (ready, no recent restart) and by
//! their group's sample; the report says how many were looked at and why. The work runs with
//! bounded concurrency and stops starting new items at a deadline ([`within`]), so a check
//! finishes inside its limit and says what it did not get to.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use crate::inventory::{PodView, Role};

/// Up to this many pods, every one is looked at.
pub const ALL_UP_TO: usize = 20;

/// Healthy pods sampled per group (owner and image).
pub const PER_GROUP: usize = 3;

/// How many more of a group are looked at when one of its sample fails.
pub const ESCALATE: usize = 10;

/// A container restart this recent makes a pod suspect.
pub const RECENT_RESTART_SECS: i64 = 600;

/// What the sampler knows of one pod.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    /// Pods of one group run the same thing: `ReplicaSet/x image`.
    pub group: String,
    pub master: bool,
    /// Not ready, or restarted recently: always looked at.
    pub suspect: bool,
    pub node: Option<String>,
}

impl Candidate {
    /// A pod as a candidate: grouped by its controller (owner) and its first container's image.
    pub fn of(pod: &Pod, role: Role) -> Candidate {
        let owner = pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.iter().find(|o| o.controller == Some(true)).or(o.first()))
            .map_or_else(
                || "no owner".to_string(),
                |o| format!("{}/{}", o.kind, o.name),
            );
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let view = PodView::new(pod, role);
        let restarted = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.restart_count > 0
                        && c.last_state
                            .as_ref()
                            .and_then(|l| l.terminated.as_ref())
                            .and_then(|t| t.finished_at.as_ref())
                            .is_none_or(|t| crate::units::seconds_since(&t.0) < RECENT_RESTART_SECS)
                })
            });
        Candidate {
            name: view.name.clone(),
            group: format!("{owner} {image}"),
            master: role == Role::Master,
            suspect: !view.healthy() || restarted,
            node: view.node,
        }
    }
}

/// Why a pod is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// There are few pods: all are.
    All,
    Master,
    /// Not ready or restarted recently.
    Suspect,
    /// A healthy pod standing for its group.
    Sample,
    /// More of a group whose sample failed.
    Escalated,
}

/// One pod to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub name: String,
    /// Index into [`Plan::groups`].
    pub group: usize,
    pub why: Why,
}

/// The pods to look at, in the order to look at them (most telling first: masters and one pod
/// per group, then the suspects, then the rest of the samples), so that whatever a deadline cuts
/// off is the least telling.
#[derive(Debug, Clone)]
pub struct Plan {
    pub picks: Vec<Pick>,
    pub groups: Vec<String>,
    /// How many candidates there were.
    pub total: usize,
}

impl Plan {
    /// How many picks there are for this reason.
    pub fn count(&self, why: Why) -> usize {
        self.picks.iter().filter(|p| p.why == why).count()
    }

    /// Whether every candidate is looked at.
    pub fn is_all(&self) -> bool {
        self.picks.len() == self.total
    }

    /// One line: `12 of 1,000 pods: every master (1), 3 per owner and image (2 groups: 6),
    /// every pod not ready or restarted in the last 10 min (5)`.
    pub fn describe(&self, noun: &str) -> String {
        if self.is_all() {
            return format!("all {} {noun}", self.total);
        }
        let mut why = Vec::new();
        let masters = self.count(Why::Master);
        if masters > 0 {
            why.push(format!("every master ({masters})"));
        }
        why.push(format!(
            "up to {PER_GROUP} healthy ones per owner and image ({}: {})",
            crate::units::plural(self.groups.len() as u64, "group", "groups"),
            self.count(Why::Sample)
        ));
        let suspects = self.count(Why::Suspect);
        if suspects > 0 {
            why.push(format!(
                "every one not ready or restarted in the last {} min ({suspects})",
                RECENT_RESTART_SECS / 60
            ));
        }
        let escalated = self.count(Why::Escalated);
        if escalated > 0 {
            why.push(format!("more of a group whose sample failed ({escalated})"));
        }
        format!(
            "{} of {} {noun}: {}",
            self.picks.len(),
            self.total,
            why.join(", ")
        )
    }
}

/// Chooses the pods to look at among `cands` (see the module's rules).
pub fn plan(cands: &[Candidate]) -> Plan {
    plan_with(cands, ALL_UP_TO, PER_GROUP)
}

/// [`plan`] with its two numbers given.
pub fn plan_with(cands: &[Candidate], all_up_to: usize, per_group: usize) -> Plan {
    let mut by_group: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in cands {
        by_group.entry(c.group.as_str()).or_default().push(c);
    }
    let groups: Vec<String> = by_group.keys().map(|g| (*g).to_string()).collect();
    let index = |g: &str| groups.iter().position(|x| x == g).unwrap_or(0);
    if cands.len() <= all_up_to {
        let mut picks: Vec<Pick> = cands
            .iter()
            .map(|c| Pick {
                name: c.name.clone(),
                group: index(&c.group),
                why: Why::All,
            })
            .collect();
        picks.sort_by(|a, b| a.name.cmp(&b.name));
        return Plan {
            picks,
            groups,
            total: cands.len(),
        };
    }
    // Per group: its masters, its suspects, and its sample of healthy pods spread over nodes.
    let mut masters = Vec::new();
    let mut suspects: Vec<Vec<Pick>> = Vec::new();
    let mut samples: Vec<Vec<Pick>> = Vec::new();
    for (gi, members) in by_group.values().enumerate() {
        let mut members = members.clone();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let pick = |c: &Candidate, why| Pick {
            name: c.name.clone(),
            group: gi,
            why,
        };
        let mut sus = Vec::new();
        let mut healthy = Vec::new();
        for c in members {
            if c.master {
                masters.push(pick(c, Why::Master));
            } else if c.suspect {
                sus.push(pick(c, Why::Suspect));
            } else {
                healthy.push(c);
            }
        }
        let mut chosen: Vec<Pick> = Vec::new();
        let mut nodes: HashSet<Option<&str>> = HashSet::new();
        for c in &healthy {
            if chosen.len() < per_group && nodes.insert(c.node.as_deref()) {
                chosen.push(pick(c, Why::Sample));
            }
        }
        for c in &healthy {
            if chosen.len() < per_group && !chosen.iter().any(|p| p.name == c.name) {
                chosen.push(pick(c, Why::Sample));
            }
        }
        suspects.push(sus);
        samples.push(chosen);
    }
    // Masters and the first sample of every group; then the suspects and the other samples,
    // a group at a time in turn.
    let mut picks = masters;
    for s in &mut samples {
        if !s.is_empty() {
            picks.push(s.remove(0));
        }
    }
    picks.extend(round_robin(suspects));
    picks.extend(round_robin(samples));
    Plan {
        picks,
        groups,
        total: cands.len(),
    }
}

/// One of each list in turn until all are empty.
pub fn round_robin<T>(lists: Vec<Vec<T>>) -> Vec<T> {
    let mut iters: Vec<std::vec::IntoIter<T>> = lists.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for it in &mut iters {
            out.extend(it.next());
        }
        if out.len() == before {
            return out;
        }
    }
}

/// The warning of a check whose deadline left some of its work undone: how much was done, of
/// what, and what was not (`check` is `app.incomplete`, `logs.incomplete`).
pub fn incomplete(
    component: crate::diagnose::finding::Component,
    done: &str,
    undone: &[String],
    limit: std::time::Duration,
) -> crate::diagnose::finding::Finding {
    use crate::diagnose::finding::{Finding, Severity};
    Finding::new(
        component,
        &format!("{}.incomplete", component.as_str()),
        Severity::Warning,
        format!(
            "{done} before the time limit ({}); {} not reached",
            crate::units::duration(limit),
            crate::units::plural(undone.len() as u64, "pod was", "pods were")
        ),
    )
    .evidence(format!(
        "not reached: {}",
        crate::units::list_and_verb(undone, "", "").trim_end()
    ))
    .next(format!(
        "retry with a longer limit: newapi-ops diagnose --only {} --timeout 30s",
        component.as_str()
    ))
}

/// Up to `n` more pods of `group` that `plan` did not pick (healthy ones first), to look at when
/// its sample failed; they are added to the plan.
pub fn more_of(plan: &mut Plan, cands: &[Candidate], group: usize, n: usize) -> Vec<Pick> {
    let Some(name) = plan.groups.get(group) else {
        return Vec::new();
    };
    let picked: HashSet<&str> = plan.picks.iter().map(|p| p.name.as_str()).collect();
    let mut rest: Vec<&Candidate> = cands
        .iter()
        .filter(|c| &c.group == name && !picked.contains(c.name.as_str()))
        .collect();
    rest.sort_by(|a, b| (a.suspect, &a.name).cmp(&(b.suspect, &b.name)));
    let more: Vec<Pick> = rest
        .into_iter()
        .take(n)
        .map(|c| Pick {
            name: c.name.clone(),
            group,
            why: Why::Escalated,
        })
        .collect();
    plan.picks.extend(more.iter().cloned());
    more
}

/// Runs `work` on each item, at most `concurrency` at once, in order; an item not started by
/// `deadline` is not started at all and comes back in the second list. What was started runs to
/// its end (bound it with its own timeout).
pub async fn within<T, R, F, Fut>(
    items: Vec<T>,
    concurrency: usize,
    deadline: Instant,
    work: F,
) -> (Vec<R>, Vec<T>)
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = R>,
{
    let outcomes: Vec<Result<R, T>> = futures::stream::iter(items)
        .map(|item| {
            // Called when a slot is free, i.e. when the item would start.
            let started = if Instant::now() < deadline {
                Ok(work(item))
            } else {
                Err(item)
            };
            async move {
                match started {
                    Ok(fut) => Ok(fut.await),
                    Err(item) => Err(item),
                }
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut done = Vec::new();
    let mut skipped = Vec::new();
    for o in outcomes {
        match o {
            Ok(r) => done.push(r),
            Err(t) => skipped.push(t),
        }
    }
    (done, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(name: &str, group: &str, master: bool, suspect: bool, node: &str) -> Candidate {
        Candidate {
            name: name.into(),
            group: group.into(),
            master,
            suspect,
            node: Some(node.into()),
        }
    }

    #[test]
    fn a_few_pods_are_all_looked_at() {
        let cands: Vec<Candidate> = (0..20)
            .map(|i| cand(&format!("s-{i:02}"), "rs-a img", false, false, "n1"))
            .collect();
        let p = plan(&cands);
        assert!(p.is_all());
        assert!(p.picks.iter().all(|p| p.why == Why::All));
        assert_eq!(p.describe("pods"), "all 20 pods");
    }

    #[test]
    fn many_pods_masters_suspects_and_a_sample_per_group_spread_over_nodes() {
        let mut cands = vec![cand("master-0", "rs-m img:v1", true, false, "n1")];
        for i in 0..989 {
            cands.push(cand(
                &format!("slave-{i:03}"),
                "rs-a img:v1",
                false,
                false,
                &format!("n{}", i % 50),
            ));
        }
        for i in 0..10 {
            cands.push(cand(&format!("bad-{i}"), "rs-b img:v1", false, true, "n1"));
        }
        // A second version being rolled out: its own group, sampled too.
        for i in 0..5 {
            cands.push(cand(&format!("new-{i}"), "rs-c img:v2", false, false, "n2"));
        }
        let mut p = plan(&cands);
        assert_eq!(p.total, 1005);
        assert_eq!(p.groups.len(), 4);
        assert_eq!(p.count(Why::Master), 1);
        assert_eq!(p.count(Why::Suspect), 10, "every suspect");
        assert_eq!(
            p.count(Why::Sample),
            6,
            "3 of rs-a, 3 of rs-c, none of all-suspect rs-b"
        );
        assert_eq!(p.picks.len(), 17);
        // Most telling first: the master and one pod of each group before any suspect.
        let first: Vec<&str> = p.picks[..3].iter().map(|x| x.name.as_str()).collect();
        assert_eq!(first, ["master-0", "slave-000", "new-0"]);
        assert_eq!(p.picks[3].why, Why::Suspect);
        // The sample of rs-a sits on three different nodes.
        let nodes: HashSet<&str> = p
            .picks
            .iter()
            .filter(|x| x.name.starts_with("slave-"))
            .map(|x| {
                let i: usize = x.name[6..].parse().unwrap();
                cands[1 + i].node.as_deref().unwrap()
            })
            .collect();
        assert_eq!(nodes.len(), 3);
        assert!(p.describe("New-API pods").starts_with("17 of 1005 New-API pods: every master (1), up to 3 healthy ones per owner and image (4 groups: 6), every one not ready or restarted in the last 10 min (10)"), "{}", p.describe("New-API pods"));
        // A failing sample of rs-a brings 10 more of it, none picked twice.
        let ga = p.groups.iter().position(|g| g == "rs-a img:v1").unwrap();
        let more = more_of(&mut p, &cands, ga, ESCALATE);
        assert_eq!(more.len(), 10);
        assert!(more.iter().all(|m| m.why == Why::Escalated));
        let names: HashSet<&str> = p.picks.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names.len(), p.picks.len());
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_deadline_is_not_started() {
        // Tokio's paused clock: the sleeps below take no time, and the order is exact.
        let deadline = Instant::now() + std::time::Duration::from_millis(200);
        let (done, skipped) = within((0..10).collect(), 2, deadline, |i: u32| async move {
            tokio::time::sleep(std::time::Duration::from_millis(120)).await;
            i
        })
        .await;
        // 2 at once, 120 ms each: 0,1 start at once, 2,3 at 120 ms, nothing after 200 ms.
        assert_eq!(done, vec![0, 1, 2, 3]);
        assert_eq!(skipped, (4..10).collect::<Vec<_>>());
    }
}
