//! The text of a policy document, used to turn byte spans into line, column and key.

use crate::error::{Location, PolicyError};
use std::ops::Range;

/// A policy document's name and text.
#[derive(Debug, Clone)]
pub struct PolicySource {
    origin: String,
    text: String,
}

impl PolicySource {
    /// A document named `origin` with contents `text`.
    pub fn new(origin: &str, text: &str) -> Self {
        PolicySource { origin: origin.to_string(), text: text.to_string() }
    }

    /// The document's name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// An error located at `span` (byte offsets into the text).
    pub fn error_at(&self, span: Option<Range<usize>>, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid { location: self.locate(span), message: message.into() }
    }

    /// Converts a TOML deserialisation error into a located [`PolicyError`].
    pub fn toml_error(&self, e: &toml::de::Error) -> PolicyError {
        self.error_at(e.span(), e.message().trim().to_string())
    }

    /// Line, column and dotted key of a byte span (the start of the document when unknown).
    pub fn locate(&self, span: Option<Range<usize>>) -> Location {
        let start = span.map(|s| s.start).unwrap_or(0).min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, start)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before[line_start..].chars().count() + 1;
        Location { origin: self.origin.clone(), line, column, key: self.key_at(line_start) }
    }

    /// The dotted key defined on the line starting at `line_start`, prefixed by the
    /// table header above it (`[server]` + `threads = …` → `server.threads`).
    fn key_at(&self, line_start: usize) -> Option<String> {
        let line = self.text[line_start..].lines().next().unwrap_or("");
        let header = self.text[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            return Some(trimmed.trim_matches(|c| c == '[' || c == ']').trim().to_string());
        }
        let key = trimmed.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string());
        match (header, key) {
            (Some(h), Some(k)) if !k.is_empty() => Some(format!("{h}.{k}")),
            (None, Some(k)) if !k.is_empty() => Some(k),
            (h, _) => h,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
