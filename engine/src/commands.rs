//! `gauntlet-engine keys …` and `gauntlet-engine artifact …`: keyring and artifact
//! encryption commands (the binary's only subcommands; with none, the engine serves).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use gauntlet_engine::ModelArtifact;
use gauntlet_engine::security::envelope::{self, Expect};
use gauntlet_engine::security::keyring::{KeyState, Keyring};

/// Subcommands of the binary.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage the KEK keyring: add → primary → (artifact rewrap) → retire.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Encrypt, decrypt or rewrap model artifacts under the keyring.
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// Create admin credentials: append a key to an admin keys file and print its secret once.
    AdminKey(AdminKeyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct KeyringArg {
    /// Keyring file (TOML, mode 0600; created by `keys add` if missing).
    #[arg(long, env = "GAUNTLET_ENGINE_KEYRING", value_name = "FILE")]
    keyring: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Add a fresh random key (the first key becomes primary).
    Add {
        #[command(flatten)]
        keyring: KeyringArg,
        /// Key id, `[A-Za-z0-9_.-]{1,64}`.
        #[arg(long)]
        id: String,
        /// Make it the primary at once.
        #[arg(long)]
        primary: bool,
    },
    /// Make a key the primary: new artifacts and rewraps use it.
    Primary {
        #[command(flatten)]
        keyring: KeyringArg,
        /// Key id.
        #[arg(long)]
        id: String,
    },
    /// Retire a key: erase its material; artifacts still under it are refused from then on.
    Retire {
        #[command(flatten)]
        keyring: KeyringArg,
        /// Key id.
        #[arg(long)]
        id: String,
    },
    /// List the keys: id, state, primary, uses.
    List {
        #[command(flatten)]
        keyring: KeyringArg,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ArtifactCommand {
    /// Encrypt a plain artifact under the primary key (counts one use of it).
    Encrypt {
        #[command(flatten)]
        keyring: KeyringArg,
        /// Plain artifact (JSON).
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Encrypted artifact to write (conventionally `<model>.enc`).
        #[arg(long = "out", value_name = "FILE")]
        output: PathBuf,
    },
    /// Decrypt and verify an encrypted artifact.
    Decrypt {
        #[command(flatten)]
        keyring: KeyringArg,
        /// Encrypted artifact.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Plain artifact to write (mode 0600).
        #[arg(long = "out", value_name = "FILE")]
        output: PathBuf,
        /// Refuse unless the artifact is this model.
        #[arg(long)]
        name: Option<String>,
        /// Refuse unless the artifact is this version.
        #[arg(long)]
        version: Option<String>,
    },
    /// Rewrap encrypted artifacts in place under the primary key (content untouched).
    Rewrap {
        #[command(flatten)]
        keyring: KeyringArg,
        /// Encrypted artifacts.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RoleArg {
    Viewer,
    Operator,
    Approver,
    Auditor,
}

#[derive(Debug, Args)]
pub(crate) struct AdminKeyArgs {
    /// Admin keys file (TOML, mode 0600; created if missing).
    #[arg(long, env = "GAUNTLET_ENGINE_ADMIN_KEYS", value_name = "FILE")]
    file: PathBuf,
    /// Key id sent as `x-gauntlet-key-id`.
    #[arg(long)]
    id: String,
    /// Principal name recorded with each call.
    #[arg(long)]
    principal: String,
    /// Role.
    #[arg(long, value_enum)]
    role: RoleArg,
}

pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keys(k) => keys(k),
        Command::Artifact(a) => artifact(a),
        Command::AdminKey(a) => admin_key(&a),
    }
}

fn load_or_new(path: &Path) -> anyhow::Result<Keyring> {
    if path.exists() {
        Ok(Keyring::load(path)?)
    } else {
        Ok(Keyring::new())
    }
}

fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Add {
            keyring,
            id,
            primary,
        } => {
            let mut ring = load_or_new(&keyring.keyring)?;
            ring.add_random(&id)?;
            if primary {
                ring.set_primary(&id)?;
            }
            ring.save(&keyring.keyring)?;
            println!(
                "added key {id}{}",
                if ring.primary() == Some(id.as_str()) {
                    " (primary)"
                } else {
                    ""
                }
            );
        }
        KeysCommand::Primary { keyring, id } => {
            let mut ring = Keyring::load(&keyring.keyring)?;
            ring.set_primary(&id)?;
            ring.save(&keyring.keyring)?;
            println!("key {id} is primary; rewrap artifacts under older keys before retiring them");
        }
        KeysCommand::Retire { keyring, id } => {
            let mut ring = Keyring::load(&keyring.keyring)?;
            ring.retire(&id)?;
            ring.save(&keyring.keyring)?;
            println!("key {id} retired");
        }
        KeysCommand::List { keyring } => {
            let ring = Keyring::load(&keyring.keyring)?;
            println!(
                "{:<24} {:<8} {:<8} {:>12} (max-uses {})",
                "id",
                "state",
                "primary",
                "uses",
                ring.max_uses()
            );
            for k in ring.list() {
                let state = match k.state {
                    KeyState::Active => "active",
                    KeyState::Retired => "retired",
                };
                println!(
                    "{:<24} {:<8} {:<8} {:>12}",
                    k.id,
                    state,
                    if k.primary { "yes" } else { "" },
                    k.uses
                );
            }
        }
    }
    Ok(())
}

