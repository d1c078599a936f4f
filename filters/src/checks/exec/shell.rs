//! Shell scripts as argv lists, or "not provably safe".
//!
//! Only an allow-list of syntax is accepted: plain commands whose words are literal (bare
//! words without expansion, glob, brace or tilde characters, single-quoted strings,
//! double-quoted strings without `$`, backticks or escapes), joined by the list and pipeline
//! operators the policy allows (`&&`, `||`, `;`, `|`; a newline counts as `;`). Everything
//! else is refused, named: substitutions, expansions, redirections, heredocs, subshells,
//! groups, assignments, reserved words, comments, escapes and line continuations, background
//! jobs, parse errors.
//!
//! Two readers must agree before a script is accepted (docs/exec-policy.md, "Parsing"):
//! 1. [`lex`], this module's recogniser of the accepted subset: one linear pass, no
//!    recursion, exact byte spans, refusing at the first character that starts anything
//!    else. Because the subset has no nesting, its cost and depth are bounded by the length.
//! 2. brush-parser's shell tokenizer (POSIX token recognition, bash's operators) reads the
//!    same script; its words and operators must be exactly those of (1), or the script is
//!    refused. It only ever sees scripts that (1) accepted, i.e. flat text without
//!    substitutions, which keeps it away from its recursive paths.

use std::ops::Range;

/// One command of a script, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    /// Its words, as the shell would pass them.
    pub argv: Vec<String>,
    /// Whether its standard input is the previous command's output (`a | b`: b).
    pub piped_input: bool,
}

/// A token of the accepted subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A word: its literal value and where it is in the script.
    Word { value: String, span: Range<usize> },
    /// A list or pipeline operator (`&&`, `||`, `;`, `|`, or `\n`), at a byte offset.
    Operator { op: &'static str, at: usize },
}

/// Parses `script` into its commands, or says why it is not provably safe.
pub fn parse(script: &str, operators: &[String]) -> Result<Vec<ShellCommand>, String> {
    if script.trim().is_empty() {
        return Err("empty script".into());
    }
    let tokens = lex(script)?;
    agree_with_shell_tokenizer(script, &tokens)?;
    commands(tokens, operators)
}

/// Reads `script` as tokens of the accepted subset, refusing at the first character that
/// starts anything else.
pub fn lex(script: &str) -> Result<Vec<Token>, String> {
    let bytes = script.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' => i += 1,
            b'\n' => {
                tokens.push(Token::Operator { op: "\n", at: i });
                i += 1;
            }
            b'|' | b'&' | b';' => {
                let next = bytes.get(i + 1).copied();
                let (op, len): (&'static str, usize) = match (c, next) {
                    (b'|', Some(b'|')) => ("||", 2),
                    (b'|', Some(b'&')) => return Err("a pipe of standard error (|&) is not provably safe".into()),
                    (b'|', _) => ("|", 1),
                    (b'&', Some(b'&')) => ("&&", 2),
                    (b'&', Some(b'>')) => return Err(refusal("a redirection", script, i)),
                    (b'&', _) => return Err("a background job (&) is not provably safe".into()),
                    (b';', Some(b';' | b'&')) => return Err(refusal("a case terminator (;; or ;&)", script, i)),
                    _ => (";", 1),
                };
                tokens.push(Token::Operator { op, at: i });
                i += len;
            }
            _ => {
                let start = i;
                let mut value = String::new();
                i = word(script, i, &mut value)?;
                tokens.push(Token::Word { value, span: start..i });
            }
        }
    }
    Ok(tokens)
}

