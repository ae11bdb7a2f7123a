//! `rubricmill completions` and `rubricmill man`: shell completion scripts and manual pages,
//! generated from the argument definitions so they always match the binary.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Command;
use clap_complete::Shell;

/// Writes the completion script of `shell` for the whole command tree.
pub fn completions(mut command: Command, shell: Shell, out: &mut dyn Write) {
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, out);
}

/// Writes `rubricmill.1` and one page per subcommand (`rubricmill-run.1`, …) into `dir`,
/// creating it; returns the files written, sorted.
pub fn write_pages(command: Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("cannot write manual pages into {}", dir.display()))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}

/// Writes the main manual page (roff) to `out`.
pub fn main_page(command: Command, out: &mut dyn Write) -> anyhow::Result<()> {
    clap_mangen::Man::new(command)
        .render(out)
        .context("cannot render the manual page")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> Command {
        Command::new("tool")
            .about("A tool")
            .subcommand(Command::new("alpha").about("First"))
            .subcommand(Command::new("beta").about("Second"))
    }

    #[test]
    fn pages_are_one_per_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_pages(command(), dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tool-alpha.1", "tool-beta.1", "tool.1"]);
        let beta = std::fs::read_to_string(dir.path().join("tool-beta.1")).unwrap();
        assert!(beta.contains("Second"), "{beta}");
    }

    #[test]
    fn completions_name_the_subcommands() {
        let mut script = Vec::new();
        completions(command(), Shell::Fish, &mut script);
        let script = String::from_utf8(script).unwrap();
        assert!(
            script.contains("alpha") && script.contains("beta"),
            "{script}"
        );
    }
}
