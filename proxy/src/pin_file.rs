//! The node pin store on disk: read with a clear error (a corrupt store stops clawguard, it is
//! never taken as empty), written atomically (temporary file, fsync, rename, directory fsync).

use anyhow::Context;
use clawguard_filters::nodes::PinStore;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The store's path for a policy: `nodes.store`, relative to the policy file's directory.
pub fn store_path(policy_dir: &Path, configured: &Path) -> PathBuf {
    if configured.is_absolute() { configured.to_path_buf() } else { policy_dir.join(configured) }
}

/// Reads the store; a missing file is an empty store.
pub fn load(path: &Path) -> anyhow::Result<PinStore> {
    match std::fs::read(path) {
        Ok(bytes) => PinStore::decode(&bytes).with_context(|| format!("node pin store {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PinStore::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read node pin store {}", path.display())),
    }
}

/// What identifies one version of the file: modification time, length, inode.
pub type Stamp = (std::time::SystemTime, u64, u64);

/// The file's current stamp (`None`: no file).
pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The store's lock file: `<store>.lock`, beside it.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// The store's exclusive lock, held until dropped, so that read-modify-write cycles of the
/// proxy and of `clawguard nodes` never interleave.
pub struct Locked(std::fs::File);

impl Locked {
    /// Waits for the lock.
    pub fn acquire(path: &Path) -> anyhow::Result<Locked> {
        let lock = lock_path(path);
        if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock).with_context(|| format!("cannot open lock file {}", lock.display()))?;
        file.lock().with_context(|| format!("cannot lock {}", lock.display()))?;
        Ok(Locked(file))
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The temporary file a process writes the store through: `.<name>.<pid>.tmp`, beside it.
fn temp_path(path: &Path, pid: u32) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.join(format!(".{}.{pid}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("node-pins")))
}

/// Removes temporary files left by writers that were killed mid-write (their process is
/// gone); returns how many. Call under the store's lock.
pub fn remove_stale_temps(path: &Path) -> usize {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let prefix = format!(".{}.", path.file_name().and_then(|n| n.to_str()).unwrap_or("node-pins"));
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(".tmp")).and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Writes the store atomically: readers see the old file or the new one, never a part.
pub fn save(path: &Path, store: &PinStore) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = temp_path(path, std::process::id());
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&store.encode())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("cannot write node pin store {}", path.display())).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawguard_filters::nodes::{FirstConnect, NodePolicy, Surface};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clawguard-pins-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("pins.json")
    }

    #[test]
    fn save_then_load_and_missing_is_empty() {
        let path = temp("roundtrip");
        assert_eq!(load(&path).unwrap(), PinStore::default());
        let mut store = PinStore::default();
        let declared = Surface { commands: ["system.which".to_string()].into(), ..Surface::default() };
        let policy = NodePolicy { first_connect: FirstConnect::Trust, follow_gateway_approvals: true, deny_commands: vec![], allow_commands: vec![] };
        store.on_connect("dev", &declared, (None, None), &policy, 1);
        save(&path, &store).unwrap();
        assert_eq!(load(&path).unwrap(), store);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
        assert!(leftovers.is_empty(), "no temporary file is left behind");
    }

    #[test]
    fn issue13_temporary_files_of_dead_writers_are_removed() {
        let path = temp("stale");
        save(&path, &PinStore::default()).unwrap();
        // A pid above the kernel's maximum (4194304) is never alive.
        let dead = temp_path(&path, 4_194_305);
        std::fs::write(&dead, b"half a store").unwrap();
        let unrelated = path.with_file_name("other.json.4194305.tmp");
        std::fs::write(&unrelated, b"x").unwrap();
        assert_eq!(remove_stale_temps(&path), 1);
        assert!(!dead.exists() && unrelated.exists() && path.exists());
    }

    #[test]
    fn a_corrupt_store_is_a_clear_error() {
        let path = temp("corrupt");
        save(&path, &PinStore::default()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, &bytes).unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(err.contains(&path.display().to_string()) && err.contains("not a clawguard node pin store"), "{err}");
    }
}
