//! The node pin store while clawguard runs: decisions read and change it in memory; a keeper
//! thread writes every change to the file and picks up the file's changes by other processes
//! (`clawguard nodes approve|revoke`), so a running proxy follows operators within a quarter
//! of a second.
//!
//! Every write is a read-modify-write under the store's lock file: the keeper reads the file,
//! replays the changes made in memory since the last write ([`PinOp`]s), and writes the
//! result. An operator's edit made in between is therefore never overwritten. A file that
//! becomes unreadable while running keeps the last good pins in memory (never an empty
//! store) and is reported until it is fixed.

use crate::metrics;
use crate::pin_file;
use clawguard_filters::nodes::{NodePolicy, PinOp, PinStore, Pins};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often the file is checked for changes made by others.
pub const POLL: Duration = Duration::from_millis(250);

/// The pin store shared by every connection.
pub struct PersistentPins {
    store: Mutex<PinStore>,
    unsaved: Mutex<Vec<PinOp>>,
    wake: Mutex<mpsc::Sender<()>>,
    generation: watch::Sender<u64>,
    /// Where changes made by others (`clawguard nodes approve|revoke`) are recorded.
    audit: std::sync::OnceLock<Arc<crate::audit::AuditLog>>,
}

impl PersistentPins {
    /// Loads the store at `path` (a corrupt file is an error) and starts its keeper thread.
    pub fn start(path: PathBuf, policy: NodePolicy) -> anyhow::Result<Arc<PersistentPins>> {
        let store = {
            let _lock = pin_file::Locked::acquire(&path)?;
            let stale = pin_file::remove_stale_temps(&path);
            if stale > 0 {
                tracing::warn!(store = %path.display(), files = stale, "removed temporary files of node pin store writers that were killed mid-write");
            }
            pin_file::load(&path)?
        };
        publish(&store);
        let (wake_tx, wake_rx) = mpsc::channel();
        let pins = Arc::new(PersistentPins { store: Mutex::new(store), unsaved: Mutex::default(), wake: Mutex::new(wake_tx), generation: watch::channel(0).0, audit: std::sync::OnceLock::new() });
        let keeper = Keeper { pins: Arc::downgrade(&pins), stamp: pin_file::stamp(&path), path, policy, reported: None };
        std::thread::Builder::new().name("clawguard-pins".into()).spawn(move || keeper.run(wake_rx))?;
        Ok(pins)
    }

    /// Records the changes others make to the store in `audit` from now on.
    pub fn record_changes_in(&self, audit: Arc<crate::audit::AuditLog>) {
        let _ = self.audit.set(audit);
    }

