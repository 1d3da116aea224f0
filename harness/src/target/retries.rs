//! Who used a pooled connection last, so a request that fails on a connection the server had
//! already dropped is retried once and the retry is reported with the exchange that came
//! before it on that connection.
//!
//! Some servers close a kept-alive connection right after their own 500 (MLServer did); the
//! next request sent on it fails before any byte of a reply, and without this the failure was
//! charged to whichever innocent case sent it. The case a request belongs to comes from a
//! task-local label the runner sets around each case ([`with_case`]); connections are told
//! apart by their local address (`hyper_util`'s `HttpInfo`, on responses and on errors alike).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use gauntlet_reports::{Section, Table};
use hyper_util::client::legacy::connect::HttpInfo;

/// Connections whose last exchange is remembered; older ones are forgotten first.
const MAX_CONNECTIONS: usize = 1024;
/// Retries kept for the report; past this they are counted only.
const MAX_RETRIES: usize = 256;

tokio::task_local! {
    static CASE: Arc<str>;
}

/// Runs `future` as the work of case `id`: requests it sends through an [`super::HttpTarget`]
/// are attributed to that case in [`ConnectionRetry`] notes. Tasks it spawns are not.
pub fn with_case<F: Future>(id: impl Into<Arc<str>>, future: F) -> impl Future<Output = F::Output> {
    CASE.scope(id.into(), future)
}

/// The case the current task works for, if a runner said so.
pub(crate) fn current_case() -> Option<Arc<str>> {
    CASE.try_with(Arc::clone).ok()
}

/// One request and the status it was answered with, on some connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The case that sent it; `None` outside any case (the connect probe, a suite's set-up).
    pub case: Option<String>,
    /// `METHOD path`.
    pub request: String,
    /// The status it was answered with.
    pub status: u16,
}

impl Exchange {
    fn describe(&self) -> String {
        format!(
            "{} by {} answered {}",
            self.request,
            self.case
                .as_deref()
                .unwrap_or("no case (connect or set-up)"),
            self.status
        )
    }
}

/// A request that failed on a reused connection before any byte of a reply, and went once
/// more on a fresh connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRetry {
    /// The case whose request it was.
    pub case: Option<String>,
    /// `METHOD path`.
    pub request: String,
    /// How the first attempt failed.
    pub error: String,
    /// The last exchange on the connection it failed on: the likely cause of the reset.
    /// `None` when the connection is not known (no local address was reported).
    pub after: Option<Exchange>,
    /// How the retry ended: `answered 200` or `failed again: …`.
    pub outcome: String,
}

impl ConnectionRetry {
    /// One line for the terminal and the report.
    pub fn describe(&self) -> String {
        format!(
            "{} of {} failed on a reused connection ({}) and was retried on a fresh one: {}; \
             the exchange before it on that connection: {}",
            self.request,
            self.case.as_deref().unwrap_or("no case"),
            self.error,
            self.outcome,
            self.after
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), Exchange::describe)
        )
    }
}

/// The retries of a target so far: what [`super::Target::connection_retries`] gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retries {
    /// The first 256, in order.
    pub listed: Vec<ConnectionRetry>,
    /// How many more happened.
    pub unlisted: usize,
}

#[derive(Debug, Default)]
struct Inner {
    last: HashMap<SocketAddr, Exchange>,
    order: VecDeque<SocketAddr>,
    retries: Vec<ConnectionRetry>,
    uncounted: usize,
}

/// The last exchange of each pooled connection, and the retries so far. Shared by the clones
/// of a target, which share its connection pool.
#[derive(Debug, Default)]
pub(crate) struct ConnectionLog {
    inner: Mutex<Inner>,
}

