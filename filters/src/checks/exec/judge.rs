//! Judging commands: hygiene, wrappers peeled to a bounded depth, the rule classes that run
//! other code (inline-code interpreters, command runners), then prefix rules per segment.

use super::{hygiene, shell, Command};
use clawguard_policies::{ExecDecision, ExecExample, ExecRule, Mode, Policy};
use serde::Serialize;

/// One judged command (a segment of a list or pipeline, after peeling wrappers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// The argv as written (before peeling).
    pub argv: Vec<String>,
    /// The wrappers peeled off, outermost first (`env`, `sh -c`, …).
    pub wrappers: Vec<String>,
    /// The program judged (a basename, or a pinned path).
    pub program: String,
    /// The segment's decision.
    pub decision: &'static str,
    /// The rules that matched it.
    pub rules: Vec<String>,
    /// Why.
    pub reason: String,
}

/// The decision on a whole command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `allow`, `ask` or `deny`: the strictest of the segments'.
    pub decision: &'static str,
    /// Why (the deciding segment's reason).
    pub reason: String,
    /// Every segment, in order.
    pub segments: Vec<Segment>,
    /// Every rule that matched any segment.
    pub matched_rules: Vec<String>,
    /// `false` when the deciding rule (or the exec mode) is dry-run: record, do not refuse.
    pub enforce: bool,
}

impl Verdict {
    /// The decision as a value.
    pub fn decision(&self) -> ExecDecision {
        match self.decision {
            "allow" => ExecDecision::Allow,
            "ask" => ExecDecision::Ask,
            _ => ExecDecision::Deny,
        }
    }

    fn refused(reason: String, enforce: bool) -> Verdict {
        Verdict { decision: "deny", reason, segments: Vec::new(), matched_rules: Vec::new(), enforce }
    }
}

/// A rule whose examples do not hold: the policy is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exec rule {rule:?}: {problem}")]
pub struct ExecPolicyError {
    /// The rule.
    pub rule: String,
    /// What is wrong (the example and what it did).
    pub problem: String,
    /// Where the rule's pattern is in the policy file.
    pub span: std::ops::Range<usize>,
}

/// The `[exec]` policy, compiled.
#[derive(Debug, Clone)]
pub struct ExecPolicy {
    rules: Vec<ExecRule>,
    /// Rule indexes by the program names their first token lists.
    by_program: std::collections::HashMap<String, Vec<usize>>,
    default: ExecDecision,
    operators: Vec<String>,
    max_depth: usize,
    max_bytes: usize,
    mode: Mode,
}

