//! The load generator. `connections` tasks each hold one kept-alive connection and take numbered
//! tickets from one shared counter until the run's bound (a duration, a request count) is
//! reached or it is stopped.
//!
//! - **Closed loop** (no rate): a ticket is sent as soon as its connection is free, as wrk, hey
//!   and ab do; latency is from writing the request on an open connection to the end of the
//!   response (connecting is not in it, as in wrk).
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
    /// Threads the connections are spread over (each its own single-threaded runtime).
    pub threads: usize,
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
///
/// The connections run on `spec.threads` threads of their own, each a single-threaded runtime
/// (as wrk's `-t`): no work stealing between them, no lock on the way of a request.
pub async fn run(spec: LoadSpec, live: Arc<Live>, stop: Arc<Stop>) -> Result<Outcome, String> {
    let start = Instant::now();
    let threads = spec.threads.clamp(1, spec.connections.max(1));
    let shared = Arc::new(Shared {
        deadline: start + spec.duration,
        start,
        tickets: AtomicU64::new(0),
        live,
        stop: stop.clone(),
        spec,
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for t in 0..threads {
        let shared = shared.clone();
        let tx = tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("bench-load-{t}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(format!("starting a load thread: {e}")));
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async {
                    let mut tasks = tokio::task::JoinSet::new();
                    let n = shared.spec.connections;
                    for c in (t..n).step_by(threads) {
                        tasks.spawn_local(connection(shared.clone(), c));
                    }
                    while let Some(r) = tasks.join_next().await {
                        let _ = tx.send(r.map_err(|e| format!("a load task failed: {e}")));
                    }
                });
            })
            .map_err(|e| format!("starting a load thread: {e}"))?;
        handles.push(h);
    }
    drop(tx);
    let mut total = Outcome::default();
    let mut failure = None;
    while let Some(r) = rx.recv().await {
        match r {
            Ok((o, last)) => {
                total.absorb(&o)?;
                if let Some(last) = last {
                    total.elapsed = total.elapsed.max(last.duration_since(start));
                }
            }
            Err(e) => failure = Some(e),
        }
    }
    // Every sender is gone: the threads are ending.
    for h in handles {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    total.interrupted = stop.is_stopped();
    if total.elapsed.is_zero() {
        total.elapsed = start.elapsed();
    }
    Ok(total)
}

/// One connection's loop; returns its outcome and when its last response came. [`Stop`] is
/// waited for once around the whole loop (not per request): when it fires, the loop is dropped
/// with its request in flight, and what it counted so far is kept.
async fn connection(shared: Arc<Shared>, index: usize) -> (Outcome, Option<Instant>) {
    let mut out = Outcome::default();
    let mut last = None;
    {
        let work = connection_loop(&shared, index, &mut out, &mut last);
        tokio::select! {
            () = work => {}
            () = shared.stop.wait() => {}
        }
    }
    let endpoint = &shared.spec.endpoints[index % shared.spec.endpoints.len()];
    let responses = out.responses();
    if responses > 0 {
        out.per_endpoint.insert(endpoint.label.clone(), responses);
    }
    (out, last)
}

async fn connection_loop(
    shared: &Shared,
    index: usize,
    out: &mut Outcome,
    last: &mut Option<Instant>,
) {
    let spec = &shared.spec;
    let endpoint = &spec.endpoints[index % spec.endpoints.len()];
    let mut conn: Option<client::Conn> = None;
    let mut backoff = Duration::from_millis(5);
    // One timer per connection, re-armed for each request.
    let timer = tokio::time::sleep(spec.timeout);
    tokio::pin!(timer);
    while let Some((_, due)) = shared.ticket() {
        if let Some(due) = due {
            tokio::time::sleep_until(due.into()).await;
        }
        let sent = Instant::now();
        if let Some(due) = due {
            out.max_send_lag = out.max_send_lag.max(sent.saturating_duration_since(due));
        }
        timer.as_mut().reset((sent + spec.timeout).into());
        let opened = &mut out.connections_opened;
        let attempt = async {
            let mut c = match conn.take() {
                Some(c) => c,
                None => {
                    *opened += 1;
                    client::connect(endpoint.addr, spec.timeout).await?
                }
            };
            // The closed loop times the request on an open connection, as wrk does: a
            // connection's first request does not carry the connect.
            let written = Instant::now();
            let status = c.get(&endpoint.request).await?;
            Ok::<(u16, client::Conn, Instant), Failure>((status, c, written))
        };
        let result = tokio::select! {
            biased;
            r = attempt => r,
            () = &mut timer => Err(Failure::Timeout),
        };
        let now = Instant::now();
        *last = Some(now);
        shared.live.done.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok((status, c, written)) => {
                out.latencies.record(now - due.unwrap_or(written));
                *out.statuses.entry(status).or_default() += 1;
                if c.reusable() {
                    conn = Some(c);
                }
                backoff = Duration::from_millis(5);
            }
            Err(f) => {
                *out.failures.entry(f).or_default() += 1;
                shared.live.failed.fetch_add(1, Ordering::Relaxed);
                if f == Failure::Connect {
                    // Nothing listens: do not spin (the run's end still bounds it).
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
        }
    }
}
