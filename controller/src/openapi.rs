//! The descriptions of the REST APIs served (OpenAPI 3.1), kept as YAML beside the code and
//! served as `/openapi.json` and `/openapi.yaml`. Tests compare each with the routes its
//! router mounts, so a route cannot be added without being described, nor described
//! without being served.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// One API description.
pub(crate) struct Description {
    yaml: &'static str,
    json: OnceLock<String>,
}

impl Description {
    const fn new(yaml: &'static str) -> Description {
        Description {
            yaml,
            json: OnceLock::new(),
        }
    }

    /// The document as a JSON value.
    pub(crate) fn value(&self) -> serde_json::Value {
        // A unit test parses every description, so this cannot fail at run time.
        serde_yaml_ng::from_str(self.yaml).unwrap_or_else(
            |e| serde_json::json!({"error": format!("the API description does not parse: {e}")}),
        )
    }

    /// `GET /openapi.json`.
    pub(crate) fn json(&self) -> Response {
        let text = self.json.get_or_init(|| self.value().to_string());
        ([(header::CONTENT_TYPE, "application/json")], text.clone()).into_response()
    }

    /// `GET /openapi.yaml`.
    pub(crate) fn yaml(&self) -> Response {
        ([(header::CONTENT_TYPE, "application/yaml")], self.yaml).into_response()
    }
}

/// The patching API (`sw-patch`, the original's port 5487).
pub(crate) static PATCHING: Description =
    Description::new(include_str!("../openapi/patching.yaml"));

/// The orchestration and alarm API (`sw-manager`, `fm`, the original VIM's port 4545).
pub(crate) static VIM: Description = Description::new(include_str!("../openapi/vim.yaml"));

#[cfg(test)]
mod tests {
    use super::*;

    /// (method, path) of every operation a description holds.
    pub(crate) fn operations(description: &Description) -> Vec<(String, String)> {
        let doc = description.value();
        let mut found = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    found.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn every_description_is_openapi_3_1_with_paths() {
        for d in [&PATCHING, &VIM] {
            let doc = d.value();
            assert_eq!(doc["openapi"], "3.1.0", "{doc}");
            assert!(doc["info"]["title"].is_string());
            assert!(!operations(d).is_empty());
        }
    }

    #[test]
    fn the_vim_description_holds_exactly_the_mounted_routes() {
        let mut mounted = crate::vim_api::routes().mounted_pairs();
        mounted.sort();
        assert_eq!(operations(&VIM), mounted);
    }

    #[test]
    fn the_patching_description_holds_exactly_the_mounted_routes_and_actions() {
        let mut served = crate::api::routes().mounted_pairs();
        let described = operations(&PATCHING);
        // Each action is described once, under `/v1/<action>` (with its path parameters).
        for action in crate::api::ACTIONS {
            let prefix = format!("/v1/{action}");
            let of_action: Vec<_> = described
                .iter()
                .filter(|(_, p)| *p == prefix || p.starts_with(&format!("{prefix}/")))
                .collect();
            assert!(
                !of_action.is_empty(),
                "action {action} is served but not described in openapi/patching.yaml"
            );
            served.extend(of_action.into_iter().cloned());
        }
        served.sort();
        served.dedup();
        assert_eq!(
            described, served,
            "openapi/patching.yaml describes what is not served, or misses what is"
        );
    }
}
