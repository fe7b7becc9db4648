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

pub mod links;

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};

/// `[objects]`: where every service finds the store.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsConfig {
    /// A directory (the embedded default `.omni/objects`), a `file:` URL or `s3://bucket/prefix`;
    /// empty: no store (large files stay referenced where they came from).
    #[serde(default)]
    pub url: String,
    /// Objects last written longer ago than this many days are deleted by the router's hourly
    /// sweep (0: kept for ever). Longer than any delivery can wait: a redelivery after that
    /// fetches the file from its provider again, or lists it by its reference.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Where receivers of file links reach omni-gateway (`https://omni.example.com`): with
    /// `link_secret`, destinations that take links (the webhook destination) get a signed,
    /// expiring link per file ([`links`]) instead of the bytes. Empty: no links.
    #[serde(default)]
    pub public_url: String,
    /// The key file links are signed with (prefer `OMNI__OBJECTS__LINK_SECRET`).
    #[serde(default)]
    pub link_secret: String,
    /// How long a file link works, seconds.
    #[serde(default = "default_link_ttl_secs")]
    pub link_ttl_secs: u64,
}

fn default_link_ttl_secs() -> u64 {
    7 * 86_400
}

impl ObjectsConfig {
    /// The file links these settings make, when `public_url`, `link_secret` and a store are set.
    pub fn links(&self) -> Option<links::Links> {
        if self.url.trim().is_empty() {
            return None;
        }
        links::Links::new(
            &self.public_url,
            &self.link_secret,
            std::time::Duration::from_secs(self.link_ttl_secs),
        )
    }
}

fn default_retention_days() -> u32 {
    30
}

impl std::fmt::Debug for ObjectsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectsConfig")
            .field("url", &self.url)
            .field("retention_days", &self.retention_days)
            .field("public_url", &self.public_url)
            .field("link_secret", &if self.link_secret.is_empty() { "" } else { "<redacted>" })
            .field("link_ttl_secs", &self.link_ttl_secs)
            .finish()
    }
}

impl omni_runtime::Validate for ObjectsConfig {
    fn validate(&self, prefix: &str, problems: &mut omni_runtime::Problems) {
        let url = self.url.trim();
        if url.contains("://") && !url.starts_with("file:") && url::Url::parse(url).is_err() {
            problems.push(format!("{prefix}.url"), format!("`{url}` is not a URL"));
        }
        // The gateway serves links with any secret set, public_url or not.
        problems.check(
            self.link_secret.is_empty() || self.link_secret.len() >= 16,
            format!("{prefix}.link_secret"),
            "file links need a secret of at least 16 characters",
        );
        let public_url = self.public_url.trim();
        if !public_url.is_empty() {
            let parsed = url::Url::parse(public_url);
            problems.check(
                parsed.is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.query().is_none()),
                format!("{prefix}.public_url"),
                format!("`{public_url}` is not an http(s) URL without a query"),
            );
            problems.check(
                !self.link_secret.is_empty(),
                format!("{prefix}.link_secret"),
                "file links need a secret of at least 16 characters",
            );
            problems.check(!url.is_empty(), format!("{prefix}.url"), "file links need a store");
            // At least an hour (a redelivery carries the same link only while it has an hour
            // left), at most as long as the store keeps files (and a year).
            let kept = u64::from(self.retention_days).saturating_mul(86_400);
            problems.check(
                (3600..=366 * 86_400).contains(&self.link_ttl_secs) && (self.retention_days == 0 || self.link_ttl_secs <= kept),
                format!("{prefix}.link_ttl_secs"),
                "must be from 3600 to retention_days in seconds (at most a year)",
            );
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

/// What an [`Objects::expire`] sweep found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Objects deleted, and their bytes.
    pub expired: u64,
    /// Their bytes.
    pub expired_bytes: u64,
    /// Objects kept, and their bytes: what the store holds now.
    pub kept: u64,
    /// Their bytes.
    pub kept_bytes: u64,
}

/// An object put again this long after it was written is written again, so its age (which
/// [`Objects::expire`] reads) counts from its latest use.
const REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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
        let key = key(&sha256)?;
        match self.store.put_opts(&key, payload.clone(), options).await {
            Ok(_) => Ok(sha256),
            Err(object_store::Error::AlreadyExists { .. }) => {
                // In use again: written again once a day at most, so it does not expire early;
                // gone meanwhile (a sweep deleted it): written again.
                let stale = match self.store.head(&key).await {
                    Ok(meta) => chrono_age(meta.last_modified) > REFRESH_AFTER,
                    Err(object_store::Error::NotFound { .. }) => true,
                    Err(error) => return Err(error.into()),
                };
                if stale {
                    self.store.put(&key, payload).await?;
                }
                Ok(sha256)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes every object last written before `before`; what it deleted and what is left.
    pub async fn expire(&self, before: std::time::SystemTime) -> Result<Sweep, ObjectsError> {
        use futures::TryStreamExt as _;
        let mut sweep = Sweep::default();
        let mut listing = self.store.list(Some(&Path::from("sha256")));
        while let Some(meta) = listing.try_next().await? {
            // Looked at again right before the delete: a put that refreshed it since the listing
            // keeps it.
            let current = match self.store.head(&meta.location).await {
                Ok(current) => current,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(error) => return Err(error.into()),
            };
            if std::time::SystemTime::from(current.last_modified) < before {
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        sweep.expired += 1;
                        sweep.expired_bytes += meta.size;
                    }
                    Err(error) => return Err(error.into()),
                }
            } else {
                sweep.kept += 1;
                sweep.kept_bytes += meta.size;
            }
        }
        Ok(sweep)
    }

    /// The bytes kept under `sha256`, checked; `None` when there are none.
    pub async fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, ObjectsError> {
        Ok(self.get_bytes(sha256).await?.map(|bytes| bytes.to_vec()))
    }

    /// [`Objects::get`] without copying the bytes out of the store's buffer.
    pub async fn get_bytes(&self, sha256: &str) -> Result<Option<bytes::Bytes>, ObjectsError> {
        let bytes = match self.store.get(&key(sha256)?).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        if hex::encode(Sha256::digest(&bytes)) != sha256.to_ascii_lowercase() {
            return Err(ObjectsError::Corrupt(sha256.to_owned()));
        }
        Ok(Some(bytes))
    }
}

/// How long ago `at` was (0 when in the future).
fn chrono_age(at: chrono::DateTime<chrono::Utc>) -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::from(at))
        .unwrap_or_default()
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

    #[tokio::test]
    async fn a_sweep_deletes_what_was_last_written_before_the_cutoff_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::open(dir.path().to_str().unwrap()).unwrap().unwrap();
        let old = objects.put(b"an old receipt").await.unwrap();
        let cutoff = std::time::SystemTime::now() + std::time::Duration::from_millis(20);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let new = objects.put(b"a new photo").await.unwrap();
        let sweep = objects.expire(cutoff).await.unwrap();
        assert_eq!(
            sweep,
            Sweep {
                expired: 1,
                expired_bytes: 14,
                kept: 1,
                kept_bytes: 11
            }
        );
        assert_eq!(objects.get(&old).await.unwrap(), None);
        assert_eq!(objects.get(&new).await.unwrap().as_deref(), Some(b"a new photo".as_slice()));
    }

    #[test]
    fn no_url_is_no_store_and_a_bad_one_a_clear_error() {
        assert!(Objects::open("  ").unwrap().is_none());
        let error = Objects::open("nosuch://bucket/x").unwrap_err();
        assert!(error.to_string().contains("nosuch://bucket/x"), "{error}");
    }
}
