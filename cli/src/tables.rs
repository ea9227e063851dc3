//! The tables `sw-patch` prints, in the original client's layouts (shared with the demo).

use serde_json::Value;

/// The `Patch ID  RR  Release  Patch State` table, with a `Repo State` column when any patch
/// state is `n/a` (no hosts), as the original client prints it.
pub fn query_table(value: &Value) -> String {
    let empty = serde_json::Map::new();
    let pd = value.get("pd").and_then(Value::as_object).unwrap_or(&empty);
    let text = |p: &Value, k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let rows: Vec<[String; 5]> = pd
        .iter()
        .map(|(id, p)| {
            let rr = if text(p, "reboot_required") == "N" {
                "N"
            } else {
                "Y"
            };
            [
                id.clone(),
                rr.to_owned(),
                text(p, "sw_version"),
                text(p, "repostate"),
                text(p, "patchstate"),
            ]
        })
        .collect();
    let show_repo = rows.iter().any(|r| r[4] == "n/a");
    let headers = ["Patch ID", "RR", "Release", "Repo State", "Patch State"];
    let cols: Vec<usize> = if show_repo {
        vec![0, 1, 2, 3, 4]
    } else {
        vec![0, 1, 2, 4]
    };
    let width = |c: usize| column_width(headers[c], rows.iter().map(|r| r[c].as_str()));
    let widths: Vec<usize> = cols.iter().map(|&c| width(c)).collect();
    let mut out = String::new();
    // Cells keep their padding, trailing spaces included, as the original's format() does.
    let line = |cells: Vec<String>| cells.join("  ") + "\n";
    out += &line(
        cols.iter()
            .zip(&widths)
            .map(|(&c, &w)| format!("{:^w$}", headers[c]))
            .collect(),
    );
    out += &line(widths.iter().map(|&w| "=".repeat(w)).collect());
    for row in &rows {
        out += &line(
            cols.iter()
                .zip(&widths)
                .map(|(&c, &w)| {
                    if c == 0 {
                        format!("{:<w$}", row[c])
                    } else {
                        format!("{:^w$}", row[c])
                    }
                })
                .collect(),
        );
    }
    // The original prints an empty line after the table.
    out.push('\n');
    out
}

/// `sw-patch show`: each patch's fields in the original client's layout (`Repo State` only
/// while the patch state is `n/a`, multi-line fields continued at column 20, two newlines
/// after each patch). Long lines are not re-wrapped to the terminal's width.
pub fn show_text(value: &Value, ids: &[String]) -> String {
    let mut out = String::new();
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort();
    sorted.dedup();
    const INDENT: &str = "                    ";
    for id in sorted {
        let Some(m) = value.get("metadata").and_then(|m| m.get(id)) else {
            continue;
        };
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        out.push_str(&format!("{id}:\n"));
        let field = |out: &mut String, label: &str, v: &str| {
            if !v.is_empty() {
                out.push_str(&format!("    {:<15} {v}\n", format!("{label}:")));
            }
        };
        field(&mut out, "Release", &text("sw_version"));
        field(&mut out, "Patch State", &text("patchstate"));
        if text("patchstate") == "n/a" {
            field(&mut out, "Repo State", &text("repostate"));
        }
        field(&mut out, "Status", &text("status"));
        field(&mut out, "Unremovable", &text("unremovable"));
        field(&mut out, "RR", &text("reboot_required"));
        field(
            &mut out,
            "Apply Active Release Only",
            &text("apply_active_release_only"),
        );
        field(&mut out, "Summary", &text("summary"));
        for (key, label) in [("description", "Description"), ("warnings", "Warnings")] {
            let v = text(key);
            if v.is_empty() {
                continue;
            }
            let mut lines = v.split('\n');
            field(&mut out, label, lines.next().unwrap_or(""));
            for line in lines {
                out.push_str(&format!("{INDENT}{line}\n"));
            }
        }
        let instructions = text("install_instructions");
        if !instructions.is_empty() {
            out.push_str("    Install Instructions:\n");
            for line in instructions.split('\n') {
                out.push_str(&format!("{INDENT}{line}\n"));
            }
        }
        let list = |v: Option<&Value>| -> Vec<String> {
            let mut items: Vec<String> = v
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            items.sort();
            items
        };
        let requires = list(m.get("requires"));
        if !requires.is_empty() {
            out.push_str("    Requires:\n");
            for r in requires {
                out.push_str(&format!("{INDENT}{r}\n"));
            }
        }
        if let Some(contents) = value.get("contents").and_then(|c| c.get(id)) {
            out.push_str("    Contents:\n");
            for pkg in list(Some(contents)) {
                out.push_str(&format!("{INDENT}{pkg}\n"));
            }
        }
        out.push_str("\n\n");
    }
    out
}

