//! Man pages and shell completions of every tool, generated from their command lines (so
//! they cannot drift from what the tools accept): `cli generate-docs DIR` and the packages.

use std::path::{Path, PathBuf};

use clap_complete::Shell;

use crate::tools::TOOLS;

/// The shells completions are written for, with the file each one's completion goes in
/// (where bash-completion, zsh and fish look for them under their data directories).
const SHELLS: &[(Shell, &str)] = &[
    (Shell::Bash, "bash-completion/completions/{}"),
    (Shell::Zsh, "zsh/site-functions/_{}"),
    (Shell::Fish, "fish/vendor_completions.d/{}.fish"),
];

/// Writes, under `dir`, `man/man1/TOOL.1` for every tool (and `TOOL-SUBCOMMAND.1` for each
/// subcommand, which the tool's page lists) and its completions for bash, zsh and fish (`bash-completion/completions/TOOL`, `zsh/site-functions/_TOOL`,
/// `fish/vendor_completions.d/TOOL.fish`: the layout under `/usr/share`). Returns the files
/// written.
pub fn write_docs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = dir.join("man/man1");
    std::fs::create_dir_all(&man)?;
    for tool in TOOLS {
        let command = (tool.command)().name(tool.name);
        clap_mangen::generate_to(command.clone(), &man)?;
        for (shell, pattern) in SHELLS {
            let path = dir.join(pattern.replace("{}", tool.name));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut command.clone(), tool.name, &mut script);
            std::fs::write(&path, script)?;
            written.push(path);
        }
    }
    for page in std::fs::read_dir(&man)? {
        written.push(page?.path());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_gets_man_pages_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_docs(dir.path()).unwrap();
        for tool in TOOLS {
            let mine = |suffix: &str| {
                files
                    .iter()
                    .filter(|f| f.ends_with(format!("{}{suffix}", tool.name)))
                    .count()
            };
            assert_eq!(mine(".1"), 1, "{}", tool.name);
            assert_eq!(mine(".fish"), 1, "{}", tool.name);
        }
        assert!(dir.path().join("man/man1/sw-patch-upload.1").is_file());
        assert!(
            dir.path()
                .join("man/man1/sw-manager-patch-strategy-create.1")
                .is_file()
        );
        let page = std::fs::read_to_string(dir.path().join("man/man1/sw-patch.1")).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{}", &page[..80]);
        assert!(page.contains(".TH sw-patch 1"), "{page}");
        for subcommand in ["upload", "apply", "query\\-hosts", "host\\-install"] {
            assert!(page.contains(subcommand), "{subcommand} missing");
        }
    }
}
