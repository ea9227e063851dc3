//! Man pages and completions as the real tools read them: every page renders with `groff`
//! without a warning, and bash, loading a tool's completion, offers exactly the tool's
//! subcommands.

use std::path::Path;
use std::process::Command;

use stx_patch_cli::tools::TOOLS;

fn generate(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_cli"))
        .arg("generate-docs")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_man_page_renders_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let pages: Vec<_> = std::fs::read_dir(dir.path().join("man/man1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(pages.len() > TOOLS.len(), "{pages:?}");
    for page in pages {
        let out = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .output()
            .expect("groff (scripts/test.sh installs groff-base)");
        assert!(out.status.success(), "{}", page.display());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "{}",
            page.display()
        );
    }
}

/// What bash offers after `TOOL WORD<TAB>`, with the tool's generated completion loaded.
fn bash_completes(dir: &Path, tool: &str, word: &str) -> Vec<String> {
    let script = dir.join("bash-completion/completions").join(tool);
    let function = format!("_{}", tool.replace('-', "__"));
    let program = format!(
        "source {script:?} || exit 3
COMP_WORDS=({tool} {word:?}); COMP_CWORD=1; COMP_LINE=\"{tool} {word}\"; COMP_POINT=${{#COMP_LINE}}
{function} {tool} {word:?} {tool} || exit 4
printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display().to_string()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(program)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    words.sort();
    words
}

#[test]
fn bash_offers_each_tools_subcommands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    for tool in TOOLS {
        let command = (tool.command)();
        let mut subcommands: Vec<String> = command
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_owned())
            .collect();
        if subcommands.is_empty() {
            let options = bash_completes(dir.path(), tool.name, "--");
            assert!(
                options.contains(&"--help".to_owned()),
                "{}: {options:?}",
                tool.name
            );
            continue;
        }
        // The help subcommand clap adds is offered too.
        subcommands.push("help".into());
        subcommands.sort();
        let offered: Vec<String> = bash_completes(dir.path(), tool.name, "")
            .into_iter()
            .filter(|w| !w.starts_with('-'))
            .collect();
        assert_eq!(offered, subcommands, "{}", tool.name);
    }
    assert_eq!(
        bash_completes(dir.path(), "sw-patch", "host-r"),
        ["host-release", "host-rollback"]
    );
}
