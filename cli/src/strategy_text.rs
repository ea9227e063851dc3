//! The text `sw-manager patch-strategy` prints (reference §5): `field:` lines whose values
//! start at column 42, phases, stages and steps at indents 4, 8 and 12. Rendered from the
//! API's JSON, as the original client does.

use std::fmt::Write;

use serde_json::Value;

/// Column where values start.
const VALUE_COLUMN: usize = 42;

/// One `field: value` line, the value at column 42.
pub fn field_line(out: &mut String, indent: usize, field: &str, value: &str) {
    let head = format!("{}{field}:", " ".repeat(indent));
    let pad = VALUE_COLUMN.saturating_sub(head.len());
    let _ = writeln!(out, "{head}{}{value}", " ".repeat(pad));
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "true" } else { "false" }.to_owned(),
        other => other.to_string(),
    }
}

/// A list the way Python prints it: `['a', 'b']`.
fn py_list(v: &Value) -> String {
    let items: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(|x| format!("'{}'", text(x))).collect())
        .unwrap_or_default();
    format!("[{}]", items.join(", "))
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

/// The strategy as `sw-manager patch-strategy show` prints it.
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
    let result_lines = |out: &mut String, name: &str, blank: bool| {
        let p = phase(name);
        let (result, reason) = if blank {
            (String::new(), String::new())
        } else {
            (text(&p["result"]), text(&p["reason"]))
        };
        field_line(out, 2, &format!("{name}-result"), &result);
        field_line(out, 2, &format!("{name}-reason"), &reason);
        if opts.error_details {
            let response = if blank {
                String::new()
            } else {
                text(&p["response"])
            };
            field_line(out, 2, &format!("{name}-error-response"), &response);
        }
    };
    match s["current-phase"].as_str().unwrap_or("") {
        "build" | "apply" => {
            let name = s["current-phase"].as_str().unwrap_or("build");
            if phase(name)["inprogress"] == true {
                field_line(&mut out, 2, "inprogress", "true");
            } else {
                result_lines(&mut out, name, false);
            }
        }
        "abort" => {
            let running = phase("abort")["inprogress"] == true;
            if running {
                field_line(&mut out, 2, "inprogress", "true");
            }
            result_lines(&mut out, "apply", false);
            result_lines(&mut out, "abort", running);
        }
        _ => {}
    }
    if opts.details || opts.active {
        for name in ["build", "apply", "abort"] {
            let p = phase(name);
            let stages = p["stages"].as_array().map_or(0, Vec::len);
            if stages == 0 {
                continue;
            }
            if opts.active && p["inprogress"] != true {
                continue;
            }
            let _ = writeln!(out, "\n  {name}-phase:");
            phase_text(&mut out, p, opts);
        }
    }
    out
}

fn phase_text(out: &mut String, p: &Value, opts: ShowOptions) {
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

fn step_text(out: &mut String, step: &Value) {
    field_line(out, 12, "step-id", &text(&step["step-id"]));
    field_line(out, 12, "step-name", &text(&step["step-name"]));
    if !text(&step["entity-type"]).is_empty() {
        field_line(out, 12, "entity-type", &text(&step["entity-type"]));
    }
    for key in ["entity-names", "entity-uuids"] {
        if step[key].as_array().is_some_and(|a| !a.is_empty()) {
            field_line(out, 12, key, &py_list(&step[key]));
        }
    }
    field_line(
        out,
        12,
        "timeout",
        &format!("{} seconds", text(&step["timeout"])),
    );
    for key in ["start-date-time", "end-date-time"] {
        if !text(&step[key]).is_empty() {
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

    fn sample(phase: &str, inprogress: bool) -> Value {
        let p = |name: &str, running: bool| {
            json!({"phase-name": name, "timeout": 182, "total-stages": 1, "current-stage": 0,
                   "stop-at-stage": 1, "inprogress": running, "completion-percentage": 100,
                   "result": if running {"inprogress"} else {"success"}, "reason": "",
                   "response": "", "start-date-time": "2026-11-25 10:00:00",
                   "end-date-time": "", "stages": [{
                       "stage-id": 0, "stage-name": "sw-patch-query", "timeout": 181,
                       "total-steps": 1, "current-step": 0, "inprogress": running,
                       "result": "success", "reason": "", "start-date-time": "",
                       "end-date-time": "", "steps": [{
                           "step-id": 0, "step-name": "swact-hosts", "timeout": 900,
                           "entity-type": "hosts", "entity-names": ["controller-1"],
                           "entity-uuids": ["u1"], "result": "success", "reason": "",
                           "start-date-time": "", "end-date-time": ""}]}]})
        };
        json!({"uuid": "5435e049-7002-4403-acfb-7886f6da14af", "name": "sw-patch",
               "controller-apply-type": "serial", "storage-apply-type": "serial",
               "swift-apply-type": "ignore", "worker-apply-type": "parallel",
               "max-parallel-worker-hosts": 2, "default-instance-action": "migrate",
               "alarm-restrictions": "strict", "state": "building", "current-phase": phase,
               "current-phase-completion-percentage": 0,
               "build-phase": p("build", inprogress && phase == "build"),
               "apply-phase": p("apply", false), "abort-phase": p("abort", false)})
    }

    #[test]
    fn the_summary_matches_the_original_layout() {
        let text = strategy_text(&sample("build", true), ShowOptions::default());
        let expected = "\
Strategy Patch Strategy:
  strategy-uuid:                          5435e049-7002-4403-acfb-7886f6da14af
  controller-apply-type:                  serial
  storage-apply-type:                     serial
  worker-apply-type:                      parallel
  max-parallel-worker-hosts:              2
  default-instance-action:                migrate
  alarm-restrictions:                     strict
  current-phase:                          build
  current-phase-completion:               0%
  state:                                  building
  inprogress:                             true
";
        assert_eq!(text, expected);
        let done = strategy_text(&sample("build", false), ShowOptions::default());
        assert!(done.ends_with(
            "  build-result:                           success\n  build-reason:                           \n"
        ));
    }

    #[test]
    fn details_show_phases_stages_and_steps() {
        let text = strategy_text(
            &sample("build", false),
            ShowOptions {
                details: true,
                ..ShowOptions::default()
            },
        );
        assert!(text.contains("\n  build-phase:\n    total-stages:"));
        assert!(text.contains("    timeout:                              182 seconds\n"));
        assert!(text.contains("    stages:\n        stage-id:"));
        assert!(text.contains("        steps:\n            step-id:"));
        assert!(text.contains("            entity-names:                 ['controller-1']\n"));
    }
}
