//! The action catalogue: one enum variant per action, each with typed arguments (declared once
//! with [`crate::runbook_args!`]), a declared output (fields that later steps' expressions and
//! the transcript read) and a declared effect.
//!
//! Adding an action: declare its arguments here, add the variant, its [`ActionSpec`] in
//! [`CATALOGUE`], a parse arm in [`Action::parse`], and its execution in `exec/`. The catalogue
//! test checks that every spec has a variant and every declared output field is produced.
//!
//! Actions owned by other modules still follow this pattern: `mysql.backup` and `backup.verify`
//! call the backup module's library entry points (`crate::backup::backup_deployment`,
//! `crate::backup::verify`), the same code `newapi-ops backup` runs. An action another module
//! will add later goes into [`PLANNED`], so that naming it fails validation with a message that
//! says where it will come from.

use serde::Serialize;

use super::args::{ArgReader, CelExpr, Parsed, Secs};
use super::expr::{OutField, Ty};

/// What running an action does to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Reads only: always runs, also in `--dry-run`.
    ReadOnly,
    /// Changes the cluster or a backend: shows what will change and asks first; `--dry-run`
    /// only describes it.
    Mutating,
    /// A person does it: the instructions are shown and an acknowledgement is asked.
    Manual,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::ReadOnly => "read-only",
            Effect::Mutating => "mutating",
            Effect::Manual => "manual",
        }
    }
}

/// The description of one action.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ActionSpec {
    pub name: &'static str,
    pub effect: Effect,
    pub summary: &'static str,
    #[serde(skip)]
    pub params: &'static [super::args::Param],
    pub outputs: &'static [OutField],
}

/// Actions other modules will add; naming one is an error that says where it comes from.
pub const PLANNED: &[(&str, &str)] = &[];

crate::runbook_arg_enum!(
    /// Which pods: a role of the deployment, or all of them.
    RoleSel { Master = "master", Slave = "slave", Mysql = "mysql", Redis = "redis", All = "all" }
);

crate::runbook_arg_enum!(
    /// A New-API Deployment that can be scaled or restarted.
    AppRole { Master = "master", Slave = "slave" }
);

crate::runbook_arg_enum!(
    /// A diagnose check group.
    CheckSel { All = "all", Pods = "pods", Nodes = "nodes", Logs = "logs", Mysql = "mysql", Redis = "redis", App = "app", Config = "config" }
);

impl RoleSel {
    pub fn role(self) -> Option<crate::inventory::Role> {
        use crate::inventory::Role;
        match self {
            RoleSel::Master => Some(Role::Master),
            RoleSel::Slave => Some(Role::Slave),
            RoleSel::Mysql => Some(Role::Mysql),
            RoleSel::Redis => Some(Role::Redis),
            RoleSel::All => None,
        }
    }
}

impl CheckSel {
    /// The diagnose check group; None for `all`.
    pub fn component(self) -> Option<crate::diagnose::finding::Component> {
        use crate::diagnose::finding::Component;
        match self {
            CheckSel::All => None,
            CheckSel::Pods => Some(Component::Pods),
            CheckSel::Nodes => Some(Component::Nodes),
            CheckSel::Logs => Some(Component::Logs),
            CheckSel::Mysql => Some(Component::Mysql),
            CheckSel::Redis => Some(Component::Redis),
            CheckSel::App => Some(Component::App),
            CheckSel::Config => Some(Component::Config),
        }
    }
}

impl AppRole {
    pub fn role(self) -> crate::inventory::Role {
        match self {
            AppRole::Master => crate::inventory::Role::Master,
            AppRole::Slave => crate::inventory::Role::Slave,
        }
    }
}