/// Reads one word starting at `start`; returns where it ends.
fn word(script: &str, start: usize, value: &mut String) -> Result<usize, String> {
    let bytes = script.as_bytes();
    let mut i = start;
    if bytes[i] == b'#' {
        return Err(refusal("a comment", script, i));
    }
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'|' | b'&' | b';' => break,
            b'\'' => {
                let close = script[i + 1..].find('\'').ok_or_else(|| format!("an unterminated single-quoted string at byte {i} (parse error)"))?;
                value.push_str(&script[i + 1..i + 1 + close]);
                i += close + 2;
            }
            b'"' => {
                let body_start = i + 1;
                let close = script[body_start..].find('"').ok_or_else(|| format!("an unterminated double-quoted string at byte {i} (parse error)"))?;
                let body = &script[body_start..body_start + close];
                if let Some(off) = body.find(['$', '`', '\\']) {
                    let what = match body.as_bytes()[off] {
                        b'$' => expansion_kind(&body.as_bytes()[off..]),
                        b'`' => "a command substitution (backticks)",
                        _ => "an escape (\\)",
                    };
                    return Err(refusal(&format!("a double-quoted string with {what}"), script, i));
                }
                value.push_str(body);
                i = body_start + close + 1;
            }
            b'\\' => {
                let what = if bytes.get(i + 1) == Some(&b'\n') { "a line continuation (\\ newline)" } else { "an escape (\\)" };
                return Err(refusal(what, script, i));
            }
            b'$' => return Err(refusal(expansion_kind(&bytes[i..]), script, i)),
            b'`' => return Err(refusal("a command substitution (backticks)", script, i)),
            b'<' | b'>' => {
                let what = match (c, bytes.get(i + 1), bytes.get(i + 2)) {
                    (_, Some(b'('), _) => "a process substitution <( … ) or >( … )",
                    (b'<', Some(b'<'), Some(b'<')) => "a herestring (<<<)",
                    (b'<', Some(b'<'), _) => "a heredoc (<<)",
                    _ => "a redirection",
                };
                return Err(refusal(what, script, i));
            }
            b'(' | b')' => return Err(refusal("a subshell or grouping ( … )", script, i)),
            b'*' | b'?' | b'[' | b']' => return Err(refusal(&format!("a glob character ({:?})", c as char), script, i)),
            b'{' | b'}' => return Err(refusal(&format!("a brace ({:?}): a group or brace expansion", c as char), script, i)),
            b'~' if i == start || matches!(bytes[i - 1], b'=' | b':') => return Err(refusal("a tilde expansion", script, i)),
            0..=0x1f | 0x7f => return Err(format!("a control character U+{c:04X} at byte {i} is not provably safe")),
            _ => {
                // Copy the run of plain bytes up to the next byte that needs a decision.
                let run = bytes[i..].iter().position(|b| needs_decision(*b)).map_or(bytes.len(), |n| i + n.max(1));
                value.push_str(&script[i..run]);
                i = run;
            }
        }
    }
    Ok(i)
}

fn needs_decision(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'|' | b'&' | b';' | b'\'' | b'"' | b'\\' | b'$' | b'`' | b'<' | b'>' | b'(' | b')' | b'*' | b'?' | b'[' | b']' | b'{' | b'}' | b'~' | 0..=0x1f | 0x7f)
}

fn expansion_kind(from_dollar: &[u8]) -> &'static str {
    match (from_dollar.get(1), from_dollar.get(2)) {
        (Some(b'('), Some(b'(')) => "an arithmetic expansion $(( … ))",
        (Some(b'('), _) => "a command substitution $( … )",
        (Some(b'['), _) => "an arithmetic expansion $[ … ]",
        (Some(b'\''), _) => "an ANSI-C string $'…'",
        (Some(b'"'), _) => "a translated string $\"…\"",
        _ => "a variable expansion ($VAR or ${…})",
    }
}

fn refusal(what: &str, script: &str, at: usize) -> String {
    let rest = &script[at..];
    let mut shown: String = rest.chars().take(40).collect();
    if rest.chars().nth(40).is_some() {
        shown.push('…');
    }
    format!("{what} at byte {at} ({shown:?}) is not provably safe")
}

/// brush-parser's tokenizer must read `script` as exactly `tokens`: the same words (by their
/// source text) and the same operators, in the same order.
pub fn agree_with_shell_tokenizer(script: &str, tokens: &[Token]) -> Result<(), String> {
    let options = brush_parser::TokenizerOptions { enable_extended_globbing: false, posix_mode: false, sh_mode: false };
    let theirs = brush_parser::uncached_tokenize_str(script, &options).map_err(|e| format!("the shell tokenizer refuses the script ({e}), so it is not provably safe"))?;
    let disagree = |what: String| Err(format!("the shell tokenizer reads the script differently ({what}), so it is not provably safe"));
    if theirs.len() != tokens.len() {
        return disagree(format!("{} tokens, not {}", theirs.len(), tokens.len()));
    }
    for (mine, theirs) in tokens.iter().zip(&theirs) {
        match (mine, theirs) {
            (Token::Word { span, .. }, brush_parser::Token::Word(text, _)) if script[span.clone()] == **text => {}
            (Token::Operator { op, .. }, brush_parser::Token::Operator(text, _)) if op == text => {}
            (mine, theirs) => return disagree(format!("{:?} where this reader has {}", theirs.to_str(), shown(mine, script))),
        }
    }
    Ok(())
}