impl ConnectionLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that the connection at local address `local` carried `exchange`.
    pub(crate) fn record(&self, local: SocketAddr, exchange: Exchange) {
        let mut inner = self.lock();
        if inner.last.insert(local, exchange).is_none() {
            inner.order.push_back(local);
            while inner.order.len() > MAX_CONNECTIONS {
                if let Some(old) = inner.order.pop_front() {
                    inner.last.remove(&old);
                }
            }
        }
    }

    /// The last exchange on the connection at `local`, forgotten (the connection is dead).
    pub(crate) fn take(&self, local: SocketAddr) -> Option<Exchange> {
        let mut inner = self.lock();
        let found = inner.last.remove(&local);
        if found.is_some() {
            inner.order.retain(|a| *a != local);
        }
        found
    }

    /// Keeps a retry for the report.
    pub(crate) fn retried(&self, retry: ConnectionRetry) {
        tracing::info!(note = %retry.describe(), "request retried on a fresh connection");
        let mut inner = self.lock();
        if inner.retries.len() < MAX_RETRIES {
            inner.retries.push(retry);
        } else {
            inner.uncounted += 1;
        }
    }

    /// The retries so far.
    pub(crate) fn retries(&self) -> Retries {
        let inner = self.lock();
        Retries {
            listed: inner.retries.clone(),
            unlisted: inner.uncounted,
        }
    }
}

/// The local address of the connection a response came on or an error happened on.
pub(crate) fn local_addr_of_extensions(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions.get::<HttpInfo>().map(HttpInfo::local_addr)
}

/// The local address of the connection `error` happened on, from the client error in its
/// chain (hyper-util records the connection's info on send errors).
pub(crate) fn local_addr_of_error(error: &(dyn std::error::Error + 'static)) -> Option<SocketAddr> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(c) = cause {
        if let Some(client) = c.downcast_ref::<hyper_util::client::legacy::Error>()
            && let Some(connected) = client.connect_info()
        {
            let mut extensions = http::Extensions::new();
            connected.get_extras(&mut extensions);
            return local_addr_of_extensions(&extensions);
        }
        cause = c.source();
    }
    None
}

/// The report section listing `retries`; `None` when there were none.
pub fn section(retries: &Retries) -> Option<Section> {
    let more = retries.unlisted;
    let retries = &retries.listed;
    if retries.is_empty() && more == 0 {
        return None;
    }
    let mut section = Section::new(
        "gauntlet.connection-retries",
        "Requests retried on a fresh connection",
        crate::skips::RUN_SUITE,
    );
    section.notes.push(
        "Each request below failed on a kept-alive connection before any byte of a reply (the \
         server had closed or reset it) and was sent once more on a fresh connection; a second \
         failure is the case's own. The exchange before it on that connection is the likely \
         cause: a server that drops its connection after its own error answers that request, \
         not the next."
            .to_owned(),
    );
    if more > 0 {
        section.notes.push(format!(
            "{more} further retries were counted but not listed."
        ));
    }
    section.tables.push(Table {
        title: "Retries".to_owned(),
        columns: [
            "case",
            "request",
            "first attempt",
            "retry",
            "previous exchange on that connection (case, request, status)",
        ]
        .map(str::to_owned)
        .to_vec(),
        rows: retries
            .iter()
            .map(|r| {
                vec![
                    r.case.clone().unwrap_or_else(|| "-".to_owned()),
                    r.request.clone(),
                    r.error.clone(),
                    r.outcome.clone(),
                    r.after
                        .as_ref()
                        .map_or_else(|| "unknown".to_owned(), Exchange::describe),
                ]
            })
            .collect(),
    });
    Some(section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_case_label_is_scoped_to_its_task() {
        assert_eq!(current_case(), None);
        let inside = with_case("conformance::a", async { current_case() }).await;
        assert_eq!(inside.as_deref(), Some("conformance::a"));
        assert_eq!(current_case(), None);
    }

    #[test]
    fn the_log_is_bounded_and_forgets_a_dead_connection() {
        let log = ConnectionLog::default();
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let exchange = |status| Exchange {
            case: None,
            request: "GET /".to_owned(),
            status,
        };
        for port in 0..(MAX_CONNECTIONS as u16 + 10) {
            log.record(addr(port), exchange(200));
        }
        assert_eq!(log.lock().last.len(), MAX_CONNECTIONS);
        assert_eq!(log.take(addr(0)), None, "the oldest were forgotten");
        let last = addr(MAX_CONNECTIONS as u16 + 9);
        log.record(last, exchange(500));
        assert_eq!(log.take(last).map(|e| e.status), Some(500));
        assert_eq!(log.take(last), None, "taken once");
    }
}
