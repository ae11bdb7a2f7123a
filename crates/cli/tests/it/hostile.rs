//! Bad input and hostile settings, end to end: each case here failed once (a secret echoed, an
//! error printed twice, a path written somewhere else, a file mined from the job's own output,
//! a corrupt file losing its good neighbours) and must keep working.

use crate::{rubricmill, write_spec};

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