fn artifact(command: ArtifactCommand) -> anyhow::Result<()> {
    match command {
        ArtifactCommand::Encrypt {
            keyring,
            input,
            output,
        } => {
            let mut ring = Keyring::load(&keyring.keyring)?;
            let plain = std::fs::read(&input)
                .with_context(|| format!("failed to read `{}`", input.display()))?;
            let artifact = ModelArtifact::from_json(&plain)
                .with_context(|| format!("`{}` is not a valid artifact", input.display()))?;
            let sealed = envelope::encrypt(&mut ring, &artifact.name, &artifact.version, &plain)?;
            // The use is counted before the artifact exists, so a crash cannot under-count.
            ring.save(&keyring.keyring)?;
            std::fs::write(&output, sealed)
                .with_context(|| format!("failed to write `{}`", output.display()))?;
            println!(
                "encrypted {} version {} under key {}",
                artifact.name,
                artifact.version,
                ring.primary().unwrap_or("?")
            );
        }
        ArtifactCommand::Decrypt {
            keyring,
            input,
            output,
            name,
            version,
        } => {
            let ring = Keyring::load(&keyring.keyring)?;
            let sealed = std::fs::read(&input)
                .with_context(|| format!("failed to read `{}`", input.display()))?;
            let (header, plain) = envelope::decrypt(
                &ring,
                &sealed,
                Expect {
                    name: name.as_deref(),
                    version: version.as_deref(),
                },
            )?;
            gauntlet_engine::security::keyring::write_private(&output, &plain)
                .with_context(|| format!("failed to write `{}`", output.display()))?;
            println!(
                "decrypted {} version {} (key {})",
                header.name, header.version, header.kek_id
            );
        }
        ArtifactCommand::Rewrap { keyring, files } => {
            let mut ring = Keyring::load(&keyring.keyring)?;
            for file in &files {
                let sealed = std::fs::read(file)
                    .with_context(|| format!("failed to read `{}`", file.display()))?;
                let before = envelope::read_header(&sealed)
                    .with_context(|| format!("`{}`", file.display()))?;
                let rewrapped = envelope::rewrap(&mut ring, &sealed)
                    .with_context(|| format!("failed to rewrap `{}`", file.display()))?;
                ring.save(&keyring.keyring)?;
                gauntlet_engine::security::keyring::write_private(file, &rewrapped)
                    .with_context(|| format!("failed to write `{}`", file.display()))?;
                println!(
                    "rewrapped {} from key {} to key {}",
                    file.display(),
                    before.kek_id,
                    ring.primary().unwrap_or("?")
                );
            }
        }
    }
    Ok(())
}

fn admin_key(args: &AdminKeyArgs) -> anyhow::Result<()> {
    use base64::Engine as _;
    let mut text = if args.file.exists() {
        gauntlet_engine::security::keyring::check_private(&args.file)?;
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("failed to read `{}`", args.file.display()))?
    } else {
        String::new()
    };
    let secret = base64::engine::general_purpose::STANDARD
        .encode(gauntlet_engine::security::sign::random_secret());
    let role = match args.role {
        RoleArg::Viewer => "viewer",
        RoleArg::Operator => "operator",
        RoleArg::Approver => "approver",
        RoleArg::Auditor => "auditor",
    };
    let principal = toml::Value::String(args.principal.clone());
    text.push_str(&format!(
        "\n[[keys]]\nid = {}\nsecret = \"{secret}\"\nprincipal = {principal}\nrole = \"{role}\"\n",
        toml::Value::String(args.id.clone())
    ));
    // Parse what would be written, so a duplicate id or bad value is refused before it lands.
    gauntlet_engine::security::AdminKeys::from_toml_str(&args.file, &text)?;
    gauntlet_engine::security::keyring::write_private(&args.file, text.as_bytes())
        .with_context(|| format!("failed to write `{}`", args.file.display()))?;
    eprintln!(
        "added admin key {} ({role}); its secret, shown once:",
        args.id
    );
    println!("{secret}");
    Ok(())
}
