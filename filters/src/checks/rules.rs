//! The policy's frame rules compiled for per-message decisions.

use clawguard_policies::{FrameRule, Policy, RuleAction, RuleDirection};

/// What the engine should do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward the original bytes.
    Forward,
    /// Apply a rule's action.
    Act {
        /// The action.
        action: RuleAction,
        /// The rule's name.
        rule: String,
        /// The reason given to the client.
        reason: String,
        /// The rule's own mode, if it overrides the identity's and the global one.
        mode: Option<clawguard_policies::Mode>,
    },
}

/// The per-frame rules of one policy version.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    client: Vec<FrameRule>,
    gateway: Vec<FrameRule>,
}

impl Rules {
    /// Compiles the policy's `[[frame_rule]]`s.
    pub fn new(policy: &Policy) -> Self {
        let (client, gateway) = policy.frame_rules.iter().cloned().partition(|r| r.direction == RuleDirection::Client);
        Rules { client, gateway }
    }

    /// Whether any rule looks at gateway events.
    pub fn inspects_gateway(&self) -> bool {
        !self.gateway.is_empty()
    }

    /// The decision for a client request calling `method`. The first matching rule wins.
    pub fn for_request(&self, method: &str) -> Decision {
        decide(&self.client, method, "method")
    }

    /// The decision for a gateway event named `event`.
    pub fn for_event(&self, event: &str) -> Decision {
        decide(&self.gateway, event, "event")
    }
}

fn decide(rules: &[FrameRule], name: &str, what: &str) -> Decision {
    rules
        .iter()
        .find(|r| r.matches.get_ref().iter().any(|g| g.matches(name)))
        .map(|r| Decision::Act {
            action: *r.action.get_ref(),
            rule: r.name.clone(),
            reason: r.reason.clone().unwrap_or_else(|| format!("{what} {name:?} is refused by clawguard rule {:?}", r.name)),
            mode: r.mode,
        })
        .unwrap_or(Decision::Forward)
}
