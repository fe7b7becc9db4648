//! Files too large to travel in a Kafka record, kept by content: the claim-check half of omni.
//!
//! Whoever holds a file's bytes (the email connector cutting a large part out of a record, later
//! the media fetchers) puts them here under their SHA-256; whoever needs them (the router
//! uploading to a helpdesk) asks by the SHA-256 an `omni.v1.Attachment` already
//! carries, and gets them only if they still hash to it. Keys are `sha256/<2 hex>/<64 hex>`, so
//! the same file put twice is one object and a put is idempotent (a connector that crashed after
//! the put and puts again writes nothing new).
//!
//! Behind the `object_store` crate: a local directory (`file:` URL or a plain path; the embedded
//! default `.omni/objects`) or S3-compatible storage (`s3://bucket/prefix`, credentials and
//! endpoint from the usual `AWS_*` environment variables, such as `AWS_ENDPOINT` for MinIO).

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};

/// `[objects]`: where every service finds the store.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsConfig {
    /// A directory (the embedded default `.omni/objects`), a `file:` URL or `s3://bucket/prefix`;
    /// empty: no store (large files stay referenced where they came from).
    #[serde(default)]
    pub url: String,
}

impl omni_runtime::Validate for ObjectsConfig {
    fn validate(&self, prefix: &str, problems: &mut omni_runtime::Problems) {
        let url = self.url.trim();
        if url.contains("://") && !url.starts_with("file:") && url::Url::parse(url).is_err() {
            problems.push(format!("{prefix}.url"), format!("`{url}` is not a URL"));
        }
    }
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    /// The configured URL names no store omni can open.
    #[error("[objects] url `{url}`: {reason}")]
    Config {
        /// The URL as configured.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed (I/O, network, credentials): try again later.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// An object's bytes do not hash to its key: it is not used.
    #[error("object sha256/{0} does not hold the bytes it is named after")]
    Corrupt(String),
    /// Not a SHA-256 in hex.
    #[error("`{0}` is not a SHA-256 (64 hex digits)")]
    BadKey(String),
}

/// One store, shared by the tasks of a service.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    url: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("url", &self.url).finish()
    }
}

impl Objects {
    /// Opens the store `url` names: `s3://...` (or another scheme `object_store` serves), a
    /// `file:` URL, or a directory path (created if missing; relative to the working
    /// directory). An empty `url` is no store: `None`.
    pub fn open(url: &str) -> Result<Option<Self>, ObjectsError> {
        let url = url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        let config = |reason: String| ObjectsError::Config {
            url: url.to_owned(),
            reason,
        };
        let store: Arc<dyn ObjectStore> = if url.contains("://") && !url.starts_with("file:") {
            let parsed = url::Url::parse(url).map_err(|e| config(e.to_string()))?;
            let options = std::env::vars()
                .filter(|(key, _)| key.starts_with("AWS_"))
                .map(|(k, v)| (k.to_ascii_lowercase(), v));
            let (store, prefix) = object_store::parse_url_opts(&parsed, options).map_err(|e| config(e.to_string()))?;
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        } else {
            let path = url.strip_prefix("file://").or_else(|| url.strip_prefix("file:")).unwrap_or(url);
            let path = std::path::absolute(path).map_err(|e| config(e.to_string()))?;
            std::fs::create_dir_all(&path).map_err(|e| config(format!("cannot create {}: {e}", path.display())))?;
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&path).map_err(|e| config(e.to_string()))?)
        };
        Ok(Some(Self {
            store,
            url: url.to_owned(),
        }))
    }

    /// Keeps `bytes`; returns their SHA-256 (hex), the key to ask for them by. Already there:
    /// nothing is written.
    pub async fn put(&self, bytes: &[u8]) -> Result<String, ObjectsError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(bytes));
        match self.store.put_opts(&key(&sha256)?, payload, options).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(sha256),
            Err(error) => Err(error.into()),
        }
    }

    /// The bytes kept under `sha256`, checked; `None` when there are none.
    pub async fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, ObjectsError> {
        let bytes = match self.store.get(&key(sha256)?).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        if hex::encode(Sha256::digest(&bytes)) != sha256.to_ascii_lowercase() {
            return Err(ObjectsError::Corrupt(sha256.to_owned()));
        }
        Ok(Some(bytes.to_vec()))
    }
}

/// The object key of a SHA-256.
fn key(sha256: &str) -> Result<Path, ObjectsError> {
    let sha256 = sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ObjectsError::BadKey(sha256));
    }
    Ok(Path::from(format!("sha256/{}/{sha256}", &sha256[..2])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_is_kept_by_its_hash_once_and_given_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::open(dir.path().to_str().unwrap()).unwrap().unwrap();
        let photo: Vec<u8> = (0..300_000u32).map(|n| (n * 7 % 251) as u8).collect();
        let sha256 = objects.put(&photo).await.unwrap();
        assert_eq!(sha256, hex::encode(Sha256::digest(&photo)));
        // Put again (a connector restarted after the put): the same object, no error.
        assert_eq!(objects.put(&photo).await.unwrap(), sha256);
        let stored = dir.path().join("sha256").join(&sha256[..2]).join(&sha256);
        assert_eq!(std::fs::read(&stored).unwrap(), photo);
        assert_eq!(objects.get(&sha256).await.unwrap(), Some(photo));
        assert_eq!(objects.get(&"0".repeat(64)).await.unwrap(), None);
        // Bytes that do not hash to their key are refused.
        std::fs::write(&stored, b"not the photo").unwrap();
        assert!(matches!(objects.get(&sha256).await, Err(ObjectsError::Corrupt(_))));
        assert!(matches!(objects.get("../../etc/passwd").await, Err(ObjectsError::BadKey(_))));
    }

    #[test]
    fn no_url_is_no_store_and_a_bad_one_a_clear_error() {
        assert!(Objects::open("  ").unwrap().is_none());
        let error = Objects::open("nosuch://bucket/x").unwrap_err();
        assert!(error.to_string().contains("nosuch://bucket/x"), "{error}");
    }
}
