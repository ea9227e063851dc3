//! Prestaging: the patches a subcloud lacks, passed on from the system controller's vault
//! (the signed files as they were uploaded) to the subcloud's controller, which verifies
//! each as any upload. Nothing is applied: the subcloud is ready for its maintenance
//! window.

use serde::Serialize;

use crate::audit::{QueryError, chain, client_for, patches_of, read_bounded};
use crate::model::Access;

/// What a prestage did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Prestaged {
    /// Patches uploaded to the subcloud.
    pub uploaded: Vec<String>,
    /// Patches that could not be, and why.
    pub failed: Vec<(String, String)>,
}

/// Uploads to the subcloud at `subcloud` every patch the system controller at `reference`
/// has applied or committed and the subcloud does not hold in any state.
pub async fn prestage(
    reference: &Access,
    subcloud: &Access,
    name: &str,
) -> Result<Prestaged, QueryError> {
    let ours = patches_of(reference, "the system controller").await?;
    let theirs = patches_of(subcloud, name).await?;
    let from = client_for(reference, "the system controller", None)?;
    let to = client_for(subcloud, name, None)?;
    let mut done = Prestaged::default();
    for (id, state) in &ours {
        if !matches!(state.as_str(), "Applied" | "Committed") || theirs.contains_key(id) {
            continue;
        }
        match pass_on(reference, subcloud, &from, &to, id).await {
            Ok(()) => done.uploaded.push(id.clone()),
            Err(why) => done.failed.push((id.clone(), why)),
        }
    }
    Ok(done)
}

/// Streams `id`'s file from the system controller into the subcloud's upload.
async fn pass_on(
    reference: &Access,
    subcloud: &Access,
    from: &reqwest::Client,
    to: &reqwest::Client,
    id: &str,
) -> Result<(), String> {
    let url = format!("{}/v1/patch_file/{id}", reference.url.trim_end_matches('/'));
    let mut get = from.get(&url);
    if !reference.token.is_empty() {
        get = get.header("X-Auth-Token", &reference.token);
    }
    let file = get
        .send()
        .await
        .map_err(|e| format!("the system controller does not give {id}: {}", chain(&e)))?;
    if !file.status().is_success() {
        let status = file.status();
        let body = read_bounded(file, id).await.unwrap_or_default();
        return Err(format!(
            "the system controller does not give {id} ({status}): {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    let length = file.content_length();
    let mut upload = to
        .post(format!(
            "{}/v1/upload?filename={id}.patch",
            subcloud.url.trim_end_matches('/')
        ))
        .header("X-Auth-Token", &subcloud.token)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(file.bytes_stream()));
    if let Some(length) = length {
        upload = upload.header(reqwest::header::CONTENT_LENGTH, length);
    }
    let answer = upload
        .send()
        .await
        .map_err(|e| format!("the subcloud does not take {id}: {}", chain(&e)))?;
    let status = answer.status();
    let body = read_bounded(answer, id).await.map_err(|e| e.to_string())?;
    let body: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the subcloud answered {status} to {id}'s upload: {e}"))?;
    match body.get("error").and_then(serde_json::Value::as_str) {
        Some(error) if !error.trim().is_empty() => Err(error.trim().to_owned()),
        _ if !status.is_success() => Err(format!("the subcloud answered {status}")),
        _ => Ok(()),
    }
}