/// The original's `query-hosts` table.
pub fn hosts_table(value: &Value) -> String {
    let hosts = value
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let headers = [
        "Hostname",
        "IP Address",
        "Patch Current",
        "Reboot Required",
        "Release",
        "State",
    ];
    let rows: Vec<[String; 6]> = hosts
        .iter()
        .map(|h| {
            let b = |k: &str| h.get(k).and_then(Value::as_bool).unwrap_or(false);
            let t = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            // The original's precedence: Yes/No, then Pending, then Failed.
            let mut current = if b("patch_current") { "Yes" } else { "No" };
            if b("interim_state") {
                current = "Pending";
            }
            if b("patch_failed") {
                current = "Failed";
            }
            [
                t("hostname"),
                t("ip"),
                current.to_owned(),
                if b("requires_reboot") { "Yes" } else { "No" }.to_owned(),
                t("sw_version"),
                t("state"),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..6)
        .map(|c| column_width(headers[c], rows.iter().map(|r| r[c].as_str())))
        .collect();
    let line = |cells: Vec<String>| cells.join("  ") + "\n";
    let mut out = line(
        headers
            .iter()
            .zip(&widths)
            .map(|(h, &w)| format!("{h:^w$}"))
            .collect(),
    );
    out += &line(widths.iter().map(|&w| "=".repeat(w)).collect());
    for row in &rows {
        out += &line(
            row.iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (v, &w))| {
                    if c == 0 {
                        format!("{v:<w$}")
                    } else {
                        format!("{v:^w$}")
                    }
                })
                .collect(),
        );
    }
    out
}

/// The width of a column: its widest value or its header.
pub fn column_width<'a>(header: &str, values: impl IntoIterator<Item = &'a str>) -> usize {
    values
        .into_iter()
        .map(str::len)
        .chain([header.len()])
        .max()
        .unwrap_or(0)
}

/// The `query-app-dependencies` table.
pub fn app_table(value: &Value) -> String {
    let empty = serde_json::Map::new();
    let apps = value.as_object().unwrap_or(&empty);
    let rows: Vec<(String, String)> = apps
        .iter()
        .map(|(app, ids)| {
            let ids = ids
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            (app.clone(), ids)
        })
        .collect();
    let w1 = column_width("Application", rows.iter().map(|r| r.0.as_str()));
    let w2 = column_width("Patches", rows.iter().map(|r| r.1.as_str()));
    let mut out = format!(
        "{:<w1$}  {}\n{}  {}\n",
        "Application",
        "Patches",
        "=".repeat(w1),
        "=".repeat(w2)
    );
    for (app, ids) in rows {
        out += &format!("{app:<w1$}  {ids}\n");
    }
    out
}

/// A `+----+----+` grid with a header row, as the StarlingX clients print lists.
pub fn grid(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| column_width(headers[c], rows.iter().map(|r| r[c].as_str())))
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let row = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("| {c:<w$} "))
            .collect::<String>()
            + "|\n"
    };
    let mut out = rule.clone();
    out += &row(headers.to_vec());
    out += &rule;
    for r in rows {
        out += &row(r.iter().map(String::as_str).collect());
    }
    out += &rule;
    out
}

/// `precheck`: one row per check, then the overall result.
pub fn precheck_table(value: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let rows: Vec<Vec<String>> = value["checks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            vec![
                text(&c["check"]),
                text(&c["result"]),
                text(&c["detail"]),
                text(&c["fix"]),
            ]
        })
        .collect();
    let mut out = grid(&["Check", "Result", "Details", "What to do"], &rows);
    out += &format!("Precheck: {}\n", text(&value["result"]));
    out
}

/// The `+----------+-------+` Property/Value table of the StarlingX clients.
pub fn property_table(rows: &[(String, String)]) -> String {
    let w1 = column_width("Property", rows.iter().map(|r| r.0.as_str()));
    let w2 = column_width("Value", rows.iter().map(|r| r.1.as_str()));
    let rule = format!("+{}+{}+\n", "-".repeat(w1 + 2), "-".repeat(w2 + 2));
    let mut out = rule.clone();
    out += &format!("| {:<w1$} | {:<w2$} |\n", "Property", "Value");
    out += &rule;
    for (k, v) in rows {
        out += &format!("| {k:<w1$} | {v:<w2$} |\n");
    }
    out += &rule;
    out
}
