//! Where the bucket is and who we are: the context's `s3` table (`endpoint`,
//! `bucket`, `region`, `path_style`) and credentials from the context's
//! secrets `s3_access_key` / `s3_secret_key`, else the standard
//! `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), else
//! the shared credentials file's profile (`AWS_PROFILE`, default `default`).
//!
//! The client is object_store's S3 store (SigV4, multipart, streaming) over
//! reqwest with ring; it retries 5xx answers, throttling and broken
//! connections with exponential backoff, within a bounded time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::function::Call;
use crate::host::StdlibError;
use crate::settings::Section;

/// Retries of one request (5xx, 429/503 throttling, connection errors).
const MAX_RETRIES: usize = 5;

/// Longest time one request may spend retrying.
const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// Connecting to the endpoint gives up after this long, unless the
/// context's `s3.connect_timeout` says otherwise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request gives up when the endpoint sends nothing for this long (no
/// answer, or a transfer that stalled), unless the context's `s3.timeout`
/// says otherwise. A transfer that keeps moving is never cut.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the context's bucket is.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    /// `http://127.0.0.1:9000`, or `None` for AWS itself.
    pub(crate) endpoint: Option<String>,
    pub(crate) bucket: String,
    pub(crate) region: String,
    pub(crate) path_style: bool,
    /// No answer for this long fails a request (`s3.timeout`).
    pub(crate) timeout: Duration,
    /// Connecting gives up after this long (`s3.connect_timeout`).
    pub(crate) connect_timeout: Duration,
    /// The context's name, for messages.
    pub(crate) context: String,
}

impl Location {
    /// The endpoint as shown in messages.
    pub(crate) fn endpoint_display(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({})", self.region))
    }

    fn from_section(table: &Section) -> Result<Location, StdlibError> {
        let name = table.context_name().to_owned();
        let text = |key: &str| table.string(key);
        let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let bucket = text("bucket")?.ok_or_else(|| {
            StdlibError::usage(
                format!("context `{name}` names no S3 bucket"),
                format!(
                    "add `[context.{name}.s3]` with `bucket = \"...\"` (and `endpoint`, `region` for an S3-compatible server) to runbook.toml"
                ),
            )
        })?;
        let endpoint = text("endpoint")?
            .or_else(|| env("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .map(|endpoint| endpoint.trim_end_matches('/').to_owned());
        let region = text("region")?
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        // S3-compatible servers all take path-style; AWS prefers virtual hosts.
        let path_style = table.bool("path_style")?.unwrap_or(endpoint.is_some());
        Ok(Location {
            endpoint,
            bucket,
            region,
            path_style,
            timeout: table.duration("timeout")?.unwrap_or(TIMEOUT),
            connect_timeout: table
                .duration("connect_timeout")?
                .unwrap_or(CONNECT_TIMEOUT),
            context: name,
        })
    }
}

/// An access key pair and where it came from (for messages).
struct Credentials {
    key_id: String,
    secret: String,
    token: Option<String>,
    source: String,
}

fn credentials(call: &Call<'_>, location: &Location) -> Result<Credentials, StdlibError> {
    let top = call.host.section("");
    if top.has_secret("s3_access_key") || top.has_secret("s3_secret_key") {
        let key_id = call.host.secret("s3_access_key")?.expose();
        let secret = call.host.secret("s3_secret_key")?.expose();
        call.host.redactor().add(&secret);
        return Ok(Credentials {
            key_id,
            secret,
            token: None,
            source: format!(
                "the secrets `s3_access_key`/`s3_secret_key` of context `{}`",
                location.context
            ),
        });
    }
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if let (Some(key_id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        call.host.redactor().add(&secret);
        let token = env("AWS_SESSION_TOKEN");
        if let Some(token) = &token {
            call.host.redactor().add(token);
        }
        return Ok(Credentials {
            key_id,
            secret,
            token,
            source: "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".into(),
        });
    }
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".aws").join("credentials")));
    if let Some(file) = file
        && let Ok(text) = std::fs::read_to_string(&file)
        && let Some(found) = profile_credentials(&text, &profile)
    {
        call.host.redactor().add(&found.1);
        if let Some(token) = &found.2 {
            call.host.redactor().add(token);
        }
        return Ok(Credentials {
            key_id: found.0,
            secret: found.1,
            token: found.2,
            source: format!("profile `{profile}` of `{}`", file.display()),
        });
    }
    Err(StdlibError::usage(
        format!(
            "no S3 credentials for bucket `{}` (context `{}`)",
            location.bucket, location.context
        ),
        format!(
            "add `s3_access_key = \"env:VAR\"` and `s3_secret_key = \"env:VAR\"` under [context.{}.secrets], or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or set AWS_PROFILE to a profile in ~/.aws/credentials",
            location.context
        ),
    ))
}

/// `(key id, secret, session token)` of `profile` in an AWS credentials file.
fn profile_credentials(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let mut in_profile = false;
    let (mut key_id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            in_profile = section == profile || section == format!("profile {profile}");
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let value = value.trim().to_owned();
            match name.trim() {
                "aws_access_key_id" => key_id = Some(value),
                "aws_secret_access_key" => secret = Some(value),
                "aws_session_token" => token = Some(value),
                _ => {}
            }
        }
    }
    Some((key_id?, secret?, token))
}

/// The context's bucket, ready for requests.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    pub(crate) store: Arc<AmazonS3>,
    pub(crate) location: Location,
    credential_source: Arc<str>,
}

