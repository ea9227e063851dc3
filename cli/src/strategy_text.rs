//! The text `sw-manager patch-strategy` prints (reference §5): `field:` lines whose values
//! start at column 42, phases, stages and steps at indents 4, 8 and 12. Rendered from the
//! API's JSON, as the original client does.

use std::fmt::Write;

use serde_json::Value;

/// Column where values start.
const VALUE_COLUMN: usize = 42;

/// One `field: value` line, the value at column 42; a value of several lines goes below
/// `field: |`, indented two more (as the original's `_print`).
pub fn field_line(out: &mut String, indent: usize, field: &str, value: &str) {
    let head = format!("{}{field}:", " ".repeat(indent));
    if value.contains('\n') {
        let _ = writeln!(out, "{head} |");
        // Python's textwrap.indent: every line that is not only whitespace gets the prefix.
        let prefix = " ".repeat(indent + 2);
        for line in value.split_inclusive('\n') {
            if !line.trim().is_empty() {
                out.push_str(&prefix);
            }
            out.push_str(line);
        }
        out.push('\n');
        return;
    }
    let pad = VALUE_COLUMN.saturating_sub(head.len());
    let _ = writeln!(out, "{head}{}{value}", " ".repeat(pad));
}

/// A JSON value as the original prints it (Python's `'%s' % value` on the decoded JSON):
/// `None`, `True`, lists as `['a', 'b']`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".to_owned(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Python's `repr` of a decoded JSON value (inside a list).
fn py_repr(v: &Value) -> String {
    match v {
        Value::String(s) => {
            // Single quotes unless the text holds one and no double quote.
            let quote = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            let mut out = String::from(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
            out
        }
        other => text(other),
    }
}

/// What to show.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShowOptions {
    /// Phases, stages and steps.
    pub details: bool,
    /// Only what is running and what did not succeed.
    pub active: bool,
    /// The phases' error responses.
    pub error_details: bool,
}

/// The strategy as `sw-manager patch-strategy show` prints it, by the original client's
/// rules: the summary; then with `--details` or `--active` the phases (`--active`: only
/// what runs, and steps neither initial nor successful), otherwise the current phase's
/// outcome (`--error-details`: with its error response).
pub fn strategy_text(s: &Value, opts: ShowOptions) -> String {
    let mut out = String::from("Strategy Patch Strategy:\n");
    let f = |out: &mut String, field: &str, key: &str| field_line(out, 2, field, &text(&s[key]));
    field_line(&mut out, 2, "strategy-uuid", &text(&s["uuid"]));
    f(&mut out, "controller-apply-type", "controller-apply-type");
    f(&mut out, "storage-apply-type", "storage-apply-type");
    f(&mut out, "worker-apply-type", "worker-apply-type");
    if s["worker-apply-type"] == "parallel" {
        f(
            &mut out,
            "max-parallel-worker-hosts",
            "max-parallel-worker-hosts",
        );
    }
    f(
        &mut out,
        "default-instance-action",
        "default-instance-action",
    );
    f(&mut out, "alarm-restrictions", "alarm-restrictions");
    // Ours only, and only when asked for: the original's layout is untouched otherwise.
    if s["max-failed-hosts"].as_u64().is_some_and(|n| n > 0) {
        f(&mut out, "max-failed-hosts", "max-failed-hosts");
    }
    if s["canary-hosts"].as_u64().is_some_and(|n| n > 0) {
        f(&mut out, "canary-hosts", "canary-hosts");
        f(&mut out, "canary-state", "canary-state");
    }
    f(&mut out, "current-phase", "current-phase");
    field_line(
        &mut out,
        2,
        "current-phase-completion",
        &format!("{}%", text(&s["current-phase-completion-percentage"])),
    );
    f(&mut out, "state", "state");
    let phase = |name: &str| &s[format!("{name}-phase")];
    if opts.details || opts.active {
        for name in ["build", "apply", "abort"] {
            let p = phase(name);
            if p["total-stages"].as_u64().unwrap_or(0) > 0 {
                phase_text(&mut out, p, opts);
            }
        }
        return out;
    }
    let outcome = |out: &mut String, name: &str, blank: bool| {
        let p = phase(name);
        let (result, reason) = if blank {
            (String::new(), String::new())
        } else {
            (text(&p["result"]), text(&p["reason"]))
        };
        field_line(out, 2, &format!("{name}-result"), &result);
        field_line(out, 2, &format!("{name}-reason"), &reason);
    };
    let response = |out: &mut String, name: &str| {
        field_line(
            out,
            2,
            &format!("{name}-error-response"),
            &text(&phase(name)["response"]),
        );
    };
    match s["current-phase"].as_str().unwrap_or("") {
        name @ ("build" | "apply") => {
            if phase(name)["inprogress"] == true {
                field_line(&mut out, 2, "inprogress", "true");
            } else {
                outcome(&mut out, name, false);
                if opts.error_details {
                    response(&mut out, name);
                }
            }
        }
        "abort" => {
            let running = phase("abort")["inprogress"] == true;
            if running {
                field_line(&mut out, 2, "inprogress", "true");
            }
            outcome(&mut out, "apply", false);
            outcome(&mut out, "abort", running);
            if opts.error_details {
                response(&mut out, "apply");
                response(&mut out, "abort");
            }
        }
        _ => {}
    }
    out
}

