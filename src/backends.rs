//! Reaching MySQL and Redis the way New-API does: from its `SQL_DSN` and `REDIS_CONN_STRING`
//! (resolved from the cluster's ConfigMap/Secret), or from a URL the user gives. From outside the
//! cluster, an in-cluster host (a Service name) is reached through a port-forward to one of the
//! role's pods; inside the cluster, directly.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Secret};
use kube::Api;
use kube::api::ListParams;

use crate::config::Settings;
use crate::envvars::{EnvValue, Sensitive, Sources};
use crate::error::Error;
use crate::inventory::Role;
use crate::k8s::{Call, Kube};
use crate::portforward::Forward;

/// Where and as whom to connect. The password is [`Sensitive`]: never printed.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<Sensitive>,
    /// MySQL database, or Redis DB number.
    pub database: Option<String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Endpoint {
    /// `user@host:port/db`, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}:{}", self.host, self.port)?;
        if let Some(db) = &self.database {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

impl Endpoint {
    /// Whether the host names something inside the cluster (a Service), which from outside can
    /// only be reached through a port-forward.
    pub fn in_cluster_host(&self) -> bool {
        let h = self.host.as_str();
        !h.contains('.') && h != "localhost"
            || h.ends_with(".svc")
            || h.ends_with(".svc.cluster.local")
            || h.contains(".svc.")
    }

    /// The same endpoint at another address (the local end of a port-forward).
    pub fn at(&self, host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
            ..self.clone()
        }
    }

    pub fn mysql_opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(self.user.clone())
            .pass(self.password.as_ref().map(|p| p.expose().to_string()))
            .db_name(self.database.clone())
            .prefer_socket(false)
            .into()
    }

    pub fn redis_info(&self) -> redis::ConnectionInfo {
        let mut redis = redis::RedisConnectionInfo::default();
        if let Some(db) = self.database.as_ref().and_then(|d| d.parse::<i64>().ok()) {
            redis = redis.set_db(db);
        }
        if let Some(u) = &self.user {
            redis = redis.set_username(u.clone());
        }
        if let Some(p) = &self.password {
            redis = redis.set_password(p.expose());
        }
        use redis::IntoConnectionInfo as _;
        match redis::ConnectionAddr::Tcp(self.host.clone(), self.port).into_connection_info() {
            Ok(info) => info.set_redis_settings(redis),
            Err(e) => unreachable!("a TCP address always converts: {e}"),
        }
    }
}

/// Why a DSN or URL was refused (never quoting the secret part).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct ParseError {
    pub what: &'static str,
    pub reason: String,
}

/// Parses Go's MySQL DSN, as New-API's `SQL_DSN`: `user:password@tcp(host:port)/dbname?params`.
pub fn parse_go_dsn(dsn: &str) -> Result<Endpoint, ParseError> {
    let err = |reason: &str| ParseError {
        what: "SQL_DSN",
        reason: reason.to_string(),
    };
    let (creds, rest) = dsn.rsplit_once('@').unwrap_or(("", dsn));
    let (user, password) = match creds.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (creds, None),
    };
    let (addr_part, db_part) = rest
        .split_once('/')
        .ok_or_else(|| err("no /dbname after the address"))?;
    let addr = if let Some(inner) = addr_part.strip_prefix("tcp(") {
        inner
            .strip_suffix(')')
            .ok_or_else(|| err("unclosed tcp( in the address"))?
    } else if addr_part.is_empty() {
        "127.0.0.1:3306"
    } else if addr_part.starts_with("unix(") {
        return Err(err("a unix socket address cannot be reached from here"));
    } else {
        addr_part
    };
    let (host, port) = split_host_port(addr, 3306).map_err(|r| err(&r))?;
    let db = db_part.split('?').next().unwrap_or("");
    Ok(Endpoint {
        host,
        port,
        user: (!user.is_empty()).then(|| user.to_string()),
        password: password.map(Sensitive::new),
        database: (!db.is_empty()).then(|| db.to_string()),
    })
}

/// Parses `mysql://user:pass@host:port/db` or `redis://[user][:pass]@host:port[/db]`.
pub fn parse_url(
    url: &str,
    scheme: &'static str,
    default_port: u16,
) -> Result<Endpoint, ParseError> {
    let err = |reason: String| ParseError {
        what: scheme,
        reason,
    };
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .or_else(|| {
            (scheme == "redis")
                .then(|| url.strip_prefix("rediss://"))
                .flatten()
        })
        .ok_or_else(|| err(format!("expected {scheme}://host:port")))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (creds, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let (user, password) = match creds.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (creds, None),
    };
    let (host, port) = split_host_port(hostport, default_port).map_err(err)?;
    let db = path.split('?').next().unwrap_or("");
    Ok(Endpoint {
        host,
        port,
        user: (!user.is_empty()).then(|| percent_decode(user)),
        password: password
            .filter(|p| !p.is_empty())
            .map(|p| Sensitive::new(percent_decode(p))),
        database: (!db.is_empty()).then(|| db.to_string()),
    })
}