crate::runbook_args!(PodsListArgs {
    role: RoleSel = [RoleSel::All], "Only pods of this role.";
});
crate::runbook_args!(PodsFailingArgs {
    role: RoleSel = [RoleSel::All], "Only pods of this role.";
    restarts_over: i64 = [0], "A running, ready pod with more restarts than this also counts.";
});
crate::runbook_args!(PodsDescribeArgs {
    pod: Option<String> = [None], "One pod by name (else the pods of `role`).";
    role: RoleSel = [RoleSel::All], "The pods of this role, when `pod` is not given.";
    only_failing: bool = [true], "Only pods that are not running and ready, or that restarted.";
    events: i64 = [10], "The last N events of each pod.";
});
crate::runbook_args!(LogsFetchArgs {
    target: String = [String::from("all")], "master, slaves, mysql, redis, all, or a pod name.";
    previous: bool = [false], "The previous (crashed) container's log.";
    tail: i64 = [200], "The last N lines of each pod.";
    grep: Option<String> = [None], "Only lines matching this regular expression.";
    since: Option<Secs> = [None], "Only lines newer than this.";
});
crate::runbook_args!(NoArgs {});
crate::runbook_args!(PodsTopArgs {
    role: RoleSel = [RoleSel::All], "Only pods of this role.";
});
crate::runbook_args!(ObjectsListArgs {
    kinds: Vec<String> = [required], "Kinds to count (HorizontalPodAutoscaler, Ingress, ...), found through API discovery.";
    all_namespaces: bool = [false], "Look in every namespace, not only New-API's.";
});
crate::runbook_args!(ProcesslistArgs {
    min_seconds: i64 = [0], "Only statements running at least this many seconds.";
    limit: i64 = [20], "At most this many, longest first.";
});
crate::runbook_args!(TableSizesArgs {
    limit: i64 = [10], "The N largest tables.";
});
crate::runbook_args!(DiagnoseArgs {
    checks: Vec<CheckSel> = [vec![CheckSel::All]], "Which check groups to run.";
    timeout: Secs = [Secs(10)], "Time limit of each check group.";
});
crate::runbook_args!(ScaleArgs {
    role: AppRole = [AppRole::Slave], "The Deployment to scale.";
    replicas: Option<i64> = [None], "The number of replicas wanted.";
    by: Option<i64> = [None], "Or: this many more (or fewer, when negative).";
    check_capacity: bool = [true], "Refuse to scale up when the cluster cannot schedule the new pods.";
    wait: bool = [true], "Wait until the new replicas are ready.";
    timeout: Secs = [Secs(180)], "How long to wait for readiness.";
});
crate::runbook_args!(RestartArgs {
    role: AppRole = [AppRole::Slave], "The Deployment to restart.";
    wait: bool = [true], "Wait until the rollout completes.";
    timeout: Secs = [Secs(300)], "How long to wait.";
});
crate::runbook_args!(PodDeleteArgs {
    pod: String = [required], "The pod to delete (its controller creates a new one).";
});
crate::runbook_args!(KillQueryArgs {
    id: Option<i64> = [None], "The processlist id of the statement to kill.";
    min_seconds: Option<i64> = [None], "Or: every statement running at least this long.";
    limit: i64 = [10], "Kill at most this many.";
});
crate::runbook_args!(BackupArgs {
    dir: Option<String> = [None], "The directory holding backups [default: as `newapi-ops backup`: $NEWAPI_OPS_BACKUP_DIR, else <data dir>/newapi-ops/backups].";
    threads: i64 = [i64::try_from(crate::backup::DEFAULT_THREADS).unwrap_or(4)], "Connections reading in parallel (1-64), as `backup --threads`.";
    tables: Vec<String> = [Vec::new()], "Only these tables [default: every base table of New-API's database].";
    encrypt_to: Vec<String> = [Vec::new()], "Encrypt the data files with age to these recipients (`age1...`); restoring then needs the identity.";
});
crate::runbook_args!(BackupVerifyArgs {
    id: String = [String::from("latest")], "The backup's id (the `id` output of mysql.backup), or `latest`.";
    dir: Option<String> = [None], "The directory holding backups [default: as mysql.backup].";
});
crate::runbook_args!(ManualArgs {
    instructions: String = [required], "What the person has to do (shown, then acknowledged).";
});
crate::runbook_args!(AssertArgs {
    fail_if: CelExpr = [required], "A CEL condition; when it holds, the step fails.";
    message: String = [required], "Why it matters and what to do, shown when it fails.";
});

