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

    /// The span of the key at `path` (table names, keys, and array indices as numbers:
    /// `["http", "header", "1", "prefix"]`), or of the deepest part of it the document has
    /// (a key left at its default is reported at its table). `None`: nothing of it is written.
    pub fn key_span(&self, path: &[&str]) -> Option<Range<usize>> {
        let doc = toml::de::DeTable::parse(&self.text).ok()?;
        let mut table = doc.get_ref();
        let mut found = None;
        let mut rest = path;
        while let Some((name, tail)) = rest.split_first() {
            let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *name) else { break };
            found = Some(key.span());
            let mut value = value;
            rest = tail;
            // An array of tables: the next segment is the index.
            if let (Some(array), Some((index, tail))) = (value.get_ref().as_array(), rest.split_first()) {
                let Some(item) = index.parse::<usize>().ok().and_then(|i| array.get(i)) else { break };
                found = Some(item.span());
                value = item;
                rest = tail;
            }
            match value.get_ref().as_table() {
                Some(t) => table = t,
                None => break,
            }
        }
        found
    }

    /// An error located at the key `path` (see [`PolicySource::key_span`]).
    pub fn error_at_key(&self, path: &[&str], message: impl Into<String>) -> PolicyError {
        self.error_at(self.key_span(path), message)
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
