//! Tests for the naming policy: determinism, tier order, uniqueness, fallbacks and name validity.

use std::collections::HashSet;

use super::*;

/// Draws `count` names from `theme`, recording each in `used` the way a tavern would: lower-cased,
/// so that the predicate is case-insensitive as the contract requires.
fn draw(theme: &Theme, count: usize, used: &mut HashSet<String>) -> Vec<String> {
    (0..count)
        .map(|_| {
            let name = next_name(theme, |candidate| {
                used.contains(&candidate.to_ascii_lowercase())
            });
            used.insert(name.to_ascii_lowercase());
            name
        })
        .collect()
}

/// Checks the file-name rule without a regex: ASCII letters, digits and `-`, non-empty, at most 64 bytes.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn all_theme_names(theme: &Theme) -> Vec<&'static str> {
    theme
        .tiers
        .iter()
        .flat_map(|tier| tier.iter().copied())
        .collect()
}

#[test]
fn required_themes_exist_with_three_to_four_tiers_of_six_to_twelve_names() {
    let ids: Vec<&str> = themes().iter().map(|t| t.id).collect();
    for required in [
        "lotr",
        "rick-and-morty",
        "santas-workshop",
        "talmudic",
        "greek-myth",
        "star-wars",
    ] {
        assert!(ids.contains(&required), "missing theme {required}");
    }
    for t in themes() {
        assert!(
            (3..=4).contains(&t.tiers.len()),
            "{} has {} tiers",
            t.id,
            t.tiers.len()
        );
        for (i, tier) in t.tiers.iter().enumerate() {
            assert!(
                (6..=12).contains(&tier.len()),
                "{} tier {} has {} names",
                t.id,
                i + 1,
                tier.len()
            );
        }
        assert!(!t.title.is_empty());
    }
}

#[test]
fn theme_ids_and_names_are_unique_case_insensitively() {
    let mut ids = HashSet::new();
    for t in themes() {
        assert!(ids.insert(t.id), "duplicate theme id {}", t.id);
        let mut seen = HashSet::new();
        for name in all_theme_names(t) {
            assert!(
                seen.insert(name.to_ascii_lowercase()),
                "{} repeats {name}",
                t.id
            );
        }
    }
}

#[test]
fn every_theme_and_fallback_name_is_a_valid_file_name() {
    for t in themes() {
        for name in all_theme_names(t) {
            assert!(is_valid_name(name), "{}: invalid name {name:?}", t.id);
        }
    }
    assert!(themes::ADJECTIVES.len() >= 20);
    assert!(themes::SCIENTISTS.len() >= 20);
    let mut fallback = HashSet::new();
    for adjective in themes::ADJECTIVES {
        for scientist in themes::SCIENTISTS {
            let name = format!("{adjective}-{scientist}");
            assert!(is_valid_name(&name), "invalid fallback {name:?}");
            assert!(fallback.insert(name), "fallback pair repeats");
        }
    }
}

#[test]
fn theme_lookup_finds_known_ids() {
    for t in themes() {
        assert_eq!(theme(t.id).map(|found| found.id), Ok(t.id));
    }
}

#[test]
fn unknown_theme_error_lists_valid_ids() {
    let err = theme("discworld").expect_err("discworld is not a built-in theme");
    assert!(matches!(&err, NamingError::UnknownTheme { id, .. } if id == "discworld"));
    let message = err.to_string();
    assert!(message.contains("`discworld`"), "{message}");
    for t in themes() {
        assert!(message.contains(t.id), "{message} lacks {}", t.id);
    }
}

#[test]
fn same_sequence_gives_same_names() {
    for t in themes() {
        let first = draw(t, 200, &mut HashSet::new());
        let second = draw(t, 200, &mut HashSet::new());
        assert_eq!(first, second, "{} is not deterministic", t.id);
    }
}

#[test]
fn names_come_out_in_tier_order() {
    for t in themes() {
        let expected = all_theme_names(t);
        let drawn = draw(t, expected.len(), &mut HashSet::new());
        assert_eq!(drawn, expected, "{} does not follow tier order", t.id);

        // Every tier-1 name precedes every tier-2 name, stated directly in terms of positions.
        let last_tier1 = drawn
            .iter()
            .rposition(|n| t.tiers[0].contains(&n.as_str()))
            .expect("tier 1 is non-empty");
        let first_tier2 = drawn
            .iter()
            .position(|n| t.tiers[1].contains(&n.as_str()))
            .expect("tier 2 is non-empty");
        assert!(last_tier1 < first_tier2, "{}", t.id);
    }
}

#[test]
fn lower_tier_leftovers_are_used_before_higher_tiers() {
    let lotr = theme("lotr").expect("lotr exists");
    // Everything in tier 1 except its last name is taken, plus the first tier-2 name.
    let mut used: HashSet<String> = lotr.tiers[0][..lotr.tiers[0].len() - 1]
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    used.insert(lotr.tiers[1][0].to_ascii_lowercase());
    let next = next_name(lotr, |c| used.contains(&c.to_ascii_lowercase()));
    assert_eq!(next, lotr.tiers[0][lotr.tiers[0].len() - 1]);
}

