//! Records the git commit the `gauntlet` binary was built from, so every report
//! can name it. Outside a git checkout the commit is simply unknown.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    // `--no-optional-locks`: a plain `git status` refreshes and rewrites the index it finds
    // stale (always, in a fresh clone), and the index is watched below, so the next build
    // would rebuild this crate for nothing.
    let dirty = Command::new("git")
        .args(["--no-optional-locks", "status", "--porcelain"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    let value = if commit.is_empty() {
        String::new()
    } else if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    };
    println!("cargo:rustc-env=GAUNTLET_GIT_COMMIT={value}");
    // Rebuild when HEAD moves or the index changes (commit, checkout, add), and when any
    // source of the workspace changes, so that an edit makes the commit read `-dirty`.
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        && out.status.success()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        println!("cargo:rerun-if-changed={dir}/refs/heads");
    }
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .output()
        && out.status.success()
    {
        let top = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // Directories are scanned recursively by cargo.
        for part in [
            "Cargo.toml",
            "Cargo.lock",
            "engine",
            "fixtures",
            "gauntlet",
            "harness",
            "reports",
            "suites",
        ] {
            println!("cargo:rerun-if-changed={top}/{part}");
        }
    }
}
