//! The proxy: an accept loop and, per connection, one pump each way applying the toxics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::toxics::{ToxicError, Toxics};

/// How long the proxy waits to connect upstream before closing the client's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read at a time.
const CHUNK: usize = 16 * 1024;

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Stats {
    /// Client connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Bytes forwarded client → upstream.
    pub bytes_up: u64,
    /// Bytes forwarded upstream → client.
    pub bytes_down: u64,
    /// Connections reset by `reset-after`.
    pub resets: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    resets: AtomicU64,
}

struct Shared {
    toxics: RwLock<Toxics>,
    /// Bumped on every change, so that open connections see `enabled = false` at once.
    changed: watch::Sender<u64>,
    counters: Counters,
}

/// A handle on a proxy's toxics and counters: what the admin API holds. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("toxics", &self.toxics())
            .finish_non_exhaustive()
    }
}

impl Control {
    /// The toxics in force.
    pub fn toxics(&self) -> Toxics {
        *self
            .shared
            .toxics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the toxics; they apply to open connections from their next chunk.
    ///
    /// # Errors
    /// [`ToxicError`]: nothing changes.
    pub fn set(&self, toxics: Toxics) -> Result<(), ToxicError> {
        toxics.validate()?;
        *self
            .shared
            .toxics
            .write()
            .unwrap_or_else(PoisonError::into_inner) = toxics;
        self.shared.changed.send_modify(|n| *n += 1);
        tracing::info!(?toxics, "toxics set");
        Ok(())
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            accepted: c.accepted.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
            resets: c.resets.load(Ordering::Relaxed),
        }
    }
}

/// A running proxy from its listening address to `upstream`. Dropping it stops the accept
/// loop and closes every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    control: Control,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Listens on `listener` and forwards each connection to `upstream` (on the current
    /// tokio runtime).
    ///
    /// # Errors
    /// The listener's address cannot be read.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let addr = listener.local_addr()?;
        let control = Control {
            shared: Arc::new(Shared {
                toxics: RwLock::new(Toxics::default()),
                changed: watch::channel(0).0,
                counters: Counters::default(),
            }),
        };
        let task = tokio::spawn(accept_loop(listener, upstream, control.clone()));
        Ok(FaultProxy {
            addr,
            upstream,
            control,
            task,
        })
    }

    /// Binds `listen` and starts, like [`FaultProxy::start`].
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        FaultProxy::start(TcpListener::bind(listen).await?, upstream)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections go.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The toxics and counters.
    pub fn control(&self) -> &Control {
        &self.control
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept loop owns the connections' JoinSet: aborting it aborts them all.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, control: Control) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    control.shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let control = control.clone();
                    connections.spawn(async move {
                        control.shared.counters.active.fetch_add(1, Ordering::Relaxed);
                        let outcome = connection(client, upstream, &control).await;
                        control.shared.counters.active.fetch_sub(1, Ordering::Relaxed);
                        tracing::debug!(%peer, ?outcome, "connection ended");
                    });
                }
                Err(err) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    Closed,
    Disabled,
    Reset,
    UpstreamUnreachable,
    Io,
}

async fn connection(mut client: TcpStream, upstream: SocketAddr, control: &Control) -> End {
    let mut changes = control.shared.changed.subscribe();
    if !control.toxics().enabled {
        return End::Disabled;
    }
    let mut server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
    {
        Ok(Ok(server)) => server,
        _ => return End::UpstreamUnreachable,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let end = {
        // Borrowed halves: dropping them closes nothing, so a reset below is a bare RST.
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let carried = AtomicU64::new(0);
        let up = pump(client_read, server_write, false, control, &carried);
        let down = pump(server_read, client_write, true, control, &carried);
        let disabled = async {
            while changes.changed().await.is_ok() {
                if !control.toxics().enabled {
                    return;
                }
            }
            std::future::pending::<()>().await;
        };
        tokio::pin!(up, down, disabled);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let pumped = tokio::select! {
                p = &mut up, if !up_done => { up_done = true; p }
                p = &mut down, if !down_done => { down_done = true; p }
                () = &mut disabled => break End::Disabled,
            };
            match pumped {
                Pump::Eof if up_done && down_done => break End::Closed,
                Pump::Eof => {}
                Pump::Reset => break End::Reset,
                Pump::Io => break End::Io,
            }
        }
    };
    if matches!(end, End::Reset) {
        // Zero linger: closing sends RST both ways instead of FIN.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
        control
            .shared
            .counters
            .resets
            .fetch_add(1, Ordering::Relaxed);
    }
    end
}

/// How one direction ended.
enum Pump {
    Eof,
    Reset,
    Io,
}

async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    downstream: bool,
    control: &Control,
    carried: &AtomicU64,
) -> Pump {
    let counters = &control.shared.counters;
    let forwarded = if downstream {
        &counters.bytes_down
    } else {
        &counters.bytes_up
    };
    let mut buf = vec![0u8; CHUNK];
    let mut random = Xorshift::new(if downstream { 0x9e37_79b9 } else { 0x85eb_ca6b });
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return Pump::Eof;
            }
            Ok(n) => n,
            Err(_) => return Pump::Io,
        };
        let toxics = control.toxics();
        if toxics.blackhole {
            continue;
        }
        let mut chunk = &buf[..n];
        let mut reset = false;
        if let Some(limit) = toxics.reset_after {
            let before = carried.fetch_add(n as u64, Ordering::Relaxed);
            if before + n as u64 >= limit {
                let allowed = limit.saturating_sub(before).min(n as u64) as usize;
                chunk = &chunk[..allowed];
                reset = true;
            }
        }
        if downstream {
            let delay = toxics.delay(random.next_unit());
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        let written = match (downstream, toxics.bandwidth) {
            (true, Some(rate)) => throttled_write(&mut to, chunk, rate).await,
            _ => to.write_all(chunk).await,
        };
        if written.is_err() {
            return Pump::Io;
        }
        forwarded.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if reset {
            let _ = to.flush().await;
            return Pump::Reset;
        }
    }
}

/// Writes `chunk` at `rate` bytes a second, in slices of a fiftieth of a second.
async fn throttled_write(to: &mut WriteHalf<'_>, chunk: &[u8], rate: u64) -> std::io::Result<()> {
    let slice = usize::try_from(rate / 50).unwrap_or(usize::MAX).max(1);
    for piece in chunk.chunks(slice) {
        tokio::time::sleep(Duration::from_secs_f64(piece.len() as f64 / rate as f64)).await;
        to.write_all(piece).await?;
    }
    Ok(())
}

/// Jitter's randomness: no need for a cryptographic or even a seeded-from-OS generator.
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Xorshift {
        Xorshift(seed | 1)
    }

    /// Uniform in [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