/// One action of a step, with its (unresolved) arguments.
#[derive(Debug, Clone)]
pub enum Action {
    PodsList(PodsListArgs<Parsed>),
    PodsFailing(PodsFailingArgs<Parsed>),
    PodsDescribe(PodsDescribeArgs<Parsed>),
    PodsTop(PodsTopArgs<Parsed>),
    LogsFetch(LogsFetchArgs<Parsed>),
    NodesAllocation(NoArgs<Parsed>),
    NodesConditions(NoArgs<Parsed>),
    ObjectsList(ObjectsListArgs<Parsed>),
    MysqlPing(NoArgs<Parsed>),
    MysqlStatus(NoArgs<Parsed>),
    MysqlProcesslist(ProcesslistArgs<Parsed>),
    MysqlTableSizes(TableSizesArgs<Parsed>),
    RedisPing(NoArgs<Parsed>),
    RedisInfo(NoArgs<Parsed>),
    AppStatus(NoArgs<Parsed>),
    AppBackends(NoArgs<Parsed>),
    Diagnose(DiagnoseArgs<Parsed>),
    DeploymentScale(ScaleArgs<Parsed>),
    DeploymentRestart(RestartArgs<Parsed>),
    PodDelete(PodDeleteArgs<Parsed>),
    MysqlKillQuery(KillQueryArgs<Parsed>),
    MysqlBackup(BackupArgs<Parsed>),
    BackupVerify(BackupVerifyArgs<Parsed>),
    Manual(ManualArgs<Parsed>),
    Assert(AssertArgs<Parsed>),
}

macro_rules! out {
    ($($name:literal : $ty:ident, $doc:expr;)*) => {
        &[$(OutField { name: $name, ty: Ty::$ty, doc: $doc }),*]
    };
}

const POD_FIELDS: &str =
    "each: name, role, status, phase, ready, restarts, node, last_termination, age_secs";

