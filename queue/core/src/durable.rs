//! The one durable-write primitive of the queue.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::QueueError;

/// Stage `bytes` as `dest_dir/name` through `tmp_dir`: written and fsynced
/// in `tmp_dir`, then hard-linked into `dest_dir` (which fails rather than
/// replace an existing name), and the staging name removed.
///
/// Guarantee: a reader never sees a partial file in `dest_dir`. The file's
/// data is durable on return; its directory entry is durable once the caller
/// has called [`sync_dir`] on `dest_dir` (one call can cover a batch: group
/// commit). On error the staging file is removed and nothing is in
/// `dest_dir`.
pub fn stage(tmp_dir: &Path, dest_dir: &Path, name: &str, bytes: &[u8]) -> Result<(), QueueError> {
    let staged = tmp_dir.join(name);
    let dest = dest_dir.join(name);
    let write = || -> Result<(), QueueError> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
            .map_err(QueueError::io("create", &staged))?;
        f.write_all(bytes)
            .map_err(QueueError::io("write", &staged))?;
        f.sync_all().map_err(QueueError::io("fsync", &staged))?;
        fs::hard_link(&staged, &dest).map_err(QueueError::io("link", &dest))
    };
    let result = write();
    // The staging name is only a handle; drop it whether or not the link worked.
    let _ = fs::remove_file(&staged);
    result
}

/// Atomically and durably replace `path` with `bytes` (staged as `tmp`,
/// then renamed over it).
///
/// For state files such as the heartbeat and a session's checkpoint:
/// readers see the old or the new content, never a mix. The data is
/// fsynced before the rename, and the directory of `path` after it (and
/// that of `tmp` when it differs, so the staging name's removal is durable
/// too), so once this returns the new content survives a crash. On error
/// before the rename, `path` keeps its old content and the staging file is
/// removed.
pub fn replace(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), QueueError> {
    let write = || -> Result<(), QueueError> {
        let mut f = File::create(tmp).map_err(QueueError::io("create", tmp))?;
        f.write_all(bytes).map_err(QueueError::io("write", tmp))?;
        f.sync_all().map_err(QueueError::io("fsync", tmp))
    };
    if let Err(e) = write() {
        // A staging file left by a failed write (a full disk, say) is
        // removed at once, so it holds no space; tmp/ is cleared at start
        // in any case.
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    fs::rename(tmp, path).map_err(QueueError::io("rename", path))?;
    let (dest_dir, tmp_dir) = (path.parent(), tmp.parent());
    if let Some(dir) = dest_dir {
        sync_dir(dir)?;
    }
    if let Some(dir) = tmp_dir.filter(|d| Some(*d) != dest_dir) {
        sync_dir(dir)?;
    }
    Ok(())
}

/// fsync a directory, making the entries created in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(QueueError::io("fsync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_never_replaces() {
        let root = tempfile::tempdir().unwrap();
        let (tmp, new) = (root.path().join("tmp"), root.path().join("new"));
        fs::create_dir(&tmp).unwrap();
        fs::create_dir(&new).unwrap();
        stage(&tmp, &new, "a.json", b"one").unwrap();
        sync_dir(&new).unwrap();
        assert_eq!(fs::read(new.join("a.json")).unwrap(), b"one");
        stage(&tmp, &new, "a.json", b"two").unwrap_err();
        assert_eq!(fs::read(new.join("a.json")).unwrap(), b"one");
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            0,
            "staging file left behind"
        );
    }

    #[test]
    fn replace_swaps_the_content_and_leaves_no_staging_file() {
        let root = tempfile::tempdir().unwrap();
        let (tmp, state) = (root.path().join("tmp"), root.path().join("state"));
        fs::create_dir(&tmp).unwrap();
        fs::create_dir(&state).unwrap();
        let (staged, path) = (tmp.join("beat"), state.join("beat"));
        replace(&staged, &path, b"one").unwrap();
        replace(&staged, &path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(!staged.exists());
        // A directory in the way: nothing staged stays behind, the old content stands.
        let blocked = state.join("dir");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"x").unwrap();
        replace(&staged, &blocked, b"three").unwrap_err();
        assert!(blocked.is_dir());
    }

    #[test]
    fn error_names_the_path() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("missing");
        let err = stage(&missing, root.path(), "a.json", b"x").unwrap_err();
        assert!(err.to_string().contains("missing/a.json"), "{err}");
    }
}
