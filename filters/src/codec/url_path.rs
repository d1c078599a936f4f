//! Request paths as the gateway routes them: it matches `new URL(req.url, base).pathname`, the
//! WHATWG URL parser's path (Node's), not the raw request target. So `/tools/./invoke`,
//! `/tools/%2e/invoke`, `/x/../tools/invoke` and `/tools\invoke` all reach `/tools/invoke`, and
//! every HTTP decision must be taken on the canonical path.
//!
//! [`canonical_path`] applies the parser's path rules for a special scheme: ASCII tab and
//! newline removed, `\` read as `/`, single-dot segments (`.`, `%2e`) and double-dot segments
//! (`..`, `.%2e`, `%2e.`, `%2e%2e`, any case) resolved; other percent escapes are kept as
//! they are (the gateway compares them undecoded). Targets whose meaning could differ between
//! clawguard and the gateway or a handler that decodes are refused ([`PathError`]): an encoded
//! `/` or `\` (`%2f`, `%5c`), an encoded NUL, control characters, and a path that starts with
//! `//` (which the URL parser reads as a host).

/// Why a request path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("the request path {0:?} does not start with /")]
    NotAbsolute(String),
    /// An encoding whose meaning is ambiguous between clawguard and the gateway.
    #[error("the request path {path:?} contains {what}, which clawguard refuses because the gateway or a handler may read it differently")]
    Ambiguous {
        /// The path as sent.
        path: String,
        /// What was found.
        what: &'static str,
    },
}

fn single_dot(segment: &str) -> bool {
    segment == "." || segment.eq_ignore_ascii_case("%2e")
}

fn double_dot(segment: &str) -> bool {
    let s = segment.to_ascii_lowercase();
    matches!(s.as_str(), ".." | ".%2e" | "%2e." | "%2e%2e")
}

/// The path the gateway routes `path` (a request target without its query) to.
pub fn canonical_path(path: &str) -> Result<String, PathError> {
    // Almost every path has nothing to resolve: no escape, backslash, control character or dot
    // segment. It is its own canonical form.
    let plain = path.starts_with('/')
        && !path.starts_with("//")
        && !path.bytes().any(|b| matches!(b, b'%' | b'\\') || b.is_ascii_control() || b >= 0x80)
        && !path.contains("/.");
    if plain {
        return Ok(path.to_string());
    }
    let ambiguous = |what| Err(PathError::Ambiguous { path: path.to_string(), what });
    if path.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return ambiguous("a control character");
    }
    // The URL parser removes tab and newline first, so `%\n2f` is `%2f`: every check below reads
    // the path after that removal.
    let cleaned: String = path.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).map(|c| if c == '\\' { '/' } else { c }).collect();
    let lower = cleaned.to_ascii_lowercase();
    if lower.contains("%2f") {
        return ambiguous("an encoded / (%2f)");
    }
    if lower.contains("%5c") {
        return ambiguous("an encoded \\ (%5c)");
    }
    if lower.contains("%00") {
        return ambiguous("an encoded NUL (%00)");
    }
    if !cleaned.starts_with('/') {
        return Err(PathError::NotAbsolute(path.to_string()));
    }
    if cleaned.starts_with("//") {
        return ambiguous("a leading // (read as a host by the URL parser)");
    }
    let parts: Vec<&str> = cleaned[1..].split('/').collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, segment) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if double_dot(segment) {
            out.pop();
            if last {
                out.push("");
            }
        } else if single_dot(segment) {
            if last {
                out.push("");
            }
        } else {
            out.push(segment);
        }
    }
    let canonical = format!("/{}", out.join("/"));
    if canonical.starts_with("//") {
        // `/.//x` resolves to `//x`, which a handler re-reading the path would take for a host.
        return ambiguous("dot segments that resolve to a leading //");
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_reach_the_route_the_gateway_reaches() {
        // Each pair: what a client sends, and Node's `new URL(p, "http://h").pathname`.
        for (sent, routed) in [
            ("/tools/invoke", "/tools/invoke"),
            ("/tools/./invoke", "/tools/invoke"),
            ("/tools/%2e/invoke", "/tools/invoke"),
            ("/tools/%2E/invoke", "/tools/invoke"),
            ("/x/../tools/invoke", "/tools/invoke"),
            ("/x/%2e%2E/tools/invoke", "/tools/invoke"),
            ("/x/.%2e/tools/invoke", "/tools/invoke"),
            ("/tools\\invoke", "/tools/invoke"),
            ("/../../tools/invoke", "/tools/invoke"),
            ("/to\tols/in\nvoke", "/tools/invoke"),
            ("/tools/invoke/.", "/tools/invoke/"),
            ("/tools/invoke/x/..", "/tools/invoke/"),
            ("/tools//invoke", "/tools//invoke"),
            ("/tools/%69nvoke", "/tools/%69nvoke"),
            ("/", "/"),
            ("/..", "/"),
        ] {
            assert_eq!(canonical_path(sent).as_deref(), Ok(routed), "{sent:?}");
        }
    }

    #[test]
    fn ambiguous_encodings_are_refused() {
        // `/.//x` and `/x/..//y`: Node's pathname is `//x`, `//y` (checked with node); `%\n2f` is
        // `%2f` once the parser has removed the newline (found by the http fuzz target).
        for sent in ["/tools%\n2finvoke", "/tools%2\tF", "/%\r00", "/tools%2finvoke", "/tools%2Finvoke", "/tools%5cinvoke", "/tools/invoke%00", "/tools/\u{1}invoke", "//tools/invoke", "/\\tools/invoke", "tools/invoke", "/.//.", "/.//tools/invoke", "/x/..//tools/invoke", "/..//x"] {
            assert!(canonical_path(sent).is_err(), "{sent:?}");
        }
    }
}
