//! Input hygiene: characters that have no business in a command an agent runs, and that
//! make what a human reviews differ from what a shell executes.

/// Why a string is refused, if it is: the offending character and where.
pub fn check(text: &str) -> Result<(), String> {
    // Printable ASCII, the common case, has nothing to refuse.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    for (i, c) in text.char_indices() {
        if let Some(what) = forbidden(c) {
            return Err(format!("{what} U+{:04X} at byte {i}", c as u32));
        }
    }
    Ok(())
}

fn forbidden(c: char) -> Option<&'static str> {
    match c {
        '\0' => Some("NUL"),
        '\x1b' => Some("an escape character (ANSI sequence)"),
        '\n' | '\r' => Some("a line break"),
        '\t' => Some("a tab"),
        '\x01'..='\x1f' | '\x7f' => Some("an ASCII control character"),
        '\u{80}'..='\u{9f}' => Some("a C1 control character"),
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}' => Some("a Unicode bidi control"),
        '\u{200b}'..='\u{200d}' | '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{00ad}' | '\u{180e}' | '\u{034f}' => Some("an invisible character"),
        '\u{206a}'..='\u{206f}' | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e007f}' | '\u{1d173}'..='\u{1d17a}' => Some("an invisible format character"),
        '\u{2028}' | '\u{2029}' => Some("a Unicode line separator"),
        // Look-alikes of shell metacharacters: harmless to a shell, but they make a reviewer
        // read a separator, a pipe or a substitution that is not there (or the reverse).
        '\u{037e}' | '\u{ff1b}' | '\u{fe54}' | '\u{204f}' | '\u{2e35}' => Some("a look-alike of ';'"),
        '\u{ff5c}' | '\u{2223}' | '\u{01c0}' | '\u{2502}' | '\u{23d0}' | '\u{05c0}' | '\u{fe31}' | '\u{ffe8}' => Some("a look-alike of '|'"),
        '\u{ff06}' | '\u{fe60}' | '\u{214b}' => Some("a look-alike of '&'"),
        '\u{ff04}' | '\u{fe69}' => Some("a look-alike of '$'"),
        '\u{ff1e}' | '\u{ff1c}' | '\u{fe65}' | '\u{fe64}' => Some("a look-alike of '<' or '>'"),
        '\u{ff08}' | '\u{ff09}' | '\u{fe59}' | '\u{fe5a}' => Some("a look-alike of '(' or ')'"),
        '\u{ff40}' | '\u{2035}' | '\u{02cb}' => Some("a look-alike of '`'"),
        '\u{ff07}' | '\u{ff02}' | '\u{2018}' | '\u{2019}' | '\u{201c}' | '\u{201d}' | '\u{2032}' | '\u{2033}' => Some("a look-alike of a quote"),
        '\u{a0}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{1680}' => Some("a non-ASCII space"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn plain_text_passes_and_every_class_is_named() {
        assert!(check("git log --oneline -n 5 'héllo wörld'").is_ok());
        for (text, what) in [
            ("a\0b", "NUL"),
            ("echo \x1b[31mred", "escape"),
            ("ls\nrm", "line break"),
            ("ls\trm", "tab"),
            ("rm\u{202e}txt.exe", "bidi"),
            ("r\u{200b}m", "invisible"),
            ("ls\u{037e} rm", "';'"),
            ("ls \u{ff5c} sh", "'|'"),
            ("echo\u{a0}x", "non-ASCII space"),
        ] {
            let err = check(text).unwrap_err();
            assert!(err.contains(what), "{text:?}: {err}");
        }
    }
}
