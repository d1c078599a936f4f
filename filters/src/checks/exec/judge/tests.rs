use super::*;
use clawguard_policies::LoadedPolicy;

fn policy(rules: &str) -> ExecPolicy {
    ExecPolicy::new(&LoadedPolicy::parse("t.toml", rules).unwrap().policy).unwrap()
}

const RULES: &str = r#"
[[exec.rule]]
name = "echo"
pattern = ["echo"]
decision = "allow"
[[exec.rule]]
name = "git-read"
pattern = ["git", ["status", "log", "diff"]]
decision = "allow"
match = [["git", "status"], "git log -n 1"]
not_match = ["git push"]
[[exec.rule]]
name = "git-push"
pattern = ["git", "push"]
decision = "ask"
[[exec.rule]]
name = "no-force"
pattern = ["git", "push", "--force"]
decision = "deny"
[[exec.rule]]
name = "pinned-ls"
pattern = ["ls"]
paths = ["/bin/ls"]
decision = "allow"
"#;

#[test]
fn every_segment_is_judged_and_the_strictest_wins() {
    let p = policy(RULES);
    assert_eq!(p.check_shell("git status && echo ok").decision, "allow");
    assert_eq!(p.check_shell("git status && git push").decision, "ask");
    let v = p.check_shell("echo hi; git push --force");
    assert_eq!(v.decision, "deny");
    assert!(v.reason.contains("no-force"), "{}", v.reason);
    assert_eq!(v.segments.len(), 2);
    assert_eq!(p.check_shell("echo hi; rm -rf /").decision, "deny");
    assert!(p.check_shell("rm x").reason.contains("no rule matches rm"));
}

#[test]
fn programs_by_name_and_paths_only_where_pinned() {
    let p = policy(RULES);
    assert_eq!(p.check_argv(&["/bin/ls".into(), "-la".into()]).decision, "allow");
    assert_eq!(p.check_argv(&["/usr/bin/echo".into(), "x".into()]).decision, "deny");
    assert_eq!(p.check_argv(&["./echo".into()]).decision, "deny");
    assert_eq!(p.check_argv(&["arm".into()]).decision, "deny", "rm never matches a substring");
}

#[test]
fn wrappers_are_peeled_within_budget() {
    let p = policy(RULES);
    let v = p.check_argv(&["env".into(), "-i".into(), "A=1".into(), "nice".into(), "-n".into(), "5".into(), "git".into(), "status".into()]);
    assert_eq!(v.decision, "allow", "{v:?}");
    assert_eq!(v.segments[0].wrappers, ["env", "nice"]);
    assert_eq!(p.check_argv(&["sh".into(), "-c".into(), "echo hi; rm -rf /".into()]).decision, "deny");
    assert_eq!(p.check_argv(&["bash".into(), "-lc".into(), "git log".into()]).decision, "allow");
    let nested_shells = p.check_shell("sh -c 'sh -c \"echo x\"'");
    assert_eq!((nested_shells.decision, nested_shells.segments[0].wrappers.clone()), ("allow", vec!["sh -c".to_string(), "sh -c".to_string()]));
    assert_eq!(p.check_shell("sh -c 'sh -c \"echo x; rm y\"'").decision, "deny");
    let mut nested = vec!["echo".to_string(), "x".to_string()];
    for _ in 0..6 {
        nested.insert(0, "nohup".into());
    }
    let v = p.check_argv(&nested);
    assert!(v.decision == "deny" && v.reason.contains("budget"), "{v:?}");
    let v = p.check_argv(&["sh".into(), "-c".into(), "$0 \"$@\"".into(), "rm".into(), "-rf".into()]);
    assert!(v.decision == "deny", "{v:?}");
}

#[test]
fn interpreters_and_runners_need_a_rule_that_names_them() {
    let p = policy(RULES);
    for argv in [vec!["python3", "-c", "print(1)"], vec!["node", "-e", "1"], vec!["xargs", "rm"], vec!["find", ".", "-exec", "rm", "{}", ";"], vec!["awk", "BEGIN{}"]] {
        let argv: Vec<String> = argv.into_iter().map(String::from).collect();
        let v = p.check_argv(&argv);
        assert!(v.decision == "deny" && v.reason.contains("denied unless a rule names"), "{argv:?}: {v:?}");
    }
    let v = p.check_shell("echo 'x' | node");
    assert!(v.decision == "deny" && v.reason.contains("pipe"), "{v:?}");
    let with_rule = policy("[[exec.rule]]\nname = \"py\"\npattern = [\"python3\", \"-c\", \"print(1)\"]\ndecision = \"allow\"\n");
    assert_eq!(with_rule.check_argv(&["python3".into(), "-c".into(), "print(1)".into()]).decision, "allow");
    assert_eq!(with_rule.check_argv(&["python3".into(), "-c".into(), "import os".into()]).decision, "deny");
}

#[test]
fn examples_are_checked_when_the_policy_loads() {
    let bad = LoadedPolicy::parse("t.toml", "[[exec.rule]]\nname = \"git\"\npattern = [\"git\", \"status\"]\ndecision = \"allow\"\nmatch = [\"git log\"]\n").unwrap().policy;
    let err = ExecPolicy::new(&bad).unwrap_err();
    assert!(err.to_string().contains("\"git\"") && err.to_string().contains("git") && err.problem.contains("does not match"), "{err}");
    let bad = LoadedPolicy::parse("t.toml", "[[exec.rule]]\nname = \"git\"\npattern = [\"git\"]\ndecision = \"allow\"\nnot_match = [[\"git\", \"push\"]]\n").unwrap().policy;
    assert!(ExecPolicy::new(&bad).unwrap_err().problem.contains("not_match"));
}

#[test]
fn dry_run_rules_record_without_refusing() {
    let p = policy("[[exec.rule]]\nname = \"rm\"\npattern = [\"rm\"]\ndecision = \"deny\"\nmode = \"dry-run\"\n");
    let v = p.check_argv(&["rm".into(), "x".into()]);
    assert_eq!((v.decision, v.enforce), ("deny", false));
    let v = p.check_argv(&["ls".into()]);
    assert_eq!((v.decision, v.enforce), ("deny", true));
}
