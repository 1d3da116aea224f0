//! Private temporary directories: where the in-process twins keep their key files and audit
//! logs, and the suites their scratch copies of them.

/// The directory [`private_temp_dir`] gives (tempfile's).
pub use tempfile::TempDir;

/// A new directory under the system's temporary directory, named `{prefix}` and a random
/// suffix, that only its owner may enter (mode 0700 on Unix: it holds keys), removed with
/// everything in it when the [`TempDir`] is dropped.
///
/// # Errors
///
/// The I/O error creating it, naming the path.
pub fn private_temp_dir(prefix: &str) -> std::io::Result<TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    builder.tempdir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_private_and_removed_with_its_files() {
        let dir = private_temp_dir("gauntlet-scratch-test-").unwrap();
        let path = dir.path().to_owned();
        assert!(
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("gauntlet-scratch-test-")),
            "{}",
            path.display()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{mode:o}");
        }
        std::fs::create_dir_all(path.join("keys")).unwrap();
        std::fs::write(path.join("keys/signing.key"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }
}
