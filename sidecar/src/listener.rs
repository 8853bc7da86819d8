//! The accept loop: admits connections up to the cap, makes room for a
//! caller with a request by closing the longest idle connection, refuses
//! the rest, and on shutdown stops accepting and drains what it serves.
//!
//! What a connection is served with, and how a refused one is answered, is
//! the caller's ([`crate::server::Server::run`]); this module owns only who
//! gets in and when (see the constants in [`crate::server`]).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinSet};

use crate::http::{self, Activity};
use crate::server::{ADMISSION_WAIT, MAX_WAITING};

/// The connections being served, by task id.
type Live = HashMap<tokio::task::Id, (AbortHandle, Arc<Activity>)>;

/// The socket's accept loop with its connection cap.
pub struct Listener<S, R> {
    listener: UnixListener,
    max_connections: usize,
    /// Turns an admitted stream into the future serving it, and the
    /// activity that tells when it is idle.
    serve: S,
    /// Answers a refused stream at once and closes it.
    refuse: R,
    connections: JoinSet<()>,
    live: Live,
    /// Connections over the cap waiting (briefly) for their request.
    waiting: JoinSet<(UnixStream, bool)>,
    waiters: VecDeque<oneshot::Sender<()>>,
}

impl<S, F, R> Listener<S, R>
where
    S: FnMut(UnixStream) -> (F, Arc<Activity>),
    F: Future<Output = ()> + Send + 'static,
    R: FnMut(UnixStream),
{
    /// Accept on `listener`, serving at most `max_connections` at once.
    pub fn new(listener: UnixListener, max_connections: usize, serve: S, refuse: R) -> Self {
        Listener {
            listener,
            max_connections,
            serve,
            refuse,
            connections: JoinSet::new(),
            live: HashMap::new(),
            waiting: JoinSet::new(),
            waiters: VecDeque::new(),
        }
    }

    /// Accept and serve until `shutdown` resolves; its value is returned.
    pub async fn run<T>(&mut self, shutdown: impl Future<Output = T>) -> T {
        let max_connections = self.max_connections;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                reason = &mut shutdown => break reason,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) if self.live.len() < max_connections => {
                        self.serve(stream);
                    }
                    // At the cap, room is made only for a caller that sends a
                    // request: one that has, or (briefly, a bounded number)
                    // one that does so soon.
                    Ok((stream, _)) if http::has_sent(&stream) => {
                        if close_oldest_idle(&mut self.live) {
                            self.serve(stream);
                        } else {
                            (self.refuse)(stream);
                        }
                    }
                    Ok((stream, _)) => {
                        // The longest waiter gives way to the newest: a caller
                        // that keeps opening silent connections cannot keep
                        // another's out of the wait.
                        if self.waiting.len() >= MAX_WAITING {
                            while let Some(kick) = self.waiters.pop_front() {
                                if kick.send(()).is_ok() {
                                    break;
                                }
                            }
                        }
                        // Kicked waiters end at their next poll; this bounds
                        // the moment in between.
                        if self.waiting.len() >= 2 * MAX_WAITING {
                            (self.refuse)(stream);
                            continue;
                        }
                        let (kick, kicked) = oneshot::channel::<()>();
                        self.waiters.push_back(kick);
                        self.waiters.retain(|w| !w.is_closed());
                        self.waiting.spawn(async move {
                            let sent = tokio::select! {
                                ready = tokio::time::timeout(ADMISSION_WAIT, stream.readable()) => matches!(ready, Ok(Ok(()))),
                                _ = kicked => false,
                            };
                            (stream, sent)
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(cause = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(admitted) = self.waiting.join_next(), if !self.waiting.is_empty() => {
                    if let Ok((stream, sent)) = admitted {
                        if sent && (self.live.len() < max_connections || close_oldest_idle(&mut self.live)) {
                            self.serve(stream);
                        } else {
                            (self.refuse)(stream);
                        }
                    }
                }
                Some(ended) = self.connections.join_next_with_id(), if !self.connections.is_empty() => {
                    let id = match ended {
                        Ok((id, ())) => id,
                        Err(e) => e.id(),
                    };
                    self.live.remove(&id);
                }
            }
        }
    }

    /// Stop accepting (the socket is closed, waiting connections dropped);
    /// the connections being served go on, to be [`Draining::drain`]ed.
    pub fn stop(self) -> Draining {
        let Listener {
            listener,
            mut waiting,
            connections,
            ..
        } = self;
        waiting.abort_all();
        drop(listener);
        Draining { connections }
    }

    fn serve(&mut self, stream: UnixStream) {
        let (serving, activity) = (self.serve)(stream);
        let handle = self.connections.spawn(serving);
        self.live.insert(handle.id(), (handle, activity));
    }
}

/// The connections still being served after the listener stopped.
pub struct Draining {
    connections: JoinSet<()>,
}

impl Draining {
    /// How many are still being served.
    pub fn len(&self) -> usize {
        self.connections.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Wait up to `grace` for them to end, then close those left.
    pub async fn drain(mut self, grace: Duration) {
        let drained = tokio::time::timeout(grace, async {
            while self.connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = self.connections.len(),
                "connections still open after the grace period; closing them"
            );
            self.connections.abort_all();
        }
    }
}

/// Close the connection that has been idle longest to make room for a new
/// one; false if every connection is busy with a request. A caller's
/// connection is idle only between accept and its request being read, and
/// it is then the youngest: every idle connection held longer goes first.
fn close_oldest_idle(live: &mut Live) -> bool {
    let oldest = live
        .iter()
        .filter_map(|(id, (_, activity))| Some((activity.idle_since()?, *id)))
        .min();
    let Some((_, id)) = oldest else {
        return false;
    };
    if let Some((handle, _)) = live.remove(&id) {
        handle.abort();
    }
    tracing::debug!("closed the longest idle connection to serve a new one");
    true
}
