//! Where the lake lives: a local path or an object-store URL, and the object stores behind it.
//!
//! ```text
//!  "./lake" | file:///… | s3://bucket/prefix | gs://… | az://…
//!        └──► LakeLocation { root, options } ──► table_url(schema, table) = <root>/<schema>/<table>/
//!             new (writers: a local dir is created)  └─► engine_table_url(name) = <root>/_walaudit/<name>/
//!             existing (readers: it must exist)      └─► table_builder(url), root_store()
//!  register_object_stores(): s3/gs/az factories in deltalake's registries (once per process)
//! ```
//!
//! The one location type of the lake: the writer, the query layer, maintenance, the historical
//! load and `doctor` all open the lake through it (and find its tables with
//! [`super::catalog`]).
//!
//! deltalake's own `s3` feature pulls the AWS SDK; walaudit instead registers `object_store`'s
//! `AmazonS3` (and the GCS and Azure stores) with deltalake's object-store and log-store
//! registries. Delta commits go through deltalake's default log store, which writes each
//! `_delta_log/<version>.json` with put-if-absent (`PutMode::Create`). On S3 that is a
//! conditional write (`If-None-Match: *`, [`S3ConditionalPut::ETagMatch`]), so two writers can
//! never both win one version and no lock table is needed. GCS and Azure support it natively.
//!
//! # Invariants
//! * Table URLs end with `/` and keep Postgres names as written (percent-encoded in the URL).
//! * Options given here win over the AWS_* / GOOGLE_* / AZURE_* environment variables.
//! * Credentials never reach logs: [`LakeLocation::display`] has none, and `Debug` shows the
//!   option keys only.
//! * Registration is idempotent and happens before any table is opened ([`LakeLocation::new`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Once};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableBuilder, DeltaTableError, ObjectStore, Path};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use url::Url;

use super::LakeError;
use super::catalog::ENGINE_DIR;
use crate::config::S3Config;

/// A lake root and the storage options every table under it is opened with.
#[derive(Clone)]
pub struct LakeLocation {
    root: Url,
    options: HashMap<String, String>,
    /// A store rooted at the bucket (or filesystem root) to use instead of one built from the
    /// URL and options (an in-memory store in tests, a caller's own client).
    object_store: Option<Arc<dyn ObjectStore>>,
}

impl fmt::Debug for LakeLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.options.keys().collect();
        keys.sort();
        f.debug_struct("LakeLocation")
            .field("root", &self.display())
            .field("option_keys", &keys)
            .field("object_store", &self.object_store.is_some())
            .finish()
    }
}

impl LakeLocation {
    /// Parse `text` (a path or URL); `s3` options apply to `s3://` lakes. A local directory is
    /// created when missing (the writer's and `doctor`'s way).
    pub fn new(text: &str, s3: &S3Config) -> Result<LakeLocation, LakeError> {
        let root = parse_root(text, true)?;
        let options = s3_options(&root, s3);
        Ok(LakeLocation {
            root,
            options,
            object_store: None,
        })
    }

    /// Parse `text` for reading: a local lake must exist ([`LakeError::NotFound`]; readers
    /// never create one). `storage_options` are object_store / delta-rs options (credentials,
    /// endpoint, region, ...).
    pub fn existing(
        text: &str,
        storage_options: HashMap<String, String>,
    ) -> Result<LakeLocation, LakeError> {
        Ok(LakeLocation {
            root: parse_root(text, false)?,
            options: storage_options,
            object_store: None,
        })
    }

    /// The same lake read and written through `store` (rooted at the bucket or filesystem
    /// root) instead of a store built from the URL and options.
    pub fn with_object_store(mut self, store: Arc<dyn ObjectStore>) -> LakeLocation {
        self.object_store = Some(store);
        self
    }

    /// The storage options `[lake.s3]` gives an `s3://` lake (none for other lakes).
    pub fn s3_storage_options(
        text: &str,
        s3: &S3Config,
    ) -> Result<HashMap<String, String>, LakeError> {
        Ok(s3_options(&parse_root(text, false)?, s3))
    }
}

/// Register the object stores and parse `text`; `create`: a missing local directory is
/// created, else it is [`LakeError::NotFound`].
fn parse_root(text: &str, create: bool) -> Result<Url, LakeError> {
    register_object_stores();
    let invalid = |reason: String| LakeError::Location {
        location: text.to_owned(),
        reason,
    };
    let local = |path: &std::path::Path| {
        if !create && !path.is_dir() {
            return Err(LakeError::NotFound {
                location: text.to_owned(),
            });
        }
        local_root(path).map_err(|e| invalid(e.to_string()))
    };
    let text = text.trim();
    let root = match Url::parse(text) {
        Ok(url) if url.scheme().len() > 1 => match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| invalid("not a local file URL".into()))?;
                local(&path)?
            }
            "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "memory" => {
                if url.host_str().is_none_or(str::is_empty) && url.scheme() != "memory" {
                    return Err(invalid("the URL names no bucket or container".into()));
                }
                with_trailing_slash(url)
            }
            other => {
                return Err(invalid(format!(
                    "unsupported scheme `{other}`: use a path, file://, s3://, gs:// or az://"
                )));
            }
        },
        // A path (a one-letter "scheme" is a Windows drive).
        _ => local(std::path::Path::new(text))?,
    };
    Ok(root)
}

/// `[lake.s3]` as object_store options, for an `s3://` (or `s3a://`) root.
fn s3_options(root: &Url, s3: &S3Config) -> HashMap<String, String> {
    let mut options = HashMap::new();
    if root.scheme() == "s3" || root.scheme() == "s3a" {
        let mut set = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                options.insert(key.to_owned(), value);
            }
        };
        set("aws_endpoint", s3.endpoint.clone());
        set("aws_region", s3.region.clone());
        set("aws_access_key_id", s3.access_key_id.clone());
        set("aws_secret_access_key", s3.secret_access_key.clone());
        set("aws_allow_http", s3.allow_http.map(|b| b.to_string()));
    }
    options
}

