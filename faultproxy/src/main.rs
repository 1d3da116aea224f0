//! `gauntlet-faultproxy --upstream ADDR [--listen ADDR] [--admin ADDR] [--exit-after DURATION]`.
//!
//! Prints `listening on PROXY_ADDR admin on ADMIN_ADDR` once both listen; stops on Ctrl-C,
//! SIGTERM or after `--exit-after`. Both addresses must be loopback: the proxy is a test tool
//! and its admin API has no authentication.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use gauntlet_faultproxy::{FaultProxy, admin};

/// A TCP fault proxy with a loopback admin HTTP API.
#[derive(Debug, Parser)]
#[command(name = "gauntlet-faultproxy", version)]
struct Args {
    /// Address connections are forwarded to.
    #[arg(long, env = "GAUNTLET_FAULTPROXY_UPSTREAM")]
    upstream: SocketAddr,
    /// Loopback address to accept connections on (port 0 picks one).
    #[arg(
        long,
        env = "GAUNTLET_FAULTPROXY_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    listen: SocketAddr,
    /// Loopback address of the admin HTTP API (port 0 picks one).
    #[arg(long, env = "GAUNTLET_FAULTPROXY_ADMIN", default_value = "127.0.0.1:0")]
    admin: SocketAddr,
    /// Stop by itself after this long (`10m`); runs until a signal when absent.
    #[arg(long, env = "GAUNTLET_FAULTPROXY_EXIT_AFTER", value_parser = humantime::parse_duration)]
    exit_after: Option<Duration>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    for (flag, addr) in [("--listen", args.listen), ("--admin", args.admin)] {
        if !addr.ip().is_loopback() {
            eprintln!("error: {flag} {addr} is not a loopback address");
            return std::process::ExitCode::from(2);
        }
    }
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(3)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn run(args: Args) -> anyhow::Result<()> {
    let proxy = FaultProxy::bind(args.listen, args.upstream)
        .await
        .with_context(|| format!("failed to bind --listen {}", args.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("failed to bind --admin {}", args.admin))?;
    let admin_addr = admin_listener.local_addr()?;
    println!("listening on {} admin on {admin_addr}", proxy.addr());
    let router = admin::router(proxy.control().clone());
    let stop = async move {
        let lifetime = async {
            match args.exit_after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return lifetime.await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            () = lifetime => {}
        }
    };
    axum::serve(admin_listener, router)
        .with_graceful_shutdown(stop)
        .await
        .context("admin server failed")?;
    drop(proxy);
    Ok(())
}
