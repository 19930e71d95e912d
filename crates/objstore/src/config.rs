//! `objstore.yml` in Thanos' shape:
//!
//! ```yaml
//! type: S3                      # or FILESYSTEM
//! prefix: ""                    # optional: every object under this prefix
//! config:
//!   bucket: metrics
//!   endpoint: 127.0.0.1:9000    # host[:port], no scheme; https unless insecure
//!   region: us-east-1
//!   access_key: ...
//!   secret_key: ...
//!   insecure: true              # plain http
//!   http_config:
//!     idle_conn_timeout: 90s
//!     response_header_timeout: 2m
//!     insecure_skip_verify: false
//!     tls_config: {ca_file: /etc/ssl/ca.pem, insecure_skip_verify: false}
//! ---
//! type: FILESYSTEM
//! config:
//!   directory: ./data/bucket
//! ```
//! Fields Thanos knows that Cairn does not use (sse_config, part_size, ...) are accepted and
//! ignored, so an existing file works unchanged.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::Deserialize;

use crate::{Error, Result};

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct BucketConfig {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub config: serde_json::Value,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct FilesystemConfig {
    pub directory: PathBuf,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct HttpConfig {
    #[serde(default)]
    pub idle_conn_timeout: Option<String>,
    #[serde(default)]
    pub response_header_timeout: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default)]
    pub tls_config: TlsConfig,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct S3Config {
    pub bucket: String,
    pub endpoint: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub access_key: String,
    #[serde(default)]
    pub secret_key: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub http_config: HttpConfig,
}

/// Parses a duration of Prometheus' grammar (`90s`, `2m`, `1h30m`, `500ms`), as Thanos reads
/// the durations of `objstore.yml`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    model::duration::parse_std(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

impl BucketConfig {
    pub fn parse(text: &str) -> Result<BucketConfig> {
        model::yaml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    pub fn from_file(path: &std::path::Path) -> Result<BucketConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            context: format!("reading {}", path.display()),
            source: e,
        })?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// A filesystem bucket in `dir` (what `cairn up` uses).
    pub fn filesystem(dir: impl Into<PathBuf>) -> BucketConfig {
        BucketConfig {
            kind: "FILESYSTEM".into(),
            prefix: String::new(),
            config: serde_json::json!({"directory": dir.into()}),
        }
    }

    fn typed<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        serde_json::from_value(self.config.clone())
            .map_err(|e| Error::Config(format!("{} config: {e}", self.kind)))
    }

    /// Builds the object store the config describes.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>> {
        let store: Arc<dyn ObjectStore> = match self.kind.to_ascii_uppercase().as_str() {
            "FILESYSTEM" => {
                let c: FilesystemConfig = self.typed()?;
                std::fs::create_dir_all(&c.directory).map_err(|e| Error::Io {
                    context: format!("creating bucket directory {}", c.directory.display()),
                    source: e,
                })?;
                let fs = LocalFileSystem::new_with_prefix(&c.directory).map_err(|e| {
                    Error::Config(format!("filesystem bucket {}: {e}", c.directory.display()))
                })?;
                // Remove the directories a delete leaves empty: a deleted block's empty
                // `<ULID>/` would otherwise stay listed and look like a partial upload forever.
                Arc::new(fs.with_automatic_cleanup(true))
            }
            "S3" => {
                let c: S3Config = self.typed()?;
                Arc::new(build_s3(&c)?)
            }
            other => {
                return Err(Error::Config(format!(
                    "unsupported bucket type {other:?}: use S3 or FILESYSTEM"
                )))
            }
        };
        Ok(if self.prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, self.prefix.trim_matches('/')))
        })
    }
}

fn build_s3(c: &S3Config) -> Result<object_store::aws::AmazonS3> {
    if c.bucket.is_empty() || c.endpoint.is_empty() {
        return Err(Error::Config("S3 config needs bucket and endpoint".into()));
    }
    let scheme = if c.insecure { "http" } else { "https" };
    let endpoint = if c.endpoint.contains("://") {
        c.endpoint.clone()
    } else {
        format!("{scheme}://{}", c.endpoint)
    };
    let mut options = ClientOptions::new()
        .with_allow_http(c.insecure)
        .with_connect_timeout(Duration::from_secs(10));
    if let Some(t) = &c.http_config.response_header_timeout {
        options = options.with_timeout(parse_duration(t).map_err(Error::Config)?);
    }
    if let Some(t) = &c.http_config.idle_conn_timeout {
        options = options.with_pool_idle_timeout(parse_duration(t).map_err(Error::Config)?);
    }
    if c.http_config.insecure_skip_verify || c.http_config.tls_config.insecure_skip_verify {
        options = options.with_allow_invalid_certificates(true);
    }
    if let Some(ca) = &c.http_config.tls_config.ca_file {
        let pem = std::fs::read(ca).map_err(|e| Error::Io {
            context: format!("reading S3 CA file {}", ca.display()),
            source: e,
        })?;
        for cert in object_store::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("S3 CA file {}: {e}", ca.display())))?
        {
            options = options.with_root_certificate(cert);
        }
    }
    // The shipper retries with its own backoff; keep the client's retries short so an outage
    // is noticed quickly and reported.
    let retry = RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let region = if c.region.is_empty() {
        "us-east-1"
    } else {
        &c.region
    };
    AmazonS3Builder::new()
        .with_bucket_name(&c.bucket)
        .with_endpoint(endpoint)
        .with_region(region)
        .with_access_key_id(&c.access_key)
        .with_secret_access_key(&c.secret_key)
        .with_allow_http(c.insecure)
        .with_virtual_hosted_style_request(false)
        .with_client_options(options)
        .with_retry(retry)
        .build()
        .map_err(|e| Error::Config(format!("S3 bucket {}: {e}", c.bucket)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_files() {
        let c = BucketConfig::parse(
            "type: S3\nconfig:\n  bucket: metrics\n  endpoint: 127.0.0.1:9000\n  access_key: a\n  secret_key: b\n  insecure: true\n  signature_version2: false\n  http_config:\n    idle_conn_timeout: 90s\n    response_header_timeout: 2m\n",
        )
        .unwrap();
        assert_eq!(c.kind, "S3");
        let s3: S3Config = c.typed().unwrap();
        assert_eq!(s3.bucket, "metrics");
        assert!(s3.insecure);
        assert_eq!(s3.http_config.idle_conn_timeout.as_deref(), Some("90s"));
        c.build().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let fs = BucketConfig::parse(&format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            dir.path().display()
        ))
        .unwrap();
        fs.build().unwrap();
        assert!(BucketConfig::parse("type: GCS\nconfig: {}\n")
            .unwrap()
            .build()
            .is_err());
        assert!(BucketConfig::parse("type: S3\nconfig:\n  bucket: x\n")
            .unwrap()
            .build()
            .is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("x").is_err());
    }
}
