//! Running one credential provider plugin as the kubelet runs it (kubernetes/kubernetes
//! `pkg/credentialprovider/plugin/plugin.go execPlugin.ExecPlugin`, `runPlugin`,
//! `decodeResponse`): `<bin-dir>/<name> args…`, this process's environment with the
//! config's `env` after it, the `CredentialProviderRequest` on stdin, a one-minute limit,
//! and the response checked for its apiVersion, kind and fields.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

use super::decode::{self, Fatal, Node, Strict};
use super::golang::{GoDuration, quote};

/// `context.WithTimeout(ctx, 1*time.Minute)`: hard-coded in the kubelet, not configurable.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// A response larger than this is not a credential response. (The kubelet reads stdout
/// unbounded; a bound keeps a misbehaving plugin from filling our memory.)
const STDOUT_LIMIT: usize = 4 << 20;
/// Enough of stderr for a debug log line.
const STDERR_LIMIT: usize = 16 << 10;

/// How one provider is executed.
#[derive(Clone)]
pub struct ExecPlugin {
    pub name: String,
    pub path: PathBuf,
    pub args: Vec<String>,
    /// The config's `env`, applied over this process's environment (config wins).
    pub env: Vec<(String, String)>,
    /// The provider's `apiVersion`: the request's, and the response's must equal it.
    pub api_version: String,
}

impl std::fmt::Debug for ExecPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecPlugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

/// `cacheKeyType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKeyType {
    Image,
    Registry,
    Global,
}

/// A decoded `CredentialProviderResponse`. The passwords never print.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub cache_key_type: CacheKeyType,
    /// `nil` when absent: the provider's `defaultCacheDuration` applies.
    pub cache_duration: Option<GoDuration>,
    /// `auth`: key (matchImages grammar) → (username, password), in document order.
    pub auth: Vec<(String, String, String)>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("cache_key_type", &self.cache_key_type)
            .field("cache_duration", &self.cache_duration)
            .field(
                "auth",
                &self
                    .auth
                    .iter()
                    .map(|(k, _, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ExecPlugin {
    /// `ExecPlugin` + the `cacheKeyType` check of `pluginProvider.provide`. The error is
    /// the kubelet's wording, without the plugin's stderr (logged at debug instead).
    pub async fn run(&self, image: &str) -> Result<Response, String> {
        let request = encode_request(&self.api_version, image);
        let (status, stdout, stderr) = match tokio::time::timeout(
            EXEC_TIMEOUT,
            self.spawn(&request),
        )
        .await
        {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(format!(
                    "error execing credential provider plugin {} for image {image}: {e}",
                    self.name
                ));
            }
            Err(_) => {
                return Err(format!(
                    "error execing credential provider plugin {} for image {image}: context deadline exceeded",
                    self.name
                ));
            }
        };
        if !stderr.is_empty() {
            tracing::debug!(
                provider = %self.name,
                image,
                stderr = %String::from_utf8_lossy(&stderr),
                "credential provider stderr"
            );
        }
        if !status.success() {
            return Err(format!(
                "error execing credential provider plugin {} for image {image}: {}",
                self.name,
                exit_text(&status)
            ));
        }
        let response = decode_response(&self.api_version, &stdout)?;
        Ok(response)
    }

    /// Start the plugin, feed stdin, collect stdout/stderr (bounded) and the exit status.
    /// Dropping this future (the one-minute limit) kills the plugin.
    async fn spawn(
        &self,
        request: &[u8],
    ) -> std::io::Result<(std::process::ExitStatus, Vec<u8>, Vec<u8>)> {
        let mut child = Command::new(&self.path)
            .args(&self.args)
            // mergeEnvVars: os.Environ() then the config's env; exec keeps the last of a
            // repeated name, so the config wins — as `envs` over the inherited environment.
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let write = async {
            if let Some(mut stdin) = stdin.take() {
                // A plugin that exits without reading its stdin is not an error.
                let _ = stdin.write_all(request).await;
                let _ = stdin.shutdown().await;
            }
        };
        let (_, out, err, status) = tokio::join!(
            write,
            read_bounded(stdout, STDOUT_LIMIT),
            read_bounded(stderr, STDERR_LIMIT),
            child.wait()
        );
        let out = out?;
        if out.len() > STDOUT_LIMIT {
            return Err(std::io::Error::other(format!(
                "response larger than {} MiB",
                STDOUT_LIMIT >> 20
            )));
        }
        Ok((status?, out, err.unwrap_or_default()))
    }
}

/// Read at most `limit + 1` bytes (one more tells "too large"), then drain the rest so
/// the plugin never blocks on a full pipe.
async fn read_bounded(
    pipe: Option<impl AsyncRead + Unpin>,
    limit: usize,
) -> std::io::Result<Vec<u8>> {
    let Some(mut pipe) = pipe else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() <= limit {
            let room = limit + 1 - out.len();
            out.extend_from_slice(&buf[..n.min(room)]);
        }
    }
}

/// Go's `ExitError.Error()`: `exit status 1`, `signal: killed`.
fn exit_text(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return format!("signal: {}", signal_name(signal));
        }
    }
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => status.to_string(),
    }
}

