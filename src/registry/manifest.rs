//! Manifests as the pull reads them: an index (and the child containerd would select for a
//! platform), an image manifest (whose config and layers containerd must unpack as a
//! container image), or something a container runtime does not run (a Helm chart, a
//! signature, an OCI artifact). Parsed once and cached by (registry, repository, digest):
//! content-addressed, it never changes.

use std::sync::Arc;

use serde::Deserialize;

use crate::digest::Digest;
use crate::platform::Platform;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The manifest types a pull accepts, as containerd's resolver asks for them; without the
/// OCI ones distribution answers 404 for OCI content, and without the Docker schema 2 type
/// it rewrites to schema 1.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, */*";

/// Deepest index nesting followed (containerd sets no bound; a registry must not make us
/// loop).
pub const MAX_INDEX_DEPTH: usize = 4;

pub fn is_index_type(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}

pub fn is_manifest_type(media_type: &str) -> bool {
    matches!(media_type, OCI_MANIFEST | DOCKER_MANIFEST)
}

/// The media types nearly every manifest names: a [`MediaType`] equal to one of them
/// points at the constant.
const COMMON_TYPES: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    DOCKER_CONFIG,
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "",
];

/// A media type as a document names it. The common ones cost no allocation, so that the
/// manifests the registry client keeps (up to `--registry-cache-entries`) do not each
/// hold copies of the same few strings; others are kept as sent.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaType(std::borrow::Cow<'static, str>);

impl MediaType {
    pub fn new(name: &str) -> Self {
        match COMMON_TYPES.iter().find(|t| **t == name) {
            Some(common) => Self(std::borrow::Cow::Borrowed(common)),
            None => Self(std::borrow::Cow::Owned(name.to_string())),
        }
    }
}

impl From<String> for MediaType {
    fn from(name: String) -> Self {
        Self::new(&name)
    }
}

impl From<&str> for MediaType {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl std::ops::Deref for MediaType {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

/// A descriptor: what a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: MediaType,
    pub digest: Digest,
    /// `size` as written (containerd refuses to fetch a descriptor of size 0).
    pub size: Option<u64>,
    /// A foreign layer: fetched from its `urls` first, not from the registry.
    pub foreign: bool,
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: Option<u64>,
    /// `None`: the entry has no `platform` (containerd then reads the child's config).
    pub platform: Option<Platform>,
}

/// What a manifest says, as much as the pull needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Index(Vec<Entry>),
    Image {
        media_type: MediaType,
        /// OCI 1.1 `artifactType`: set on artifacts, never on images.
        artifact_type: Option<Box<str>>,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// Docker schema 1: converted by containerd 1.x, refused by containerd 2.x.
    Schema1,
    /// A document of a type a pull does not handle.
    Other(Box<str>),
    /// A body that contradicts the type it was served as (containerd's
    /// `validateMediaType`), with containerd's words.
    Invalid(Box<str>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the manifest is not valid JSON: {0}")]
    Json(String),
    #[error("the manifest has an invalid {0} digest")]
    Digest(&'static str),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(default)]
    schema_version: Option<serde_json::Value>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    fs_layers: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    size: Option<serde_json::Value>,
    #[serde(default)]
    urls: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
}

impl Manifest {
    /// Read a manifest body served with `media_type` (the `Content-Type`, or the index
    /// entry's type for a child). The served type decides, as containerd's descriptor
    /// does; a body that names no type is read by its shape.
    pub fn parse(media_type: Option<&str>, body: &[u8]) -> Result<Self, ManifestError> {
        let doc: Document =
            serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
        let declared = media_type
            .filter(|t| !t.is_empty() && *t != "application/json")
            .map(str::to_string)
            .or_else(|| doc.media_type.clone());
        if doc.fs_layers.is_some()
            && declared
                .as_deref()
                .is_some_and(|t| is_index_type(t) || is_manifest_type(t))
        {
            return Ok(Manifest::Invalid(
                "media-type: schema 1 not supported".into(),
            ));
        }
        let is_schema1 = doc.fs_layers.is_some()
            || matches!(
                declared.as_deref(),
                Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED | "text/plain")
            )
            || (declared.is_none()
                && doc.schema_version.as_ref().and_then(|v| v.as_u64()) == Some(1));
        if is_schema1 {
            return Ok(Manifest::Schema1);
        }
        let body_is_index = doc.manifests.as_ref().is_some_and(|m| !m.is_empty())
            || doc.media_type.as_deref().is_some_and(is_index_type);
        let body_is_manifest = doc.config.is_some()
            || doc.layers.as_ref().is_some_and(|l| !l.is_empty())
            || doc.media_type.as_deref().is_some_and(is_manifest_type);
        let kind = match declared.as_deref() {
            Some(t) if is_index_type(t) && body_is_manifest => {
                return Ok(Manifest::Invalid(
                    format!("media-type: expected index but found manifest ({t})").into(),
                ));
            }
            Some(t) if is_manifest_type(t) && body_is_index => {
                return Ok(Manifest::Invalid(
                    format!("media-type: expected manifest but found index ({t})").into(),
                ));
            }
            Some(t) if is_index_type(t) => Kind::Index,
            Some(t) if is_manifest_type(t) => Kind::Image,
            Some(t) => return Ok(Manifest::Other(t.into())),
            None if doc.manifests.is_some() => Kind::Index,
            None if doc.config.is_some() => Kind::Image,
            None => return Ok(Manifest::Other("an unknown document".into())),
        };
        match kind {
            Kind::Index => {
                let mut entries = Vec::new();
                for raw in doc.manifests.unwrap_or_default() {
                    let digest = raw
                        .digest
                        .as_deref()
                        .and_then(Digest::parse)
                        .ok_or(ManifestError::Digest("index entry"))?;
                    entries.push(Entry {
                        media_type: raw.media_type.unwrap_or_default().into(),
                        digest,
                        size: raw.size.as_ref().and_then(serde_json::Value::as_u64),
                        platform: raw.platform.map(|p| {
                            Platform::new(
                                p.os.as_deref().unwrap_or_default(),
                                p.architecture.as_deref().unwrap_or_default(),
                                p.variant.as_deref(),
                            )
                        }),
                    });
                }
                Ok(Manifest::Index(entries))
            }
            Kind::Image => {
                let descriptor = |raw: RawDescriptor, what| {
                    Ok::<_, ManifestError>(Descriptor {
                        media_type: raw.media_type.unwrap_or_default().into(),
                        size: raw.size.as_ref().and_then(serde_json::Value::as_u64),
                        foreign: raw.urls.as_ref().is_some_and(|u| !u.is_empty()),
                        digest: raw
                            .digest
                            .as_deref()
                            .and_then(Digest::parse)
                            .ok_or(ManifestError::Digest(what))?,
                    })
                };
                let config =
                    descriptor(doc.config.ok_or(ManifestError::Digest("config"))?, "config")?;
                let layers = doc
                    .layers
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| descriptor(l, "layer"))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Manifest::Image {
                    media_type: declared.unwrap_or_else(|| OCI_MANIFEST.to_string()).into(),
                    artifact_type: doc.artifact_type.filter(|t| !t.is_empty()).map(Into::into),
                    config,
                    layers,
                })
            }
        }
    }
}

