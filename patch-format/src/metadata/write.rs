//! Writes `metadata.xml` byte for byte as the original does: `ElementTree` serialised through
//! `minidom.toprettyxml(indent="  ")`.

use std::fmt::Write;

use super::PatchMetadata;

/// Serialises metadata in the original's element order and layout:
///
/// * `<?xml version="1.0" ?>` declaration, two-space indent, `\n` line ends;
/// * an element with text is written on one line (`<id>X</id>`), text as-is (multi-line
///   descriptions keep their newlines), with `&`, `<`, `>` and `"` escaped as minidom does;
/// * an empty value becomes a self-closing element (`<warnings/>`);
/// * personalities sorted by type, packages, RPMs, required IDs and actions sorted.
pub fn metadata_xml(metadata: &PatchMetadata) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str("<?xml version=\"1.0\" ?>\n<patch>\n");
    let flag = |b: bool| if b { "Y" } else { "" };
    text_element(&mut out, 1, "id", &metadata.id);
    text_element(&mut out, 1, "sw_version", &metadata.sw_version);
    text_element(&mut out, 1, "summary", &metadata.summary);
    text_element(&mut out, 1, "description", &metadata.description);
    text_element(
        &mut out,
        1,
        "install_instructions",
        &metadata.install_instructions,
    );
    text_element(&mut out, 1, "warnings", &metadata.warnings);
    text_element(&mut out, 1, "status", metadata.status.as_str());
    text_element(&mut out, 1, "unremovable", flag(metadata.unremovable));
    text_element(
        &mut out,
        1,
        "reboot_required",
        if metadata.reboot_required { "Y" } else { "N" },
    );
    text_element(
        &mut out,
        1,
        "apply_active_release_only",
        flag(metadata.apply_active_release_only),
    );
    if let Some(script) = &metadata.restart_script {
        let _ = writeln!(
            out,
            "  <restart_script sha256=\"{}\">{}</restart_script>",
            escape(&script.sha256),
            escape(&script.name)
        );
    }
    for (personality, packages) in &metadata.personalities {
        if packages.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  <personality type=\"{}\">", personality.as_str());
        for package in packages {
            text_element(&mut out, 2, "package", package);
        }
        out.push_str("  </personality>\n");
    }
    list_element(
        &mut out,
        "contents",
        "rpm",
        metadata.contents.iter().map(String::as_str),
    );
    list_element(
        &mut out,
        "requires",
        "req_patch_id",
        metadata.requires.iter().map(String::as_str),
    );
    list_element(
        &mut out,
        "semantics",
        "action",
        metadata.semantics.iter().map(|a| a.as_str()),
    );
    out.push_str("</patch>\n");
    out
}

fn text_element(out: &mut String, depth: usize, tag: &str, text: &str) {
    indent(out, depth);
    if text.is_empty() {
        let _ = writeln!(out, "<{tag}/>");
    } else {
        let _ = writeln!(out, "<{tag}>{}</{tag}>", escape(text));
    }
}

fn list_element<'a>(
    out: &mut String,
    tag: &str,
    child: &str,
    items: impl Iterator<Item = &'a str>,
) {
    let mut items = items.peekable();
    if items.peek().is_none() {
        let _ = writeln!(out, "  <{tag}/>");
        return;
    }
    let _ = writeln!(out, "  <{tag}>");
    for item in items {
        text_element(out, 2, child, item);
    }
    let _ = writeln!(out, "  </{tag}>");
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// minidom's `_write_data`: `&`, `<`, `"`, `>`. Carriage returns are written as a character
/// reference so they survive the XML parser's line-end normalisation.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::*;
    use super::*;

    /// The reference's reconstructed example, byte for byte.
    pub(crate) const REFERENCE_EXAMPLE: &str = r#"<?xml version="1.0" ?>
<patch>
  <id>STX_19.01_PATCH_0002</id>
  <sw_version>19.01</sw_version>
  <summary>Example patch</summary>
  <description>Fixes X
Fixes Y</description>
  <install_instructions/>
  <warnings/>
  <status>REL</status>
  <unremovable/>
  <reboot_required>N</reboot_required>
  <apply_active_release_only/>
  <personality type="controller">
    <package>newpkg</package>
  </personality>
  <personality type="controller-worker">
    <package>newpkg</package>
  </personality>
  <contents>
    <rpm>newpkg-1.0-1.tis.x86_64.rpm</rpm>
    <rpm>sysinv-1.0-230.tis.x86_64.rpm</rpm>
  </contents>
  <requires>
    <req_patch_id>STX_19.01_PATCH_0001</req_patch_id>
  </requires>
  <semantics>
    <action>pre-apply</action>
  </semantics>
</patch>
"#;

    pub(crate) fn reference_metadata() -> PatchMetadata {
        let mut m = PatchMetadata::new("STX_19.01_PATCH_0002", "19.01");
        m.summary = "Example patch".into();
        m.description = "Fixes X\nFixes Y".into();
        m.status = Status::Released;
        m.reboot_required = false;
        // Inserted out of order on purpose: the writer sorts.
        m.personalities
            .entry(Personality::ControllerWorker)
            .or_default()
            .insert("newpkg".into());
        m.personalities
            .entry(Personality::Controller)
            .or_default()
            .insert("newpkg".into());
        m.contents.insert("sysinv-1.0-230.tis.x86_64.rpm".into());
        m.contents.insert("newpkg-1.0-1.tis.x86_64.rpm".into());
        m.requires.insert("STX_19.01_PATCH_0001".into());
        m.semantics.insert(SemanticAction::PreApply);
        m
    }

    #[test]
    fn writes_the_reference_example_exactly() {
        assert_eq!(metadata_xml(&reference_metadata()), REFERENCE_EXAMPLE);
    }

    #[test]
    fn empty_lists_and_escaping() {
        let mut m = PatchMetadata::new("P1", "1.0");
        m.summary = "a < b & \"c\" > d".into();
        m.unremovable = true;
        let xml = metadata_xml(&m);
        assert!(
            xml.contains("<summary>a &lt; b &amp; &quot;c&quot; &gt; d</summary>"),
            "{xml}"
        );
        assert!(xml.contains("  <unremovable>Y</unremovable>\n"));
        assert!(xml.contains("  <reboot_required>Y</reboot_required>\n"));
        assert!(xml.contains("  <status>DEV</status>\n"));
        assert!(xml.contains("  <contents/>\n  <requires/>\n  <semantics/>\n</patch>\n"));
        assert!(!xml.contains("personality"));
    }
}