impl LakeLocation {
    /// The lake root, ending with `/`.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Storage options for `deltalake` (`DeltaTableBuilder::with_storage_options`).
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// `<lake>/<schema>/<table>/`: the change table of a source table.
    pub fn table_url(&self, schema: &str, table: &str) -> Url {
        self.join(&[schema, table])
    }

    /// `<lake>/_walaudit/<name>/`: one of the engine's own tables.
    pub fn engine_table_url(&self, name: &str) -> Url {
        self.join(&[ENGINE_DIR, name])
    }

    /// A builder for the table at `url` (under this lake), with the lake's storage options
    /// and store.
    pub fn table_builder(&self, url: &Url) -> Result<DeltaTableBuilder, DeltaTableError> {
        let mut builder =
            DeltaTableBuilder::from_url(url.clone())?.with_storage_options(self.options.clone());
        if let Some(store) = &self.object_store {
            builder = builder.with_storage_backend(store.clone(), url.clone());
        }
        Ok(builder)
    }

    /// The object store with the lake root as its root.
    pub fn root_store(&self) -> Result<Arc<dyn ObjectStore>, LakeError> {
        let err = |e: DeltaTableError| LakeError::Location {
            location: self.display(),
            reason: e.to_string(),
        };
        let log_store = self
            .table_builder(&self.root)
            .and_then(|b| b.build_storage())
            .map_err(err)?;
        Ok(log_store.object_store(None))
    }

    fn join(&self, segments: &[&str]) -> Url {
        let mut url = self.root.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
            path.push("");
        }
        url
    }

    /// The URL shown in logs: no credentials (they never are in the URL, but be sure).
    pub fn display(&self) -> String {
        let mut url = self.root.clone();
        let _ = url.set_password(None);
        let _ = url.set_username("");
        url.to_string()
    }
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

fn local_root(path: &std::path::Path) -> std::io::Result<Url> {
    std::fs::create_dir_all(path)?;
    let absolute = std::fs::canonicalize(path)?;
    Url::from_directory_path(&absolute).map_err(|()| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not an absolute directory path",
        )
    })
}

/// Register walaudit's S3, GCS and Azure stores with deltalake (idempotent).
pub fn register_object_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let stores = object_store_factories();
        let logs = logstore_factories();
        for scheme in ["s3", "s3a", "gs", "az", "abfs", "abfss"] {
            let url = Url::parse(&format!("{scheme}://")).expect("a scheme URL parses");
            stores.insert(url.clone(), Arc::new(CloudStoreFactory));
            logs.insert(url, Arc::new(PutIfAbsentLogStoreFactory));
        }
    });
}

/// Builds `object_store` cloud stores from a table URL and deltalake's raw storage options.
struct CloudStoreFactory;

impl ObjectStoreFactory for CloudStoreFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let path = Path::from_url_path(url.path()).map_err(object_store::Error::from)?;
        let root = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        let store: ObjectStoreRef = match url.scheme() {
            "s3" | "s3a" => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_url(root.replace("s3a://", "s3://"))
                    .with_conditional_put(S3ConditionalPut::ETagMatch);
                for (key, value) in config.raw() {
                    if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                        builder = builder.with_config(key, value);
                    }
                }
                Arc::new(builder.build()?)
            }
            "gs" => {
                let mut builder = GoogleCloudStorageBuilder::from_env().with_url(root);
                for (key, value) in config.raw() {
                    if let Ok(key) = key.to_ascii_lowercase().parse::<GoogleConfigKey>() {
                        builder = builder.with_config(key, value);
                    }
                }
                Arc::new(builder.build()?)
            }
            "az" | "abfs" | "abfss" => {
                let mut builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
                for (key, value) in config.raw() {
                    if let Ok(key) = key.to_ascii_lowercase().parse::<AzureConfigKey>() {
                        builder = builder.with_config(key, value);
                    }
                }
                Arc::new(builder.build()?)
            }
            _ => return Err(DeltaTableError::InvalidTableLocation(url.to_string())),
        };
        Ok((store, path))
    }
}

/// deltalake's default log store: commits are put-if-absent writes of the next log entry.
struct PutIfAbsentLogStoreFactory;

impl LogStoreFactory for PutIfAbsentLogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_urls() {
        let dir = tempfile::tempdir().unwrap();
        let lake = LakeLocation::new(dir.path().to_str().unwrap(), &S3Config::default()).unwrap();
        assert_eq!(lake.root().scheme(), "file");
        assert!(lake.root().path().ends_with('/'));
        let t = lake.table_url("public", "Order Items");
        assert!(t.as_str().ends_with("/public/Order%20Items/"), "{t}");
        assert!(
            lake.engine_table_url("transactions")
                .as_str()
                .ends_with("/_walaudit/transactions/")
        );

        let s3 = S3Config {
            endpoint: Some("http://localhost:9000".into()),
            allow_http: Some(true),
            ..S3Config::default()
        };
        let lake = LakeLocation::new("s3://bucket/some/prefix", &s3).unwrap();
        assert_eq!(
            lake.table_url("public", "t").as_str(),
            "s3://bucket/some/prefix/public/t/"
        );
        assert_eq!(
            lake.storage_options()["aws_endpoint"],
            "http://localhost:9000"
        );
        assert_eq!(lake.storage_options()["aws_allow_http"], "true");
        assert!(LakeLocation::new("ftp://x/y", &s3).is_err());
        assert!(LakeLocation::new("s3:///nobucket", &s3).is_err());
    }
}
