//! The help, completions and manual pages the binary generates from its argument definitions.

use crate::{rubricmill, succeeded};

const SUBCOMMANDS: &[&str] = &[
    "run",
    "validate",
    "plan",
    "export",
    "gc",
    "submit",
    "coordinator",
    "worker",
    "status",
    "retry",
    "cancel",
    "mock-llm",
    "completions",
    "man",
];

fn stdout_of(args: &[&str]) -> String {
    let output = succeeded(rubricmill().args(args));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn docs_export_help_lists_the_format_values() {
    let help = stdout_of(&["export", "--help"]);
    for format in [
        "parquet",
        "jsonl",
        "researchqa-json",
        "openrubric",
        "healthbench",
        "healthbench-jsonl",
        "judge-sft",
        "rewards",
    ] {
        assert!(help.contains(format), "--format {format} not in:\n{help}");
    }
    // The short help lists them too, as clap's `[possible values: …]`.
    let short = stdout_of(&["export", "-h"]);
    assert!(
        short.contains(
            "[possible values: parquet, jsonl, researchqa-json, openrubric, healthbench, healthbench-jsonl, judge-sft, rewards]"
        ),
        "{short}"
    );
    // An unknown value is refused by the parser, naming the valid ones.
    let output = rubricmill()
        .args(["export", "job.toml", "--target", "x", "--format", "csv"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("csv") && stderr.contains("healthbench"),
        "{stderr}"
    );
    // The global log format shows its values in every subcommand's help.
    let run = stdout_of(&["run", "-h"]);
    assert!(run.contains("[possible values: text, json]"), "{run}");
}

#[test]
fn docs_bash_completions_name_every_subcommand() {
    let script = stdout_of(&["completions", "bash"]);
    assert!(
        script.contains("complete -F"),
        "not a bash completion script"
    );
    for name in SUBCOMMANDS {
        assert!(
            script.contains(name),
            "{name} missing from the bash completions"
        );
    }
    // Options of a subcommand complete too.
    assert!(script.contains("--near-dup-threshold"));
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.contains("export"), "{shell} completions miss export");
    }
    let help = stdout_of(&["completions", "-h"]);
    assert!(
        help.contains("bash") && help.contains("powershell"),
        "{help}"
    );
}

#[test]
fn docs_man_pages_render_and_name_the_subcommands() {
    let page = stdout_of(&["man"]);
    assert!(
        page.contains(".TH rubricmill 1"),
        "not the roff page:\n{page}"
    );
    // The SUBCOMMANDS section names each page: `rubricmill\-run(1)` (roff escapes `-`).
    for name in SUBCOMMANDS {
        let reference = format!("rubricmill\\-{}(1)", name.replace('-', "\\-"));
        assert!(
            page.contains(&reference),
            "{reference} missing from the main page"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let listed = stdout_of(&["man", "--out", dir.path().to_str().unwrap()]);
    assert!(dir.path().join("rubricmill.1").is_file(), "{listed}");
    for name in SUBCOMMANDS {
        let file = dir.path().join(format!("rubricmill-{name}.1"));
        assert!(
            file.is_file(),
            "{} not written; listed:\n{listed}",
            file.display()
        );
        assert!(listed.contains(&format!("rubricmill-{name}.1")), "{listed}");
    }
    let export = std::fs::read_to_string(dir.path().join("rubricmill-export.1")).unwrap();
    assert!(export.contains(".TH"), "{export}");
    assert!(export.contains("healthbench"), "{export}");
}