fn split_host_port(addr: &str, default_port: u16) -> Result<(String, u16), String> {
    if addr.is_empty() {
        return Err("no host".into());
    }
    match addr.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => {
            Ok((addr.to_string(), default_port))
        }
        Some((h, p)) => {
            let port = p.parse().map_err(|_| format!("bad port {p:?}"))?;
            Ok((
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                port,
            ))
        }
        None => Ok((addr.to_string(), default_port)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A backend of New-API: which variable configures it, and how it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Mysql,
    Redis,
}

impl Backend {
    /// The master's environment variable that holds the address.
    pub fn var(self) -> &'static str {
        match self {
            Backend::Mysql => "SQL_DSN",
            Backend::Redis => "REDIS_CONN_STRING",
        }
    }

    /// The URL scheme of `--mysql-url` / `--redis-url`.
    pub fn scheme(self) -> &'static str {
        match self {
            Backend::Mysql => "mysql",
            Backend::Redis => "redis",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Backend::Mysql => 3306,
            Backend::Redis => 6379,
        }
    }

    /// The role whose pods serve it (port-forward target).
    pub fn role(self) -> Role {
        match self {
            Backend::Mysql => Role::Mysql,
            Backend::Redis => Role::Redis,
        }
    }
}

/// Why a backend's address could not be worked out or reached. The texts never quote a secret.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("bad --{scheme}-url: {source}")]
    BadUrl {
        scheme: &'static str,
        source: ParseError,
    },
    #[error("cannot read {var} from {what}")]
    Unreadable {
        var: &'static str,
        scheme: &'static str,
        what: String,
    },
    #[error("the master does not set {var}")]
    Unset {
        var: &'static str,
        scheme: &'static str,
        /// Where we looked (the master workload).
        master: String,
    },
    #[error("cannot parse {var}: {source}")]
    BadValue {
        var: &'static str,
        source: ParseError,
    },
    #[error("no running {role} pod to reach {host} through")]
    NoPod { role: &'static str, host: String },
    #[error("no cluster connection")]
    NoCluster,
    #[error("port-forward to {pod}:{port} failed: {source}")]
    Forward {
        pod: String,
        port: u16,
        source: Box<Error>,
    },
    /// Reading the master's configuration from the API server failed.
    #[error("{0}")]
    Cluster(Box<Error>),
}

impl ResolveError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ResolveError::BadUrl { scheme, .. } => {
                format!(
                    "fix the URL: {scheme}://user@host:port/db (the password in NEWAPI_OPS_{}_URL, not on the command line)",
                    scheme.to_uppercase()
                )
            }
            ResolveError::Unreadable { scheme, .. } => format!(
                "pass --{scheme}-url or set NEWAPI_OPS_{}_URL",
                scheme.to_uppercase()
            ),
            ResolveError::Unset { scheme, master, .. } => {
                format!("set it in {master}'s environment, or pass --{scheme}-url")
            }
            ResolveError::BadValue { .. } => "fix the variable in its ConfigMap/Secret".into(),
            ResolveError::NoPod { role, .. } => {
                format!(
                    "see `newapi-ops pods --role {role}`; or pass the server's address with a URL"
                )
            }
            ResolveError::NoCluster => "pass a URL".into(),
            ResolveError::Forward { source, .. } => source
                .hint()
                .unwrap_or_else(|| "check RBAC for pods/portforward".into()),
            ResolveError::Cluster(source) => return source.hint(),
        })
    }
}

/// A backend as reached: where to connect now, the port-forward that must stay open meanwhile,
/// and how it was reached, for messages (`root@mysql:3306/new-api (from SQL_DSN, through a
/// port-forward to pod mysql-0)`).
#[derive(Debug)]
pub struct Reached {
    pub endpoint: Endpoint,
    pub forward: Option<Forward>,
    pub via: String,
}

/// Whether this process runs inside a pod (then Service names resolve directly).
pub fn running_in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// The endpoint of a URL the user gave (`--mysql-url`, `--redis-url`).
pub fn endpoint_from_url(backend: Backend, url: &str) -> Result<Reached, ResolveError> {
    let scheme = backend.scheme();
    let ep = parse_url(url, scheme, backend.default_port())
        .map_err(|source| ResolveError::BadUrl { scheme, source })?;
    let via = format!("{ep} (from --{scheme}-url)");
    Ok(Reached {
        endpoint: ep,
        forward: None,
        via,
    })
}

