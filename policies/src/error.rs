//! Policy errors: every one names the document, line, column and key.

use std::fmt;

/// Where in a policy document something is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The document's name (its path, or `<embedded>`).
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The dotted key at that place (`server.threads`), when it can be told.
    pub key: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        Ok(())
    }
}

/// A policy that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The document is not valid TOML, has an unknown key, a wrong type, or a
    /// value that breaks a rule.
    #[error("{location}: {message}")]
    Invalid {
        /// Where.
        location: Location,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The policy file could not be read.
    #[error("{origin}: cannot read policy file: {source}")]
    Read {
        /// The path.
        origin: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