fn phase_text(out: &mut String, p: &Value, opts: ShowOptions) {
    if opts.active && p["inprogress"] != true {
        return;
    }
    let _ = writeln!(out, "  {}-phase:", text(&p["phase-name"]));
    for key in ["total-stages", "current-stage", "stop-at-stage"] {
        field_line(out, 4, key, &text(&p[key]));
    }
    field_line(
        out,
        4,
        "timeout",
        &format!("{} seconds", text(&p["timeout"])),
    );
    field_line(
        out,
        4,
        "completion-percentage",
        &format!("{}%", text(&p["completion-percentage"])),
    );
    field_line(out, 4, "start-date-time", &text(&p["start-date-time"]));
    if p["inprogress"] == true {
        field_line(out, 4, "inprogress", "true");
    } else {
        field_line(out, 4, "end-date-time", &text(&p["end-date-time"]));
        field_line(out, 4, "result", &text(&p["result"]));
        field_line(out, 4, "reason", &text(&p["reason"]));
    }
    out.push_str("    stages:\n");
    for stage in p["stages"].as_array().into_iter().flatten() {
        if opts.active && stage["inprogress"] != true {
            continue;
        }
        stage_text(out, stage, opts);
        out.push('\n');
    }
}

fn stage_text(out: &mut String, stage: &Value, opts: ShowOptions) {
    for key in ["stage-id", "stage-name", "total-steps", "current-step"] {
        field_line(out, 8, key, &text(&stage[key]));
    }
    field_line(
        out,
        8,
        "timeout",
        &format!("{} seconds", text(&stage["timeout"])),
    );
    field_line(out, 8, "start-date-time", &text(&stage["start-date-time"]));
    if stage["inprogress"] == true {
        field_line(out, 8, "inprogress", "true");
    } else {
        field_line(out, 8, "end-date-time", &text(&stage["end-date-time"]));
        field_line(out, 8, "result", &text(&stage["result"]));
        field_line(out, 8, "reason", &text(&stage["reason"]));
    }
    out.push_str("        steps:\n");
    for step in stage["steps"].as_array().into_iter().flatten() {
        if opts.active && matches!(step["result"].as_str(), Some("initial" | "success")) {
            continue;
        }
        step_text(out, step);
        out.push('\n');
    }
}

/// Whether a step's field holds something (the original's `0 < len(...)`).
fn non_empty(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Null => false,
        _ => true,
    }
}

fn step_text(out: &mut String, step: &Value) {
    field_line(out, 12, "step-id", &text(&step["step-id"]));
    field_line(out, 12, "step-name", &text(&step["step-name"]));
    for key in ["entity-type", "entity-names", "entity-uuids"] {
        if non_empty(&step[key]) {
            field_line(out, 12, key, &text(&step[key]));
        }
    }
    field_line(
        out,
        12,
        "timeout",
        &format!("{} seconds", text(&step["timeout"])),
    );
    for key in ["start-date-time", "end-date-time"] {
        if non_empty(&step[key]) {
            field_line(out, 12, key, &text(&step[key]));
        }
    }
    field_line(out, 12, "result", &text(&step["result"]));
    field_line(out, 12, "reason", &text(&step["reason"]));
}

