//! Binding the Unix socket safely: parent directory, stale files, mode.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use tokio::net::UnixListener;

/// Bind `path` with file mode `mode`.
///
/// The parent directory is created if missing. An existing socket file is
/// replaced only when nothing answers on it (a stale file from a crashed
/// run); if a server answers, or the path is not a socket, binding is refused.
pub fn bind(path: &Path, mode: u32) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("create socket directory {}", parent.display()))?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => bail!(
                    "another server is already listening on {}; stop it first or set FORGE_SOCKET to another path",
                    path.display()
                ),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    fs::remove_file(path)
                        .with_context(|| format!("remove stale socket {}", path.display()))?;
                }
                Err(e) => bail!(
                    "cannot tell whether {} is in use ({e}); remove it if it is stale",
                    path.display()
                ),
            }
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => bail!("cannot inspect {}: {e}", path.display()),
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("bind socket {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("set mode {mode:o} on socket {}", path.display()))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_parent_sets_mode_and_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("s.sock");
        let live = bind(&path, 0o660).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o660
        );
        let err = bind(&path, 0o660).unwrap_err().to_string();
        assert!(err.contains("already listening"), "{err}");
        drop(live);
        // The file is still there but nobody answers: stale, so it is replaced.
        assert!(path.exists());
        bind(&path, 0o600).unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, b"x").unwrap();
        assert!(
            bind(&file, 0o660)
                .unwrap_err()
                .to_string()
                .contains("not a socket")
        );
    }
}
