//! Shell scripts as argv lists, or "not provably safe". The script is parsed with
//! tree-sitter-bash, and only an allow-list of syntax is accepted: plain commands whose words
//! are literal (bare words without expansion characters, single-quoted strings, double-quoted
//! strings without expansions or escapes), joined by the list and pipeline operators the
//! policy allows. Every other node kind (subshells, groups, substitutions, redirections,
//! assignments, expansions, control flow, comments, parse errors) is refused, named.

use std::cell::RefCell;
use std::time::{Duration, Instant};
use tree_sitter::{Node, Parser};

/// The longest a script may take to parse.
pub const PARSE_BUDGET: Duration = Duration::from_millis(50);

/// One command of a script, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    /// Its words, as the shell would pass them.
    pub argv: Vec<String>,
    /// Whether its standard input is the previous command's output (`a | b`: b).
    pub piped_input: bool,
}

thread_local! {
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

/// Parses `script` into its commands, or says why it is not provably safe.
pub fn parse(script: &str, operators: &[String]) -> Result<Vec<ShellCommand>, String> {
    if script.trim().is_empty() {
        return Err("empty script".into());
    }
    let tree = PARSER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let parser = match slot.as_mut() {
            Some(p) => p,
            None => {
                let mut p = Parser::new();
                p.set_language(&tree_sitter_bash::LANGUAGE.into()).map_err(|e| format!("the shell grammar cannot be loaded: {e}"))?;
                slot.insert(p)
            }
        };
        // Some inputs drive the GLR parser into a blow-up (found by fuzzing): bound its time, and
        // refuse what cannot be parsed within it.
        parser.reset();
        let deadline = Instant::now() + PARSE_BUDGET;
        let mut give_up = |_: &tree_sitter::ParseState| Instant::now() > deadline;
        let options = tree_sitter::ParseOptions::new().progress_callback(&mut give_up);
        let bytes = script.as_bytes();
        let mut read = |offset: usize, _: tree_sitter::Point| -> &[u8] { bytes.get(offset..).unwrap_or(&[]) };
        let tree = parser.parse_with_options(&mut read, None, Some(options));
        if tree.is_none() {
            parser.reset();
        }
        tree.ok_or_else(|| format!("the script could not be parsed within {} ms, so it is not provably safe", PARSE_BUDGET.as_millis()))
    })?;
    let root = tree.root_node();
    if root.has_error() {
        return Err(first_error(root, script).unwrap_or_else(|| "parse error".into()));
    }
    let mut out = Vec::new();
    walk(root, script, operators, false, &mut out)?;
    if out.is_empty() {
        return Err("no command in the script".into());
    }
    Ok(out)
}

fn snippet(node: Node<'_>, src: &str) -> String {
    let text = &src[node.byte_range()];
    let mut s: String = text.chars().take(40).collect();
    if text.chars().count() > 40 {
        s.push('…');
    }
    s
}

fn first_error(node: Node<'_>, src: &str) -> Option<String> {
    if node.is_error() || node.is_missing() {
        return Some(format!("parse error at byte {}: {:?}", node.start_byte(), snippet(node, src)));
    }
    let mut cursor = node.walk();
    let children: Vec<Node<'_>> = node.children(&mut cursor).collect();
    children.into_iter().find_map(|c| first_error(c, src))
}

fn describe(kind: &str) -> &'static str {
    match kind {
        "subshell" => "a subshell ( … )",
        "compound_statement" => "a command group { … }",
        "command_substitution" => "a command substitution $( … ) or backticks",
        "process_substitution" => "a process substitution <( … ) or >( … )",
        "redirected_statement" | "file_redirect" => "a redirection",
        "heredoc_redirect" | "heredoc_body" | "heredoc_start" => "a heredoc",
        "herestring_redirect" => "a herestring",
        "variable_assignment" | "variable_assignments" => "a variable assignment (VAR=value)",
        "simple_expansion" | "expansion" => "a variable expansion ($VAR or ${…})",
        "arithmetic_expansion" => "an arithmetic expansion $(( … ))",
        "brace_expression" => "a brace expansion",
        "ansi_c_string" => "an ANSI-C string $'…'",
        "translated_string" => "a translated string $\"…\"",
        "comment" => "a comment",
        "function_definition" => "a function definition",
        "if_statement" | "while_statement" | "for_statement" | "c_style_for_statement" | "case_statement" => "control flow",
        "negated_command" => "a negated command (!)",
        "test_command" => "a test [[ … ]]",
        "declaration_command" | "unset_command" => "a declaration",
        _ => "shell syntax outside the accepted subset",
    }
}

fn refuse(node: Node<'_>, src: &str) -> String {
    let mut what = describe(node.kind());
    if node.kind() == "redirected_statement" {
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            if matches!(child.kind(), "heredoc_redirect" | "herestring_redirect") {
                what = describe(child.kind());
            }
        }
    }
    format!("{what} ({:?}) is not provably safe", snippet(node, src))
}

