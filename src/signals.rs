//! The signals that ask newapi-ops to stop: SIGINT (Ctrl-C at a terminal) and SIGTERM (what
//! `kill`, systemd and Kubernetes send — a CronJob's pod is stopped with SIGTERM). Both are
//! handled alike: the work in progress is dropped (guards remove what it had half-written) and
//! the process exits with 128 + the signal's number (130, 143).
//!
//! - [`unhandled`] is what `main` selects on: the first signal that no [`Handler`] claims. Then
//!   `main` drops the command (its guards clean up) and exits.
//! - A [`Handler`] is for a command that handles the signals itself, to say what it left or to
//!   clean up with more work (awaits) before it returns: while one exists, `main` leaves the
//!   first signal to it (a second one ends the command all the same). Keep it alive until the
//!   clean-up is done.
//! - [`Listener`] and [`stop`] only listen (every signal, or the first); `main` still acts too.
//!
//! Once anything listens, a signal no longer ends the process by itself: whoever listens
//! decides. A leaf module: it knows nothing of commands or exit codes ([`crate::error`] maps a
//! [`Signal`] to one).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::signal::unix::{SignalKind, signal};

/// Which signal asked us to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Signal {
    /// SIGINT: Ctrl-C.
    #[serde(rename = "SIGINT")]
    Interrupt,
    /// SIGTERM: `kill PID`, or Kubernetes stopping the pod.
    #[serde(rename = "SIGTERM")]
    Terminate,
}

impl Signal {
    /// `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::Interrupt => f.write_str("SIGINT (Ctrl-C)"),
            Signal::Terminate => f.write_str("SIGTERM"),
        }
    }
}

/// Listens for SIGINT and SIGTERM from the moment it is made (a signal that arrives before the
/// first [`Listener::recv`] is not lost). Needs a Tokio runtime with its I/O driver enabled.
pub struct Listener {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Listener {
    /// Starts listening. A signal that cannot be listened for (the runtime has no I/O driver,
    /// the OS refuses) is logged and keeps its default action; the other still works.
    pub fn new() -> Listener {
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot listen for {name}: {e}; it ends the process at once");
                None
            }
        };
        Listener {
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// The next SIGINT or SIGTERM. Never resolves when neither could be listened for.
    pub async fn recv(&mut self) -> Signal {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            // `recv` gives `None` only when the runtime shuts down: then wait forever, as for
            // a signal that could not be listened for.
            if let Some(s) = s
                && s.recv().await.is_some()
            {
                return;
            }
            std::future::pending().await
        }
        tokio::select! {
            () = next(&mut self.interrupt) => Signal::Interrupt,
            () = next(&mut self.terminate) => Signal::Terminate,
        }
    }
}

impl Default for Listener {
    fn default() -> Self {
        Listener::new()
    }
}

/// Resolves on the first SIGINT or SIGTERM after it is first polled, with which one.
pub async fn stop() -> Signal {
    Listener::new().recv().await
}

/// How many [`Handler`]s exist now.
static HANDLERS: AtomicUsize = AtomicUsize::new(0);

/// A [`Listener`] that also tells `main` ([`unhandled`]) to leave the signals to it, for as
/// long as it exists.
pub struct Handler {
    listener: Listener,
}

impl Handler {
    /// Starts listening and claims the signals.
    pub fn new() -> Handler {
        HANDLERS.fetch_add(1, Ordering::SeqCst);
        Handler {
            listener: Listener::new(),
        }
    }

    /// The next SIGINT or SIGTERM.
    pub async fn recv(&mut self) -> Signal {
        self.listener.recv().await
    }
}

impl Default for Handler {
    fn default() -> Self {
        Handler::new()
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        HANDLERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The next SIGINT or SIGTERM that arrives while no [`Handler`] exists; a signal that arrives
/// while one does is the handler's, but a second one is `main`'s all the same (so that a
/// clean-up that hangs can still be cut short: press Ctrl-C again).
pub async fn unhandled() -> Signal {
    let mut listener = Listener::new();
    let mut left_to_handlers = 0;
    loop {
        let signal = listener.recv().await;
        if HANDLERS.load(Ordering::SeqCst) == 0 || left_to_handlers > 0 {
            return signal;
        }
        left_to_handlers += 1;
        tracing::debug!("{signal} left to the command's own handler");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Signal::Interrupt.name(), "SIGINT");
        assert_eq!(Signal::Terminate.name(), "SIGTERM");
        assert_eq!(
            serde_json::to_string(&Signal::Terminate).unwrap(),
            "\"SIGTERM\""
        );
    }

    /// A real SIGTERM sent to this process is received as `Terminate` (and, listened for, does
    /// not end the test process); while a handler exists, `unhandled` leaves the first one to
    /// it, and takes the second.
    #[tokio::test]
    async fn a_real_sigterm_is_received_by_the_handler_then_by_main() {
        let mut main = std::pin::pin!(unhandled());
        assert!(futures::poll!(main.as_mut()).is_pending(), "listening");
        let mut handler = Handler::new();
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
        assert_eq!(handler.recv().await, Signal::Terminate);
        // `main` has seen it too by now (one driver tick delivers to every listener), and let
        // it pass: polled, it is still pending.
        tokio::task::yield_now().await;
        assert!(futures::poll!(main.as_mut()).is_pending());
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT).unwrap();
        assert_eq!(main.await, Signal::Interrupt);
        assert_eq!(handler.recv().await, Signal::Interrupt);
    }
}
