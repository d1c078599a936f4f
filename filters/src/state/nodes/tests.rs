use super::*;

fn surface(commands: &[&str]) -> Surface {
    Surface { commands: commands.iter().map(|s| s.to_string()).collect(), caps: ["system".to_string()].into(), permissions: BTreeSet::new() }
}

fn policy(first: FirstConnect, deny: &[&str], follow: bool) -> NodePolicy {
    NodePolicy { first_connect: first, follow_gateway_approvals: follow, deny_commands: deny.iter().map(|g| Glob::new(g).unwrap()).collect(), allow_commands: vec![] }
}

fn pending_policy() -> NodePolicy {
    policy(FirstConnect::Pending, &[], false)
}

fn trust() -> NodePolicy {
    policy(FirstConnect::Trust, &[], false)
}

#[test]
fn pending_first_connect_allows_nothing_and_records_the_request() {
    let mut store = PinStore::default();
    let p = store.on_connect("dev", &surface(&["system.which", "system.run"]), (Some("n1"), Some("linux")), &pending_policy(), 1);
    assert!(p.allowed.commands.is_empty() && p.allowed.caps.is_empty());
    assert_eq!(p.removed.commands.len(), 2);
    assert!(p.changed);
    assert_eq!(store.nodes["dev"].pending.as_ref().unwrap().declared.commands.len(), 2);
    assert!(!store.allows("dev", "system.which"));
}

#[test]
fn trust_on_first_use_pins_the_declaration_minus_denied_commands() {
    let mut store = PinStore::default();
    let p = store.on_connect("dev", &surface(&["system.which", "camera.snap"]), (None, None), &policy(FirstConnect::Trust, &["camera.*"], false), 1);
    assert_eq!(p.allowed.commands, ["system.which".to_string()].into());
    assert_eq!(p.removed.commands, ["camera.snap".to_string()].into());
    assert_eq!(store.nodes["dev"].pin.as_ref().unwrap().approved_by, "trust-on-first-use");
    assert!(store.nodes["dev"].pending.is_none(), "a denied command is never pending");
}

#[test]
fn reconnect_with_more_stays_pinned_until_approved() {
    let mut store = PinStore::default();
    store.on_connect("dev", &surface(&["system.which"]), (None, None), &pending_policy(), 1);
    store.approve("dev", None, "cli", 2).unwrap();
    let p = store.on_connect("dev", &surface(&["system.which"]), (None, None), &pending_policy(), 3);
    assert_eq!(p.allowed.commands, ["system.which".to_string()].into());
    assert!(p.removed.is_empty());
    // The node comes back declaring system.run too.
    let p = store.on_connect("dev", &surface(&["system.which", "system.run"]), (None, None), &pending_policy(), 4);
    assert_eq!(p.allowed.commands, ["system.which".to_string()].into());
    assert_eq!(p.removed.commands, ["system.run".to_string()].into());
    let pending = store.nodes["dev"].pending.clone().unwrap();
    assert_eq!((pending.first_seen_ms, pending.last_seen_ms), (4, 4));
    store.on_connect("dev", &surface(&["system.which", "system.run"]), (None, None), &pending_policy(), 9);
    assert_eq!(store.nodes["dev"].pending.as_ref().unwrap().first_seen_ms, 4, "the same request keeps its first sighting");
    assert!(!store.allows("dev", "system.run"));
    store.approve("dev", None, "cli", 10).unwrap();
    assert!(store.allows("dev", "system.run"));
    store.revoke("dev", 11).unwrap();
    assert!(!store.allows("dev", "system.which"));
}

#[test]
fn caps_and_permissions_are_pinned_too() {
    let mut store = PinStore::default();
    let mut declared = surface(&["system.which"]);
    declared.permissions.insert("screen".into());
    store.on_connect("dev", &declared, (None, None), &trust(), 1);
    let mut more = declared.clone();
    more.caps.insert("camera".into());
    more.permissions.insert("microphone".into());
    let p = store.on_connect("dev", &more, (None, None), &pending_policy(), 2);
    assert_eq!(p.removed.caps, ["camera".to_string()].into());
    assert_eq!(p.removed.permissions, ["microphone".to_string()].into());
    assert_eq!(p.allowed.permissions, ["screen".to_string()].into());
}

#[test]
fn encode_decode_round_trip() {
    let mut store = PinStore::default();
    store.on_connect("dev", &surface(&["a", "b"]), (Some("node"), None), &trust(), 7);
    let bytes = store.encode();
    assert_eq!(PinStore::decode(&bytes).unwrap(), store);
    assert_eq!(PinStore::decode(&PinStore::default().encode()).unwrap(), PinStore::default());
}

