//! An application's state directory, `<state.dir>/<application.id>`: the
//! lock that keeps it to one process, the process-id file, and durable
//! atomic file writes for it and the checkpoints.
//!
//! As in Kafka Streams' `StateDirectory`, a running instance holds a lock
//! on `.lock` in the directory: a second instance of the application on
//! the same `state.dir` would share (and corrupt) its stores and, under
//! exactly-once, its transactional ids, so it is refused at start. The
//! lock is an advisory `flock`, which the kernel drops when its holder
//! exits, however it exits, so a crashed instance leaves no stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use streams_core::error::{Result, StreamsError};

/// The lock file in an application's state directory.
pub(crate) const LOCK_FILE: &str = ".lock";

/// The file in an application's state directory that names its process.
pub const PROCESS_METADATA_FILE: &str = "kafka-streams-process-metadata";

/// Exclusive use of an application's state directory, until dropped.
#[derive(Debug)]
pub(crate) struct StateDirLock {
    /// Held open: closing it releases the lock.
    _file: File,
}

impl StateDirLock {
    /// Creates `dir` if needed and locks it, or fails with an error that
    /// names the directory when another instance holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<StateDirLock> {
        std::fs::create_dir_all(dir).map_err(|source| StreamsError::Io {
            action: format!("creating {}", dir.display()),
            source,
        })?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StreamsError::Io {
                action: format!("opening {}", path.display()),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(StateDirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StreamsError::InvalidState(format!(
                "state directory {} is locked by another instance of this application \
                 (the lock is {}): only one instance may use a state directory at a time; \
                 stop the other one, or give each instance its own state.dir",
                dir.display(),
                path.display()
            ))),
            Err(TryLockError::Error(source)) => Err(StreamsError::Io {
                action: format!("locking {}", path.display()),
                source,
            }),
        }
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or
/// the new one, and the new one survives a power loss once this returns:
/// a temporary file beside it is written and fsynced, renamed over `path`,
/// and the directory is fsynced so the rename itself is durable.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp: PathBuf = dir.join(tmp_name);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// This instance's process id, kept in the state directory (as Kafka
/// Streams keeps it) so that a restarted instance has the same
/// transactional ids and fences a zombie predecessor. A missing or
/// unreadable file gets a new id, written durably.
pub(crate) fn process_id(state_dir: &Path) -> Result<String> {
    let path = state_dir.join(PROCESS_METADATA_FILE);
    let stored = std::fs::read(&path).ok().and_then(|bytes| {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()?
            .get("processId")?
            .as_str()
            .filter(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            .map(str::to_owned)
    });
    if let Some(id) = stored {
        return Ok(id);
    }
    let id = format!("{:016x}{:016x}", random_u64(), random_u64());
    let json = serde_json::json!({ "processId": id }).to_string();
    write_atomically(&path, json.as_bytes()).map_err(|source| StreamsError::Io {
        action: format!("writing {}", path.display()),
        source,
    })?;
    Ok(id)
}

/// A random number from the standard library's randomly keyed hasher.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_state_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        let first = StateDirLock::acquire(&app).unwrap();
        // flock locks conflict between two opens even in one process, as
        // they do between two processes.
        let error = StateDirLock::acquire(&app).unwrap_err().to_string();
        assert!(
            error.contains("locked by another instance")
                && error.contains(&app.display().to_string()),
            "{error}"
        );
        // Another application's directory is its own.
        let _other = StateDirLock::acquire(&dir.path().join("other")).unwrap();
        drop(first);
        StateDirLock::acquire(&app).unwrap();
    }

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f"]);
    }

    #[test]
    fn the_process_id_is_kept_and_a_corrupt_file_gets_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let id = process_id(dir.path()).unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(process_id(dir.path()).unwrap(), id, "read back");
        std::fs::write(dir.path().join(PROCESS_METADATA_FILE), "{\"processId\":").unwrap();
        let new = process_id(dir.path()).unwrap();
        assert_ne!(new, id);
        assert_eq!(process_id(dir.path()).unwrap(), new);
    }
}
