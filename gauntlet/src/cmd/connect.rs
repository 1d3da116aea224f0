//! Flags shared by every subcommand that reaches a secured engine by URL (`run`, `audit
//! verify`): the CA to trust and the admin credentials to sign with. No value given here is
//! ever printed or reported.

use std::path::PathBuf;

use clap::Args;
use gauntlet_engine::security::sign::Credentials;

use crate::plumbing::Failure;

/// How to authenticate a secured URL target and sign admin calls to it.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// PEM file of the CA certificates an https:// target's certificate chains to; default:
    /// the system's roots.
    #[arg(long, env = "GAUNTLET_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Admin credentials file (mode 0600: `key-id`, `secret` in base64, optional `role`) to sign
    /// admin calls and audit reads with (repeatable, one per role); default:
    /// GAUNTLET_ADMIN_KEY_ID, GAUNTLET_ADMIN_SECRET and GAUNTLET_ADMIN_ROLE when set.
    #[arg(
        long = "admin-credentials",
        value_name = "FILE",
        env = "GAUNTLET_ADMIN_CREDENTIALS",
        value_delimiter = ','
    )]
    pub admin_credentials: Vec<PathBuf>,
}

impl ConnectArgs {
    /// The admin credentials, read and checked (mode 0600, well-formed); a bad file is a
    /// usage error naming it.
    pub fn admin(&self) -> Result<Vec<Credentials>, Failure> {
        gauntlet_harness::target::security::load_credentials(&self.admin_credentials)
            .map_err(|e| Failure::usage(gauntlet_harness::error_chain(&e)))
    }
}
