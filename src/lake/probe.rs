//! A write probe of the lake: put, read back and delete one small object under `_walaudit/`,
//! through the same object stores the writer uses. `walaudit doctor` runs it so that a lake
//! `run` cannot write is found before the engine needs it.
//!
//! ```text
//!  LakeLocation ──store_for(root, options)──► put _walaudit/probe-<pid>-<nanos>
//!                                             get (same bytes?) ──► delete
//! ```
//!
//! # Invariants
//! * The probe object never collides with a Delta table (tables are directories holding a
//!   `_delta_log`); it is deleted again, also after a failed read-back.

use std::time::{Duration, Instant};

use deltalake::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::LakeLocation;
use super::catalog::ENGINE_DIR;

/// Longest the whole probe may take (object stores retry internally for a long time).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a successful probe did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// The object written and deleted, relative to the lake root.
    pub object: String,
    pub elapsed: Duration,
}

/// The probe failed; the message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot {step} {object} in lake {lake}: {hint}")]
    Storage {
        step: &'static str,
        object: String,
        lake: String,
        hint: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "lake {lake}: {object} read back different bytes than were written: is something rewriting the lake?"
    )]
    Mismatch { lake: String, object: String },
    #[error("lake {lake} did not answer within {PROBE_TIMEOUT:?}: {hint}")]
    Timeout { lake: String, hint: &'static str },
}

/// The operator's next step for a lake at `location`.
fn hint(location: &LakeLocation) -> &'static str {
    match location.root().scheme() {
        "file" => {
            "check that the path is a directory walaudit may write (not a file, a read-only mount \
             or a full disk), or choose another with --lake / lake.url"
        }
        "s3" | "s3a" => {
            "check the bucket, the endpoint and the credentials ([lake.s3] or AWS_*), and that \
             they allow PutObject, GetObject and DeleteObject"
        }
        _ => "check the URL, the credentials and that they allow writing and deleting objects",
    }
}

/// Put, read back and delete a probe object under `<lake>/_walaudit/`.
pub async fn probe(location: &LakeLocation) -> Result<ProbeReport, ProbeError> {
    match tokio::time::timeout(PROBE_TIMEOUT, probe_inner(location)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout {
            lake: location.display(),
            hint: hint(location),
        }),
    }
}

async fn probe_inner(location: &LakeLocation) -> Result<ProbeReport, ProbeError> {
    let started = Instant::now();
    let nanos = crate::clock::unix_nanos();
    let object = format!("{ENGINE_DIR}/probe-{}-{nanos}", std::process::id());
    let storage = |step: &'static str| {
        let (object, lake) = (object.clone(), location.display());
        move |source: Box<dyn std::error::Error + Send + Sync>| ProbeError::Storage {
            step,
            object,
            lake,
            hint: hint(location),
            source,
        }
    };
    let store = location
        .root_store()
        .map_err(|e| storage("open")(Box::new(e)))?;
    let path = Path::from(object.as_str());
    let body = format!("walaudit doctor write probe {nanos}\n");
    store
        .put(&path, PutPayload::from(body.clone().into_bytes()))
        .await
        .map_err(|e| storage("write")(Box::new(e)))?;
    let read = async {
        let got = store.get(&path).await?.bytes().await?;
        Ok::<_, object_store::Error>(got)
    }
    .await;
    let deleted = store.delete(&path).await;
    let got = read.map_err(|e| storage("read back")(Box::new(e)))?;
    if got.as_ref() != body.as_bytes() {
        return Err(ProbeError::Mismatch {
            lake: location.display(),
            object,
        });
    }
    deleted.map_err(|e| storage("delete")(Box::new(e)))?;
    Ok(ProbeReport {
        object,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::S3Config;

    #[tokio::test]
    async fn probe_writes_and_removes_its_object() {
        let dir = tempfile::tempdir().unwrap();
        let lake = LakeLocation::new(dir.path().to_str().unwrap(), &S3Config::default()).unwrap();
        let report = probe(&lake).await.unwrap();
        assert!(report.object.starts_with("_walaudit/probe-"), "{report:?}");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("_walaudit"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn a_file_where_the_engine_dir_should_be_fails_for_root_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("_walaudit"), "not a directory").unwrap();
        let lake = LakeLocation::new(dir.path().to_str().unwrap(), &S3Config::default()).unwrap();
        let err = probe(&lake).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("cannot write _walaudit/probe-"), "{msg}");
        assert!(msg.contains("--lake"), "{msg}");
    }
}
