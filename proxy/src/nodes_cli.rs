//! `clawguard nodes list | pending | show ID | approve ID [--commands …] | revoke ID [--json]`:
//! the operator's view of the node pin store.

use crate::{config, pin_file};
use anyhow::{bail, Context};
use clawguard_filters::nodes::{NodeRecord, PinStore, Surface};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `clawguard nodes`.
#[derive(clap::Args)]
pub struct Args {
    /// Policy file (default: the embedded policy); it names the store (`nodes.store`).
    #[arg(long, global = true)]
    policy: Option<PathBuf>,
    /// The store file, instead of the policy's.
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Every known node, its pin and any pending request.
    List,
    /// Nodes whose declared commands go beyond their pin.
    Pending,
    /// One node in full.
    Show {
        /// The node's device id.
        id: String,
    },
    /// Approve a node: its pending request, or exactly `--commands`.
    Approve {
        /// The node's device id.
        id: String,
        /// The commands to approve (comma-separated); default: what the node requested.
        #[arg(long, value_delimiter = ',')]
        commands: Option<Vec<String>>,
    },
    /// Revoke a node's pin: nothing is invocable on it until approved again.
    Revoke {
        /// The node's device id.
        id: String,
    },
}

fn line(id: &str, r: &NodeRecord) -> String {
    let join = |s: &std::collections::BTreeSet<String>| if s.is_empty() { "-".to_string() } else { s.iter().cloned().collect::<Vec<_>>().join(",") };
    let pinned = r.pin.as_ref().map(|p| join(&p.surface.commands)).unwrap_or_else(|| "(not approved)".into());
    let pending = r.pending.as_ref().map(|p| join(&p.declared.beyond(&r.pin.as_ref().map(|p| p.surface.clone()).unwrap_or_default()).commands)).unwrap_or_else(|| "-".into());
    format!("{id}  {}  {}  pinned: {pinned}  pending: {pending}", r.display_name.as_deref().unwrap_or("-"), r.platform.as_deref().unwrap_or("-"))
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = config::load(args.policy.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let nodes = &cfg.policy.policy.nodes;
    let base = args.policy.as_deref().and_then(|p| p.parent()).map(PathBuf::from).unwrap_or_default();
    let path = args.store.clone().unwrap_or_else(|| pin_file::store_path(&base, &nodes.store));
    let mut out = std::io::stdout();
    let now_ms = crate::shared::now_ms();
    let who = format!("clawguard nodes approve ({})", std::env::var("USER").unwrap_or_else(|_| "cli".into()));
    match args.action {
        Action::List | Action::Pending => {
            let store = pin_file::load(&path)?;
            let pending_only = matches!(args.action, Action::Pending);
            let chosen: Vec<(&String, &NodeRecord)> = store.nodes.iter().filter(|(_, r)| !pending_only || r.pending.is_some()).collect();
            if args.json {
                let map: std::collections::BTreeMap<_, _> = chosen.into_iter().collect();
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&map)?);
            } else if chosen.is_empty() {
                let _ = writeln!(out, "{}", if pending_only { "no pending node requests" } else { "no nodes in the pin store" });
            } else {
                for (id, r) in chosen {
                    let _ = writeln!(out, "{}", line(id, r));
                }
            }
        }
        Action::Show { id } => {
            let store = pin_file::load(&path)?;
            let r = store.nodes.get(&id).with_context(|| format!("no node {id:?} in {}", path.display()))?;
            if args.json {
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(r)?);
            } else {
                let _ = writeln!(out, "{}", line(&id, r));
                if let Some(p) = &r.pin {
                    let _ = writeln!(out, "  approved by {} at {} ms; caps {:?}; permissions {:?}", p.approved_by, p.approved_at_ms, p.surface.caps, p.surface.permissions);
                }
                if let Some(p) = &r.pending {
                    let _ = writeln!(out, "  pending since {} ms (last seen {} ms): {:?}", p.first_seen_ms, p.last_seen_ms, p.declared.commands);
                }
            }
        }
        Action::Approve { id, commands } => {
            // Read-modify-write under the store's lock: a running proxy's changes are kept.
            let _guard = pin_file::Locked::acquire(&path)?;
            let mut store: PinStore = pin_file::load(&path)?;
            let surface = match commands {
                None => None,
                Some(list) => {
                    let r = store.nodes.get(&id).with_context(|| format!("no node {id:?} in {}", path.display()))?;
                    let base = r.pending.as_ref().map(|p| p.declared.clone()).or_else(|| r.pin.as_ref().map(|p| p.surface.clone())).unwrap_or_default();
                    Some(Surface { commands: list.into_iter().collect(), ..base })
                }
            };
            if let Some(s) = &surface {
                let policy = clawguard_filters::nodes::NodePolicy::new(nodes);
                if let Some((bad, why)) = s.commands.iter().find_map(|c| policy.denies(c).map(|why| (c, why))) {
                    bail!("{bad} is refused to every node by the policy ({why}): no node may have it");
                }
            }
            let pin = store.approve(&id, surface, &who, now_ms).map_err(anyhow::Error::msg)?.clone();
            pin_file::save(&path, &store)?;
            let _ = writeln!(out, "approved {id}: {}", pin.surface.commands.iter().cloned().collect::<Vec<_>>().join(","));
        }
        Action::Revoke { id } => {
            let _guard = pin_file::Locked::acquire(&path)?;
            let mut store: PinStore = pin_file::load(&path)?;
            store.revoke(&id, now_ms).map_err(anyhow::Error::msg)?;
            pin_file::save(&path, &store)?;
            let _ = writeln!(out, "revoked {id}: nothing is invocable on it until it is approved again; a running clawguard closes its connection");
        }
    }
    Ok(())
}