fn shown(token: &Token, script: &str) -> String {
    match token {
        Token::Word { span, .. } => format!("the word {:?}", &script[span.clone()]),
        Token::Operator { op, .. } => format!("the operator {op:?}"),
    }
}

/// Reserved words that change what follows them when they start a command.
const RESERVED: &[&str] = &["if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for", "in", "select", "function", "coproc", "{", "}", "!", "[[", "]]"];

/// Groups tokens into commands, checking operators and command positions.
fn commands(tokens: Vec<Token>, operators: &[String]) -> Result<Vec<ShellCommand>, String> {
    let mut out: Vec<ShellCommand> = Vec::new();
    let mut argv: Vec<String> = Vec::new();
    let mut piped = false;
    // The operator that ended the previous command and still needs one after it.
    let mut dangling: Option<&'static str> = None;
    for token in tokens {
        match token {
            Token::Word { value, span } => {
                if argv.is_empty() {
                    check_command_position(&value, span.start)?;
                }
                argv.push(value);
            }
            Token::Operator { op, at } => {
                let allowed_as = if op == "\n" { ";" } else { op };
                if !operators.iter().any(|o| o == allowed_as) {
                    let shown = if op == "\n" { "a newline (a separator like ;)".to_string() } else { format!("the operator {op:?}") };
                    return Err(format!("{shown} is not allowed by exec.operators"));
                }
                if argv.is_empty() {
                    // Blank lines are fine; any other operator needs a command before it.
                    if op == "\n" && dangling.is_none_or(|d| d == "\n" || d == ";") {
                        continue;
                    }
                    return Err(format!("parse error: {op:?} at byte {at} has no command before it"));
                }
                out.push(ShellCommand { argv: std::mem::take(&mut argv), piped_input: piped });
                piped = op == "|";
                dangling = Some(op);
            }
        }
    }
    if argv.is_empty() {
        if let Some(op @ ("&&" | "||" | "|")) = dangling {
            return Err(format!("parse error: the script ends after {op:?}"));
        }
    } else {
        out.push(ShellCommand { argv, piped_input: piped });
    }
    if out.is_empty() {
        return Err("no command in the script".into());
    }
    Ok(out)
}