enum Kind {
    Index,
    Image,
}

/// What containerd's platform matcher makes of an index entry's platform for a node of
/// platform `wanted` ([`Platform::rank_for`]).
pub fn rank(entry: &Platform, wanted: &Platform) -> Option<usize> {
    entry.rank_for(wanted)
}

/// The child containerd pulls from an index for a node of platform `wanted`
/// (`images.Manifest` with limit 1 after `FilterPlatforms` + `LimitManifests`): entries
/// whose platform the node runs, or that have none, stably sorted by the matcher's
/// preference with platform-less entries last; the first one.
pub fn select<'a>(entries: &'a [Entry], wanted: &Platform) -> Option<&'a Entry> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.platform {
            None => Some((usize::MAX, i, e)),
            Some(p) => rank(p, wanted).map(|r| (r, i, e)),
        })
        .min_by_key(|(rank, i, _)| (*rank, *i))
        .map(|(_, _, e)| e)
}

/// The platforms an index offers, for messages (attestations left out).
pub fn offered(entries: &[Entry]) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::new();
    for p in entries.iter().filter_map(|e| e.platform.as_ref()) {
        if !p.is_attestation() && !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// `images.IsConfigType`: the configs containerd's unpacker acts on.
pub fn is_image_config(media_type: &str) -> bool {
    matches!(media_type, OCI_CONFIG | DOCKER_CONFIG)
}

/// `images.IsLayerType`: every `application/vnd.oci.image.layer.` type, the Docker layer
/// bases under any `+suffix` (zstd from containerd 2.0), and erofs layers (2.3).
pub fn is_layer_type(media_type: &str) -> bool {
    if media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type == "application/vnd.erofs.layer.v1"
    {
        return true;
    }
    let base = media_type.split('+').next().unwrap_or(media_type);
    matches!(
        base,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar"
    )
}

/// A layer containerd decrypts only with imgcrypt's `ctd-decoder` and keys on the node.
pub fn is_encrypted(media_type: &str) -> bool {
    media_type.ends_with("+encrypted")
}

/// What an image manifest is, in containerd's terms: `config_is_image` (C), its real
/// layers (L, `IsLayerType`) and the other blobs (N).
pub struct Shape<'a> {
    pub config_is_image: bool,
    pub layers: Vec<&'a Descriptor>,
    pub others: Vec<&'a Descriptor>,
}