/// The endpoint New-API itself uses, from the master's resolved environment; `master` names
/// the workload for messages.
pub fn endpoint_from_env(
    backend: Backend,
    env: &BTreeMap<String, EnvValue>,
    master: &str,
) -> Result<Reached, ResolveError> {
    let (var, scheme) = (backend.var(), backend.scheme());
    let value = match env.get(var) {
        Some(EnvValue::Set { value, .. }) => value.clone(),
        Some(EnvValue::Unreadable(what)) => {
            return Err(ResolveError::Unreadable {
                var,
                scheme,
                what: what.clone(),
            });
        }
        _ => {
            return Err(ResolveError::Unset {
                var,
                scheme,
                master: master.to_string(),
            });
        }
    };
    let ep = match backend {
        Backend::Mysql => parse_go_dsn(value.expose()),
        Backend::Redis => parse_url(value.expose(), "redis", 6379),
    }
    .map_err(|source| ResolveError::BadValue { var, source })?;
    let via = format!("{ep} (from {var})");
    Ok(Reached {
        endpoint: ep,
        forward: None,
        via,
    })
}

/// From outside the cluster, an in-cluster host is reached through a port-forward to the first
/// running pod among `pods` (the backend's role); otherwise `reached` is returned as it is.
pub async fn forward_if_needed<'a>(
    reached: Reached,
    backend: Backend,
    kube: Option<&Kube>,
    namespace: &str,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Result<Reached, ResolveError> {
    let ep = &reached.endpoint;
    if !ep.in_cluster_host() || running_in_cluster() {
        return Ok(reached);
    }
    let pod = pods
        .into_iter()
        .find(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.metadata.deletion_timestamp.is_none()
        })
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| ResolveError::NoPod {
            role: backend.role().as_str(),
            host: ep.host.clone(),
        })?;
    let kube = kube.ok_or(ResolveError::NoCluster)?;
    let fwd = crate::portforward::forward(kube, namespace, &pod, ep.port)
        .await
        .map_err(|e| ResolveError::Forward {
            pod: pod.clone(),
            port: ep.port,
            source: Box::new(e),
        })?;
    let local = ep.at("127.0.0.1", fwd.local.port());
    let var = backend.var();
    let via = format!("{ep} (from {var}, through a port-forward to pod {pod})");
    Ok(Reached {
        endpoint: local,
        forward: Some(fwd),
        via,
    })
}

/// Reaches New-API's MySQL the way diagnose does, with as few API calls as possible: the URL if
/// given; else `SQL_DSN` of the master's first container, read with one `get` of the master
/// Deployment (or StatefulSet) and one `get` of each ConfigMap/Secret its environment names
/// (so a Role limited by `resourceNames` is enough); from outside the cluster, through a
/// port-forward to a running MySQL pod (one list of pods by the MySQL selector).
pub async fn resolve_mysql(
    kube: Option<&Kube>,
    settings: &Settings,
    url_override: Option<&str>,
) -> Result<Reached, ResolveError> {
    resolve_backend(Backend::Mysql, kube, settings, url_override).await
}

/// [`resolve_mysql`] for either backend.
pub async fn resolve_backend(
    backend: Backend,
    kube: Option<&Kube>,
    settings: &Settings,
    url_override: Option<&str>,
) -> Result<Reached, ResolveError> {
    if let Some(url) = url_override {
        return endpoint_from_url(backend, url);
    }
    let kube = kube.ok_or(ResolveError::NoCluster)?;
    let ns = settings.namespace.as_str();
    let cluster = |e: Error| ResolveError::Cluster(Box::new(e));
    let master = &settings.workloads.master.name;
    let spec = master_pod_spec(kube, ns, master).await.map_err(cluster)?;
    let container = spec.as_ref().and_then(|s| s.containers.first());
    let env = match container {
        Some(c) => {
            let (secrets, configmaps) = referenced_sources(kube, ns, c).await.map_err(cluster)?;
            crate::envvars::resolve(
                c,
                &Sources {
                    secrets: secrets.as_deref(),
                    configmaps: configmaps.as_deref(),
                },
            )
        }
        None => BTreeMap::new(),
    };
    let reached = endpoint_from_env(backend, &env, &format!("Deployment {master}"))?;
    if !reached.endpoint.in_cluster_host() || running_in_cluster() {
        return Ok(reached);
    }
    let selector = backend.role().workload(settings).selector.to_string();
    let pods = kube
        .list::<Pod>(Some(ns), &ListParams::default().labels(&selector))
        .await
        .map_err(cluster)?;
    forward_if_needed(reached, backend, Some(kube), ns, pods.items.iter()).await
}