fn walk(node: Node<'_>, src: &str, operators: &[String], piped: bool, out: &mut Vec<ShellCommand>) -> Result<(), String> {
    match node.kind() {
        "program" | "list" | "pipeline" => {
            let is_pipeline = node.kind() == "pipeline";
            let mut cursor = node.walk();
            let mut seen_command = false;
            for child in node.children(&mut cursor) {
                if child.is_named() {
                    walk(child, src, operators, piped || (is_pipeline && seen_command), out)?;
                    seen_command = true;
                    continue;
                }
                let op = child.kind();
                match op {
                    "&&" | "||" | ";" | "|" if operators.iter().any(|o| o == op) => {}
                    "&&" | "||" | ";" | "|" => return Err(format!("the operator {op:?} is not allowed by exec.operators")),
                    "&" => return Err("a background job (&) is not provably safe".into()),
                    "|&" => return Err("a pipe of standard error (|&) is not provably safe".into()),
                    _ => return Err(format!("the token {:?} is not provably safe", snippet(child, src))),
                }
            }
            Ok(())
        }
        "command" => {
            let mut argv = Vec::new();
            let mut cursor = node.walk();
            for child in node.children(&mut cursor) {
                let word = match child.kind() {
                    "command_name" => {
                        let mut c = child.walk();
                        let inner: Vec<Node<'_>> = child.named_children(&mut c).collect();
                        match inner.as_slice() {
                            [only] => literal(*only, src)?,
                            _ => return Err(refuse(child, src)),
                        }
                    }
                    _ if child.is_named() => literal(child, src)?,
                    _ => return Err(refuse(child, src)),
                };
                argv.push(word);
            }
            if argv.is_empty() {
                return Err("an empty command".into());
            }
            out.push(ShellCommand { argv, piped_input: piped });
            Ok(())
        }
        _ => Err(refuse(node, src)),
    }
}

/// The literal value of a word node, or why it is not literal.
fn literal(node: Node<'_>, src: &str) -> Result<String, String> {
    let text = &src[node.byte_range()];
    match node.kind() {
        "word" | "number" => {
            check_bare(text)?;
            Ok(text.to_string())
        }
        "raw_string" => Ok(text.trim_start_matches('\'').trim_end_matches('\'').to_string()).and_then(|s| {
            if text.len() < 2 || !text.starts_with('\'') || !text.ends_with('\'') {
                Err(format!("a malformed single-quoted string ({text:?})"))
            } else {
                Ok(s)
            }
        }),
        "string" => {
            let mut value = String::new();
            let mut cursor = node.walk();
            for child in node.children(&mut cursor) {
                match child.kind() {
                    "\"" => {}
                    "string_content" => {
                        let content = &src[child.byte_range()];
                        if let Some(c) = content.chars().find(|c| matches!(c, '\\' | '$' | '`')) {
                            return Err(format!("a double-quoted string with {c:?} ({:?}) is not provably safe", snippet(node, src)));
                        }
                        value.push_str(content);
                    }
                    _ => return Err(refuse(child, src)),
                }
            }
            Ok(value)
        }
        "concatenation" => {
            let mut value = String::new();
            let mut cursor = node.walk();
            for child in node.children(&mut cursor) {
                value.push_str(&literal(child, src)?);
            }
            Ok(value)
        }
        _ => Err(refuse(node, src)),
    }
}

/// A bare word is literal when it has no escape, expansion, glob or tilde.
fn check_bare(text: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("the word {text:?} has {why}, which is not provably safe"));
    if let Some(c) = text.chars().find(|c| matches!(c, '\\' | '$' | '`' | '*' | '?' | '[' | ']' | '{' | '}' | '(' | ')' | '<' | '>' | '&' | ';' | '|' | '\'' | '"')) {
        return bad(&format!("{c:?}"));
    }
    if text.starts_with('~') || text.contains("=~") || text.contains(":~") {
        return bad("a tilde expansion");
    }
    if text.starts_with('#') {
        return bad("a comment");
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
    }

    #[test]
    fn refuses_everything_else_by_name() {
        for (script, why) in [
            ("echo $(id)", "command substitution"),
            ("echo `id`", "command substitution"),
            ("(cd /; rm x)", "subshell"),
            ("{ ls; }", "group"),
            ("ls > out", "redirection"),
            ("cat <<EOF\nx\nEOF", "heredoc"),
            ("cat <<< x", "herestring"),
            ("FOO=1 ls", "assignment"),
            ("echo $HOME", "expansion"),
            ("echo ${x}", "expansion"),
            ("ls *.rs", "'*'"),
            ("echo {a,b}", "'{'"),
            ("cd ~", "tilde"),
            ("sleep 1 &", "background"),
            ("diff <(ls) x", "process substitution"),
            ("echo \"$x\"", "expansion"),
            ("echo \"a\\\"b\"", "'\\\\'"),
            ("a\\;b", "'\\\\'"),
            ("if true; then ls; fi", "control flow"),
            ("ls # x", "comment"),
            ("echo $'\\x41'", "ANSI-C"),
            ("ls &&", "parse error"),
            ("", "empty"),
        ] {
            let err = parse(script, &ops()).map(|c| format!("{c:?}")).unwrap_err();
            assert!(err.to_lowercase().contains(&why.to_lowercase()), "{script:?}: {err}");
        }
        let only_and: Vec<String> = vec!["&&".into()];
        assert!(parse("ls; rm x", &only_and).unwrap_err().contains("not allowed by exec.operators"));
    }
}