/// Every action, in the order `runbook actions` lists them.
pub const CATALOGUE: &[ActionSpec] = &[
    ActionSpec {
        name: "pods.list",
        effect: Effect::ReadOnly,
        summary: "The deployment's pods: role, status, readiness, restarts, last termination, node.",
        params: PodsListArgs::PARAMS,
        outputs: out!("count": Int, "number of pods"; "ready": Int, "pods running and ready"; "not_ready": Int, "the others"; "restarts": Int, "restarts of all containers"; "pods": List, POD_FIELDS;),
    },
    ActionSpec {
        name: "pods.failing",
        effect: Effect::ReadOnly,
        summary: "Pods that are not running and ready, or that restarted: with the reason (CrashLoopBackOff, ImagePullBackOff, OOMKilled, Pending).",
        params: PodsFailingArgs::PARAMS,
        outputs: out!("count": Int, "failing pods"; "oomkilled": Int, "pods whose last termination was OOMKilled"; "pending": Int, "pods not scheduled"; "pods": List, POD_FIELDS; "reasons": List, "one line per pod";),
    },
    ActionSpec {
        name: "pods.describe",
        effect: Effect::ReadOnly,
        summary: "Status and events of pods, like `kubectl describe pod`: conditions, container states, last termination, recent events.",
        params: PodsDescribeArgs::PARAMS,
        outputs: out!("count": Int, "pods described"; "pods": List, "each: name, status, node, conditions, containers (state, reason, message, exit_code, restarts), events (type, reason, message, count)"; "warnings": List, "Warning events, one line each";),
    },
    ActionSpec {
        name: "pods.top",
        effect: Effect::ReadOnly,
        summary: "CPU and memory usage of pods from metrics.k8s.io (metrics-server), against their limits; says so when no metrics are served.",
        params: PodsTopArgs::PARAMS,
        outputs: out!("available": Bool, "whether metrics.k8s.io answered"; "reason": Any, "why not, when unavailable"; "pods": List, "each: name, role, cpu_millis, memory_bytes, cpu_percent_of_limit, memory_percent_of_limit"; "max_cpu_percent": Any, "highest CPU use against its limit (int) or null"; "max_memory_percent": Any, "highest memory use against its limit (int) or null"; "hot": List, "pods above 80 % CPU or 85 % memory of their limit";),
    },
    ActionSpec {
        name: "logs.fetch",
        effect: Effect::ReadOnly,
        summary: "The logs of a role's pods (or one pod), optionally the previous container's, filtered with a regular expression.",
        params: LogsFetchArgs::PARAMS,
        outputs: out!("pods": Int, "pods read"; "lines": Int, "lines read"; "matched": Int, "lines kept by grep (all when no grep)"; "sample": List, "the first 20 kept lines, `pod: line`"; "errors": List, "pods whose log could not be read";),
    },
    ActionSpec {
        name: "nodes.allocation",
        effect: Effect::ReadOnly,
        summary: "Requests against allocatable per node and in total (the seed's 7000m / 8000m = 88 %), and how many more slaves fit.",
        params: NoArgs::PARAMS,
        outputs: out!("nodes": Int, "number of nodes"; "cpu_requests_percent": Int, "cluster CPU requests / allocatable"; "memory_requests_percent": Int, "cluster memory requests / allocatable"; "cpu_requested_millis": Int, ""; "cpu_allocatable_millis": Int, ""; "memory_requested_bytes": Int, ""; "memory_allocatable_bytes": Int, ""; "slaves_fit": Any, "how many more slave pods fit (int), null when the slave template is unknown"; "per_node": List, "each: name, cpu_requests_percent, memory_requests_percent, slaves_fit";),
    },
    ActionSpec {
        name: "nodes.conditions",
        effect: Effect::ReadOnly,
        summary: "Node readiness, pressure conditions and cordons.",
        params: NoArgs::PARAMS,
        outputs: out!("nodes": Int, ""; "ready": Int, "Ready nodes"; "not_ready": List, "names"; "pressure": List, "`node: MemoryPressure`"; "unschedulable": List, "cordoned nodes";),
    },
    ActionSpec {
        name: "objects.list",
        effect: Effect::ReadOnly,
        summary: "Counts objects of the given kinds (through API discovery, whatever their API version), e.g. HorizontalPodAutoscaler, PodDisruptionBudget, Ingress, NetworkPolicy, CronJob.",
        params: ObjectsListArgs::PARAMS,
        outputs: out!("counts": Map, "kind → number of objects (0 when the kind is not served)"; "names": Map, "kind → names (namespace/name across namespaces)"; "unserved": List, "kinds this cluster does not serve";),
    },
    ActionSpec {
        name: "mysql.ping",
        effect: Effect::ReadOnly,
        summary: "Connects to New-API's MySQL as New-API does (SQL_DSN, through a port-forward from outside) and runs SELECT 1.",
        params: NoArgs::PARAMS,
        outputs: out!("via": String, "how it was reached (never the password)"; "latency_ms": Int, "SELECT 1 round trip"; "version": String, "server version";),
    },
    ActionSpec {
        name: "mysql.status",
        effect: Effect::ReadOnly,
        summary: "Connections against max_connections, running threads, slow queries and the slow log settings.",
        params: NoArgs::PARAMS,
        outputs: out!("threads_connected": Int, ""; "threads_running": Int, ""; "max_connections": Int, ""; "connections_percent": Int, "threads_connected / max_connections"; "slow_queries": Int, "since the server started"; "slow_query_log": Bool, "whether the slow log is on"; "long_query_time": Double, "seconds"; "uptime_secs": Int, ""; "aborted_connects": Int, "";),
    },
    ActionSpec {
        name: "mysql.processlist",
        effect: Effect::ReadOnly,
        summary: "The statements running now (information_schema.PROCESSLIST), longest first.",
        params: ProcesslistArgs::PARAMS,
        outputs: out!("count": Int, "statements listed"; "longest_secs": Int, "the longest running time (0 when none)"; "queries": List, "each: id, user, host, db, command, time, state, info (first 200 characters)";),
    },
    ActionSpec {
        name: "mysql.table_sizes",
        effect: Effect::ReadOnly,
        summary: "The largest tables of New-API's database (data + index), and the `logs` table.",
        params: TableSizesArgs::PARAMS,
        outputs: out!("database": String, ""; "total_bytes": Int, "all tables"; "logs_bytes": Any, "New-API's logs table (int), null when absent"; "tables": List, "each: name, rows, data_bytes, index_bytes, total_bytes";),
    },
    ActionSpec {
        name: "redis.ping",
        effect: Effect::ReadOnly,
        summary: "Connects to New-API's Redis (REDIS_CONN_STRING) and sends PING.",
        params: NoArgs::PARAMS,
        outputs: out!("via": String, ""; "latency_ms": Int, ""; "version": String, "";),
    },
    ActionSpec {
        name: "redis.info",
        effect: Effect::ReadOnly,
        summary: "Redis memory against maxmemory, eviction policy, hit rate, clients, keys.",
        params: NoArgs::PARAMS,
        outputs: out!("used_memory": Int, "bytes"; "maxmemory": Int, "bytes, 0 = no limit"; "maxmemory_policy": String, ""; "memory_percent": Any, "used / maxmemory (int) or null"; "hit_rate": Any, "keyspace hits / lookups (double 0..1) or null when no lookups yet"; "keyspace_hits": Int, ""; "keyspace_misses": Int, ""; "evicted_keys": Int, ""; "connected_clients": Int, ""; "keys": Int, "in all databases"; "uptime_secs": Int, "";),
    },
    ActionSpec {
        name: "app.status",
        effect: Effect::ReadOnly,
        summary: "GET /api/status on every running New-API pod, through a port-forward.",
        params: NoArgs::PARAMS,
        outputs: out!("pods": List, "each: pod, ok, status, latency_ms, error"; "ok": Int, "pods answering 200"; "failing": Int, "the others";),
    },
    ActionSpec {
        name: "app.backends",
        effect: Effect::ReadOnly,
        summary: "Where New-API's MySQL and Redis are (from SQL_DSN and REDIS_CONN_STRING, without the passwords): in the cluster or outside.",
        params: NoArgs::PARAMS,
        outputs: out!("mysql_host": Any, "host, null when unset"; "mysql_in_cluster": Bool, "a Service of this cluster"; "redis_host": Any, ""; "redis_in_cluster": Bool, "";),
    },
    ActionSpec {
        name: "diagnose",
        effect: Effect::ReadOnly,
        summary: "Runs diagnose's checks (all, or some groups) and returns its findings.",
        params: DiagnoseArgs::PARAMS,
        outputs: out!("severity": String, "ok, info, warning or critical"; "critical": Int, ""; "warning": Int, ""; "checks": List, "the check id of every finding that is not ok (e.g. config.default-password)"; "findings": List, "each: check, severity, subject, summary, next";),
    },
    ActionSpec {
        name: "deployment.scale",
        effect: Effect::Mutating,
        summary: "Sets a New-API Deployment's replicas (the scale subresource) after checking that the new pods fit, then waits for them.",
        params: ScaleArgs::PARAMS,
        outputs: out!("deployment": String, ""; "from": Int, "replicas before"; "to": Int, "replicas wanted"; "fits": Any, "how many more pods the cluster can place (int), null for a scale down"; "ready": Int, "ready replicas at the end"; "applied": Bool, "false in a dry run or when nothing changed";),
    },
    ActionSpec {
        name: "deployment.restart",
        effect: Effect::Mutating,
        summary: "Restarts a New-API Deployment as `kubectl rollout restart` does (the restartedAt annotation), then waits for the rollout.",
        params: RestartArgs::PARAMS,
        outputs: out!("deployment": String, ""; "restarted_at": String, ""; "ready": Int, "ready replicas at the end"; "applied": Bool, "";),
    },
    ActionSpec {
        name: "pod.delete",
        effect: Effect::Mutating,
        summary: "Deletes one pod of the namespace; its controller creates a replacement.",
        params: PodDeleteArgs::PARAMS,
        outputs: out!("pod": String, ""; "owner": String, "the controller that replaces it, or `none`"; "applied": Bool, "";),
    },
    ActionSpec {
        name: "mysql.kill_query",
        effect: Effect::Mutating,
        summary: "KILL QUERY for one statement, or every statement running longer than a limit (never system threads or this connection).",
        params: KillQueryArgs::PARAMS,
        outputs: out!("count": Int, "statements killed (or that would be)"; "killed": List, "their ids"; "applied": Bool, "";),
    },
    ActionSpec {
        name: "mysql.backup",
        effect: Effect::Mutating,
        summary: "Takes a consistent, compressed backup of New-API's database into a directory, as `newapi-ops backup` does (the same code): manifest with row counts, CHECKSUM TABLE and SHA-256 of every file; files 0600, directories 0700.",
        params: BackupArgs::PARAMS,
        outputs: out!("id": String, "the backup's id (its UTC start time), empty when not taken"; "path": String, "the backup's directory (DIR/ID), or DIR when not taken"; "dir": String, "the directory holding backups"; "database": String, ""; "tables": Int, "tables backed up (or that would be)"; "rows": Int, "rows written (the estimate when not taken)"; "bytes": Int, "bytes written"; "duration_ms": Int, ""; "encrypted": Bool, ""; "applied": Bool, "false in a dry run or when declined";),
    },
    ActionSpec {
        name: "backup.verify",
        effect: Effect::ReadOnly,
        summary: "Checks every file of a backup against its manifest (size and SHA-256), as `newapi-ops backup verify` does, and records the result in the backup's verified.json; fails when anything differs.",
        params: BackupVerifyArgs::PARAMS,
        outputs: out!("id": String, ""; "path": String, ""; "ok": Bool, "every file matches"; "files": Int, "files checked"; "problems": List, "what differs, one line each";),
    },
    ActionSpec {
        name: "manual",
        effect: Effect::Manual,
        summary: "A step a person does: the instructions are shown and acknowledged.",
        params: ManualArgs::PARAMS,
        outputs: out!("acknowledged": Bool, "";),
    },
    ActionSpec {
        name: "assert",
        effect: Effect::ReadOnly,
        summary: "Fails the step (and so the run, unless on_failure: continue) when a condition holds.",
        params: AssertArgs::PARAMS,
        outputs: out!("failed": Bool, "whether the condition held"; "message": String, "";),
    },
];

