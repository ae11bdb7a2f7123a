//! Bad input and hostile settings, end to end: each case here failed once (a secret echoed, an
//! error printed twice, a path written somewhere else, a file mined from the job's own output,
//! a corrupt file losing its good neighbours) and must keep working.

use crate::{Committed, rubricmill, run_job, write_pairs, write_spec};

#[test]
fn a_pasted_key_is_never_echoed_and_the_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = "sk-proj-Qm3v9Lx0pz81Kd7w";
    for (name, llm_line) in [
        ("unknown", format!("api_key = \"{key}\"")),
        ("mistyped", format!("max_tokens = \"{key}\"")),
        ("unquoted", format!("model = {key}")),
        ("as_var", format!("api_key_env = \"{key}\"")),
    ] {
        let spec = write_spec(
            dir.path(),
            name,
            &format!(
                "pipeline = \"crg\"\n[input]\nurl = \"x.jsonl\"\n[output]\nurl = \"out\"\n[llm]\nprovider = \"simulated\"\n{llm_line}\n"
            ),
        );
        for command in ["run", "validate"] {
            let output = rubricmill().arg(command).arg(&spec).output().unwrap();
            assert_eq!(output.status.code(), Some(1), "{name} {command}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                !stderr.contains("Qm3v9Lx0pz81Kd7w"),
                "{name} {command}: {stderr}"
            );
            assert_eq!(
                stderr.matches("invalid job spec").count(),
                1,
                "{name} {command}: the error must be printed once: {stderr}"
            );
        }
    }
}

/// A quickstart-sized crg job from `input` (a path or glob) into `output`.
fn local_job(
    dir: &std::path::Path,
    name: &str,
    input: &str,
    output: &std::path::Path,
) -> std::path::PathBuf {
    write_spec(
        dir,
        name,
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{input}\"\nrecords_per_shard = 2\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\n",
            output.display()
        ),
    )
}

#[test]
fn output_and_input_folders_named_with_url_characters_are_used_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("in #1 %41 what?");
    std::fs::create_dir_all(&folder).unwrap();
    write_pairs(&folder.join("pairs.jsonl"), 5);
    let output = dir.path().join("out #2 %41 why?");
    let spec = local_job(
        dir.path(),
        "odd",
        &format!("{}/*.jsonl", folder.display()),
        &output,
    );
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let committed = Committed::read(&output.join("odd"));
    assert_eq!(committed.markers.len(), 3, "5 pairs, 2 a shard");
    assert_eq!(committed.row_count() + committed.reject_count(), 5);
    // Nothing was written anywhere else.
    let mut top: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["in #1 %41 what?", "odd.toml", "out #2 %41 why?"]);
}

#[test]
fn an_output_folder_inside_the_input_pattern_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_pairs(&data.join("pairs.jsonl"), 4);
    let output = data.join("out");
    // A recursive pattern would read the job's own plan, markers and parts on a second run.
    let spec = local_job(
        dir.path(),
        "overlap",
        &format!("{}/**/*.json*", data.display()),
        &output,
    );
    for command in ["run", "validate"] {
        let result = rubricmill().arg(command).arg(&spec).output().unwrap();
        assert_eq!(result.status.code(), Some(1), "{command}");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            stderr.contains("output.url") && stderr.contains("inside what input.url"),
            "{stderr}"
        );
    }
    assert!(!output.exists(), "nothing may be written");
    // A pattern that stays in its folder cannot reach the output below it.
    let spec = local_job(
        dir.path(),
        "beside",
        &format!("{}/*.jsonl", data.display()),
        &output,
    );
    for _ in 0..2 {
        let (code, summary, _) = run_job(&spec, &[]);
        assert_eq!(code, 0, "{summary}");
        let committed = Committed::read(&output.join("beside"));
        assert_eq!(committed.marker_sum("records"), 4, "{summary}");
    }
}