const SHELLS: &[&str] = &["sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "busybox"];
const INTERPRETERS: &[(&str, &[&str])] = &[
    ("python", &["-c"]),
    ("python2", &["-c"]),
    ("python3", &["-c"]),
    ("pypy", &["-c"]),
    ("pypy3", &["-c"]),
    ("node", &["-e", "--eval", "-p", "--print"]),
    ("nodejs", &["-e", "--eval", "-p", "--print"]),
    ("bun", &["-e", "--eval", "-p", "--print"]),
    ("deno", &["eval"]),
    ("perl", &["-e", "-E"]),
    ("ruby", &["-e"]),
    ("php", &["-r", "-R", "-B", "-E"]),
    ("osascript", &["-e"]),
    ("lua", &["-e"]),
    ("Rscript", &["-e"]),
    ("tclsh", &[]),
    ("pwsh", &["-c", "-command", "-Command"]),
];
/// Programs whose first argument is always a program text.
const PROGRAM_TEXT: &[&str] = &["awk", "gawk", "mawk", "nawk"];
/// Programs that run other commands given as arguments.
const RUNNERS: &[&str] = &["xargs", "eval", "exec", "source", ".", "parallel", "watch", "sudo", "su", "doas", "chroot", "nsenter", "unshare", "setsid", "flock", "script", "ssh"];

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

fn python_like(name: &str) -> bool {
    name.strip_prefix("python").is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

struct Judging<'a> {
    policy: &'a ExecPolicy,
    segments: Vec<Segment>,
}

impl ExecPolicy {
    /// Compiles `[exec]`, checking every rule's `match` / `not_match` examples.
    pub fn new(policy: &Policy) -> Result<ExecPolicy, ExecPolicyError> {
        let exec = &policy.exec;
        let mut by_program: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
        for (i, rule) in exec.rules.iter().enumerate() {
            let names: &[String] = match rule.pattern.get_ref().first() {
                Some(clawguard_policies::PatternToken::One(w)) => std::slice::from_ref(w),
                Some(clawguard_policies::PatternToken::Any(ws)) => ws,
                None => &[],
            };
            for name in names {
                let indexes = by_program.entry(name.clone()).or_default();
                if indexes.last() != Some(&i) {
                    indexes.push(i);
                }
            }
        }
        let compiled = ExecPolicy {
            rules: exec.rules.clone(),
            by_program,
            default: exec.default,
            operators: exec.operators.clone(),
            max_depth: exec.max_wrapper_depth,
            max_bytes: exec.max_command_bytes,
            mode: exec.mode.unwrap_or(policy.mode),
        };
        for rule in &compiled.rules {
            let fail = |problem: String| ExecPolicyError { rule: rule.name.clone(), problem, span: rule.pattern.span() };
            for (examples, want) in [(&rule.match_examples, true), (&rule.not_match, false)] {
                for example in examples {
                    let argv = match example {
                        ExecExample::Argv(a) => a.clone(),
                        ExecExample::Shell(s) => match shell::parse(s, &compiled.operators) {
                            Ok(cmds) if cmds.len() == 1 => cmds[0].argv.clone(),
                            Ok(_) => return Err(fail(format!("example {s:?} is several commands: expected one"))),
                            Err(e) => return Err(fail(format!("example {s:?} cannot be parsed: {e}"))),
                        },
                    };
                    if rule_matches(rule, &argv) != want {
                        let verb = if want { "match" } else { "not_match" };
                        return Err(fail(format!("{verb} example {argv:?} {} the pattern", if want { "does not match" } else { "matches" })));
                    }
                }
            }
        }
        Ok(compiled)
    }

    /// Judges a command in either shape.
    pub fn check(&self, command: &Command) -> Verdict {
        match command {
            Command::Argv(argv) => self.check_argv(argv),
            Command::Shell(script) => self.check_shell(script),
        }
    }

    /// Judges an argv.
    pub fn check_argv(&self, argv: &[String]) -> Verdict {
        let size: usize = argv.iter().map(|a| a.len() + 1).sum();
        if size > self.max_bytes {
            return Verdict::refused(format!("the command is {size} bytes, over exec.max_command_bytes ({})", self.max_bytes), self.enforce(None));
        }
        for (i, arg) in argv.iter().enumerate() {
            if let Err(e) = hygiene::check(arg) {
                return Verdict::refused(format!("argument {i} contains {e}"), self.enforce(None));
            }
        }
        let mut j = Judging { policy: self, segments: Vec::new() };
        j.command(argv, Vec::new(), false, 0);
        self.verdict(j.segments)
    }

    /// Judges a shell script (`rawCommand`, the `exec` tool's `command`).
    pub fn check_shell(&self, script: &str) -> Verdict {
        if script.len() > self.max_bytes {
            return Verdict::refused(format!("the script is {} bytes, over exec.max_command_bytes ({})", script.len(), self.max_bytes), self.enforce(None));
        }
        if let Err(e) = hygiene::check(script) {
            return Verdict::refused(format!("the script contains {e}"), self.enforce(None));
        }
        let mut j = Judging { policy: self, segments: Vec::new() };
        j.script(script, Vec::new(), 0);
        self.verdict(j.segments)
    }

    fn enforce(&self, rule_mode: Option<Mode>) -> bool {
        rule_mode.unwrap_or(self.mode) == Mode::Enforce
    }

    fn verdict(&self, segments: Vec<Segment>) -> Verdict {
        let rank = |d: &str| match d {
            "allow" => 0,
            "ask" => 1,
            _ => 2,
        };
        let deciding = segments.iter().max_by_key(|s| rank(s.decision));
        let Some(deciding) = deciding else { return Verdict::refused("no command".into(), self.enforce(None)) };
        let mut matched_rules: Vec<String> = segments.iter().flat_map(|s| s.rules.iter().cloned()).collect();
        matched_rules.dedup();
        // The deciding rule's own mode (per-rule dry-run), else the exec mode.
        let mode = deciding.rules.iter().filter_map(|name| self.rules.iter().find(|r| &r.name == name)).find(|r| r.decision.name() == deciding.decision).and_then(|r| r.mode);
        let (decision, reason, enforce) = (deciding.decision, deciding.reason.clone(), self.enforce(mode));
        Verdict { decision, reason, segments, matched_rules, enforce }
    }
}

fn rule_matches(rule: &ExecRule, argv: &[String]) -> bool {
    let pattern = rule.pattern.get_ref();
    let Some((first, rest)) = pattern.split_first() else { return false };
    let Some(program) = argv.first() else { return false };
    let name_ok = if program.contains('/') {
        rule.paths.iter().any(|p| p == program) && first.matches(basename(program))
    } else {
        first.matches(program)
    };
    name_ok && argv.len() > rest.len() && rest.iter().zip(&argv[1..]).all(|(t, w)| t.matches(w))
}

/// Whether a rule names `program` by its first token (the rule classes need that).
fn names_program(rule: &ExecRule, program: &str) -> bool {
    rule.pattern.get_ref().first().is_some_and(|t| t.matches(program))
}

impl Judging<'_> {
    fn push(&mut self, argv: &[String], wrappers: Vec<String>, program: &str, decision: ExecDecision, rules: Vec<String>, reason: String) {
        self.segments.push(Segment { argv: argv.to_vec(), wrappers, program: program.to_string(), decision: decision.name(), rules, reason });
    }

    fn deny(&mut self, argv: &[String], wrappers: Vec<String>, reason: String) {
        let program = argv.first().map(|p| basename(p).to_string()).unwrap_or_default();
        self.push(argv, wrappers, &program, ExecDecision::Deny, Vec::new(), reason);
    }

    fn script(&mut self, script: &str, wrappers: Vec<String>, depth: usize) {
        match shell::parse(script, &self.policy.operators) {
            Err(e) => self.deny(&[script.to_string()], wrappers, e),
            Ok(commands) => {
                for c in commands {
                    self.command(&c.argv, wrappers.clone(), c.piped_input, depth);
                }
            }
        }
    }

    /// Judges one argv: peels a wrapper (and recurses), or applies the rule classes and rules.
    fn command(&mut self, argv: &[String], wrappers: Vec<String>, piped: bool, depth: usize) {
        let Some(first) = argv.first() else { return self.deny(argv, wrappers, "an empty command".into()) };
        if depth > self.policy.max_depth {
            return self.deny(argv, wrappers, format!("more than {} nested wrappers: peeling ran out of budget", self.policy.max_depth));
        }
        let program = basename(first);
        if first.contains('/') && !self.policy.rules.iter().any(|r| r.paths.iter().any(|p| p == first)) {
            return self.deny(argv, wrappers, format!("{first} is named by a path no rule pins (rules match programs by name; a path needs `paths` in a rule)"));
        }
        // A wrapper around a command is always peeled (a rule naming the wrapper never
        // covers what it runs); a wrapper with nothing to run is judged as a program.
        match peel(program, argv) {
            Peeled::Inner(inner) => {
                let mut w = wrappers;
                w.push(program.to_string());
                return self.command(&inner, w, piped, depth + 1);
            }
            Peeled::Script { script, positional } => {
                let mut w = wrappers;
                w.push(format!("{program} -c"));
                if positional {
                    return self.deny(argv, w, format!("{program} -c with positional arguments after the script (a carrier for $0/$@) is not provably safe"));
                }
                return self.script(&script, w, depth + 1);
            }
            Peeled::Refused(why) => return self.deny(argv, wrappers, why),
            Peeled::NotAWrapper => {}
        }
        let candidates = self.policy.by_program.get(program).map(Vec::as_slice).unwrap_or(&[]);
        let matched: Vec<&ExecRule> = candidates.iter().map(|i| &self.policy.rules[*i]).filter(|r| rule_matches(r, argv)).collect();
        if let Some(class) = runs_other_code(program, argv, piped) {
            // Only a rule that names the program and constrains its arguments lets it through
            // (a broad rule naming many programs does not cover their code-running forms).
            if !matched.iter().any(|r| names_program(r, program) && r.pattern.get_ref().len() > 1) {
                return self.deny(argv, wrappers, format!("{class}: denied unless a rule names {program} with these arguments"));
            }
        }
        let Some(strictest) = matched.iter().map(|r| r.decision).max() else {
            let decision = self.policy.default;
            let reason = format!("no rule matches {program}: exec.default is {}", decision.name());
            return self.push(argv, wrappers, program, decision, Vec::new(), reason);
        };
        let deciding = matched.iter().find(|r| r.decision == strictest).expect("the strictest decision comes from a rule");
        let why = deciding.justification.clone().map(|j| format!(": {j}")).unwrap_or_default();
        let reason = format!("rule {:?} ({}){why}", deciding.name, strictest.name());
        let names = matched.iter().map(|r| r.name.clone()).collect();
        self.push(argv, wrappers, program, strictest, names, reason);
    }
}