#[cfg(unix)]
fn signal_name(signal: i32) -> String {
    match signal {
        1 => "hangup".to_string(),
        2 => "interrupt".to_string(),
        6 => "aborted".to_string(),
        9 => "killed".to_string(),
        11 => "segmentation fault".to_string(),
        13 => "broken pipe".to_string(),
        15 => "terminated".to_string(),
        other => format!("signal {other}"),
    }
}

/// The request as `runtime.Encode` writes it for the provider's version: `json.Encoder`
/// output (TypeMeta's `kind` then `apiVersion`, then `image`; a trailing newline).
pub fn encode_request(api_version: &str, image: &str) -> Vec<u8> {
    let mut out = format!(
        "{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":{},\"image\":{}}}",
        go_json_string(api_version),
        go_json_string(image)
    );
    out.push('\n');
    out.into_bytes()
}

/// `encoding/json` string encoding with its default HTML escaping.
fn go_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `ExecPlugin` after the run: the apiVersion must be the provider's, then the strict
/// decode (any failure is one message: it may quote credentials), then `cacheKeyType`.
pub fn decode_response(api_version: &str, stdout: &[u8]) -> Result<Response, String> {
    let node = decode::parse_json(stdout).map_err(|e| {
        format!("error reading GVK from response: couldn't get version/kind; json parse error: {e}")
    })?;
    let meta =
        decode::interpret(&node).map_err(|e| format!("error reading GVK from response: {e}"))?;
    if meta.group_version() != api_version {
        return Err(format!(
            "apiVersion from credential plugin response did not match expected apiVersion:{api_version}, actual apiVersion:{}",
            meta.group_version()
        ));
    }
    let undecodable =
        || "error decoding credential provider plugin response from stdout".to_string();
    // The universal decoder: kind present and registered, the object strictly decoded,
    // then `decodeResponse`'s kind check.
    if meta.kind != "CredentialProviderResponse" {
        return Err(undecodable());
    }
    let (key_type, duration, auth) = strict_response(&node).map_err(|_| undecodable())?;
    let cache_key_type = match key_type.as_str() {
        "Image" => CacheKeyType::Image,
        "Registry" => CacheKeyType::Registry,
        "Global" => CacheKeyType::Global,
        other => {
            return Err(format!(
                "credential provider plugin did not return a valid cacheKeyType: {}",
                quote(other)
            ));
        }
    };
    Ok(Response {
        cache_key_type,
        cache_duration: duration,
        auth,
    })
}

type Decoded = (String, Option<GoDuration>, Vec<(String, String, String)>);

