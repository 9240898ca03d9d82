use super::*;

fn load_file(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tavern.toml");
    std::fs::write(&file, text).unwrap();
    let overrides = Overrides {
        project: Some(dir.path().to_path_buf()),
        model: None,
    };
    // Environment variables are process-wide, so these tests use files only; the binary's tests
    // cover TAVERN_* overrides.
    Config::load(Some(&file), &overrides)
}

#[test]
fn defaults_resolve_to_a_usable_config() {
    let config = load_file("").unwrap();
    assert_eq!(config.theme, "lotr");
    assert_eq!(config.max_concurrent_calls, 10);
    assert_eq!(config.verify_timeout, Duration::from_secs(30));
    // The test environment has no Anthropic key, so nothing is configured.
    if [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
    ]
    .iter()
    .all(|v| std::env::var_os(v).is_none())
    {
        assert!(config.models.jake.is_none());
    }
    assert!(config.tavern_dir.ends_with(".tavern"));
    assert!(config.project.is_absolute());
}

#[test]
fn values_from_the_file_win_over_defaults() {
    let config = load_file(
        "[tavern]\ntheme = \"star-wars\"\n[model]\nmax_concurrent_calls = 3\ndefault = \"scripted:demo.toml\"\n",
    )
    .unwrap();
    assert_eq!(config.theme, "star-wars");
    assert_eq!(config.max_concurrent_calls, 3);
    let mortal = config.models.mortal.as_deref().unwrap();
    assert!(
        mortal.starts_with("scripted:/") && mortal.ends_with("demo.toml"),
        "{mortal}"
    );
    assert_eq!(config.models.jake, config.models.mortal);
}

#[test]
fn errors_name_the_key() {
    let cases = [
        ("[verify]\ntimeout_secs = \"soon\"\n", "timeout_secs"),
        ("[verify]\ntimeout_secs = -1\n", "verify.timeout_secs"),
        (
            "[model]\nmax_concurrent_calls = 0\n",
            "model.max_concurrent_calls",
        ),
        ("[model]\ndefault = \"gpt:4\"\n", "model.default"),
        ("[tavern]\ntheme = \"klingon\"\n", "tavern.theme"),
        (
            "[tavern]\nproject = \"/nonexistent/dir\"\n",
            "tavern.project",
        ),
        (
            "[supervisor]\nmax_restarts = -2\n",
            "supervisor.max_restarts",
        ),
        // More than an agent remembers would never reap anyone.
        ("[supervisor]\nmax_restarts = 65\n", "must be from 0 to 64"),
        ("[model]\nunknown_key = 1\n", "unknown_key"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("[model\n", "tavern.toml"),
        // An integer beyond TOML's range fails the parser itself, which names neither key nor line.
        (
            "[verify] # limits\ntimeout_secs = 18446744073709551615\n",
            "line 2 (`verify.timeout_secs`)",
        ),
        (
            "[model]\nmax_concurrent_calls = 2305843009213693952\n",
            "it must be from 1 to 10000",
        ),
    ];
    for (text, key) in cases {
        let overrides_project = !text.contains("project");
        let err = if overrides_project {
            load_file(text).unwrap_err().to_string()
        } else {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("tavern.toml");
            std::fs::write(&file, text).unwrap();
            Config::load(Some(&file), &Overrides::default())
                .unwrap_err()
                .to_string()
        };
        assert!(err.contains(key), "{text:?}: {err}");
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let err = Config::load(
        Some(Path::new("/nonexistent/tavern.toml")),
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/nonexistent/tavern.toml"), "{err}");
}

#[test]
fn none_as_the_default_model_means_none_even_with_a_key_in_the_environment() {
    let config = load_file("[model]\ndefault = \"none\"\nmortal = \"claude-code\"\n").unwrap();
    assert_eq!(config.models.jake, None);
    assert_eq!(config.models.drone, None);
    assert_eq!(config.models.mortal.as_deref(), Some("claude-code"));
}

#[test]
fn discord_ids_come_from_numbers_strings_or_comma_lists() {
    let config = load_file(
        "[discord]\nguild_id = 2000\nchannel_id = \"4000\"\nallowed_users = [5000, \"5001\"]\napprovers = \"6000, 6001\"\napi_base_url = \"http://127.0.0.1:9/\"\n",
    )
    .unwrap();
    let d = config.discord;
    assert_eq!((d.guild_id, d.channel_id), (2000, 4000));
    assert_eq!(d.allowed_users, vec![5000, 5001]);
    assert_eq!(d.approvers, vec![6000, 6001]);
    assert_eq!(d.api_base_url.as_deref(), Some("http://127.0.0.1:9"));
    let error = load_file("[discord]\nchannel_id = \"general\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("discord.channel_id") && error.contains("general"),
        "{error}"
    );
}
