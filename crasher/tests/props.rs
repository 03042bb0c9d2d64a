//! Property tests (a fixed number of cases each): profiles, soak words,
//! timings and durations of any text are accepted or refused with a
//! message, never a panic, and a timing is never silently turned into
//! something else.

use proptest::prelude::*;

use crasher::run::profile::{Profile, BUILTIN};
use crasher::soak::spec::SoakSpec;
use crasher::soak::timings::{Timings, MAX_SECONDS};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn a_profile_of_any_text_parses_or_is_refused(text in "\\PC{0,200}") {
        let _ = Profile::parse(&text, "prop.toml");
    }

    /// A built-in profile with one line replaced by anything: parsed, or
    /// refused naming a line.
    #[test]
    fn a_builtin_profile_with_a_line_mangled_parses_or_names_the_line(
        which in any::<prop::sample::Index>(),
        line in any::<prop::sample::Index>(),
        junk in "[a-z_{}\\[\\]=\"0-9 .,#]{0,30}",
    ) {
        let text = BUILTIN[which.index(BUILTIN.len())].1;
        let mut lines: Vec<&str> = text.lines().collect();
        let i = line.index(lines.len());
        lines[i] = &junk;
        if let Err(e) = Profile::parse(&lines.join("\n"), "prop.toml") {
            prop_assert!(e.to_string().contains("prop.toml"), "{}", e);
        }
    }

    #[test]
    fn soak_words_of_any_text_parse_or_are_refused(words in prop::collection::vec("[a-z0-9_.\\-]{0,12}", 0..6)) {
        let _ = SoakSpec::parse(&words);
    }

    #[test]
    fn a_timing_is_set_exactly_or_refused(name in "[a-z_]{0,24}", value in "\\PC{0,12}") {
        let mut t = Timings::default();
        let before = format!("{t:?}");
        match t.apply(&[format!("{name}={value}")]) {
            Ok(()) => {
                let v: f64 = value.trim().parse().unwrap();
                prop_assert!((0.0..=MAX_SECONDS).contains(&v));
            }
            Err(_) => prop_assert_eq!(format!("{t:?}"), before),
        }
    }

    #[test]
    fn a_timing_number_is_set_exactly_or_refused(v in any::<f64>()) {
        let mut t = Timings::default();
        match t.apply(&[format!("sanity_period={v}")]) {
            Ok(()) => prop_assert_eq!(t.sanity_period, v),
            Err(e) => prop_assert!(!(0.0..=MAX_SECONDS).contains(&v), "{}", e),
        }
    }

    #[test]
    fn a_duration_of_any_text_parses_or_is_refused(s in "\\PC{0,12}") {
        let _ = crasher::soak::parse_duration(&s);
    }
}
