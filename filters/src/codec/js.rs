//! How the gateway's JavaScript reads its input, so that clawguard reads the same thing:
//!
//! - `JSON.parse`: duplicate keys, last one wins (as `serde_json::Value` does); lone UTF-16
//!   surrogates (`"\ud800"`) are accepted by JavaScript but cannot be held in a Rust string.
//!   A client request that carries one is **refused** ([`read_json`] fails, naming where);
//!   a gateway message clawguard only inspects is read with each lone surrogate as U+FFFD
//!   ([`read_json_lossy`]), and forwarded byte for byte.
//! - `String.prototype.trim()`: [`trim`] (Unicode white space and line terminators, U+FEFF
//!   included, U+0085 not).
//! - `normalizeOptionalString(a ?? b)`: [`string_field`] (the first field that is not `null`
//!   or absent decides; a non-string or blank value is no value).
//!
//! What clawguard cannot read it refuses: a failed read is an [`Unreadable`] that names the
//! place, never "nothing to check".

use serde_json::Value;

/// Input a check depends on could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} cannot be read at {path}: {why}")]
pub struct Unreadable {
    /// What was being read (`node.invoke params`).
    pub what: String,
    /// Where, as a JSON path from the top (`params.command[2]`), or `(top)`.
    pub path: String,
    /// Why, in words.
    pub why: String,
}

/// Parses `text` as `JSON.parse` would, or says why clawguard cannot: malformed JSON, or a
/// lone surrogate escape (JavaScript keeps it; a check cannot compare it).
pub fn read_json(what: &str, text: &str) -> Result<Value, Unreadable> {
    serde_json::from_str(text).map_err(|e| {
        let offset = offset_of(text, e.line(), e.column());
        let why = if let Some(escape) = lone_surrogate_at(text, offset) {
            format!("lone UTF-16 surrogate {escape} (JavaScript accepts it, so clawguard refuses what it cannot compare)")
        } else {
            e.to_string()
        };
        Unreadable { what: what.to_string(), path: path_at(text, offset), why }
    })
}

/// Parses a gateway message for inspection only: each lone surrogate escape is read as
/// U+FFFD. `None` when the text is not JSON at all.
pub fn read_json_lossy(text: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(text) {
        return Some(v);
    }
    serde_json::from_str(&replace_lone_surrogates(text)).ok()
}

/// `String.prototype.trim()`.
pub fn trim(s: &str) -> &str {
    s.trim_matches(is_js_space)
}

/// JavaScript's `WhiteSpace` and `LineTerminator`.
pub fn is_js_space(c: char) -> bool {
    c == '\u{feff}' || (c.is_whitespace() && c != '\u{85}')
}

/// `normalizeOptionalString(v[names[0]] ?? v[names[1]] ?? …)`: the first field that is present
/// and not `null` decides; its trimmed text, or `None` when it is not a non-blank string.
pub fn string_field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a str> {
    let chosen = names.iter().map(|n| &v[*n]).find(|f| !f.is_null())?;
    chosen.as_str().map(trim).filter(|s| !s.is_empty())
}

/// The first field of `names` that is present and not `null` (the `??` chain), with its name.
pub fn coalesce<'a, 'n>(v: &'a Value, names: &[&'n str]) -> Option<(&'n str, &'a Value)> {
    names.iter().map(|n| (*n, &v[*n])).find(|(_, f)| !f.is_null())
}

/// The byte offset of serde_json's 1-based line and column.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    (start + column.saturating_sub(1)).min(text.len())
}

/// A `\uD800`–`\uDFFF` escape that ends at or just before `offset` and is not half of a pair.
fn lone_surrogate_at(text: &str, offset: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let from = offset.saturating_sub(12);
    let to = (offset + 1).min(bytes.len());
    (from..to).rev().find_map(|i| {
        let escape = text.get(i..i + 6)?;
        let unit = surrogate_unit(escape)?;
        let paired = if (0xD800..0xDC00).contains(&unit) {
            text.get(i + 6..i + 12).and_then(surrogate_unit).is_some_and(|u| (0xDC00..0xE000).contains(&u))
        } else {
            i >= 6 && text.get(i - 6..i).and_then(surrogate_unit).is_some_and(|u| (0xD800..0xDC00).contains(&u))
        };
        (!paired && escaped_at(bytes, i)).then(|| escape.to_string())
    })
}

/// `\uXXXX` with XXXX a surrogate code unit.
fn surrogate_unit(escape: &str) -> Option<u16> {
    let hex = escape.strip_prefix("\\u")?;
    let unit = u16::from_str_radix(hex.get(..4)?, 16).ok()?;
    (0xD800..0xE000).contains(&unit).then_some(unit)
}

/// Whether the backslash at `i` starts an escape (is not itself escaped).
fn escaped_at(bytes: &[u8], i: usize) -> bool {
    bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 0
}

