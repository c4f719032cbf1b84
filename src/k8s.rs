//! Connecting to the cluster the way kubectl does, and turning every failure of an API call into
//! an [`Error`] that names the server, the verb, the resource and the namespace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use kube::api::{ListParams, ObjectList};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;

use crate::config::Settings;
use crate::error::{Error, Result};

/// The longest one look of a wait (at a rollout, at a Job) may take before it counts as the API
/// server not answering.
pub const POLL_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the API server may stay unreachable during a wait before the wait gives up.
pub const UNREACHABLE_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// A connected client plus what we know about where it points.
#[derive(Clone)]
pub struct Kube {
    /// Every request's reads are bounded ([`READ_TIMEOUT`]).
    pub client: Client,
    /// For streams that may be quiet for long (`logs --follow`): no read timeout; whoever uses it
    /// watches the API server's liveness itself ([`Kube::alive`]).
    pub streaming: Client,
    /// The API server's URL, for messages.
    pub server: String,
    /// The kubeconfig context in use (None in-cluster).
    pub context: Option<String>,
    /// Objects per page of a list call ([`PAGE_SIZE`]; `NEWAPI_OPS_LIST_PAGE_SIZE` changes it,
    /// for tests).
    pub page_size: u32,
    /// When set, each page of a list must come within it ([`Kube::with_page_limit`]).
    pub page_limit: Option<Duration>,
}

/// How many objects one list call asks for: a list of more is paged (`limit` and `continue`),
/// so that no answer is one giant response and each page can be reduced before the next comes.
pub const PAGE_SIZE: u32 = 500;

/// The variable that changes [`PAGE_SIZE`] (tests split small lists over pages with it).
pub const PAGE_SIZE_ENV: &str = "NEWAPI_OPS_LIST_PAGE_SIZE";

fn page_size_from_env() -> u32 {
    std::env::var(PAGE_SIZE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(PAGE_SIZE)
}

/// How long one read of one request may wait for the API server before it is given up: a frozen
/// server (connections accepted, nothing answered) costs at most this per call. Calls made under
/// a shorter limit of their own are bounded by [`Kube::within`].
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// One API call, described for error messages: `list pods in namespace new-api`.
#[derive(Debug, Clone)]
pub struct Call {
    pub verb: &'static str,
    pub resource: String,
    pub namespace: Option<String>,
}

impl Call {
    pub fn new(verb: &'static str, resource: impl Into<String>, namespace: Option<&str>) -> Self {
        Call {
            verb,
            resource: resource.into(),
            namespace: namespace.map(str::to_string),
        }
    }

    fn scope(&self) -> String {
        match &self.namespace {
            Some(ns) => format!(" in namespace \"{ns}\""),
            None => " at cluster scope".to_string(),
        }
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}{}", self.verb, self.resource, self.scope())
    }
}

/// Where the kubeconfig comes from, in kubectl's order.
enum Source {
    File(PathBuf, Kubeconfig),
    Env(String, Kubeconfig),
    InCluster,
}

fn load_source(settings: &Settings) -> Result<Source> {
    let invalid = |path: &str, e: kube::config::KubeconfigError| Error::KubeconfigInvalid {
        path: path.to_string(),
        detail: e.to_string(),
    };
    if let Some(path) = &settings.kubeconfig {
        if !path.is_file() {
            return Err(Error::KubeconfigInvalid {
                path: path.display().to_string(),
                detail: "no such file".into(),
            });
        }
        let kc =
            Kubeconfig::read_from(path).map_err(|e| invalid(&path.display().to_string(), e))?;
        return Ok(Source::File(path.clone(), kc));
    }
    if let Some(value) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let shown = value.to_string_lossy().to_string();
        for p in std::env::split_paths(&value).filter(|p| !p.as_os_str().is_empty()) {
            if !p.is_file() {
                return Err(Error::KubeconfigInvalid {
                    path: p.display().to_string(),
                    detail: "named in $KUBECONFIG but no such file".into(),
                });
            }
        }
        let kc = Kubeconfig::from_env()
            .map_err(|e| invalid(&shown, e))?
            .unwrap_or_default();
        return Ok(Source::Env(shown, kc));
    }
    let home = dirs::home_dir().map(|h| h.join(".kube").join("config"));
    if let Some(path) = home.as_ref().filter(|p| p.is_file()) {
        let kc =
            Kubeconfig::read_from(path).map_err(|e| invalid(&path.display().to_string(), e))?;
        return Ok(Source::File(path.clone(), kc));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").is_file()
    {
        return Ok(Source::InCluster);
    }
    let home_shown = home.map_or_else(|| "~/.kube/config".into(), |p| p.display().to_string());
    Err(Error::NoKubeconfig {
        looked: format!("--kubeconfig (not given), $KUBECONFIG (not set), {home_shown} (missing)"),
    })
}