pub fn shape<'a>(config: &'a Descriptor, layers: &'a [Descriptor]) -> Shape<'a> {
    let (real, others): (Vec<&Descriptor>, Vec<&Descriptor>) =
        layers.iter().partition(|l| is_layer_type(&l.media_type));
    Shape {
        config_is_image: is_image_config(&config.media_type),
        layers: real,
        others,
    }
}

/// What the artifact is, for a `not-an-image` message: its `artifactType`, else its
/// config type, else the type of its first non-layer blob.
pub fn artifact_kind(manifest: &Manifest) -> String {
    let Manifest::Image {
        artifact_type,
        config,
        layers,
        ..
    } = manifest
    else {
        return "not an image manifest".to_string();
    };
    if let Some(kind) = artifact_type {
        return format!("an OCI artifact of type {}", describe(kind));
    }
    if !is_image_config(&config.media_type) {
        return format!(
            "an OCI artifact whose config is {}",
            describe(&config.media_type)
        );
    }
    match layers.iter().find(|l| !is_layer_type(&l.media_type)) {
        Some(blob) => format!("an OCI artifact holding {}", describe(&blob.media_type)),
        None => "an image with no layers".to_string(),
    }
}

/// A media type with its common name when it has one.
fn describe(media_type: &str) -> String {
    let name = match media_type {
        "application/vnd.cncf.helm.config.v1+json"
        | "application/vnd.cncf.helm.chart.content.v1.tar+gzip" => Some("a Helm chart"),
        "application/vnd.dev.cosign.simplesigning.v1+json" => Some("a cosign signature"),
        "application/vnd.dev.sigstore.bundle.v0.3+json"
        | "application/vnd.dev.sigstore.bundle+json;version=0.3" => Some("a Sigstore bundle"),
        "application/vnd.in-toto+json" => Some("an in-toto attestation"),
        "application/vnd.oci.empty.v1+json" => Some("an empty config"),
        "application/spdx+json" | "application/vnd.cyclonedx+json" => Some("an SBOM"),
        "application/vnd.cncf.notary.signature" => Some("a Notary signature"),
        "application/vnd.oci.image.manifest.v1+json" => None,
        _ if media_type.starts_with("application/vnd.wasm") => Some("a WebAssembly module"),
        _ => None,
    };
    match name {
        Some(n) => format!("{media_type} ({n})"),
        None => media_type.to_string(),
    }
}

