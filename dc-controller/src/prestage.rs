//! Prestaging: the patches a subcloud lacks, passed on from the system controller's vault
//! (the signed files as they were uploaded) to the subcloud's controller, which verifies
//! each as any upload. Nothing is applied: the subcloud is ready for its maintenance
//! window.

use serde::Serialize;

use std::time::Duration;

use crate::audit::patches_of;
use crate::client::{QueryError, client_for};
use crate::model::Access;
use crate::remote::Remote;

/// How long one upload may take (patches can be large; a stalled one is given up).
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

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
    let to = Remote::new(subcloud, name, UPLOAD_TIMEOUT)?;
    let mut done = Prestaged::default();
    for (id, state) in &ours {
        if !matches!(state.as_str(), "Applied" | "Committed") || theirs.contains_key(id) {
            continue;
        }
        match to.upload_from(reference, &from, id).await {
            Ok(()) => done.uploaded.push(id.clone()),
            Err(why) => done.failed.push((id.clone(), why)),
        }
    }
    Ok(done)
}