#[test]
fn corruption_is_detected_never_an_empty_store() {
    let mut store = PinStore::default();
    store.on_connect("dev", &surface(&["system.which"]), (None, None), &trust(), 7);
    let bytes = store.encode();
    // Truncated anywhere.
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 2] {
        assert!(PinStore::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    // A hand edit that keeps valid JSON: granting system.run.
    let text = String::from_utf8(bytes.clone()).unwrap().replace("system.which", "system.run!");
    assert!(matches!(PinStore::decode(text.as_bytes()), Err(StoreError::Integrity { .. })));
    // Every single flipped byte is caught (as malformed JSON or by the integrity check).
    for i in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x01;
        if flipped[i].is_ascii_whitespace() && bytes[i].is_ascii_whitespace() {
            continue; // white space between tokens carries no meaning
        }
        assert!(PinStore::decode(&flipped).is_err(), "flipped byte {i} ({:?}) went unnoticed", bytes[i] as char);
    }
    let other = String::from_utf8(bytes).unwrap().replace(FORMAT, "clawguard-node-pins/9");
    assert!(matches!(PinStore::decode(other.as_bytes()), Err(StoreError::Format { .. })));
}

#[test]
fn an_unknown_node_is_shown_to_the_gateway_when_approvals_are_followed_but_nothing_is_invocable() {
    let mut store = PinStore::default();
    let follow = policy(FirstConnect::Pending, &["camera.snap"], true);
    let p = store.on_connect("dev", &surface(&["system.which", "camera.snap"]), (None, None), &follow, 1);
    assert_eq!(p.allowed.commands, ["system.which".to_string()].into(), "the gateway's pairing request lists what may be approved");
    assert_eq!(p.removed.commands, ["camera.snap".to_string()].into());
    assert!(!store.allows("dev", "system.which"), "nothing is invocable until approved");
    // The gateway's approval, as it passes through clawguard, becomes the pin.
    assert!(store.apply(&PinOp::Approve { device_id: "dev".into(), surface: surface(&["system.which", "camera.snap"]), by: "ops".into(), at_ms: 2 }, &follow));
    assert!(store.allows("dev", "system.which"));
    assert!(!store.allows("dev", "camera.snap"), "an approval never pins a denied command");
    assert!(store.nodes["dev"].pending.is_none());
    // Revoked: the next connect shows the gateway nothing, approvals followed or not.
    store.revoke("dev", 3).unwrap();
    let p = store.on_connect("dev", &surface(&["system.which"]), (None, None), &follow, 4);
    assert!(p.allowed.commands.is_empty());
    assert_eq!(store.nodes["dev"].pending.as_ref().unwrap().declared.commands, ["system.which".to_string()].into());
}

#[test]
fn a_rejection_clears_the_pending_request_and_keeps_the_pin() {
    let mut store = PinStore::default();
    store.on_connect("dev", &surface(&["a"]), (None, None), &trust(), 1);
    store.on_connect("dev", &surface(&["a", "b"]), (None, None), &trust(), 2);
    assert!(store.nodes["dev"].pending.is_some());
    assert!(store.apply(&PinOp::Reject { device_id: "dev".into() }, &trust()));
    assert!(store.nodes["dev"].pending.is_none());
    assert!(store.allows("dev", "a") && !store.allows("dev", "b"));
    assert!(!store.apply(&PinOp::Reject { device_id: "dev".into() }, &trust()), "nothing left to reject");
}

#[test]
fn preview_records_nothing() {
    let store = PinStore::default();
    let p = store.preview("dev", &surface(&["a"]), &pending_policy());
    assert!(p.allowed.is_empty() && !p.changed);
    assert!(store.nodes.is_empty());
}

#[test]
fn allow_commands_narrow_what_any_node_may_have() {
    let mut p = policy(FirstConnect::Trust, &["system.run"], false);
    p.allow_commands = vec![Glob::new("system.*").unwrap()];
    assert_eq!(p.denies("camera.list").as_deref(), Some("not in nodes.allow_commands"));
    assert!(p.denies("system.run").unwrap().contains("deny_commands"), "deny wins over allow");
    assert!(p.denies("system.which").is_none());
    let mut store = PinStore::default();
    let pinned = store.on_connect("dev", &surface(&["system.which", "system.run", "camera.list"]), (None, None), &p, 1);
    assert_eq!(pinned.allowed.commands, ["system.which".to_string()].into());
}

#[test]
fn issue15_nodes_are_counted_by_state() {
    let mut store = PinStore::default();
    assert_eq!(store.counts(), [0, 0, 0]);
    store.on_connect("a", &surface(&["system.which"]), (None, None), &pending_policy(), 1);
    assert_eq!(store.counts(), [0, 1, 0], "a first connect waits");
    store.approve("a", None, "cli", 2).unwrap();
    store.on_connect("b", &surface(&["system.which"]), (None, None), &trust(), 3);
    store.on_connect("b", &surface(&["system.which", "system.run"]), (None, None), &trust(), 4);
    assert_eq!(store.counts(), [2, 1, 0], "b is pinned and asks for more");
    store.revoke("a", 5).unwrap();
    assert_eq!(store.counts(), [1, 1, 1]);
}