#[test]
fn used_name_blocks_candidate_case_insensitively() {
    let lotr = theme("lotr").expect("lotr exists");
    let used: HashSet<String> = ["FRODO"].iter().map(|n| n.to_ascii_lowercase()).collect();
    let next = next_name(lotr, |c| used.contains(&c.to_ascii_lowercase()));
    assert_eq!(next, "Sam");
}

#[test]
fn thousand_draws_per_theme_are_unique_valid_and_never_jake() {
    for t in themes() {
        // A name used earlier under a different spelling (say, by a dead agent) must stay blocked.
        let preused = t.tiers[0][0].to_ascii_uppercase();
        let mut used: HashSet<String> = HashSet::from([preused.to_ascii_lowercase()]);
        let drawn = draw(t, 1000, &mut used);
        assert!(
            drawn.iter().all(|n| !n.eq_ignore_ascii_case(&preused)),
            "{} reused {preused}",
            t.id
        );
        let mut seen = HashSet::new();
        for name in &drawn {
            assert!(
                seen.insert(name.to_ascii_lowercase()),
                "{} repeated {name}",
                t.id
            );
            assert!(is_valid_name(name), "{}: invalid {name:?}", t.id);
            assert!(!name.eq_ignore_ascii_case("jake"), "{} produced jake", t.id);
        }
        assert_eq!(used.len(), 1001);
    }
}

#[test]
fn fallback_follows_exhausted_theme_then_regular_names() {
    let t = theme("star-wars").expect("star-wars exists");
    let theme_len = all_theme_names(t).len();
    let pair_count = themes::ADJECTIVES.len() * themes::SCIENTISTS.len();
    let drawn = draw(t, theme_len + pair_count + 3, &mut HashSet::new());

    let expected_first_pair = format!("{}-{}", themes::ADJECTIVES[0], themes::SCIENTISTS[0]);
    let expected_second_pair = format!("{}-{}", themes::ADJECTIVES[0], themes::SCIENTISTS[1]);
    assert_eq!(drawn[theme_len], expected_first_pair);
    // Adjective-major: the second fallback keeps the adjective and advances the scientist.
    assert_eq!(drawn[theme_len + 1], expected_second_pair);
    let last_pair = format!(
        "{}-{}",
        themes::ADJECTIVES[themes::ADJECTIVES.len() - 1],
        themes::SCIENTISTS[themes::SCIENTISTS.len() - 1]
    );
    assert_eq!(drawn[theme_len + pair_count - 1], last_pair);
    assert_eq!(
        &drawn[theme_len + pair_count..],
        ["regular-1", "regular-2", "regular-3"]
    );
}

#[test]
fn fallback_skips_names_already_used() {
    let t = theme("greek-myth").expect("greek-myth exists");
    let mut used: HashSet<String> = all_theme_names(t)
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    used.insert(
        format!("{}-{}", themes::ADJECTIVES[0], themes::SCIENTISTS[0]).to_ascii_lowercase(),
    );
    let next = next_name(t, |c| used.contains(&c.to_ascii_lowercase()));
    assert_eq!(
        next,
        format!("{}-{}", themes::ADJECTIVES[0], themes::SCIENTISTS[1])
    );

    // With every pair used as well, the first free `regular-{n}` is chosen.
    for adjective in themes::ADJECTIVES {
        for scientist in themes::SCIENTISTS {
            used.insert(format!("{adjective}-{scientist}"));
        }
    }
    used.insert("regular-1".to_owned());
    used.insert("regular-2".to_owned());
    let next = next_name(t, |c| used.contains(&c.to_ascii_lowercase()));
    assert_eq!(next, "regular-3");
}

#[test]
fn reserved_coordinator_name_is_skipped_in_any_case() {
    static WITH_JAKE: Theme = Theme {
        id: "test-jake",
        title: "Theme that wrongly lists the coordinator",
        tiers: &[&["Jake", "JAKE", "jake", "Finn"]],
    };
    let next = next_name(&WITH_JAKE, |_| false);
    assert_eq!(next, "Finn");
}

#[test]
fn starting_from_a_cursor_chooses_what_a_walk_from_the_start_would() {
    let theme = super::theme("lotr").unwrap();
    let mut used = HashSet::new();
    let mut cursor = 0;
    // Past the theme, the pairs and into regular-N; a few names taken out of order by hand first.
    used.insert("sam".to_string());
    used.insert("regular-3".to_string());
    for _ in 0..700 {
        let walked = next_name(theme, |c| used.contains(&c.to_ascii_lowercase()));
        let (from_cursor, index) =
            next_name_from(theme, cursor, |c| used.contains(&c.to_ascii_lowercase()));
        assert_eq!(walked, from_cursor);
        assert_eq!(candidate(theme, index), from_cursor);
        used.insert(from_cursor.to_ascii_lowercase());
        // What a tavern keeps: the first index that may still be free.
        cursor = next_name_from(theme, cursor, |c| used.contains(&c.to_ascii_lowercase())).1;
    }
    assert!(used.contains("regular-1") && !used.contains("regular-3x"));
}
