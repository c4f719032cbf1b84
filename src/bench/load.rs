//! The load generator. `connections` tasks each hold one kept-alive connection and take numbered
//! tickets from one shared counter until the run's bound (a duration, a request count) is
//! reached or it is stopped.
//!
//! - **Closed loop** (no rate): a ticket is sent as soon as its connection is free, as wrk, hey
//!   and ab do; latency is from send to the end of the response.
//! - **Open loop** (`rate`): ticket `i` is due at `start + i / rate`. A free connection waits for
//!   its ticket's time, sends, and records the latency **from the intended send time** — so a
//!   stall that holds every connection shows up in the latencies of the requests it delayed
//!   (coordinated-omission correction, as wrk2 does), instead of vanishing because nothing was
//!   sent meanwhile.
//!
//! Every response (any status) is timed into a per-task histogram; failures (connect, timeout,
//! closed, I/O, bad response) are counted, not timed. The histograms and counts are merged when
//! the tasks end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::client::{self, Failure};
use super::histogram::Latencies;

/// One place requests go: an address and the request sent there.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// For the report: the URL, or the pod a port-forward reaches.
    pub label: String,
    pub request: Arc<Vec<u8>>,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Connections are spread over these round-robin (one per pod for a port-forward target).
    pub endpoints: Vec<Endpoint>,
    pub connections: usize,
    /// Stop sending after this long…
    pub duration: Duration,
    /// …or after this many requests, whichever comes first.
    pub requests: Option<u64>,
    /// Requests per second for the open loop; `None` is the closed loop.
    pub rate: Option<f64>,
    /// A request with no complete response after this long is a timeout.
    pub timeout: Duration,
}

/// Counters the progress line reads while the load runs.
#[derive(Debug, Default)]
pub struct Live {
    pub done: AtomicU64,
    pub failed: AtomicU64,
}

/// Stops a run early (Ctrl-C): the tasks end at once, the requests in flight are not counted.
#[derive(Debug, Default)]
pub struct Stop {
    stopped: AtomicBool,
    notify: Notify,
}

impl Stop {
    pub fn new() -> Arc<Stop> {
        Arc::new(Stop::default())
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Resolves once [`Stop::stop`] was called.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub latencies: Latencies,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without a response, by why.
    pub failures: BTreeMap<Failure, u64>,
    /// Responses per endpoint label.
    pub per_endpoint: BTreeMap<String, u64>,
    /// From the first send to the last response.
    pub elapsed: Duration,
    pub connections_opened: u64,
    /// Stopped early ([`Stop`]).
    pub interrupted: bool,
    /// Open loop: the largest lag of a send behind its intended time.
    pub max_send_lag: Duration,
}

impl Outcome {
    /// Responses received (any status).
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Requests that got no response.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Every request sent: responses + failures.
    pub fn requests(&self) -> u64 {
        self.responses() + self.failed()
    }

    /// Adds another outcome (another task, another worker).
    pub fn absorb(&mut self, o: &Outcome) -> Result<(), String> {
        self.latencies.merge(&o.latencies)?;
        for (k, v) in &o.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        for (k, v) in &o.failures {
            *self.failures.entry(*k).or_default() += v;
        }
        for (k, v) in &o.per_endpoint {
            *self.per_endpoint.entry(k.clone()).or_default() += v;
        }
        self.elapsed = self.elapsed.max(o.elapsed);
        self.connections_opened += o.connections_opened;
        self.interrupted |= o.interrupted;
        self.max_send_lag = self.max_send_lag.max(o.max_send_lag);
        Ok(())
    }
}

/// Shared by the tasks of one run.
struct Shared {
    spec: LoadSpec,
    start: Instant,
    deadline: Instant,
    tickets: AtomicU64,
    live: Arc<Live>,
    stop: Arc<Stop>,
}

impl Shared {
    /// The next ticket and, in the open loop, when it is due; None when the run is over.
    fn ticket(&self) -> Option<(u64, Option<Instant>)> {
        if self.stop.is_stopped() {
            return None;
        }
        let i = self.tickets.fetch_add(1, Ordering::Relaxed);
        if self.spec.requests.is_some_and(|n| i >= n) {
            return None;
        }
        match self.spec.rate {
            Some(rate) => {
                #[allow(clippy::cast_precision_loss)]
                let due = self.start + Duration::from_secs_f64(i as f64 / rate);
                (due < self.deadline).then_some((i, Some(due)))
            }
            None => (Instant::now() < self.deadline).then_some((i, None)),
        }
    }
}

/// Runs the load and returns what it measured. `stop` ends it early.
pub async fn run(spec: LoadSpec, live: Arc<Live>, stop: Arc<Stop>) -> Result<Outcome, String> {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        deadline: start + spec.duration,
        start,
        tickets: AtomicU64::new(0),
        live,
        stop: stop.clone(),
        spec,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..shared.spec.connections {
        let shared = shared.clone();
        tasks.spawn(connection(shared, c));
    }
    let mut total = Outcome::default();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((o, last)) => {
                total.absorb(&o)?;
                if let Some(last) = last {
                    total.elapsed = total.elapsed.max(last.duration_since(start));
                }
            }
            Err(e) => return Err(format!("a load task failed: {e}")),
        }
    }
    total.interrupted = stop.is_stopped();
    if total.elapsed.is_zero() {
        total.elapsed = start.elapsed();
    }
    Ok(total)
}

/// One connection's loop; returns its outcome and when its last response came.
async fn connection(shared: Arc<Shared>, index: usize) -> (Outcome, Option<Instant>) {
    let spec = &shared.spec;
    let endpoint = &spec.endpoints[index % spec.endpoints.len()];
    let mut out = Outcome::default();
    let mut conn: Option<client::Conn> = None;
    let mut last = None;
    let mut backoff = Duration::from_millis(5);
    let stop = shared.stop.clone();
    while let Some((_, due)) = shared.ticket() {
        if let Some(due) = due {
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = stop.wait() => break,
            }
        }
        let sent = Instant::now();
        if let Some(due) = due {
            out.max_send_lag = out.max_send_lag.max(sent.saturating_duration_since(due));
        }
        let attempt = async {
            let c = match conn.take() {
                Some(c) => c,
                None => {
                    out.connections_opened += 1;
                    client::connect(endpoint.addr, spec.timeout).await?
                }
            };
            let mut c = c;
            let status = c.get(&endpoint.request).await?;
            Ok::<(u16, client::Conn), Failure>((status, c))
        };
        let result = tokio::select! {
            r = tokio::time::timeout(spec.timeout, attempt) => r.unwrap_or(Err(Failure::Timeout)),
            () = stop.wait() => break,
        };
        let now = Instant::now();
        match result {
            Ok((status, c)) => {
                out.latencies.record(now - due.unwrap_or(sent));
                *out.statuses.entry(status).or_default() += 1;
                if c.reusable() {
                    conn = Some(c);
                }
                last = Some(now);
                backoff = Duration::from_millis(5);
                shared.live.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(f) => {
                *out.failures.entry(f).or_default() += 1;
                last = Some(now);
                shared.live.done.fetch_add(1, Ordering::Relaxed);
                shared.live.failed.fetch_add(1, Ordering::Relaxed);
                if f == Failure::Connect {
                    // Nothing listens: do not spin, but stay bounded by the run's end.
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stop.wait() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
    let responses = out.responses();
    if responses > 0 {
        out.per_endpoint.insert(endpoint.label.clone(), responses);
    }
    (out, last)
}