/// Connects like kubectl: `--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`, then the pod's
/// service account; `--context` picks the context. No request is made yet.
pub async fn connect(settings: &Settings) -> Result<Kube> {
    let source = load_source(settings)?;
    let (mut config, context) = match source {
        Source::InCluster => {
            if let Some(ctx) = &settings.context {
                return Err(Error::Usage(format!(
                    "--context {ctx} given, but there is no kubeconfig: running in-cluster with the pod's service account"
                )));
            }
            let config = Config::incluster().map_err(|e| Error::KubeconfigInvalid {
                path: "in-cluster service account".into(),
                detail: e.to_string(),
            })?;
            (config, None)
        }
        Source::File(path, kc) => {
            from_kubeconfig(&path.display().to_string(), kc, settings).await?
        }
        Source::Env(shown, kc) => from_kubeconfig(&shown, kc, settings).await?,
    };
    config.connect_timeout = Some(Duration::from_secs(5));
    // Like kubectl, say who we are: API server audit logs attribute our calls to newapi-ops.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("newapi-ops/", env!("CARGO_PKG_VERSION"))),
    ));
    let mut streaming_config = config.clone();
    streaming_config.read_timeout = None;
    config.read_timeout = Some(READ_TIMEOUT);
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = Client::try_from(config).map_err(|e| Error::KubeconfigInvalid {
        path: context.clone().unwrap_or_default(),
        detail: format!("cannot build a client: {e}"),
    })?;
    let streaming = Client::try_from(streaming_config).map_err(|e| Error::KubeconfigInvalid {
        path: context.clone().unwrap_or_default(),
        detail: format!("cannot build a client: {e}"),
    })?;
    Ok(Kube {
        client,
        streaming,
        server,
        context,
        page_size: page_size_from_env(),
        page_limit: None,
    })
}

async fn from_kubeconfig(
    shown: &str,
    kc: Kubeconfig,
    settings: &Settings,
) -> Result<(Config, Option<String>)> {
    let available: Vec<String> = kc.contexts.iter().map(|c| c.name.clone()).collect();
    let context = match &settings.context {
        Some(ctx) if !available.contains(ctx) => {
            return Err(Error::UnknownContext {
                context: ctx.clone(),
                path: shown.to_string(),
                available,
            });
        }
        Some(ctx) => ctx.clone(),
        None => match &kc.current_context {
            Some(ctx) if available.contains(ctx) => ctx.clone(),
            Some(ctx) => {
                return Err(Error::UnknownContext {
                    context: ctx.clone(),
                    path: format!("{shown} (its current-context)"),
                    available,
                });
            }
            None => {
                return Err(Error::KubeconfigInvalid {
                    path: shown.to_string(),
                    detail: format!(
                        "no current-context is set; pass --context (contexts: {})",
                        if available.is_empty() {
                            "none".into()
                        } else {
                            available.join(", ")
                        }
                    ),
                });
            }
        },
    };
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| Error::KubeconfigInvalid {
            path: shown.to_string(),
            detail: e.to_string(),
        })?;
    Ok((config, Some(context)))
}

