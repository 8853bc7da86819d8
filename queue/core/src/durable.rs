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

/// Atomically replace `path` with `bytes` (staged as `tmp`, then renamed).
///
/// For state files such as the heartbeat: readers see the old or the new
/// content, never a mix. The data is fsynced before the rename.
pub fn replace(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), QueueError> {
    let mut f = File::create(tmp).map_err(QueueError::io("create", tmp))?;
    f.write_all(bytes).map_err(QueueError::io("write", tmp))?;
    f.sync_all().map_err(QueueError::io("fsync", tmp))?;
    fs::rename(tmp, path).map_err(QueueError::io("rename", path))
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
    fn error_names_the_path() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("missing");
        let err = stage(&missing, root.path(), "a.json", b"x").unwrap_err();
        assert!(err.to_string().contains("missing/a.json"), "{err}");
    }
}