/// A dry run's plan: the stages with their hosts and steps, and the predicted duration.
pub fn plan_text(plan: &Value) -> String {
    let mut out = String::from("Strategy Patch Strategy (dry run, nothing stored):\n");
    field_line(&mut out, 2, "total-stages", &text(&plan["total-stages"]));
    let minutes = |key: &str| {
        let secs = plan[key].as_u64().unwrap_or(0);
        format!("{secs} seconds ({}m {:02}s)", secs / 60, secs % 60)
    };
    field_line(
        &mut out,
        2,
        "predicted-duration-min",
        &minutes("predicted-duration-min-seconds"),
    );
    field_line(
        &mut out,
        2,
        "predicted-duration-max",
        &minutes("predicted-duration-max-seconds"),
    );
    for stage in plan["stages"].as_array().into_iter().flatten() {
        let hosts: Vec<String> = stage["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["entity-type"] == "hosts")
            .flat_map(|s| s["entity-names"].as_array().cloned().unwrap_or_default())
            .map(|h| text(&h))
            .fold(Vec::new(), |mut acc, h| {
                if !acc.contains(&h) {
                    acc.push(h);
                }
                acc
            });
        let steps: Vec<String> = stage["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| text(&s["step-name"]))
            .collect();
        let _ = writeln!(out);
        field_line(&mut out, 4, "stage-id", &text(&stage["stage-id"]));
        field_line(&mut out, 4, "stage-name", &text(&stage["stage-name"]));
        field_line(&mut out, 4, "hosts", &hosts.join(", "));
        field_line(&mut out, 4, "steps", &steps.join(", "));
        field_line(
            &mut out,
            4,
            "timeout",
            &format!("{} seconds", text(&stage["timeout"])),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_start_at_column_42() {
        let mut out = String::new();
        field_line(&mut out, 2, "strategy-uuid", "abc");
        assert_eq!(out, format!("  strategy-uuid:{}abc\n", " ".repeat(42 - 16)));
        assert_eq!(out.find("abc"), Some(42));
        let mut out = String::new();
        field_line(&mut out, 12, "entity-names", "['controller-1']");
        assert_eq!(out.find('['), Some(42));
    }

    /// A strategy in `phase`, that phase running or done: a build phase, an apply phase of
    /// two stages (the second running when the apply runs), and an abort phase when aborting.
    fn sample(phase: &str, inprogress: bool) -> Value {
        let step = |id: u32, name: &str, result: &str| {
            json!({"step-id": id, "step-name": name, "timeout": 900,
                   "entity-type": if name == "query-alarms" { "" } else { "hosts" },
                   "entity-names": if name == "query-alarms" { json!([]) } else { json!(["controller-1"]) },
                   "entity-uuids": if name == "query-alarms" { json!([]) } else { json!(["u1"]) },
                   "result": result, "reason": if result == "failed" { "it broke" } else { "" },
                   "start-date-time": if result == "initial" { "" } else { "2026-11-25 10:00:01" },
                   "end-date-time": if matches!(result, "initial" | "inprogress") { "" } else { "2026-11-25 10:00:02" }})
        };
        let stage = |id: u32, running: bool, steps: Vec<Value>| {
            json!({"stage-id": id, "stage-name": "sw-patch-controllers", "timeout": 1801,
                   "total-steps": steps.len(), "current-step": 1, "inprogress": running,
                   "result": if running { "inprogress" } else { "success" }, "reason": "",
                   "start-date-time": "2026-11-25 10:00:00",
                   "end-date-time": if running { "" } else { "2026-11-25 10:00:03" },
                   "steps": steps})
        };
        let p = |name: &str, running: bool, stages: Vec<Value>| {
            json!({"phase-name": name, "timeout": 3602, "total-stages": stages.len(),
                   "current-stage": 0, "stop-at-stage": stages.len(), "inprogress": running,
                   "completion-percentage": if running { 50 } else { 100 },
                   "result": if running { "inprogress" } else if name == "build" { "success" } else { "failed" },
                   "reason": if running || name == "build" { "" } else { "it broke" },
                   "response": if name == "build" { "" } else { "HTTP 500: it broke" },
                   "start-date-time": "2026-11-25 10:00:00",
                   "end-date-time": if running { "" } else { "2026-11-25 10:00:09" },
                   "stages": stages})
        };
        let build_running = phase == "build" && inprogress;
        let build = p(
            "build",
            build_running,
            vec![stage(
                0,
                build_running,
                vec![step(
                    0,
                    "query-alarms",
                    if build_running {
                        "inprogress"
                    } else {
                        "success"
                    },
                )],
            )],
        );
        let apply_running = phase == "apply" && inprogress;
        let apply = if phase == "build" {
            p("apply", false, vec![])
        } else {
            p(
                "apply",
                apply_running,
                vec![
                    stage(
                        0,
                        false,
                        vec![
                            step(0, "query-alarms", "success"),
                            step(1, "lock-hosts", "success"),
                        ],
                    ),
                    stage(
                        1,
                        apply_running,
                        vec![
                            step(0, "lock-hosts", "success"),
                            step(
                                1,
                                "sw-patch-hosts",
                                if apply_running {
                                    "inprogress"
                                } else {
                                    "failed"
                                },
                            ),
                            step(2, "unlock-hosts", "initial"),
                        ],
                    ),
                ],
            )
        };
        let abort_running = phase == "abort" && inprogress;
        let abort = if phase == "abort" {
            p(
                "abort",
                abort_running,
                vec![stage(
                    0,
                    abort_running,
                    vec![step(
                        0,
                        "unlock-hosts",
                        if abort_running {
                            "inprogress"
                        } else {
                            "success"
                        },
                    )],
                )],
            )
        } else {
            p("abort", false, vec![])
        };
        json!({"uuid": "5435e049-7002-4403-acfb-7886f6da14af", "name": "sw-patch",
               "controller-apply-type": "serial", "storage-apply-type": "serial",
               "swift-apply-type": "ignore", "worker-apply-type": "parallel",
               "max-parallel-worker-hosts": 2, "default-instance-action": "migrate",
               "alarm-restrictions": "strict", "state": "building", "current-phase": phase,
               "current-phase-completion-percentage": 0,
               "build-phase": build, "apply-phase": apply, "abort-phase": abort})
    }

    const SUMMARY: &str = "\
Strategy Patch Strategy:
  strategy-uuid:                          5435e049-7002-4403-acfb-7886f6da14af
  controller-apply-type:                  serial
  storage-apply-type:                     serial
  worker-apply-type:                      parallel
  max-parallel-worker-hosts:              2
  default-instance-action:                migrate
  alarm-restrictions:                     strict
";

    /// The summary's last three lines.
    fn tail(phase: &str) -> String {
        format!(
            "  current-phase:                          {phase}\n  current-phase-completion:               0%\n  state:                                  building\n"
        )
    }

    /// The original client's printing rules (`sw-manager patch-strategy show`), every
    /// combination of `--details`, `--active` and `--error-details` over the build, apply
    /// and abort phases, each running and done.
    #[test]
    fn every_show_combination_follows_the_original_rules() {
        for phase in ["build", "apply", "abort"] {
            for running in [true, false] {
                let strategy = sample(phase, running);
                for (details, active, error_details) in
                    (0..8).map(|n| (n & 1 != 0, n & 2 != 0, n & 4 != 0))
                {
                    let opts = ShowOptions {
                        details,
                        active,
                        error_details,
                    };
                    let out = strategy_text(&strategy, opts);
                    let case = format!("{phase} running={running} {opts:?}");
                    let head = format!("{SUMMARY}{}", tail(phase));
                    assert!(out.starts_with(&head), "{case}:\n{out}");
                    let rest = &out[head.len()..];
                    let top: Vec<&str> = rest
                        .lines()
                        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
                        .collect();
                    if details || active {
                        // Phases only, never the outcome lines, never a blank line before one.
                        let shown: Vec<&str> = ["build", "apply", "abort"]
                            .into_iter()
                            .filter(|p| strategy[format!("{p}-phase")]["total-stages"] != 0)
                            .filter(|p| {
                                !active || strategy[format!("{p}-phase")]["inprogress"] == true
                            })
                            .collect();
                        let expected: Vec<String> =
                            shown.iter().map(|p| format!("  {p}-phase:")).collect();
                        assert_eq!(top, expected, "{case}:\n{out}");
                        assert!(!rest.starts_with('\n'), "{case}:\n{out}");
                        for line in rest
                            .lines()
                            .filter(|l| l.starts_with("            result:"))
                        {
                            let result = line.rsplit(' ').next().unwrap();
                            if active {
                                assert!(
                                    result != "initial" && result != "success",
                                    "{case}: {line}"
                                );
                            }
                        }
                        let stage_results: Vec<&str> = rest
                            .lines()
                            .filter(|l| {
                                l.starts_with("        inprogress:")
                                    || l.starts_with("        result:")
                            })
                            .collect();
                        if active {
                            assert!(
                                stage_results
                                    .iter()
                                    .all(|l| l.starts_with("        inprogress:")),
                                "{case}:\n{out}"
                            );
                        }
                        // Each stage and each step shown is followed by a blank line.
                        let stages = rest
                            .lines()
                            .filter(|l| l.starts_with("        stage-id:"))
                            .count();
                        let steps = rest
                            .lines()
                            .filter(|l| l.starts_with("            step-id:"))
                            .count();
                        assert_eq!(
                            rest.lines().filter(|l| l.is_empty()).count(),
                            stages + steps,
                            "{case}:\n{out}"
                        );
                        if !active {
                            let all_steps: usize = ["build", "apply", "abort"]
                                .iter()
                                .flat_map(|p| {
                                    strategy[format!("{p}-phase")]["stages"]
                                        .as_array()
                                        .unwrap()
                                        .clone()
                                })
                                .map(|st| st["steps"].as_array().unwrap().len())
                                .sum();
                            assert_eq!(steps, all_steps, "{case}");
                        }
                        continue;
                    }
                    let field =
                        |name: &str| top.iter().any(|l| l.starts_with(&format!("  {name}:")));
                    let expected: Vec<&str> = match (phase, running) {
                        ("abort", true) => vec![
                            "inprogress",
                            "apply-result",
                            "apply-reason",
                            "abort-result",
                            "abort-reason",
                        ],
                        ("abort", false) => vec![
                            "apply-result",
                            "apply-reason",
                            "abort-result",
                            "abort-reason",
                        ],
                        (_, true) => vec!["inprogress"],
                        ("build", false) => vec!["build-result", "build-reason"],
                        _ => vec!["apply-result", "apply-reason"],
                    };
                    let mut expected: Vec<String> =
                        expected.into_iter().map(str::to_owned).collect();
                    if error_details {
                        match (phase, running) {
                            ("abort", _) => expected.extend([
                                "apply-error-response".into(),
                                "abort-error-response".into(),
                            ]),
                            (_, true) => {}
                            (p, false) => expected.push(format!("{p}-error-response")),
                        }
                    }
                    let names: Vec<&str> = top
                        .iter()
                        .map(|l| l.trim_start().split(':').next().unwrap())
                        .collect();
                    assert_eq!(names, expected, "{case}:\n{out}");
                    if phase == "abort" && running {
                        assert!(
                            field("abort-result")
                                && out.contains("  abort-result:                           \n"),
                            "{case}"
                        );
                    }
                    assert!(!out.ends_with("\n\n"), "{case}:\n{out}");
                }
            }
        }
    }

    #[test]
    fn the_summary_matches_the_original_layout() {
        let text = strategy_text(&sample("build", true), ShowOptions::default());
        let expected = format!(
            "{SUMMARY}{}  inprogress:                             true\n",
            tail("build")
        );
        assert_eq!(text, expected);
        let done = strategy_text(&sample("build", false), ShowOptions::default());
        assert!(done.ends_with(
            "  build-result:                           success\n  build-reason:                           \n"
        ));
    }

    #[test]
    fn details_show_phases_stages_and_steps() {
        let text = strategy_text(
            &sample("apply", false),
            ShowOptions {
                details: true,
                ..ShowOptions::default()
            },
        );
        assert!(text.contains("\n  build-phase:\n    total-stages:"));
        assert!(text.contains("    timeout:                              3602 seconds\n"));
        assert!(text.contains("    stages:\n        stage-id:"));
        assert!(text.contains("        steps:\n            step-id:"));
        assert!(text.contains("            entity-names:                 ['controller-1']\n"));
    }

    /// `--active` while a stage runs, line for line as the original prints it: the running
    /// phase, its running stage, the step neither initial nor successful, each stage and
    /// step followed by a blank line.
    #[test]
    fn active_shows_what_runs_line_for_line() {
        let out = strategy_text(
            &sample("apply", true),
            ShowOptions {
                active: true,
                ..ShowOptions::default()
            },
        );
        let expected = format!(
            "{SUMMARY}{}{}",
            tail("apply"),
            "  apply-phase:
    total-stages:                         2
    current-stage:                        0
    stop-at-stage:                        2
    timeout:                              3602 seconds
    completion-percentage:                50%
    start-date-time:                      2026-11-25 10:00:00
    inprogress:                           true
    stages:
        stage-id:                         1
        stage-name:                       sw-patch-controllers
        total-steps:                      3
        current-step:                     1
        timeout:                          1801 seconds
        start-date-time:                  2026-11-25 10:00:00
        inprogress:                       true
        steps:
            step-id:                      1
            step-name:                    sw-patch-hosts
            entity-type:                  hosts
            entity-names:                 ['controller-1']
            entity-uuids:                 ['u1']
            timeout:                      900 seconds
            start-date-time:              2026-11-25 10:00:01
            result:                       inprogress
            reason:                       \n\n\n"
        );
        assert_eq!(out, expected);
    }

    /// Values as Python prints them: None, True, lists with repr'd strings; several lines go
    /// below `field: |`.
    #[test]
    fn values_are_printed_as_python_prints_them() {
        assert_eq!(text(&json!(null)), "None");
        assert_eq!(text(&json!(true)), "True");
        assert_eq!(text(&json!(["a", "it's"])), "['a', \"it's\"]");
        let mut out = String::new();
        field_line(&mut out, 2, "apply-reason", "line one\n\nline two");
        assert_eq!(out, "  apply-reason: |\n    line one\n\n    line two\n");
    }
}
