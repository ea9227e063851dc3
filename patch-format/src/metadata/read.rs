//! Reads `metadata.xml` the way the original's `parse_metadata` does, tolerantly.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::{PatchMetadata, Personality, RestartScript, SemanticAction, Status};
use crate::FormatError;

/// Parses `metadata.xml`.
///
/// Follows the original's reading rules: unknown elements (at any depth) and whitespace between
/// elements are ignored; free-text values (`summary`, `description`, `install_instructions`,
/// `warnings`) are kept exactly, never stripped; `reboot_required` is `Y` unless it is exactly
/// `N` (so a missing element means Y); a missing `<status>` reads as DEV (the original raised
/// `KeyError` at commit time instead). IDs, versions and names are trimmed and validated. Errors
/// name the element at fault.
pub fn parse_metadata_xml(xml: &str) -> Result<PatchMetadata, FormatError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);

    let mut fields = Fields::default();
    // Names of the open elements, outermost first.
    let mut path: Vec<String> = Vec::new();
    let mut seen_root = false;
    let mut text = String::new();

    loop {
        let position = reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            FormatError::metadata(
                path_name(&path),
                format!("XML syntax error at byte {position}: {e}"),
            )
        })?;
        match event {
            Event::Start(start) => {
                let name = element_name(&start, &path)?;
                if path.is_empty() {
                    check_root(&name, &mut seen_root)?;
                } else if path.len() == 1 && name == "personality" {
                    fields.open_personality(&start, &reader)?;
                } else if path.len() == 1 && name == "restart_script" {
                    fields.restart_sha256 = attribute(&start, &reader, "sha256", "restart_script")?;
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(start) => {
                let name = element_name(&start, &path)?;
                if path.is_empty() {
                    check_root(&name, &mut seen_root)?;
                    break;
                }
                if path.len() == 1 && name == "personality" {
                    fields.open_personality(&start, &reader)?;
                }
                path.push(name);
                fields.take(&path, String::new())?;
                path.pop();
            }
            Event::Text(t) => {
                let t = t.xml10_content().map_err(|e| {
                    FormatError::metadata(path_name(&path), format!("bad text encoding: {e}"))
                })?;
                text.push_str(&t);
            }
            Event::CData(t) => {
                let t = t.decode().map_err(|e| {
                    FormatError::metadata(path_name(&path), format!("bad CDATA encoding: {e}"))
                })?;
                text.push_str(&t);
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten()
                } else {
                    r.decode()
                        .ok()
                        .and_then(|name| quick_xml::escape::resolve_xml_entity(&name))
                        .and_then(|s| s.chars().next())
                };
                let c = resolved.ok_or_else(|| {
                    FormatError::metadata(
                        path_name(&path),
                        format!("unknown entity reference &{};", String::from_utf8_lossy(&r)),
                    )
                })?;
                text.push(c);
            }
            Event::End(_) => {
                // quick-xml checks that end names match start names.
                if path.len() >= 2 {
                    fields.take(&path, std::mem::take(&mut text))?;
                }
                text.clear();
                path.pop();
                if path.is_empty() {
                    break;
                }
            }
            Event::Eof => {
                return Err(FormatError::metadata(
                    path_name(&path),
                    if seen_root {
                        "document ends before </patch>"
                    } else {
                        "no <patch> root element"
                    },
                ));
            }
            Event::DocType(_) => {
                return Err(FormatError::metadata(
                    "patch",
                    "DOCTYPE declarations are not allowed in metadata.xml",
                ));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    fields.finish()
}

fn check_root(name: &str, seen_root: &mut bool) -> Result<(), FormatError> {
    if name != "patch" {
        return Err(FormatError::metadata(
            name,
            "the root element must be <patch>",
        ));
    }
    *seen_root = true;
    Ok(())
}

fn element_name(start: &BytesStart, path: &[String]) -> Result<String, FormatError> {
    std::str::from_utf8(start.name().as_ref())
        .map(str::to_owned)
        .map_err(|_| FormatError::metadata(path_name(path), "element name is not UTF-8"))
}

fn path_name(path: &[String]) -> String {
    if path.is_empty() {
        "patch".to_owned()
    } else {
        path.join("/")
    }
}

fn attribute(
    start: &BytesStart,
    reader: &Reader<&[u8]>,
    name: &str,
    element: &str,
) -> Result<Option<String>, FormatError> {
    match start.try_get_attribute(name) {
        Ok(Some(attr)) => attr
            .decode_and_unescape_value(reader.decoder())
            .map(|v| Some(v.into_owned()))
            .map_err(|e| FormatError::metadata(element, format!("bad {name} attribute: {e}"))),
        Ok(None) => Ok(None),
        Err(e) => Err(FormatError::metadata(
            element,
            format!("bad attributes: {e}"),
        )),
    }
}

/// Values collected while walking the document; `None` = element absent.
#[derive(Default)]
struct Fields {
    id: Option<String>,
    sw_version: Option<String>,
    summary: Option<String>,
    description: Option<String>,
    install_instructions: Option<String>,
    warnings: Option<String>,
    status: Option<String>,
    unremovable: Option<String>,
    reboot_required: Option<String>,
    apply_active_release_only: Option<String>,
    restart_script: Option<String>,
    restart_sha256: Option<String>,
    current_personality: Option<Personality>,
    metadata: Option<PatchMetadata>,
}

impl Fields {
    fn open_personality(
        &mut self,
        start: &BytesStart,
        reader: &Reader<&[u8]>,
    ) -> Result<(), FormatError> {
        let Some(kind) = attribute(start, reader, "type", "personality")? else {
            return Err(FormatError::metadata(
                "patch/personality",
                "missing type attribute",
            ));
        };
        let personality = kind.parse::<Personality>().map_err(|e| {
            FormatError::metadata(format!("patch/personality type=\"{kind}\""), e.to_string())
        })?;
        self.current_personality = Some(personality);
        self.lists().personalities.entry(personality).or_default();
        Ok(())
    }

    /// Holds the lists (personality, contents, requires, semantics) as they fill.
    fn lists(&mut self) -> &mut PatchMetadata {
        self.metadata
            .get_or_insert_with(|| PatchMetadata::new(String::new(), String::new()))
    }

    /// An element closed: store its text if it is one we know. `path[0]` is `patch`.
    fn take(&mut self, path: &[String], text: String) -> Result<(), FormatError> {
        let at = |p: &[String]| p.join("/");
        match path {
            [_, field] => {
                let slot = match field.as_str() {
                    "id" => &mut self.id,
                    "sw_version" => &mut self.sw_version,
                    "summary" => &mut self.summary,
                    "description" => &mut self.description,
                    "install_instructions" => &mut self.install_instructions,
                    "warnings" => &mut self.warnings,
                    "status" => &mut self.status,
                    "unremovable" => &mut self.unremovable,
                    "reboot_required" => &mut self.reboot_required,
                    "apply_active_release_only" => &mut self.apply_active_release_only,
                    "restart_script" => &mut self.restart_script,
                    "personality" => {
                        self.current_personality = None;
                        return Ok(());
                    }
                    _ => return Ok(()),
                };
                // ElementTree's findtext returns the first match; keep the first.
                if slot.is_none() {
                    *slot = Some(text);
                }
            }
            [_, list, item] => {
                let value = text.trim().to_owned();
                let known = matches!(
                    (list.as_str(), item.as_str()),
                    ("personality", "package")
                        | ("contents", "rpm")
                        | ("requires", "req_patch_id")
                        | ("semantics", "action")
                );
                if !known {
                    return Ok(());
                }
                if value.is_empty() {
                    return Err(FormatError::metadata(at(path), "empty value"));
                }
                match (list.as_str(), item.as_str()) {
                    ("personality", "package") => {
                        let Some(p) = self.current_personality else {
                            return Ok(());
                        };
                        self.lists()
                            .personalities
                            .entry(p)
                            .or_default()
                            .insert(value);
                    }
                    ("contents", "rpm") if !self.lists().contents.insert(value.clone()) => {
                        return Err(FormatError::metadata(
                            at(path),
                            format!("{value} is listed twice"),
                        ));
                    }
                    ("requires", "req_patch_id") => {
                        self.lists().requires.insert(value);
                    }
                    ("semantics", "action") => {
                        let action = value
                            .parse::<SemanticAction>()
                            .map_err(|e| FormatError::metadata(at(path), e.to_string()))?;
                        self.lists().semantics.insert(action);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(mut self) -> Result<PatchMetadata, FormatError> {
        let mut m = self
            .metadata
            .take()
            .unwrap_or_else(|| PatchMetadata::new(String::new(), String::new()));
        m.personalities.retain(|_, packages| !packages.is_empty());
        m.id = self.id.map(|s| s.trim().to_owned()).ok_or_else(|| {
            FormatError::metadata("patch/id", "missing: every patch needs an <id>")
        })?;
        m.sw_version = self
            .sw_version
            .map(|s| s.trim().to_owned())
            .ok_or_else(|| {
                FormatError::metadata(
                    "patch/sw_version",
                    "missing: the release version must be specified in the sw_version field",
                )
            })?;
        m.summary = self.summary.unwrap_or_default();
        m.description = self.description.unwrap_or_default();
        m.install_instructions = self.install_instructions.unwrap_or_default();
        m.warnings = self.warnings.unwrap_or_default();
        m.status = match self.status.as_deref().map(str::trim) {
            None | Some("") => Status::Development,
            Some(s) => Status::from_metadata(s),
        };
        m.unremovable = self.unremovable.as_deref().map(str::trim) == Some("Y");
        m.reboot_required = self.reboot_required.as_deref() != Some("N");
        m.apply_active_release_only =
            self.apply_active_release_only.as_deref().map(str::trim) == Some("Y");
        m.restart_script = match (
            self.restart_script.map(|s| s.trim().to_owned()),
            self.restart_sha256,
        ) {
            (None, _) => None,
            (Some(name), _) if name.is_empty() => None,
            (Some(name), Some(sha256)) => Some(RestartScript {
                name,
                sha256: sha256.trim().to_ascii_lowercase(),
            }),
            (Some(name), None) => {
                return Err(FormatError::metadata(
                    "patch/restart_script",
                    format!(
                        "{name} has no sha256 attribute: the script would not be covered by the \
                         patch signature (rebuild the patch with stx-patch patch-build)"
                    ),
                ));
            }
        };
        m.validate()?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::super::write::tests::{REFERENCE_EXAMPLE, reference_metadata};
    use super::super::*;

    #[test]
    fn reads_the_reference_example() {
        assert_eq!(
            parse_metadata_xml(REFERENCE_EXAMPLE).unwrap(),
            reference_metadata()
        );
    }

    #[test]
    fn round_trips_every_field() {
        let mut m = reference_metadata();
        m.summary = " spaced <&> \"quoted\" ".into();
        m.description = "line 1\n  line 2\r\nline 3\n".into();
        m.install_instructions = "lock first".into();
        m.warnings = "careful".into();
        m.unremovable = true;
        m.apply_active_release_only = true;
        m.status = Status::Obsolete;
        m.semantics.insert(SemanticAction::PreRemove);
        m.restart_script = Some(RestartScript {
            name: "STX_19.01_PATCH_0002_restart.sh".into(),
            sha256: "ab".repeat(32),
        });
        for p in Personality::ALL {
            m.personalities.entry(p).or_default().insert("pkg-a".into());
        }
        let xml = metadata_xml(&m);
        assert_eq!(parse_metadata_xml(&xml).unwrap(), m, "{xml}");
    }

    #[test]
    fn tolerates_unknown_elements_whitespace_and_python3_layout() {
        let xml = "<?xml version='1.0' encoding='utf-8'?>\n<!-- made by hand -->\n<patch>\n\
            <id> P1 </id><sw_version>19.01</sw_version>\n<future><nested>x</nested></future>\
            <contents>\n   <rpm>a-1-1.x86_64.rpm</rpm><extra/>\n</contents>\
            <personality type=\"worker\"><package>a</package><unknown>q</unknown></personality>\
            <requires/></patch>";
        let m = parse_metadata_xml(xml).unwrap();
        assert_eq!(m.id, "P1");
        assert!(m.reboot_required, "missing reboot_required means Y");
        assert_eq!(
            m.status,
            Status::Development,
            "missing status defaults to DEV"
        );
        assert_eq!(m.contents.len(), 1);
        assert_eq!(m.personalities[&Personality::Worker].len(), 1);
    }

    #[test]
    fn reboot_required_is_y_unless_exactly_n() {
        for (value, expected) in [
            ("N", false),
            ("Y", true),
            ("n", true),
            ("", true),
            ("no", true),
        ] {
            let xml = format!(
                "<patch><id>P</id><sw_version>1</sw_version><reboot_required>{value}</reboot_required></patch>"
            );
            assert_eq!(
                parse_metadata_xml(&xml).unwrap().reboot_required,
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_element_at_fault() {
        let cases = [
            ("", "patch"),
            ("<nope/>", "nope"),
            ("<patch><sw_version>1</sw_version></patch>", "patch/id"),
            ("<patch><id>P</id></patch>", "patch/sw_version"),
            (
                "<patch><id>../etc</id><sw_version>1</sw_version></patch>",
                "id",
            ),
            (
                "<patch><id>P</id><sw_version>1</sw_version><contents><rpm>../x.rpm</rpm></contents></patch>",
                "contents/rpm",
            ),
            (
                "<patch><id>P</id><sw_version>1</sw_version><personality type=\"compute\"/></patch>",
                "personality",
            ),
            (
                "<patch><id>P</id><sw_version>1</sw_version><semantics><action>post</action></semantics></patch>",
                "patch/semantics/action",
            ),
            (
                "<patch><id>P</id><sw_version>1</sw_version><contents><rpm>a-1-1.x.rpm</rpm><rpm>a-1-1.x.rpm</rpm></contents></patch>",
                "patch/contents/rpm",
            ),
            (
                "<patch><id>P</id><summary>a</wrong></patch>",
                "patch/summary",
            ),
            ("<patch><id>P&bogus;</id></patch>", "patch/id"),
            ("<!DOCTYPE patch [<!ENTITY x 'y'>]><patch/>", "patch"),
            (
                "<patch><id>P</id><sw_version>1</sw_version><restart_script>s</restart_script></patch>",
                "patch/restart_script",
            ),
            ("<patch><id>P</id>", "patch"),
        ];
        for (xml, element) in cases {
            match parse_metadata_xml(xml) {
                Err(FormatError::Metadata { element: e, .. }) => {
                    assert!(
                        e.contains(element),
                        "{xml}: expected <{element}>, got <{e}>"
                    )
                }
                other => panic!("{xml}: expected a metadata error, got {other:?}"),
            }
        }
    }
}
