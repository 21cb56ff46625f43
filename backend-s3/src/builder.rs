//! Building an [`S3Backend`] from a URL or an existing store.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, ClientOptions, ObjectStore, ObjectStoreScheme, RetryConfig,
};
use warmcache_core::backend::ClientRuntime;
use warmcache_core::{Capabilities, Context, Error, Op, Result};

use crate::backend::S3Backend;

/// Values up to this size go up in one request; larger ones as multipart uploads. AWS suggests
/// multipart from about 100 MB; below that, one request was faster here (64 MiB to a local S3
/// server: 302 ms in one PUT, 401 ms in 8 MiB parts).
const DEFAULT_MULTIPART_THRESHOLD: usize = 100 << 20;
/// Size of one multipart part (S3's minimum is 5 MiB).
const DEFAULT_PART_SIZE: usize = 8 << 20;
const MIN_PART_SIZE: usize = 5 << 20;

/// What kind of store a URL named, which decides the default capabilities.
enum StoreKind {
    /// A cloud bucket: persistent, shared, lists in key order.
    Bucket,
    /// A store the caller passed in: assumed persistent and shared; listing order unknown.
    Given,
    /// `file://`: persistent, local, unordered listing.
    Local,
    /// `memory://`: volatile, local, ordered.
    Memory,
    /// `http(s)://`, a WebDAV server: persistent, shared; listed one directory at a time (servers
    /// may refuse `Depth: infinity`, nginx does), written without multipart uploads or
    /// conditional creates, which WebDAV has not.
    WebDav,
}

enum Source {
    Url(String),
    Store(Arc<dyn ObjectStore>, String),
}

/// Builds an [`S3Backend`]. Start with [`S3Backend::builder`] or [`S3Backend::from_store`].
///
/// Credentials, region and endpoint come from the standard environment variables of each
/// provider (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
/// `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...), then from the setters here,
/// which win. Defaults for a cache tier: 60 s per request, 5 s to connect, 3 retries within
/// 20 s, multipart above 100 MiB in 8 MiB parts.
pub struct S3BackendBuilder {
    source: Source,
    options: Vec<(String, String)>,
    endpoint: Option<String>,
    region: Option<String>,
    credentials: Option<(String, String)>,
    allow_http: bool,
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: usize,
    retry_timeout: Duration,
    multipart_threshold: usize,
    part_size: usize,
    runtime: Option<tokio::runtime::Handle>,
    name: String,
    persistent: Option<bool>,
    shared: Option<bool>,
    coordinates: Option<bool>,
    max_value_size: u64,
    namespace: Option<String>,
}

/// Largest value stored or read unless set with [`S3BackendBuilder::max_value_size`]: 2 GiB.
pub const DEFAULT_MAX_VALUE_SIZE: u64 = 2 << 30;

impl fmt::Debug for S3BackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Url(u) => redact(u),
            Source::Store(s, p) => format!("{s} at {p:?}"),
        };
        f.debug_struct("S3BackendBuilder")
            .field("source", &source)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "options",
                &self.options.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The URL with anything that could be user information replaced, for messages, labels and
/// files: everything between the scheme and the last `@`, and the query. For example
/// `s3://AK:SECRET@bucket/p?token=x` becomes `s3://***@bucket/p`.
pub fn redact(url: &str) -> String {
    let url = url.split('?').next().unwrap_or_default();
    match (url.find(':'), url.rfind('@')) {
        (Some(colon), Some(at)) if at > colon => format!("{}://***{}", &url[..colon], &url[at..]),
        _ => url.to_owned(),
    }
}