/// The spec of an action by name.
pub fn spec(name: &str) -> Option<&'static ActionSpec> {
    CATALOGUE.iter().find(|s| s.name == name)
}

/// Every action name.
pub fn names() -> Vec<&'static str> {
    CATALOGUE.iter().map(|s| s.name).collect()
}

impl Action {
    /// Reads the arguments of action `name` (which must be in the catalogue).
    pub fn parse(name: &'static str, r: &mut ArgReader<'_>) -> Option<Action> {
        Some(match name {
            "pods.list" => Action::PodsList(PodsListArgs::parse(r)?),
            "pods.failing" => Action::PodsFailing(PodsFailingArgs::parse(r)?),
            "pods.describe" => Action::PodsDescribe(PodsDescribeArgs::parse(r)?),
            "pods.top" => Action::PodsTop(PodsTopArgs::parse(r)?),
            "logs.fetch" => Action::LogsFetch(LogsFetchArgs::parse(r)?),
            "nodes.allocation" => Action::NodesAllocation(NoArgs::parse(r)?),
            "nodes.conditions" => Action::NodesConditions(NoArgs::parse(r)?),
            "objects.list" => Action::ObjectsList(ObjectsListArgs::parse(r)?),
            "mysql.ping" => Action::MysqlPing(NoArgs::parse(r)?),
            "mysql.status" => Action::MysqlStatus(NoArgs::parse(r)?),
            "mysql.processlist" => Action::MysqlProcesslist(ProcesslistArgs::parse(r)?),
            "mysql.table_sizes" => Action::MysqlTableSizes(TableSizesArgs::parse(r)?),
            "redis.ping" => Action::RedisPing(NoArgs::parse(r)?),
            "redis.info" => Action::RedisInfo(NoArgs::parse(r)?),
            "app.status" => Action::AppStatus(NoArgs::parse(r)?),
            "app.backends" => Action::AppBackends(NoArgs::parse(r)?),
            "diagnose" => Action::Diagnose(DiagnoseArgs::parse(r)?),
            "deployment.scale" => Action::DeploymentScale(ScaleArgs::parse(r)?),
            "deployment.restart" => Action::DeploymentRestart(RestartArgs::parse(r)?),
            "pod.delete" => Action::PodDelete(PodDeleteArgs::parse(r)?),
            "mysql.kill_query" => Action::MysqlKillQuery(KillQueryArgs::parse(r)?),
            "mysql.backup" => Action::MysqlBackup(BackupArgs::parse(r)?),
            "backup.verify" => Action::BackupVerify(BackupVerifyArgs::parse(r)?),
            "manual" => Action::Manual(ManualArgs::parse(r)?),
            "assert" => Action::Assert(AssertArgs::parse(r)?),
            _ => return None,
        })
    }