/// A parsed manifest shared from the cache.
pub type Shared = Arc<Manifest>;

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const D3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn p(s: &str) -> Platform {
        s.parse().expect("platform")
    }

    fn entry(digest: &str, platform: Option<(&str, &str, Option<&str>)>) -> Entry {
        Entry {
            media_type: OCI_MANIFEST.into(),
            digest: Digest::parse(digest).expect("digest"),
            size: Some(1),
            platform: platform.map(|(o, a, v)| Platform::new(o, a, v)),
        }
    }

    #[test]
    fn the_node_prefers_its_own_platform_then_compatible_ones_then_platformless() {
        let entries = vec![
            entry(D1, None),
            entry(D2, Some(("linux", "386", None))),
            entry(D3, Some(("linux", "amd64", None))),
        ];
        assert_eq!(
            select(&entries, &p("linux/amd64")).map(|e| &e.digest),
            Some(&entries[2].digest)
        );
        assert_eq!(
            select(&entries[..2], &p("linux/amd64")).map(|e| &e.digest),
            Some(&entries[1].digest)
        );
        assert_eq!(
            select(&entries[..1], &p("linux/amd64")).map(|e| &e.digest),
            Some(&entries[0].digest)
        );
        assert_eq!(select(&entries[1..2], &p("linux/arm64")), None);
    }

    #[test]
    fn common_media_types_are_not_copied() {
        let common = MediaType::new(OCI_MANIFEST);
        assert!(matches!(common.0, std::borrow::Cow::Borrowed(_)));
        assert_eq!(&*common, OCI_MANIFEST);
        let other = MediaType::from("application/vnd.cncf.helm.config.v1+json".to_string());
        assert!(matches!(other.0, std::borrow::Cow::Owned(_)));
        assert_eq!(
            other.to_string(),
            "application/vnd.cncf.helm.config.v1+json"
        );
        assert_eq!(
            format!("{other:?}"),
            "\"application/vnd.cncf.helm.config.v1+json\""
        );
    }

    #[rstest]
    #[case::empty_os_is_the_nodes_os(("", "amd64", None), "linux/amd64", true)]
    #[case::empty_os_on_windows(("", "amd64", None), "windows/amd64", true)]
    #[case::x86_64_is_amd64(("linux", "x86_64", None), "linux/amd64", true)]
    #[case::aarch64_is_arm64(("linux", "aarch64", None), "linux/arm64", true)]
    #[case::arm64_v8_is_arm64(("linux", "arm64", Some("v8")), "linux/arm64", true)]
    #[case::attestation(("unknown", "unknown", None), "linux/amd64", false)]
    #[case::other_os(("windows", "amd64", None), "linux/amd64", false)]
    fn entries_are_normalized_like_containerd(
        #[case] platform: (&str, &str, Option<&str>),
        #[case] wanted: &str,
        #[case] chosen: bool,
    ) {
        let entries = vec![entry(D1, Some(platform))];
        assert_eq!(select(&entries, &p(wanted)).is_some(), chosen);
    }

    #[test]
    fn first_of_equal_entries_wins() {
        let entries = vec![
            entry(D1, Some(("linux", "amd64", None))),
            entry(D2, Some(("linux", "amd64", None))),
        ];
        assert_eq!(
            select(&entries, &p("linux/amd64")).map(|e| &e.digest),
            Some(&entries[0].digest)
        );
    }

    #[test]
    fn parses_by_served_type_then_by_shape() {
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":1,"platform":{{"architecture":"amd64"}}}}]}}"#
        );
        match Manifest::parse(Some(OCI_INDEX), index.as_bytes()).expect("index") {
            Manifest::Index(e) => {
                assert_eq!(e.len(), 1);
                assert_eq!(e[0].platform, Some(Platform::new("", "amd64", None)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Manifest::parse(None, index.as_bytes()),
            Ok(Manifest::Index(_))
        ));
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D1}","size":1}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":1}}]}}"#
        );
        let parsed = Manifest::parse(Some(OCI_MANIFEST), image.as_bytes()).expect("image");
        let Manifest::Image { config, layers, .. } = &parsed else {
            panic!("{parsed:?}");
        };
        let s = shape(config, layers);
        assert!(s.config_is_image && s.layers.len() == 1 && s.others.is_empty());
        assert!(matches!(
            Manifest::parse(Some(OCI_MANIFEST), index.as_bytes()),
            Ok(Manifest::Invalid(_))
        ));
        assert!(matches!(
            Manifest::parse(Some(OCI_INDEX), image.as_bytes()),
            Ok(Manifest::Invalid(_))
        ));
        assert!(matches!(
            Manifest::parse(
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                b"{}"
            ),
            Ok(Manifest::Schema1)
        ));
        assert!(matches!(
            Manifest::parse(Some("text/html"), b"{}"),
            Ok(Manifest::Other(_))
        ));
        assert!(Manifest::parse(Some(OCI_MANIFEST), b"<html>").is_err());
    }

    #[rstest]
    #[case::helm(
        "application/vnd.cncf.helm.config.v1+json",
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        None,
        "Helm chart"
    )]
    #[case::cosign(
        OCI_CONFIG,
        "application/vnd.dev.cosign.simplesigning.v1+json",
        None,
        "cosign signature"
    )]
    #[case::empty_config_artifact(
        "application/vnd.oci.empty.v1+json",
        "application/octet-stream",
        Some("application/vnd.example+type"),
        "application/vnd.example+type"
    )]
    #[case::unknown_config(
        "application/vnd.example.config+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        None,
        "application/vnd.example.config+json"
    )]
    fn artifacts_are_named(
        #[case] config: &str,
        #[case] layer: &str,
        #[case] artifact_type: Option<&str>,
        #[case] named: &str,
    ) {
        let d = |media_type: &str, digest: &str| Descriptor {
            media_type: media_type.into(),
            digest: Digest::parse(digest).expect("digest"),
            size: Some(1),
            foreign: false,
        };
        let m = Manifest::Image {
            media_type: OCI_MANIFEST.into(),
            artifact_type: artifact_type.map(Into::into),
            config: d(config, D1),
            layers: vec![d(layer, D2)],
        };
        let kind = artifact_kind(&m);
        assert!(kind.contains(named), "{kind}");
    }

    #[rstest]
    #[case("application/vnd.oci.image.layer.v1.tar", true)]
    #[case("application/vnd.oci.image.layer.v1.tar+gzip", true)]
    #[case("application/vnd.oci.image.layer.v1.tar+zstd", true)]
    #[case("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", true)]
    #[case("application/vnd.docker.image.rootfs.diff.tar.gzip", true)]
    #[case("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", true)]
    #[case("application/vnd.oci.image.layer.v1.tar+gzip+encrypted", true)]
    #[case("application/vnd.docker.image.rootfs.diff.tar.zstd", true)]
    #[case("application/vnd.cncf.helm.chart.content.v1.tar+gzip", false)]
    #[case("application/vnd.wasm.content.layer.v1+wasm", false)]
    #[case("application/octet-stream", false)]
    fn layer_types_containerd_applies(#[case] media_type: &str, #[case] ok: bool) {
        assert_eq!(is_layer_type(media_type), ok);
    }
}