/// The first word of a command: reserved words and assignments change its meaning.
fn check_command_position(word: &str, at: usize) -> Result<(), String> {
    if RESERVED.contains(&word) {
        let what = match word {
            "!" => "a negated command (!)",
            "{" | "}" => "a command group { … }",
            "[[" | "]]" => "a test [[ … ]]",
            "function" => "a function definition",
            _ => "control flow",
        };
        return Err(format!("{what} (the reserved word {word:?} at byte {at}) is not provably safe"));
    }
    if let Some((name, _)) = word.split_once('=') {
        let name = name.strip_suffix('+').unwrap_or(name);
        let mut chars = name.chars();
        if chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic()) && chars.all(|c| c == '_' || c.is_ascii_alphanumeric()) {
            return Err(format!("a variable assignment (VAR=value) {word:?} at byte {at} is not provably safe"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<String> {
        ["&&", "||", ";", "|"].iter().map(|s| s.to_string()).collect()
    }

    fn argvs(script: &str) -> Vec<Vec<String>> {
        parse(script, &ops()).unwrap_or_else(|e| panic!("{script:?}: {e}")).into_iter().map(|c| c.argv).collect()
    }

    #[test]
    fn accepts_plain_commands_lists_and_pipelines() {
        assert_eq!(argvs("git status"), vec![vec!["git", "status"]]);
        assert_eq!(argvs("ls -la && echo 'a b' \"c d\" x'y'\"z\""), vec![vec!["ls", "-la"], vec!["echo", "a b", "c d", "xyz"]]);
        let piped = parse("cat a | grep -n x | wc -l", &ops()).unwrap();
        assert_eq!(piped.iter().map(|c| c.piped_input).collect::<Vec<_>>(), [false, true, true]);
        assert_eq!(argvs("git diff HEAD~1"), vec![vec!["git", "diff", "HEAD~1"]]);
        assert_eq!(argvs("echo '$(x) `y` \\z' \"\" a=b"), vec![vec!["echo", "$(x) `y` \\z", "", "a=b"]]);
        assert_eq!(argvs("ls;  \tpwd\n\nécho ünïcode || true;"), vec![vec!["ls"], vec!["pwd"], vec!["écho", "ünïcode"], vec!["true"]]);
    }

    #[test]
    fn refuses_everything_else_by_name() {
        for (script, why) in [
            ("echo $(id)", "command substitution"),
            ("echo `id`", "command substitution"),
            ("(cd /; rm x)", "subshell"),
            ("{ ls; }", "group"),
            ("ls > out", "redirection"),
            ("ls 2>&1", "redirection"),
            ("ls &>x", "redirection"),
            ("cat <<EOF\nx\nEOF", "heredoc"),
            ("cat <<< x", "herestring"),
            ("FOO=1 ls", "assignment"),
            ("FOO+=1 ls", "assignment"),
            ("echo $HOME", "expansion"),
            ("echo ${x}", "expansion"),
            ("echo $((1+2))", "arithmetic"),
            ("ls *.rs", "'*'"),
            ("echo {a,b}", "'{'"),
            ("cd ~", "tilde"),
            ("PATH=x:~/bin", "tilde"),
            ("sleep 1 &", "background"),
            ("diff <(ls) x", "process substitution"),
            ("echo \"$x\"", "expansion"),
            ("echo \"a\\\"b\"", "escape"),
            ("a\\;b", "escape"),
            ("ls \\\nrm", "line continuation"),
            ("if true; then ls; fi", "control flow"),
            ("! ls", "negated"),
            ("[[ -f x ]]", "'['"),
            ("function f", "function"),
            ("ls # x", "comment"),
            ("echo $'\\x41'", "ANSI-C"),
            ("ls &&", "parse error"),
            ("&& ls", "parse error"),
            ("ls ; ; ls", "parse error"),
            ("ls |& cat", "|&"),
            ("case x in a) ;; esac", "subshell"),
            ("echo 'open", "unterminated"),
            ("echo \"open", "unterminated"),
            ("", "empty"),
            ("   ", "empty"),
        ] {
            let err = parse(script, &ops()).map(|c| format!("{c:?}")).unwrap_err();
            assert!(err.to_lowercase().contains(&why.to_lowercase()), "{script:?}: {err}");
        }
        let only_and: Vec<String> = vec!["&&".into()];
        assert!(parse("ls; rm x", &only_and).unwrap_err().contains("not allowed by exec.operators"));
        assert!(parse("ls\nrm x", &only_and).unwrap_err().contains("newline"));
    }

    #[test]
    fn words_keep_their_exact_spans() {
        let script = "git  'log' \"-n\"3 | x";
        let tokens = lex(script).unwrap();
        let spans: Vec<&str> = tokens
            .iter()
            .filter_map(|t| match t {
                Token::Word { span, .. } => Some(&script[span.clone()]),
                Token::Operator { .. } => None,
            })
            .collect();
        assert_eq!(spans, ["git", "'log'", "\"-n\"3", "x"]);
    }

    /// The fuzz-found script that drove tree-sitter-bash into an endless parse (issue 5):
    /// refused, promptly, with a reason.
    #[test]
    fn issue5_parser_blowup_input_is_refused_promptly() {
        let long = "bbbb hi| sh  hi| sh s hi|sh hh  hi|| sh s hi|zs ssh s hi|sh hh  h=sDi| ".repeat(60) + ":~ \"bb\"1-rf /";
        let started = std::time::Instant::now();
        let err = parse(&long, &ops()).unwrap_err();
        assert!(err.contains("tilde"), "{err}");
        let flat = "bbbb hi| sh  hi| sh s hi|sh hh  hi|| sh s hi|zs ssh s hi|sh hh  h=sDi| ".repeat(200) + "x";
        assert_eq!(parse(&flat, &ops()).unwrap().len(), 200 * 7 + 1);
        // Generous: the point is "not minutes" (the old parser never finished).
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn deep_nesting_never_reaches_the_tokenizer() {
        for script in ["$(".repeat(20_000), "echo \"$(".repeat(5_000), "`".repeat(20_000), "(".repeat(20_000)] {
            assert!(parse(&script, &ops()).is_err());
        }
    }
}
