//! Shell completions and the man page come from the same clap definition
//! as `--help`: every subcommand and soak option is in them.

mod common;

use common::crasher;

/// Subcommands a person types most; each must be completed and documented.
const SUBCOMMANDS: &[&str] = &["verify", "triage", "status", "runs", "report", "reset"];

#[test]
fn completions_cover_every_shell_and_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = crasher().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in SUBCOMMANDS.iter().chain(&["--on-failure", "--duration"]) {
            let word = if shell == "fish" {
                word.trim_start_matches("--")
            } else {
                word
            };
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = crasher().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_man_page_has_the_help_text_and_a_section_per_subcommand() {
    let out = crasher().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH crasher 1"), "no title line");
    // The after-help text: glyphs and exit codes.
    assert!(
        page.contains("Glyphs") && page.contains("Exit codes"),
        "no glyphs/exit codes"
    );
    // Every targeted fault word (docs/faults.md).
    for w in [
        "crash-at-prepare",
        "pause-at-prepare",
        "crash-sink-at-prepare",
        "crash-at-commit",
    ] {
        assert!(page.contains(&w.replace('-', "\\-")), "no {w}");
    }
    for sub in SUBCOMMANDS {
        let heading = format!(".SH \"CRASHER {}\"", sub.to_uppercase());
        assert!(page.contains(&heading), "no section {heading}");
    }
    // Formatted by man(1) without warnings, where man is installed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crasher.1");
    std::fs::write(&file, &page).unwrap();
    if let Ok(o) = std::process::Command::new("man")
        .env("MANWIDTH", "80")
        .arg("-l")
        .arg(&file)
        .output()
    {
        assert!(o.status.success());
        let warnings = String::from_utf8_lossy(&o.stderr);
        assert!(warnings.trim().is_empty(), "man(1) warns: {warnings}");
        assert!(String::from_utf8_lossy(&o.stdout).contains("CRASHER VERIFY"));
    }
}