/// The pod template of the master workload (a Deployment, else a StatefulSet of that name);
/// None if neither exists.
pub async fn master_pod_spec(kube: &Kube, ns: &str, name: &str) -> Result<Option<PodSpec>, Error> {
    let deployments: Api<Deployment> = Api::namespaced(kube.client.clone(), ns);
    let call = Call::new("get", "deployments.apps", Some(ns));
    if let Some(d) = deployments
        .get_opt(name)
        .await
        .map_err(|e| kube.error(&call, e))?
    {
        return Ok(d.spec.template.spec);
    }
    let statefulsets: Api<StatefulSet> = Api::namespaced(kube.client.clone(), ns);
    let call = Call::new("get", "statefulsets.apps", Some(ns));
    match statefulsets.get_opt(name).await {
        Ok(s) => Ok(s.and_then(|s| s.spec.template.spec)),
        // A Role limited to the master Deployment may not read StatefulSets: there is none.
        Err(e) => match kube.error(&call, e) {
            Error::Forbidden { .. } => Ok(None),
            e => Err(e),
        },
    }
}

/// The names of the ConfigMaps and Secrets a container's environment refers to.
pub fn env_references(c: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut configmaps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for from in c.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            configmaps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.insert(r.name.clone());
        }
    }
    for var in c.env.iter().flatten() {
        if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                configmaps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    (configmaps, secrets)
}

/// Gets each ConfigMap and Secret the container refers to (absent ones are left out; a kind we
/// may not read is None, which [`crate::envvars::resolve`] reports as unreadable).
async fn referenced_sources(
    kube: &Kube,
    ns: &str,
    c: &Container,
) -> Result<(Option<Vec<Secret>>, Option<Vec<ConfigMap>>), Error> {
    let (cm_names, secret_names) = env_references(c);
    let secrets = get_named::<Secret>(kube, ns, &secret_names).await?;
    let configmaps = get_named::<ConfigMap>(kube, ns, &cm_names).await?;
    Ok((secrets, configmaps))
}

async fn get_named<K>(
    kube: &Kube,
    ns: &str,
    names: &BTreeSet<String>,
) -> Result<Option<Vec<K>>, Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(kube.client.clone(), ns);
    let call = Call::new("get", crate::k8s::resource_name::<K>(), Some(ns));
    let mut out = Vec::new();
    for name in names {
        match api.get_opt(name).await {
            Ok(Some(obj)) => out.push(obj),
            Ok(None) => {}
            Err(e) => match kube.error(&call, e) {
                Error::Forbidden { .. } => return Ok(None),
                e => return Err(e),
            },
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_dsn_of_the_seed() {
        let e = parse_go_dsn("root:123456@tcp(mysql:3306)/new-api?parseTime=true").unwrap();
        assert_eq!(e.to_string(), "root@mysql:3306/new-api");
        assert_eq!(e.password.as_ref().unwrap().expose(), "123456");
        assert!(e.in_cluster_host());
        assert!(!format!("{e:?}").contains("123456"));
        let e = parse_go_dsn("u:p@tcp(db.example.com)/x").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("db.example.com", 3306));
        assert!(!e.in_cluster_host());
        assert!(parse_go_dsn("u:p@unix(/tmp/s)/x").is_err());
        assert!(parse_go_dsn("garbage").is_err());
        assert!(parse_go_dsn("u:p@tcp(h:notaport)/d").is_err());
        assert!(
            parse_go_dsn("u:p@tcp(mysql.new-api.svc.cluster.local:3306)/d")
                .unwrap()
                .in_cluster_host()
        );
    }

    #[test]
    fn urls() {
        let r = parse_url("redis://redis:6379", "redis", 6379).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.password.is_none()),
            ("redis", 6379, true)
        );
        let r = parse_url("redis://:s%40cret@10.0.0.5:6380/2", "redis", 6379).unwrap();
        assert_eq!(r.password.as_ref().unwrap().expose(), "s@cret");
        assert_eq!(r.database.as_deref(), Some("2"));
        let m = parse_url("mysql://root:pw@127.0.0.1:3307/new-api", "mysql", 3306).unwrap();
        assert_eq!(m.to_string(), "root@127.0.0.1:3307/new-api");
        assert!(parse_url("http://x", "mysql", 3306).is_err());
    }
}
