//! Name globs for method and event names: `*` matches any run of characters
//! (including none); everything else matches itself. `config.*` matches
//! `config.get` and `config.patch`; `*` matches every name.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A compiled name glob.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    parts: Vec<String>,
}

impl Glob {
    /// Compiles `pattern`. Empty patterns are rejected.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("a name pattern must not be empty".into());
        }
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("name pattern {pattern:?} contains white space or control characters"));
        }
        Ok(Glob { pattern: pattern.to_string(), parts: pattern.split('*').map(str::to_string).collect() })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the glob has no wildcard (an exact name).
    pub fn is_exact(&self) -> bool {
        self.parts.len() == 1
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(x) => x,
            None => return false,
        };
        let Some(mut tail) = name.strip_prefix(first.as_str()) else { return false };
        let Some((last, middle)) = rest.split_last() else { return tail.is_empty() };
        for part in middle {
            match tail.find(part.as_str()) {
                Some(i) => tail = &tail[i + part.len()..],
                None => return false,
            }
        }
        tail.len() >= last.len() && tail.ends_with(last.as_str())
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Glob::new(&s).map_err(serde::de::Error::custom)
    }
}
