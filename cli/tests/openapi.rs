//! The API descriptions a running controller serves: valid OpenAPI 3.1 by the OpenAPI
//! Initiative's own JSON schema (checked with Python's `jsonschema`), and every operation
//! they describe reaches a route (never the not-found fallback). That the descriptions
//! hold exactly the mounted routes is a unit test of the controller.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Validates `doc` against the OpenAPI 3.1 schema with the system's Python `jsonschema`.
fn assert_valid_openapi(doc: &Value) {
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../controller/openapi/oas-3.1-schema.json"
    );
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        doc = json.load(sys.stdin)\n\
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str)\n\
        [print(e.message, list(e.absolute_path)) for e in errors]\n\
        sys.exit(1 if errors else 0)\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script, schema])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs python3-jsonschema)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} is not valid OpenAPI 3.1:\n{}",
        doc["info"]["title"],
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn served_descriptions_are_valid_openapi_and_every_read_reaches_a_route() {
    let dir = tempfile::tempdir().unwrap();
    let (mut controller, addresses) = common::spawn_with_addresses(
        common::controller()
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--release", "19.01", "--listen", "127.0.0.1:0"]),
    );
    let api = format!("http://{}", addresses["api"].as_str().unwrap());
    let vim = format!("http://{}", addresses["vim_api"].as_str().unwrap());
    let http = reqwest::blocking::Client::new();
    for base in [&api, &vim] {
        let doc: Value = http
            .get(format!("{base}/openapi.json"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_valid_openapi(&doc);
        let yaml = http.get(format!("{base}/openapi.yaml")).send().unwrap();
        assert_eq!(yaml.headers()["content-type"], "application/yaml");
        assert!(yaml.text().unwrap().starts_with("openapi: 3.1.0\n"));
        // Every read it describes, with sample parameters (reads change nothing).
        for (path, item) in doc["paths"].as_object().unwrap() {
            if item.get("get").is_none() {
                continue;
            }
            let path = path
                .replace("{kind}", "sw-patch")
                .replace("{patch_ids}", "NOPE_0001")
                .replace("{hostname}", "controller-0")
                .replace("{uuid}", "0");
            let status = http.get(format!("{base}{path}")).send().unwrap().status();
            assert_ne!(status, 405, "GET {path}");
        }
    }
    // Not one of those requests fell through to the not-found fallback.
    let metrics = http
        .get(format!("{api}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let requests: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("stx_patch_http_requests_total{"))
        .collect();
    assert!(requests.len() > 20, "{metrics}");
    for line in requests {
        assert!(
            !line.contains("route=\"unmatched\"") && !line.contains("{unknown}"),
            "a described path has no route: {line}"
        );
    }
    let _ = controller.kill();
    let _ = controller.wait();
}