impl Kube {
    /// Runs one API call (or a few) under `limit`: past it, the API server is unreachable for this
    /// purpose, named as such (`no answer to get deployments.apps in namespace "x" within 5 s`).
    pub async fn within<T>(
        &self,
        limit: Duration,
        call: &Call,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Unreachable {
                server: self.server.clone(),
                detail: format!(
                    "no answer to {call} within {}",
                    crate::units::duration(limit)
                ),
            }),
        }
    }

    /// This client with each page of a list bounded by `limit`: a long list that keeps coming
    /// is not cut off, a server that stops answering is ([`Error::Unreachable`]).
    pub fn with_page_limit(&self, limit: Duration) -> Kube {
        Kube {
            page_limit: Some(limit),
            ..self.clone()
        }
    }

    /// Whether the API server answers `GET /version` within `limit`: the liveness probe of
    /// long-running streams, which cannot tell a quiet stream from a frozen server.
    pub async fn alive(&self, limit: Duration) -> std::result::Result<(), Error> {
        let call = Call::new("get", "/version", None);
        match tokio::time::timeout(limit, self.client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.error(&call, e)),
            Err(_) => Err(Error::Unreachable {
                server: self.server.clone(),
                detail: format!(
                    "no answer to GET /version within {}",
                    crate::units::duration(limit)
                ),
            }),
        }
    }

    /// Classifies a failed call.
    pub fn error(&self, call: &Call, err: kube::Error) -> Error {
        classify(&self.server, call, err)
    }

    /// A list of a namespaced kind (all namespaces when `namespace` is None), every page of it.
    pub async fn list<K>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let (api, call) = self.list_api::<K>(namespace);
        self.all_pages(&api, &call, params).await
    }

    /// The API of a namespaced kind in `namespace` (every namespace when None) and its list call.
    fn list_api<K>(&self, namespace: Option<&str>) -> (Api<K>, Call)
    where
        K: Resource<DynamicType = ()> + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let api: Api<K> = match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        (api, Call::new("list", resource_name::<K>(), namespace))
    }

    /// A list of a cluster-scoped kind, every page of it.
    pub async fn list_cluster<K>(&self, params: &ListParams) -> Result<ObjectList<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        K: Resource<Scope = k8s_openapi::ClusterResourceScope>,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let call = Call::new("list", resource_name::<K>(), None);
        self.all_pages(&api, &call, params).await
    }

    /// Every page of a list, as one list.
    async fn all_pages<K>(
        &self,
        api: &Api<K>,
        call: &Call,
        params: &ListParams,
    ) -> Result<ObjectList<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let mut items = Vec::new();
        let metadata = self
            .pages(api, call, params, |k| {
                items.push(k);
                Ok(())
            })
            .await?;
        Ok(ObjectList {
            types: Default::default(),
            metadata,
            items,
        })
    }

    /// Lists a namespaced kind page by page, handing `each` every object as its page arrives: a
    /// page is dropped before the next one is asked for, so what is kept is only what `each`
    /// keeps (the streaming form of [`Kube::list`]). An error of `each` stops the list.
    pub async fn list_each<K>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
        each: impl FnMut(K) -> Result<()>,
    ) -> Result<ListMeta>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let (api, call) = self.list_api::<K>(namespace);
        self.pages(&api, &call, params, each).await
    }

    /// Lists a namespaced kind page by page like [`Kube::list_each`], but decodes each page
    /// straight into `S` — a type with only the fields the caller reads — so that what it does
    /// not read (managed fields, environment, volumes, probes, annotations) is skipped by the
    /// decoder and never built. Only the page's text (at most [`Kube::page_size`] objects) and
    /// what `each` keeps are in memory at once.
    pub async fn list_each_as<K, S>(
        &self,
        namespace: Option<&str>,
        params: &ListParams,
        each: impl FnMut(S) -> Result<()>,
    ) -> Result<ListMeta>
    where
        K: Resource<DynamicType = ()> + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        S: DeserializeOwned + Keyed,
    {
        let call = Call::new("list", resource_name::<K>(), namespace);
        let url = K::url_path(&(), namespace);
        let fetch = |lp: ListParams| {
            let url = url.clone();
            async move {
                let mut req = kube::core::Request::new(url)
                    .list(&lp)
                    .map_err(kube::Error::BuildRequest)?;
                req.extensions_mut().insert("list");
                let page: Page<S> = self.client.request(req).await?;
                Ok((page.metadata, page.items))
            }
        };
        self.paged(&call, params, fetch, Keyed::list_key, each)
            .await
    }

    /// The paging loop over `api`'s lists ([`Kube::paged`]).
    async fn pages<K>(
        &self,
        api: &Api<K>,
        call: &Call,
        params: &ListParams,
        each: impl FnMut(K) -> Result<()>,
    ) -> Result<ListMeta>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let fetch = |lp: ListParams| async move {
            let list = api.list(&lp).await?;
            Ok((list.metadata, list.items))
        };
        self.paged(call, params, fetch, key_of, each).await
    }

    /// The paging loop: `limit` [`Kube::page_size`], then `continue` with the token of each page
    /// until the server gives none. One list of N objects costs ⌈N / page size⌉ calls. A token
    /// that expired meanwhile (410 Gone, the list took longer than the server keeps a snapshot)
    /// starts the list again without paging, once.
    async fn paged<T, F, Fut>(
        &self,
        call: &Call,
        params: &ListParams,
        fetch: F,
        key: impl Fn(&T) -> (String, String),
        mut each: impl FnMut(T) -> Result<()>,
    ) -> Result<ListMeta>
    where
        F: Fn(ListParams) -> Fut,
        Fut: std::future::Future<Output = kube::Result<(ListMeta, Vec<T>)>>,
    {
        let mut page = params.clone();
        if page.limit.is_none() {
            page.limit = Some(self.page_size);
        }
        let mut last: Option<(String, String)> = None;
        loop {
            let listed = match self.page_limit {
                Some(limit) => match tokio::time::timeout(limit, fetch(page.clone())).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(Error::Unreachable {
                            server: self.server.clone(),
                            detail: format!(
                                "no page of {call} within {}",
                                crate::units::duration(limit)
                            ),
                        });
                    }
                },
                None => fetch(page.clone()).await,
            };
            let (metadata, items) = match listed {
                Ok(l) => l,
                Err(kube::Error::Api(s)) if s.code == 410 && page.continue_token.is_some() => {
                    // What was handed out stays handed out: the restart lists everything again
                    // in one call and goes on after the last object seen (lists come in the
                    // order of their keys, namespace then name).
                    let mut whole = params.clone();
                    whole.limit = None;
                    whole.continue_token = None;
                    let (metadata, items) = fetch(whole).await.map_err(|e| self.error(call, e))?;
                    for k in items {
                        if last.as_ref().is_none_or(|l| key(&k) > *l) {
                            each(k)?;
                        }
                    }
                    return Ok(metadata);
                }
                Err(e) => return Err(self.error(call, e)),
            };
            let token = metadata.continue_.clone().filter(|t| !t.is_empty());
            last = items.last().map(&key).or(last);
            tracing::debug!("{call}: a page of {} objects", items.len());
            for k in items {
                each(k)?;
            }
            match token {
                Some(t) if params.limit.is_none() => page.continue_token = Some(t),
                _ => {
                    let mut meta = metadata;
                    meta.continue_ = None;
                    meta.remaining_item_count = None;
                    return Ok(meta);
                }
            }
        }
    }

    /// Fails with [`Error::NamespaceNotFound`] (listing the namespaces there are, when allowed)
    /// if `namespace` does not exist. A user who may not read namespaces is not stopped here.
    pub async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let call = Call::new("get", "namespaces", None);
        match api.get_opt(namespace).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => {
                let available = match api.list(&ListParams::default()).await {
                    Ok(list) => list
                        .items
                        .into_iter()
                        .filter_map(|n| n.metadata.name)
                        .collect(),
                    Err(_) => Vec::new(),
                };
                Err(Error::NamespaceNotFound {
                    namespace: namespace.to_string(),
                    available,
                })
            }
            Err(e) => match self.error(&call, e) {
                Error::Forbidden { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

/// A type a list's items are decoded into ([`Kube::list_each_as`]): where it sorts in the list.
pub trait Keyed {
    /// Namespace, then name: the order of a list.
    fn list_key(&self) -> (String, String);
}

/// One page of a list, decoded into only what the caller reads.
#[derive(serde::Deserialize)]
#[serde(bound(deserialize = "S: DeserializeOwned"))]
struct Page<S> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<S>,
}

/// Where an object sorts in a list: namespace, then name.
fn key_of<K: Resource>(k: &K) -> (String, String) {
    let m = k.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// The plural resource name of a kind with its group: `pods`, `deployments.apps`.
pub fn resource_name<K: Resource<DynamicType = ()>>() -> String {
    let group = K::group(&());
    if group.is_empty() {
        K::plural(&()).to_string()
    } else {
        format!("{}.{}", K::plural(&()), group)
    }
}

/// Turns a kube error into one of ours.
pub fn classify(server: &str, call: &Call, err: kube::Error) -> Error {
    // An API server speaks HTTPS: a plain-HTTP address gets a 400 ("Client sent an HTTP request
    // to an HTTPS server"), a reset or garbage back, never a Kubernetes answer.
    let plain_http = server.starts_with("http://");
    let kubernetes_answer =
        matches!(&err, kube::Error::Api(s) if s.reason != "Failed to parse error data");
    if plain_http && !kubernetes_answer {
        return Error::Unreachable {
            server: server.to_string(),
            detail: format!(
                "the kubeconfig names a plain http:// address and what answered is not a Kubernetes API server over HTTP ({err}); API servers speak HTTPS: use https://"
            ),
        };
    }
    if let kube::Error::Api(status) = &err {
        return match status.code {
            401 => Error::Unauthorized {
                server: server.to_string(),
                who: String::new(),
            },
            403 => Error::Forbidden {
                verb: call.verb.to_string(),
                resource: call.resource.clone(),
                scope: call.scope(),
                message: status.message.clone(),
            },
            code => Error::Api {
                call: call.to_string(),
                code,
                message: status.message.clone(),
            },
        };
    }
    // Transport failures: look through the whole chain for what really happened.
    let mut chain = Vec::new();
    let mut io_kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        chain.push(e.to_string());
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        source = e.source();
    }
    let text = chain.join(": ");
    let lower = text.to_lowercase();
    let server = server.to_string();
    if lower.contains("certificate") || lower.contains("tls") && lower.contains("handshake") {
        let detail = chain
            .iter()
            .rev()
            .find(|c| c.to_lowercase().contains("certificate"))
            .cloned()
            .unwrap_or(text);
        return Error::Tls { server, detail };
    }
    let detail = match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            Some("connection refused (nothing listens there)".to_string())
        }
        Some(std::io::ErrorKind::TimedOut) => Some("no answer within 5 s".to_string()),
        Some(std::io::ErrorKind::ConnectionReset) => Some("connection reset".to_string()),
        _ => None,
    }
    .or_else(|| {
        if lower.contains("connection refused") {
            Some("connection refused (nothing listens there)".into())
        } else if lower.contains("timed out") || lower.contains("elapsed") {
            Some("no answer within 5 s".into())
        } else if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve") {
            Some(format!("the host name does not resolve ({text})"))
        } else if lower.contains("connect")
            || lower.contains("connection closed")
            || lower.contains("broken pipe")
        {
            Some(text.clone())
        } else {
            None
        }
    });
    match detail {
        Some(detail) => Error::Unreachable { server, detail },
        None => Error::Api {
            call: call.to_string(),
            code: 0,
            message: text,
        },
    }
}