fn strict_response(node: &Node) -> Result<Decoded, String> {
    let mut d = Strict::for_json();
    let (mut key_type, mut duration) = (String::new(), None);
    let mut auth: Vec<(String, String, String)> = Vec::new();
    d.object(
        node,
        "v1.CredentialProviderResponse",
        "CredentialProviderResponse",
        &[
            "kind",
            "apiVersion",
            "cacheKeyType",
            "cacheDuration",
            "auth",
        ],
        |d, field, n| {
            match field {
                "kind" | "apiVersion" => {
                    d.string(n, "string");
                }
                "cacheKeyType" => {
                    key_type = d.string(n, "v1.PluginCacheKeyType").unwrap_or_default()
                }
                "cacheDuration" => duration = d.duration(n)?,
                _ => {
                    d.map(n, "map[string]v1.AuthConfig", |d, key, value| {
                        let (mut user, mut pass) = (String::new(), String::new());
                        d.object(
                            value,
                            "v1.AuthConfig",
                            "AuthConfig",
                            &["username", "password"],
                            |d, f, n| {
                                let s = d.string(n, "string").unwrap_or_default();
                                if f == "username" {
                                    user = s;
                                } else {
                                    pass = s;
                                }
                                Ok(())
                            },
                        )?;
                        // A Go map keeps the last value of a repeated key.
                        auth.retain(|(k, _, _)| k != key);
                        auth.push((key.to_string(), user, pass));
                        Ok(())
                    })?;
                }
            }
            Ok(())
        },
    )
    .map_err(|Fatal(e)| e)?;
    d.finish()?;
    Ok((key_type, duration, auth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const V1: &str = "credentialprovider.kubelet.k8s.io/v1";

    #[test]
    fn the_request_is_what_the_kubelets_encoder_writes() {
        assert_eq!(
            String::from_utf8(encode_request(V1, "docker.io/library/nginx")).expect("utf-8"),
            "{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"image\":\"docker.io/library/nginx\"}\n"
        );
    }

    #[test]
    fn a_good_response_decodes() {
        let r = decode_response(
            V1,
            br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"6h","auth":{"*.dkr.ecr.*.amazonaws.com":{"username":"AWS","password":"secret"}}}"#,
        )
        .expect("valid");
        assert_eq!(r.cache_key_type, CacheKeyType::Registry);
        assert_eq!(r.cache_duration, Some(GoDuration(6 * 3600 * 1_000_000_000)));
        assert_eq!(
            r.auth,
            [(
                "*.dkr.ecr.*.amazonaws.com".to_string(),
                "AWS".to_string(),
                "secret".to_string()
            )]
        );
        assert!(!format!("{r:?}").contains("secret"));
    }

    #[rstest]
    #[case::not_json(
        "garbage",
        "error reading GVK from response: couldn't get version/kind; json parse error: "
    )]
    #[case::other_api_version(
        r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","cacheKeyType":"Image"}"#,
        "apiVersion from credential plugin response did not match expected apiVersion:credentialprovider.kubelet.k8s.io/v1, actual apiVersion:credentialprovider.kubelet.k8s.io/v1beta1"
    )]
    #[case::no_api_version(
        r#"{"kind":"CredentialProviderResponse","cacheKeyType":"Image"}"#,
        "apiVersion from credential plugin response did not match expected apiVersion:credentialprovider.kubelet.k8s.io/v1, actual apiVersion:"
    )]
    #[case::wrong_kind(
        r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"x"}"#,
        "error decoding credential provider plugin response from stdout"
    )]
    #[case::unknown_field(
        r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image","token":"x"}"#,
        "error decoding credential provider plugin response from stdout"
    )]
    #[case::duplicate_auth_key(
        r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image","auth":{"a.io":{"username":"u","password":"p"},"a.io":{"username":"u","password":"p"}}}"#,
        "error decoding credential provider plugin response from stdout"
    )]
    #[case::bad_duration(
        r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Image","cacheDuration":"soon"}"#,
        "error decoding credential provider plugin response from stdout"
    )]
    #[case::missing_cache_key_type(
        r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}"#,
        "credential provider plugin did not return a valid cacheKeyType: \"\""
    )]
    #[case::unknown_cache_key_type(
        r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Repository"}"#,
        "credential provider plugin did not return a valid cacheKeyType: \"Repository\""
    )]
    fn bad_responses_are_refused_with_the_kubelets_words(#[case] stdout: &str, #[case] want: &str) {
        let err = decode_response(V1, stdout.as_bytes()).expect_err("refused");
        assert!(err.starts_with(want), "{err}");
    }

    #[test]
    fn a_response_without_credentials_is_an_answer() {
        let r = decode_response(
            V1,
            br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Global","cacheDuration":"0s"}"#,
        )
        .expect("valid");
        assert!(r.auth.is_empty());
        assert_eq!(r.cache_duration, Some(GoDuration::ZERO));
    }
}