enum Peeled {
    Inner(Vec<String>),
    Script { script: String, positional: bool },
    Refused(String),
    NotAWrapper,
}

fn is_duration(s: &str) -> bool {
    let digits = s.trim_end_matches(['s', 'm', 'h', 'd']);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Peels one wrapper off `argv`, if `program` is one.
fn peel(program: &str, argv: &[String]) -> Peeled {
    let args = &argv[1..];
    let rest = |i: usize| Peeled::Inner(args[i..].to_vec());
    match program {
        "env" => {
            let mut i = 0;
            while i < args.len() {
                let a = args[i].as_str();
                match a {
                    "-i" | "--ignore-environment" | "-0" | "--null" | "-" => i += 1,
                    "--" => {
                        i += 1;
                        break;
                    }
                    "-u" | "--unset" | "-C" | "--chdir" => i += 2,
                    _ if a.starts_with("--unset=") || a.starts_with("--chdir=") || (a.starts_with("-u") && a.len() > 2) => i += 1,
                    "-S" | "--split-string" | "-v" | "--debug" => return Peeled::Refused(format!("env {a} is not provably safe")),
                    _ if a.starts_with('-') => return Peeled::Refused(format!("env option {a} is not understood")),
                    _ => break,
                }
            }
            while i < args.len() && args[i].contains('=') && !args[i].starts_with('=') {
                i += 1;
            }
            if i >= args.len() {
                return Peeled::NotAWrapper; // `env` alone prints the environment
            }
            rest(i)
        }
        "command" => match args.first().map(String::as_str) {
            Some("-v" | "-V") | None => Peeled::NotAWrapper,
            Some("-p") => match args.get(1).map(String::as_str) {
                Some("--") => rest(2),
                _ => rest(1),
            },
            Some("--") => rest(1),
            Some(a) if a.starts_with('-') => Peeled::Refused(format!("command option {a} is not understood")),
            Some(_) => rest(0),
        },
        "nice" => {
            let mut i = 0;
            while i < args.len() {
                let a = args[i].as_str();
                if a == "-n" {
                    i += 2;
                } else if a.starts_with("--adjustment=") || (a.starts_with("-n") && a.len() > 2) || (a.starts_with('-') && a[1..].chars().all(|c| c.is_ascii_digit()) && a.len() > 1) {
                    i += 1;
                } else if a == "--" {
                    i += 1;
                    break;
                } else if a.starts_with('-') {
                    return Peeled::Refused(format!("nice option {a} is not understood"));
                } else {
                    break;
                }
            }
            if i >= args.len() { Peeled::NotAWrapper } else { rest(i) }
        }
        "nohup" => match args.first().map(String::as_str) {
            None => Peeled::NotAWrapper,
            Some("--") => rest(1),
            Some(_) => rest(0),
        },
        "time" => {
            let i = args.iter().take_while(|a| matches!(a.as_str(), "-p" | "-v" | "--verbose" | "--portability")).count();
            if i >= args.len() { Peeled::NotAWrapper } else { rest(i) }
        }
        "timeout" => {
            let mut i = 0;
            while i < args.len() {
                let a = args[i].as_str();
                match a {
                    "-s" | "--signal" | "-k" | "--kill-after" => i += 2,
                    "--foreground" | "--preserve-status" | "-v" | "--verbose" => i += 1,
                    _ if a.starts_with("--signal=") || a.starts_with("--kill-after=") || (a.starts_with("-s") && a.len() > 2) || (a.starts_with("-k") && a.len() > 2) => i += 1,
                    "--" => {
                        i += 1;
                        break;
                    }
                    _ if a.starts_with('-') => return Peeled::Refused(format!("timeout option {a} is not understood")),
                    _ => break,
                }
            }
            match args.get(i) {
                Some(d) if is_duration(d) && i + 1 < args.len() => rest(i + 1),
                _ => Peeled::Refused("timeout without a duration and a command".into()),
            }
        }
        "stdbuf" => {
            let mut i = 0;
            while i < args.len() {
                let a = args[i].as_str();
                match a {
                    "-i" | "-o" | "-e" => i += 2,
                    _ if a.starts_with("--input=") || a.starts_with("--output=") || a.starts_with("--error=") || ((a.starts_with("-i") || a.starts_with("-o") || a.starts_with("-e")) && a.len() > 2) => i += 1,
                    "--" => {
                        i += 1;
                        break;
                    }
                    _ if a.starts_with('-') => return Peeled::Refused(format!("stdbuf option {a} is not understood")),
                    _ => break,
                }
            }
            if i >= args.len() { Peeled::NotAWrapper } else { rest(i) }
        }
        _ if SHELLS.contains(&program) => peel_shell(program, args),
        _ => Peeled::NotAWrapper,
    }
}

/// `sh -c SCRIPT`, `bash -lc SCRIPT`, `zsh -ec SCRIPT`, `busybox sh -c SCRIPT`.
fn peel_shell(program: &str, args: &[String]) -> Peeled {
    let args = if program == "busybox" {
        match args.first().map(String::as_str) {
            Some(s) if SHELLS.contains(&s) && s != "busybox" => &args[1..],
            _ => return Peeled::NotAWrapper,
        }
    } else {
        args
    };
    let mut i = 0;
    let mut command_mode = false;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" || a == "-" {
            i += 1;
            break;
        }
        if a == "-o" || a == "+o" || a == "-O" || a == "+O" {
            i += 2;
            continue;
        }
        if a.starts_with("--") {
            match a {
                "--login" | "--noprofile" | "--norc" | "--posix" | "--noediting" => {
                    i += 1;
                    continue;
                }
                _ => return Peeled::Refused(format!("{program} option {a} is not understood")),
            }
        }
        if (a.starts_with('-') || a.starts_with('+')) && a.len() > 1 {
            if a[1..].contains('c') {
                command_mode = true;
            }
            if a[1..].contains('s') || a[1..].contains('i') {
                return Peeled::Refused(format!("{program} {a} reads commands from its input, which is not provably safe"));
            }
            i += 1;
            continue;
        }
        break;
    }
    match (command_mode, args.get(i)) {
        (true, Some(script)) => Peeled::Script { script: script.clone(), positional: args.len() > i + 1 },
        (true, None) => Peeled::Refused(format!("{program} -c without a script")),
        // A script file, or standard input: the rule classes and rules decide.
        (false, _) => Peeled::NotAWrapper,
    }
}