/// Every lone surrogate escape replaced by `\uFFFD` (paired ones kept).
fn replace_lone_surrogates(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if let Some(unit) = rest.get(..6).and_then(surrogate_unit).filter(|_| escaped_at(text.as_bytes(), i)) {
            let next = rest.get(6..12).and_then(surrogate_unit);
            if (0xD800..0xDC00).contains(&unit) && next.is_some_and(|u| (0xDC00..0xE000).contains(&u)) {
                out.push_str(&rest[..12]);
                i += 12;
            } else {
                out.push_str("\\uFFFD");
                i += 6;
            }
            continue;
        }
        let c = rest.chars().next().unwrap_or('\0');
        out.push(c);
        i += c.len_utf8().max(1);
    }
    out
}

/// The JSON path (`a.b[2]`) of the value being read at byte `offset`.
fn path_at(text: &str, offset: usize) -> String {
    #[derive(Clone)]
    enum Step {
        Key(String),
        Index(usize),
    }
    // (container is an object, current step, expecting a key)
    let mut stack: Vec<(bool, Option<Step>)> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut last_string = String::new();
    while i < offset.min(bytes.len()) {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                last_string = text.get(start..i.min(text.len())).unwrap_or("").to_string();
                if i >= offset {
                    break;
                }
            }
            b':' => {
                if let Some((true, step)) = stack.last_mut() {
                    *step = Some(Step::Key(last_string.clone()));
                }
            }
            b'{' => stack.push((true, None)),
            b'[' => stack.push((false, Some(Step::Index(0)))),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some((false, Some(Step::Index(n)))) => *n += 1,
                Some((true, step)) => *step = None,
                _ => {}
            },
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for (_, step) in &stack {
        match step {
            Some(Step::Key(k)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Some(Step::Index(n)) => path.push_str(&format!("[{n}]")),
            None => {}
        }
    }
    if path.is_empty() {
        "(top)".into()
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_last_one_wins_like_json_parse() {
        let v = read_json("p", r#"{"command":"system.which","command":"system.run"}"#).unwrap();
        assert_eq!(v["command"], "system.run");
    }

    #[test]
    fn lone_surrogates_are_refused_naming_where() {
        let e = read_json("node.invoke params", r#"{"nodeId":"n","params":{"command":["sh","-c","x\ud800"]}}"#).unwrap_err();
        assert_eq!(e.path, "params.command[2]", "{e}");
        assert!(e.why.contains("\\ud800"), "{e}");
        assert!(e.to_string().starts_with("node.invoke params cannot be read at params.command[2]"), "{e}");
        let e = read_json("p", r#"{"a":"\udc00"}"#).unwrap_err();
        assert_eq!(e.path, "a");
        // A lone surrogate before an unrelated escape, and a high surrogate followed by a non-low one.
        assert!(read_json("p", r#"{"a":"\ud800\n"}"#).is_err());
        assert!(read_json("p", r#"{"a":"\ud800\u0041"}"#).is_err());
        // A pair is fine, and an escaped backslash is not an escape.
        assert_eq!(read_json("p", r#"{"a":"\ud83d\ude00"}"#).unwrap()["a"], "😀");
        assert_eq!(read_json("p", r#"{"a":"\\ud800"}"#).unwrap()["a"], "\\ud800");
    }

    #[test]
    fn malformed_json_is_refused_with_the_parser_reason() {
        let e = read_json("p", r#"{"a":[1,2,}"#).unwrap_err();
        assert_eq!(e.path, "a[2]", "{e}");
        assert!(read_json("p", "1e400").is_err(), "a number JavaScript reads as Infinity is not read");
    }

    #[test]
    fn gateway_messages_are_read_with_replacement_characters() {
        let v = read_json_lossy(r#"{"sessionKey":"agent:main:bob","preview":"cut \ud83d"}"#).unwrap();
        assert_eq!(v["sessionKey"], "agent:main:bob");
        assert_eq!(v["preview"], "cut \u{fffd}");
        assert_eq!(read_json_lossy(r#"{"a":"\ud83d\ude00 \\ud800"}"#).unwrap()["a"], "😀 \\ud800");
        assert!(read_json_lossy("not json").is_none());
    }

    #[test]
    fn trim_is_javascripts() {
        assert_eq!(trim("\u{feff} system.run\u{2028}\t"), "system.run");
        assert_eq!(trim("\u{85}x"), "\u{85}x", "NEL is not JavaScript white space");
        assert_eq!(trim("\u{a0}\u{3000}x\u{200a}"), "x");
    }

    #[test]
    fn aliases_take_the_first_present_field() {
        let v: Value = serde_json::from_str(r#"{"key":null,"sessionKey":" agent:main:bob ","name":5,"tool":"exec"}"#).unwrap();
        assert_eq!(string_field(&v, &["key", "sessionKey"]), Some("agent:main:bob"));
        assert_eq!(string_field(&v, &["name", "tool"]), None, "a present non-string hides the alias, as ?? does");
        assert_eq!(string_field(&v, &["missing", "tool"]), Some("exec"));
        assert_eq!(coalesce(&v, &["key", "sessionKey"]).map(|(n, _)| n), Some("sessionKey"));
    }
}
