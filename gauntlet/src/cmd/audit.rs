//! `gauntlet audit verify DIR|URL`: checks an audit log offline (a directory: every frame's
//! CRC, the records' order, links and clock, every checkpoint's signature and root) or as
//! served (a URL: the latest checkpoint's signature and every record's inclusion under it),
//! and names the first bad record.
//!
//! Exit codes: 0 verified; 1 a byte changed, a record removed, reordered or rewritten, a
//! checkpoint forged; 2 usage (bad flag or key); 3 the log cannot be reached (no such
//! directory, unreadable file, URL unreachable or serving no audit log).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};

use gauntlet_compliance::remote::{self, RemoteError, RemoteOptions, Since};
use gauntlet_engine::audit::{self, KeySource, VerifyError, VerifyOptions, hex};
use gauntlet_harness::{ClientSecurity, HttpOptions, HttpTarget, TargetError};
use gauntlet_reports::ExitCode;

use crate::plumbing::{self, Failure};

/// `gauntlet audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an audit log: a directory (offline) or an engine's base URL (as served).
    Verify(VerifyArgs),
}

/// Flags of `gauntlet audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The audit directory (`audit.dir`) or the engine's base URL (`http://host:port`).
    #[arg(value_name = "DIR|URL")]
    source: String,
    /// The log's Ed25519 public key, 64 hex digits, obtained out of band; without it the key
    /// in the directory (or the one the server names) is used, and the output says so.
    #[arg(long, env = "GAUNTLET_AUDIT_PUBLIC_KEY", value_name = "HEX")]
    public_key: Option<String>,
    /// URL only: a checkpoint seen before, `SIZE:ROOT` (root in hex); the served log must
    /// extend it (RFC 6962 consistency proof).
    #[arg(long, value_name = "SIZE:ROOT")]
    since: Option<String>,
    /// URL only: deadline to connect.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    // URL only: the CA and, when the engine has admin keys, the credentials of a viewer or an
    // auditor to sign the reads with.
    #[command(flatten)]
    connect: super::connect::ConnectArgs,
}

/// Runs `gauntlet audit …`; the verdict goes to `out`, a failure to stderr.
pub fn audit(command: AuditCommand, out: &mut dyn Write) -> Result<ExitCode, Failure> {
    let AuditCommand::Verify(args) = command;
    let key = args
        .public_key
        .as_deref()
        .map(|k| {
            hex::decode32(k).map_err(|e| {
                Failure::usage(format!(
                    "--public-key: must be 64 hex digits (an Ed25519 public key): {e}"
                ))
            })
        })
        .transpose()?;
    let is_url = args.source.starts_with("http://") || args.source.starts_with("https://");
    let line = if is_url {
        verify_url(&args, key)?
    } else {
        if args.since.is_some() {
            return Err(Failure::usage(
                "--since: only for a URL (a directory is verified from its first record)",
            ));
        }
        verify_dir(Path::new(&args.source), key)?
    };
    // A closed stdout must not turn a verdict into an error.
    let _ = writeln!(out, "{line}");
    Ok(ExitCode::Success)
}

fn broken(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: ExitCode::Failed,
        message: format!("the audit log does not verify: {message}"),
    }
}

fn verify_dir(dir: &Path, key: Option<[u8; 32]>) -> Result<String, Failure> {
    if !dir.is_dir() {
        return Err(Failure::setup(format!(
            "`{}` is not a directory (nor an http:// URL)",
            dir.display()
        )));
    }
    let report =
        audit::verify_dir(dir, &VerifyOptions { public_key: key }).map_err(|e| match e {
            VerifyError::Io { .. } => Failure::setup(gauntlet_harness::error_chain(&e)),
            VerifyError::NoPublicKey { .. } | VerifyError::BadPublicKey => {
                Failure::usage(format!("{e} (pass --public-key)"))
            }
            other => broken(other),
        })?;
    let latest = report.latest_checkpoint.as_ref().map_or_else(
        || "no checkpoint yet".to_owned(),
        |c| {
            format!(
                "latest checkpoint size {} root {}",
                c.size,
                hex::encode(&c.root)
            )
        },
    );
    Ok(format!(
        "verified: {} records ({} pruned, {} after the last checkpoint) in {} segments, {} checkpoints, {latest}; key {}{}",
        report.records,
        report.pruned,
        report.unsigned_records,
        report.segments,
        report.checkpoints,
        match report.key_source {
            KeySource::Pinned => "pinned",
            KeySource::Directory => "read from the directory (pin it with --public-key)",
        },
        if report.quarantined.is_empty() {
            String::new()
        } else {
            format!("; {} torn tail(s) kept aside", report.quarantined.len())
        }
    ))
}

fn parse_since(text: &str) -> Result<Since, Failure> {
    let bad = |why: &str| Failure::usage(format!("--since {text:?}: {why}; expected SIZE:ROOT"));
    let (size, root) = text.split_once(':').ok_or_else(|| bad("no colon"))?;
    Ok(Since {
        size: size.parse().map_err(|_| bad("SIZE is not an integer"))?,
        root: hex::decode32(root).map_err(|_| bad("ROOT is not 64 hex digits"))?,
    })
}

fn verify_url(args: &VerifyArgs, key: Option<[u8; 32]>) -> Result<String, Failure> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let options = HttpOptions {
        connect_timeout: args.connect_timeout,
        ..HttpOptions::default()
    };
    let admin = args.connect.admin()?;
    let security = ClientSecurity {
        ca_file: args.connect.ca_file.clone(),
        admin,
        ..ClientSecurity::default()
    };
    let runtime = plumbing::runtime(Some(1))?;
    let report = runtime.block_on(async {
        let target = HttpTarget::connect_with(&args.source, options, security)
            .await
            .map_err(|e| match e {
                TargetError::InvalidUrl { .. } => Failure::usage(e),
                other => Failure::setup(other),
            })?;
        remote::verify_target(
            &target,
            &RemoteOptions {
                public_key: key,
                since,
            },
        )
        .await
        .map_err(|e| match e {
            RemoteError::Unreachable(_) | RemoteError::NoLog(_) => Failure::setup(e),
            other => broken(other),
        })
    })?;
    Ok(format!(
        "verified: {} records ({} pruned) prove their inclusion under the checkpoint of size {} root {}{}; key {}",
        report.proved + report.pruned,
        report.pruned,
        report.size,
        report.root,
        since.map_or_else(String::new, |s| format!(", which extends size {}", s.size)),
        if report.key_pinned {
            "pinned"
        } else {
            "named by the server (pin it with --public-key)"
        }
    ))
}