impl S3BackendBuilder {
    /// A builder for the store named by `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_source(Source::Url(url.into()))
    }

    /// A builder over an existing store, with keys under `prefix` (may be empty).
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self::with_source(Source::Store(store, prefix.to_owned()))
    }

    fn with_source(source: Source) -> Self {
        Self {
            source,
            options: Vec::new(),
            endpoint: None,
            region: None,
            credentials: None,
            allow_http: false,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            runtime: None,
            name: "s3".to_owned(),
            persistent: None,
            shared: None,
            coordinates: None,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            namespace: None,
        }
    }

    /// Largest value stored, and read: a put over it is [`Error::Capacity`], and an object over
    /// it (planted by whoever can write the bucket) is refused as [`Error::Corrupt`] from its
    /// size alone, before its body is downloaded. Default [`DEFAULT_MAX_VALUE_SIZE`].
    pub fn max_value_size(mut self, bytes: u64) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Stores entries under one more path segment, `prefix/<namespace>/...`. Pass the
    /// integrity mode's [`key_id`](warmcache_core::Integrity::key_id): entries sealed under
    /// different secrets then live apart and never collide, so nodes whose secrets differ (a
    /// rotation, a typo) cannot destroy each other's entries. Must be a single path segment of
    /// ASCII letters, digits, `-` and `_`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets a provider option by its object_store name, such as `aws_virtual_hosted_style_request`
    /// or `google_service_account`.
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.push((key.into(), value.into()));
        self
    }

    /// The endpoint URL, for S3-compatible servers (MinIO, Ceph, a local test server).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Static credentials (for S3: access key id and secret access key). Never logged.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.credentials = Some((access_key_id.into(), secret.into()));
        self
    }

    /// Allows plain `http://` endpoints (local servers). Off by default.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Timeout of one request (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Timeout to establish a connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries of a failed request (default 3), within `retry_timeout` (default 20 s).
    pub fn retries(mut self, max_retries: usize, retry_timeout: Duration) -> Self {
        self.max_retries = max_retries;
        self.retry_timeout = retry_timeout;
        self
    }

    /// Values larger than this go up as multipart uploads (default 100 MiB).
    pub fn multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// Size of each multipart part (default 8 MiB, at least 5 MiB).
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    /// Runs requests on this Tokio runtime instead of a private two-thread one.
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Whether entries survive the process (default: true, except for `memory://`).
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = Some(persistent);
        self
    }

    /// Whether other hosts can reach the store (default: true for buckets and stores passed in,
    /// false for `file://` and `memory://`).
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Whether the backend hands out leases, so nodes sharing the store compute a cold entry
    /// once between them (default: true, except for WebDAV). Leases need conditional creates
    /// (`PutMode::Create`), which S3, GCS, Azure, `file://` and `memory://` have; turn them off
    /// for an S3-compatible server without `If-None-Match` support. WebDAV (`http(s)://`) has
    /// none, so asking for leases there is an error at [`build`](Self::build).
    pub fn coordinates(mut self, coordinates: bool) -> Self {
        self.coordinates = Some(coordinates);
        self
    }

    /// The name used in errors and stats (default `"s3"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    fn ctx(&self) -> Context {
        Context::new(self.name.clone(), Op::Open)
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(self.timeout)
            .with_connect_timeout(self.connect_timeout)
            .with_allow_http(self.allow_http)
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    /// The provider options as the provider's keys; an option it does not know is refused by
    /// name.
    fn options_as<K: std::str::FromStr>(&self) -> Result<Vec<(K, &str)>> {
        self.options
            .iter()
            .map(|(k, v)| {
                let key = k.parse().map_err(|_| {
                    Error::config(
                        self.ctx(),
                        format!("unknown object store option {k:?} for this URL"),
                    )
                })?;
                Ok((key, v.as_str()))
            })
            .collect()
    }

    /// Builds the store from the URL (or takes the given one) and starts the runtime.
    ///
    /// Nothing is sent over the network here; call [`S3Backend::check`] for an early check of
    /// the endpoint, bucket and credentials.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a malformed URL, an unknown scheme, a missing bucket name, an
    /// unknown option or invalid sizes; messages never include credentials.
    pub fn build(self) -> Result<S3Backend> {
        if self.part_size < MIN_PART_SIZE {
            return Err(Error::config(
                self.ctx(),
                format!(
                    "part size of {} bytes is under S3's minimum of 5 MiB",
                    self.part_size
                ),
            ));
        }
        let (store, prefix, kind) = match &self.source {
            Source::Store(store, prefix) => {
                let prefix = Path::parse(prefix).map_err(|e| {
                    Error::config(self.ctx(), format!("invalid prefix {prefix:?}: {e}"))
                })?;
                (Arc::clone(store), prefix, StoreKind::Given)
            }
            Source::Url(raw) => self.store_from_url(raw)?,
        };
        let prefix = self.namespaced(prefix)?;
        let (persistent, shared, ordered) = match kind {
            StoreKind::Bucket => (true, true, true),
            StoreKind::Given => (true, true, false),
            StoreKind::Local => (true, false, false),
            StoreKind::Memory => (false, false, true),
            StoreKind::WebDav => (true, true, true),
        };
        let webdav = matches!(kind, StoreKind::WebDav);
        if webdav && self.coordinates == Some(true) {
            return Err(Error::config(
                self.ctx(),
                "a WebDAV store cannot hand out leases (WebDAV has no conditional create): \
                 leave `coordinates` off for this tier, or use an S3-compatible store",
            ));
        }
        let capabilities = Capabilities::new()
            .with_max_value_size(Some(self.max_value_size))
            .with_persistent(self.persistent.unwrap_or(persistent))
            .with_shared(self.shared.unwrap_or(shared))
            .with_coordinates(self.coordinates.unwrap_or(!webdav));
        let runtime = match &self.runtime {
            Some(handle) => ClientRuntime::shared(handle.clone()),
            None => {
                ClientRuntime::owned("warmcache-s3", 2).map_err(|e| Error::io(self.ctx(), e))?
            }
        };
        Ok(S3Backend {
            store,
            prefix,
            name: self.name,
            runtime,
            // WebDAV has no multipart uploads: one PUT, which the server stores whole or not
            // at all (nginx writes a temporary file and renames it).
            multipart_threshold: if webdav {
                usize::MAX
            } else {
                self.multipart_threshold
            },
            part_size: self.part_size,
            ordered_listing: ordered,
            listing: if webdav {
                crate::backend::Listing::ByDirectory
            } else {
                crate::backend::Listing::Recursive
            },
            capabilities,
            max_value_size: self.max_value_size,
        })
    }

    /// `prefix` with the namespace, if one is set, below it.
    fn namespaced(&self, prefix: Path) -> Result<Path> {
        match &self.namespace {
            None => Ok(prefix),
            Some(ns) if warmcache_core::is_namespace(ns) => Ok(prefix.join(ns.as_str())),
            Some(ns) => Err(Error::config(
                self.ctx(),
                format!(
                    "namespace {ns:?} must be one path segment of ASCII letters, digits, `-` and \
                     `_`"
                ),
            )),
        }
    }

    /// The provider refused the store at `raw` (shown redacted).
    fn cannot_use(&self, raw: &str, e: object_store::Error) -> Error {
        Error::config(self.ctx(), format!("cannot use {}: {e}", redact(raw)))
    }

    fn amazon(&self, raw: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut b = AmazonS3Builder::from_env().with_url(raw);
        for (key, v) in self.options_as::<AmazonS3ConfigKey>()? {
            b = b.with_config(key, v);
        }
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        if let Some((id, secret)) = &self.credentials {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        let b = b
            .with_allow_http(self.allow_http)
            .with_client_options(self.client_options())
            .with_retry(self.retry());
        Ok(Arc::new(b.build().map_err(|e| self.cannot_use(raw, e))?))
    }

    fn google(&self, raw: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut b = GoogleCloudStorageBuilder::from_env().with_url(raw);
        for (key, v) in self.options_as::<GoogleConfigKey>()? {
            b = b.with_config(key, v);
        }
        let b = b
            .with_client_options(self.client_options())
            .with_retry(self.retry());
        Ok(Arc::new(b.build().map_err(|e| self.cannot_use(raw, e))?))
    }

    fn azure(&self, raw: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut b = MicrosoftAzureBuilder::from_env().with_url(raw);
        for (key, v) in self.options_as::<AzureConfigKey>()? {
            b = b.with_config(key, v);
        }
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e.clone());
        }
        let b = b
            .with_allow_http(self.allow_http)
            .with_client_options(self.client_options())
            .with_retry(self.retry());
        Ok(Arc::new(b.build().map_err(|e| self.cannot_use(raw, e))?))
    }

    /// A WebDAV server: its root is the store, and the URL's path the prefix, as for buckets.
    fn webdav(&self, url: &url::Url) -> Result<Arc<dyn ObjectStore>> {
        let mut root = url.clone();
        root.set_path("/");
        root.set_query(None);
        let plain = url.scheme() == "http";
        let mut b = HttpBuilder::new()
            .with_url(root.as_str())
            .with_client_options(
                self.client_options()
                    .with_allow_http(self.allow_http || plain),
            )
            .with_retry(self.retry());
        for (key, v) in self.options_as::<ClientConfigKey>()? {
            b = b.with_config(key, v);
        }
        Ok(Arc::new(
            b.build().map_err(|e| self.cannot_use(url.as_str(), e))?,
        ))
    }

    fn store_from_url(&self, raw: &str) -> Result<(Arc<dyn ObjectStore>, Path, StoreKind)> {
        let shown = redact(raw);
        let url = url::Url::parse(raw)
            .map_err(|e| Error::config(self.ctx(), format!("invalid URL {shown}: {e}")))?;
        let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|_| {
            Error::config(
                self.ctx(),
                format!(
                    "unsupported URL {shown}: expected s3://bucket/prefix, gs://bucket/prefix, \
                     az://container/prefix, https://host/path (WebDAV), file:///path or \
                     memory://"
                ),
            )
        })?;
        let built = |e: object_store::Error| self.cannot_use(raw, e);
        let store: Arc<dyn ObjectStore> = match scheme {
            ObjectStoreScheme::AmazonS3 => self.amazon(raw)?,
            ObjectStoreScheme::GoogleCloudStorage => self.google(raw)?,
            ObjectStoreScheme::MicrosoftAzure => self.azure(raw)?,
            ObjectStoreScheme::Local => {
                let dir = url.to_file_path().map_err(|()| {
                    Error::config(self.ctx(), format!("{shown} is not a local path"))
                })?;
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Error::config(self.ctx(), format!("cannot create {}: {e}", dir.display()))
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir).map_err(built)?;
                return Ok((Arc::new(store), Path::default(), StoreKind::Local));
            }
            ObjectStoreScheme::Memory => {
                return Ok((Arc::new(InMemory::new()), path, StoreKind::Memory));
            }
            ObjectStoreScheme::Http => return Ok((self.webdav(&url)?, path, StoreKind::WebDav)),
            _ => {
                return Err(Error::config(
                    self.ctx(),
                    format!("unsupported URL {shown}"),
                ));
            }
        };
        Ok((store, path, StoreKind::Bucket))
    }
}