impl Bucket {
    /// The context's bucket with the call's credentials.
    pub(crate) fn from_call(call: &Call<'_>) -> Result<Bucket, StdlibError> {
        let location = Location::from_section(&call.host.section("s3"))?;
        let credentials = credentials(call, &location)?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(&location.region)
            .with_access_key_id(&credentials.key_id)
            .with_secret_access_key(&credentials.secret)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(location.connect_timeout)
                    .with_read_timeout(location.timeout)
                    // A large transfer may take long: a stall is caught by
                    // the read timeout instead.
                    .with_timeout_disabled()
                    .with_allow_http(
                        location
                            .endpoint
                            .as_deref()
                            .is_some_and(|e| e.starts_with("http://")),
                    ),
            );
        if let Some(token) = &credentials.token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &location.endpoint {
            if location.path_style {
                builder = builder.with_endpoint(endpoint);
            } else {
                // Virtual-hosted style against a custom endpoint: BUCKET.HOST.
                let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
                builder = builder
                    .with_endpoint(format!("{scheme}://{}.{host}", location.bucket))
                    .with_virtual_hosted_style_request(true);
            }
        } else if !location.path_style {
            builder = builder.with_virtual_hosted_style_request(true);
        }
        let store = builder.build().map_err(|error| {
            StdlibError::failed(
                format!(
                    "cannot set up the S3 client for bucket `{}` at {}: {}",
                    location.bucket,
                    location.endpoint_display(),
                    crate::text::error_chain(&error)
                ),
                format!("check `[context.{}.s3]` in runbook.toml", location.context),
            )
        })?;
        Ok(Bucket {
            store: Arc::new(store),
            location,
            credential_source: credentials.source.into(),
        })
    }

    /// `s3://BUCKET/KEY`, for messages.
    pub(crate) fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.location.bucket)
    }

    /// Turn an object_store error into a message naming the operation, key,
    /// bucket and endpoint, with a hint for the usual causes.
    pub(crate) fn error(
        &self,
        action: &str,
        key: &str,
        error: &object_store::Error,
    ) -> StdlibError {
        let detail = crate::text::error_chain(error);
        let lower = detail.to_lowercase();
        let bucket = &self.location.bucket;
        let endpoint = self.location.endpoint_display();
        // (Not "timeout": a retry error says `retry_timeout:60s` whatever failed.)
        if lower.contains("timed out") && !lower.contains("connection refused") {
            let context = &self.location.context;
            return StdlibError::failed(
                format!(
                    "s3: cannot {action} `{key}` in bucket `{bucket}`: no answer from the S3 endpoint at {endpoint} within {} (each of up to {} tries; connecting: {})",
                    crate::duration::human(self.location.timeout),
                    MAX_RETRIES + 1,
                    crate::duration::human(self.location.connect_timeout),
                ),
                format!(
                    "is the S3 server up and answering? Raise `timeout` (or `connect_timeout`) under `[context.{context}.s3]` if it is just slow"
                ),
            );
        }
        let hint = if matches!(error, object_store::Error::NotFound { .. })
            && !lower.contains("nosuchbucket")
        {
            format!(
                "no object `{key}` in bucket `{bucket}`; `s3::list(prefix)` shows what is there"
            )
        } else if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
            format!(
                "the bucket `{bucket}` does not exist at {endpoint}: create it, or fix `bucket` in `[context.{}.s3]`",
                self.location.context
            )
        } else if lower.contains("signaturedoesnotmatch")
            || lower.contains("invalidaccesskeyid")
            || lower.contains("accessdenied")
            || lower.contains("403")
            || matches!(
                error,
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            )
        {
            format!(
                "the server refused the credentials (from {}): check the access key and secret key, and that they may access bucket `{bucket}`",
                self.credential_source
            )
        } else if lower.contains("error sending request")
            || lower.contains("connection refused")
            || lower.contains("connect")
            || lower.contains("dns")
            || lower.contains("timed out")
        {
            format!(
                "cannot reach {endpoint}: is the S3 server up and `endpoint` in `[context.{}.s3]` right?",
                self.location.context
            )
        } else {
            format!("the S3 server at {endpoint} answered with an error")
        };
        StdlibError::failed(
            format!(
                "s3: cannot {action} `{key}` in bucket `{bucket}` at {endpoint}: {}",
                shorten(&detail)
            ),
            hint,
        )
    }
}

/// An object key as object_store's path; rejects what S3 keys here may not be.
pub(crate) fn path(key: &str) -> Result<Path, StdlibError> {
    let key = key.strip_prefix("s3://").unwrap_or(key);
    if key.is_empty() || key.starts_with('/') || key.ends_with('/') || key.contains("//") {
        return Err(StdlibError::usage(
            format!("`{key}` is not an object key"),
            "keys look like `backups/db/2026-01-01.dump.zst`: no leading or trailing `/`, no empty parts",
        ));
    }
    Path::parse(key).map_err(|error| {
        StdlibError::usage(
            format!("`{key}` is not an object key: {error}"),
            "keys are `/`-separated parts without `.`/`..` parts",
        )
    })
}

fn shorten(text: &str) -> String {
    const MAX: usize = 600;
    if text.chars().count() > MAX {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_profile_from_the_credentials_file() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[profile ops]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=E\n";
        assert_eq!(
            profile_credentials(text, "default"),
            Some(("A".into(), "B".into(), None))
        );
        assert_eq!(
            profile_credentials(text, "ops"),
            Some(("C".into(), "D".into(), Some("E".into())))
        );
        assert_eq!(profile_credentials(text, "missing"), None);
    }

    #[test]
    fn keys_are_checked() {
        assert!(path("backups/db/x.dump.zst").is_ok());
        assert_eq!(
            path("s3://a/b").map(|p| p.to_string()).ok(),
            Some("a/b".into())
        );
        assert!(path("/abs").is_err());
        assert!(path("a//b").is_err());
        assert!(path("").is_err());
    }
}
