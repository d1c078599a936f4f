//! The scope vocabulary the gateway's method table and its authorization rules share: operator
//! scopes and their implications, scope sets, what a method requires, and connection roles.
//! The generated method table and the authorization rules (`scopes`) both build on it, so
//! neither imports the other.

use std::fmt;

/// An operator scope (the gateway's closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `operator.admin`: satisfies every scope.
    Admin,
    /// `operator.read`.
    Read,
    /// `operator.write`: also satisfies read, talk and the session scopes.
    Write,
    /// `operator.sessions.read`.
    SessionsRead,
    /// `operator.sessions.write`.
    SessionsWrite,
    /// `operator.approvals`.
    Approvals,
    /// `operator.questions`.
    Questions,
    /// `operator.pairing`.
    Pairing,
    /// `operator.talk`.
    Talk,
    /// `operator.talk.secrets`.
    TalkSecrets,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 10] = [
        Scope::Admin,
        Scope::Read,
        Scope::Write,
        Scope::SessionsRead,
        Scope::SessionsWrite,
        Scope::Approvals,
        Scope::Questions,
        Scope::Pairing,
        Scope::Talk,
        Scope::TalkSecrets,
    ];

    /// The wire name (`operator.read`).
    pub fn name(self) -> &'static str {
        match self {
            Scope::Admin => "operator.admin",
            Scope::Read => "operator.read",
            Scope::Write => "operator.write",
            Scope::SessionsRead => "operator.sessions.read",
            Scope::SessionsWrite => "operator.sessions.write",
            Scope::Approvals => "operator.approvals",
            Scope::Questions => "operator.questions",
            Scope::Pairing => "operator.pairing",
            Scope::Talk => "operator.talk",
            Scope::TalkSecrets => "operator.talk.secrets",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u16);

impl ScopeSet {
    /// No scopes.
    pub const EMPTY: ScopeSet = ScopeSet(0);

    /// Every scope.
    pub fn all() -> ScopeSet {
        Scope::ALL.into_iter().collect()
    }

    /// Whether `scope` is in the set (exactly; see [`satisfies`] for implications).
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Adds a scope.
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    /// The scopes in both sets.
    pub fn intersect(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & other.0)
    }

    /// The scopes in `self` but not in `other`.
    pub fn minus(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & !other.0)
    }

    /// The scopes in either set.
    pub fn union(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 | other.0)
    }

    /// Every scope this set satisfies through the implication rules (admin: all of them;
    /// write: also read, talk and the session scopes). A ceiling is applied through this, and
    /// sent to the gateway this way, because the gateway intersects scope lists literally.
    pub fn closure(self) -> ScopeSet {
        Scope::ALL.into_iter().filter(|s| satisfies(self, *s)).collect()
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The wire names.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::name).collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::EMPTY;
        iter.into_iter().for_each(|s| set.insert(s));
        set
    }
}

/// Whether `granted` satisfies `required`, with the gateway's implications
/// (`operatorScopeSatisfied`): admin satisfies everything; write satisfies read, talk and
/// sessions.write; read, write and sessions.write satisfy sessions.read.
pub fn satisfies(granted: ScopeSet, required: Scope) -> bool {
    if granted.contains(required) || granted.contains(Scope::Admin) {
        return true;
    }
    match required {
        Scope::Read | Scope::Talk | Scope::SessionsWrite => granted.contains(Scope::Write),
        Scope::SessionsRead => granted.contains(Scope::Write) || granted.contains(Scope::Read) || granted.contains(Scope::SessionsWrite),
        _ => false,
    }
}

/// What the method table says a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    /// One scope (with implications).
    Scope(Scope),
    /// Depends on the params (see [`dynamic_requirement`]).
    Dynamic,
    /// Only clients of role `node` may call it; nodes are not scope-checked.
    NodeRole,
}

/// A connection's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Control-plane client.
    Operator,
    /// Capability host.
    Node,
}

impl Role {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Node => "node",
        }
    }

    /// Parses a wire name (`None` for anything the gateway would refuse).
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "operator" => Some(Role::Operator),
            "node" => Some(Role::Node),
            _ => None,
        }
    }
}