    /// A receiver that changes whenever the store does (connections recheck their node).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

impl Pins for PersistentPins {
    fn read(&self, f: &mut dyn FnMut(&PinStore)) {
        f(&self.store.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn apply(&self, op: PinOp, policy: &NodePolicy) -> bool {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let changed = store.apply(&op, policy);
        if changed {
            publish(&store);
            // Under the store's lock, so the keeper sees every change it has to replay.
            self.unsaved.lock().unwrap_or_else(|e| e.into_inner()).push(op);
            let _ = self.wake.lock().unwrap_or_else(|e| e.into_inner()).send(());
            self.generation.send_modify(|g| *g += 1);
        }
        changed
    }
}

/// The store's node counts in `clawguard_node_pins{state}`.
fn publish(store: &PinStore) {
    for (state, n) in ["pinned", "pending", "revoked"].into_iter().zip(store.counts()) {
        crate::metrics::NODE_PINS.with_label_values(&[state]).set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

struct Keeper {
    pins: std::sync::Weak<PersistentPins>,
    path: PathBuf,
    policy: NodePolicy,
    stamp: Option<pin_file::Stamp>,
    /// The file state last reported as unreadable (reported once per state).
    reported: Option<Option<pin_file::Stamp>>,
}

impl Keeper {
    fn run(mut self, wake: mpsc::Receiver<()>) {
        loop {
            match wake.recv_timeout(POLL) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let Some(pins) = self.pins.upgrade() else { return };
            self.sync(&pins);
        }
    }

    /// Brings memory and file together: the file's contents plus the unsaved changes.
    fn sync(&mut self, pins: &PersistentPins) {
        let has_unsaved = !pins.unsaved.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
        let stamp = pin_file::stamp(&self.path);
        if !has_unsaved && stamp == self.stamp {
            return;
        }
        let result = (|| {
            let _lock = pin_file::Locked::acquire(&self.path)?;
            let disk = pin_file::load(&self.path)?;
            let (next, ops) = {
                let mut store = pins.store.lock().unwrap_or_else(|e| e.into_inner());
                let ops = std::mem::take(&mut *pins.unsaved.lock().unwrap_or_else(|e| e.into_inner()));
                let mut next = disk;
                for op in &ops {
                    next.apply(op, &self.policy);
                }
                if *store != next {
                    // A change this process did not make (clawguard nodes): in the audit log.
                    if ops.is_empty() {
                        if let Some(audit) = pins.audit.get() {
                            for (device, change) in changes(&store, &next) {
                                audit.record_now(clawguard_filters::surfaces::record::pin_store_change(device, change));
                            }
                        }
                    }
                    *store = next.clone();
                    publish(&store);
                    pins.generation.send_modify(|g| *g += 1);
                }
                (next, ops)
            };
            if !ops.is_empty() {
                if let Err(e) = pin_file::save(&self.path, &next) {
                    // Keep the changes for the next attempt.
                    pins.unsaved.lock().unwrap_or_else(|e| e.into_inner()).splice(0..0, ops);
                    return Err(e);
                }
            }
            // Still under the lock: a later edit by another process changes the stamp.
            Ok(pin_file::stamp(&self.path))
        })();
        match result {
            Ok(stamp) => {
                self.stamp = stamp;
                if self.reported.take().is_some() {
                    tracing::info!(store = %self.path.display(), "node pin store readable again");
                }
            }
            Err(e) if self.reported != Some(stamp) => {
                metrics::PIN_STORE_ERRORS.inc();
                tracing::error!(store = %self.path.display(), error = %format!("{e:#}"), "node pin store unreadable: keeping the last good pins in memory until it is fixed");
                self.reported = Some(stamp);
            }
            Err(_) => {}
        }
    }
}

/// What changed between two stores, per node: `approved`, `revoked`, `pending cleared`,
/// `pending`, `added`, `removed` or `changed`.
fn changes<'a>(before: &'a PinStore, after: &'a PinStore) -> Vec<(&'a str, &'static str)> {
    let devices: std::collections::BTreeSet<&String> = before.nodes.keys().chain(after.nodes.keys()).collect();
    devices
        .into_iter()
        .filter_map(|d| {
            let (b, a) = (before.nodes.get(d), after.nodes.get(d));
            let change = match (b, a) {
                (Some(b), Some(a)) if b == a => return None,
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                (Some(b), Some(a)) if b.pin != a.pin && a.pin.is_some() => "approved",
                (Some(b), Some(a)) if b.pin != a.pin => "revoked",
                (Some(b), Some(a)) if b.pending.is_some() && a.pending.is_none() => "pending cleared",
                (Some(_), Some(a)) if a.pending.is_some() => "pending",
                _ => "changed",
            };
            Some((d.as_str(), change))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawguard_filters::nodes::{NodeRecord, Pending, Pin, Surface};

    fn record(pin: bool, pending: bool) -> NodeRecord {
        let surface = Surface::default();
        NodeRecord {
            pin: pin.then(|| Pin { surface: surface.clone(), approved_by: "ops".into(), approved_at_ms: 1 }),
            pending: pending.then(|| Pending { declared: surface.clone(), first_seen_ms: 1, last_seen_ms: 1 }),
            ..NodeRecord::default()
        }
    }

    #[test]
    fn issue14_pin_store_changes_by_others_are_named_per_node() {
        let mut before = PinStore::default();
        before.nodes.insert("a".into(), record(false, true));
        before.nodes.insert("b".into(), record(true, false));
        before.nodes.insert("c".into(), record(true, false));
        let mut after = before.clone();
        after.nodes.insert("a".into(), record(true, false));
        after.nodes.insert("b".into(), record(false, false));
        after.nodes.remove("c");
        after.nodes.insert("d".into(), record(false, true));
        assert_eq!(changes(&before, &after), vec![("a", "approved"), ("b", "revoked"), ("c", "removed"), ("d", "added")]);
        assert!(changes(&before, &before).is_empty());
    }
}