/// The rule class of a program that runs code it is given, if it is one.
fn runs_other_code(program: &str, argv: &[String], piped: bool) -> Option<&'static str> {
    let args = &argv[1..];
    if RUNNERS.contains(&program) {
        return Some("a program that runs other commands");
    }
    if program == "find" && args.iter().any(|a| matches!(a.as_str(), "-exec" | "-execdir" | "-ok" | "-okdir")) {
        return Some("find -exec runs other commands");
    }
    if PROGRAM_TEXT.contains(&program) {
        return Some("an inline-code interpreter (its program is an argument)");
    }
    let flags: Option<&[&str]> = INTERPRETERS.iter().find(|(name, _)| *name == program).map(|(_, f)| *f).or_else(|| python_like(program).then_some(&["-c"][..]));
    let is_shell = SHELLS.contains(&program);
    if let Some(flags) = flags {
        if args.iter().any(|a| flags.contains(&a.as_str()) || flags.iter().any(|f| f.starts_with('-') && f.len() == 2 && a.starts_with(f) && a.len() > 2 && !a.starts_with("--"))) {
            return Some("an inline-code interpreter");
        }
    }
    if flags.is_some() || is_shell {
        // No script file and no informational flag: the program text comes from standard input.
        const INFO: &[&str] = &["--version", "-V", "--help", "-h", "-v", "-m", "--check"];
        let reads_stdin = args.iter().any(|a| a == "-") || (args.iter().all(|a| a.starts_with('-')) && !args.iter().any(|a| INFO.contains(&a.as_str())));
        if reads_stdin {
            return Some(if piped { "an interpreter reading a program from a pipe" } else { "an interpreter reading a program from its input" });
        }
    }
    None
}

#[cfg(test)]
mod tests;