    /// The action's name.
    pub fn name(&self) -> &'static str {
        match self {
            Action::PodsList(_) => "pods.list",
            Action::PodsFailing(_) => "pods.failing",
            Action::PodsDescribe(_) => "pods.describe",
            Action::PodsTop(_) => "pods.top",
            Action::LogsFetch(_) => "logs.fetch",
            Action::NodesAllocation(_) => "nodes.allocation",
            Action::NodesConditions(_) => "nodes.conditions",
            Action::ObjectsList(_) => "objects.list",
            Action::MysqlPing(_) => "mysql.ping",
            Action::MysqlStatus(_) => "mysql.status",
            Action::MysqlProcesslist(_) => "mysql.processlist",
            Action::MysqlTableSizes(_) => "mysql.table_sizes",
            Action::RedisPing(_) => "redis.ping",
            Action::RedisInfo(_) => "redis.info",
            Action::AppStatus(_) => "app.status",
            Action::AppBackends(_) => "app.backends",
            Action::Diagnose(_) => "diagnose",
            Action::DeploymentScale(_) => "deployment.scale",
            Action::DeploymentRestart(_) => "deployment.restart",
            Action::PodDelete(_) => "pod.delete",
            Action::MysqlKillQuery(_) => "mysql.kill_query",
            Action::MysqlBackup(_) => "mysql.backup",
            Action::BackupVerify(_) => "backup.verify",
            Action::Manual(_) => "manual",
            Action::Assert(_) => "assert",
        }
    }

    pub fn spec(&self) -> &'static ActionSpec {
        match spec(self.name()) {
            Some(s) => s,
            None => unreachable!("every action has a spec (catalogue test)"),
        }
    }

    pub fn effect(&self) -> Effect {
        self.spec().effect
    }

    /// The arguments as written, for `show` and the transcript of a step that did not run.
    pub fn shown_args(&self) -> Vec<(&'static str, String)> {
        match self {
            Action::PodsList(a) => a.shown(),
            Action::PodsFailing(a) => a.shown(),
            Action::PodsDescribe(a) => a.shown(),
            Action::PodsTop(a) => a.shown(),
            Action::LogsFetch(a) => a.shown(),
            Action::NodesAllocation(a)
            | Action::NodesConditions(a)
            | Action::MysqlPing(a)
            | Action::MysqlStatus(a)
            | Action::RedisPing(a)
            | Action::RedisInfo(a)
            | Action::AppStatus(a)
            | Action::AppBackends(a) => a.shown(),
            Action::ObjectsList(a) => a.shown(),
            Action::MysqlProcesslist(a) => a.shown(),
            Action::MysqlTableSizes(a) => a.shown(),
            Action::Diagnose(a) => a.shown(),
            Action::DeploymentScale(a) => a.shown(),
            Action::DeploymentRestart(a) => a.shown(),
            Action::PodDelete(a) => a.shown(),
            Action::MysqlKillQuery(a) => a.shown(),
            Action::MysqlBackup(a) => a.shown(),
            Action::BackupVerify(a) => a.shown(),
            Action::Manual(a) => a.shown(),
            Action::Assert(a) => a.shown(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_dotted() {
        let mut names = names();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        for s in CATALOGUE {
            assert!(!s.summary.is_empty());
            let mut fields: Vec<&str> = s.outputs.iter().map(|f| f.name).collect();
            fields.sort_unstable();
            fields.dedup();
            assert_eq!(fields.len(), s.outputs.len(), "{}", s.name);
            for p in s.params {
                if !p.required {
                    assert!(p.default.is_some(), "{}.{}", s.name, p.name);
                    let _ = (p.default.unwrap())();
                }
            }
        }
        for (planned, _) in PLANNED {
            assert!(spec(planned).is_none());
        }
    }
}
