//! `gauntlet-faultproxy`: a small TCP fault proxy between any two processes, Toxiproxy-like.
//!
//! A [`FaultProxy`] forwards each connection it accepts to one upstream address, applying
//! the [`Toxics`] in force: latency and jitter, a bandwidth limit, a blackhole (connections
//! open, no byte through), a reset after N bytes, or closing everything (`enabled = false`).
//! Toxics change at run time through [`Control`], which the admin HTTP API ([`admin::router`])
//! serves on a loopback port; the `gauntlet-faultproxy` binary runs both.
//!
//! ```
//! use std::time::Duration;
//! use gauntlet_faultproxy::{FaultProxy, Toxics};
//! use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! // An upstream that answers "pong" to anything.
//! let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream_addr = upstream.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((mut s, _)) = upstream.accept().await {
//!         let mut buf = [0u8; 4];
//!         let _ = s.read_exact(&mut buf).await;
//!         let _ = s.write_all(b"pong").await;
//!     }
//! });
//! let proxy = FaultProxy::bind("127.0.0.1:0".parse()?, upstream_addr).await?;
//! proxy.control().set(Toxics { latency: Duration::from_millis(50), ..Toxics::default() })?;
//!
//! let started = std::time::Instant::now();
//! let mut client = tokio::net::TcpStream::connect(proxy.addr()).await?;
//! client.write_all(b"ping").await?;
//! let mut reply = [0u8; 4];
//! client.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"pong");
//! assert!(started.elapsed() >= Duration::from_millis(50));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod admin;
mod proxy;
mod toxics;

pub use crate::proxy::{Control, FaultProxy, Stats};
pub use crate::toxics::{MAX_BANDWIDTH, MAX_DELAY, ToxicError, Toxics};
