//! What the pull will fetch once the reference resolved: for an index, the child
//! containerd selects for each platform the pod may run on (nested indexes followed,
//! platform-less children judged by their config), then that image manifest — a config
//! and layers containerd unpacks as a container image — and, with `--verify-blobs`, the
//! presence of each of those blobs. Manifests and blobs are cached by digest.

use std::sync::Arc;

use futures::future::join_all;
use reqwest::Method;
use serde::Deserialize;
use tokio::time::Instant;

use super::auth::Secret;
use super::exchange::{Exchange, Request};
use super::manifest::{self, Descriptor, Entry, Manifest, Shared, is_index_type, is_manifest_type};
use super::transport::content_type;
use super::{ContentKey, Endpoint, Registry};
use crate::clock::HashKey;
use crate::digest::Digest;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::verdict::{Outcome, Verdict};

/// What is known of a blob: it exists; a config blob read as JSON also gives its
/// platform and the number of `rootfs.diff_ids`.
#[derive(Debug, Clone, Default)]
pub(super) struct BlobFacts {
    config: Option<Arc<ConfigFacts>>,
}

#[derive(Debug)]
pub(super) struct ConfigFacts {
    platform: Platform,
    diff_ids: usize,
}

/// The context of one successful resolve: who asks, and where content is fetched.
pub(super) struct Pull<'a> {
    pub reference: &'a Reference,
    pub secret: Secret<'a>,
    /// Every configured host in order: containerd's fetcher tries them all for content.
    pub hosts: Vec<&'a Endpoint>,
    /// Pulled for a container, or as an image volume (where artifacts are legitimate).
    pub image_use: super::ImageUse,
    pub deadline: Instant,
}

/// How one platform fares.
enum ForPlatform {
    /// Pulls; with a note (a fallback platform, an image with no layers…).
    Ok(Option<String>),
    NoMatch,
    Fail(Outcome),
}

/// The fields of an image config containerd reads at pull time.
#[derive(Deserialize)]
struct ConfigDoc {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<serde_json::Value>,
}

impl Registry {
    /// The outcome of a pull of `root` (the resolved manifest, `digest`) on nodes of any
    /// of `platforms`.
    pub(super) async fn judge(
        &self,
        pull: &Pull<'_>,
        digest: &Digest,
        root: Shared,
        platforms: &[Platform],
    ) -> Outcome {
        let reference = pull.reference;
        match &*root {
            Manifest::Schema1 => {
                let mut o = Outcome::pullable(digest.clone());
                o.note = Some(format!(
                    "{reference} is a Docker schema 1 manifest: containerd 1.x converts it, containerd 2.x refuses to pull it"
                ));
                o
            }
            Manifest::Other(media_type) => Outcome::new(
                Verdict::NotAnImage,
                format!("{reference} is {media_type}, not a container image manifest or index"),
            ),
            Manifest::Invalid(why) => Outcome::new(
                Verdict::NotAnImage,
                format!("{reference}: the registry served an inconsistent manifest ({why})"),
            ),
            Manifest::Image { .. } => match self.verify_image(pull, &root, None).await {
                Ok(note) => {
                    let mut o = Outcome::pullable(digest.clone());
                    o.note = note;
                    o
                }
                Err(outcome) => outcome,
            },
            Manifest::Index(entries) => {
                if platforms.is_empty() {
                    return Outcome::pullable(digest.clone());
                }
                let results = join_all(
                    platforms
                        .iter()
                        .map(|p| self.for_platform(pull, entries, p, 0)),
                )
                .await;
                combine(reference, digest, entries, platforms, results)
            }
        }
    }

    /// Select, fetch and verify the child of `entries` for `wanted`.
    async fn for_platform(
        &self,
        pull: &Pull<'_>,
        entries: &[Entry],
        wanted: &Platform,
        depth: usize,
    ) -> ForPlatform {
        let Some(entry) = manifest::select(entries, wanted) else {
            return ForPlatform::NoMatch;
        };
        let reference = pull.reference;
        if is_index_type(&entry.media_type) {
            if depth + 1 >= manifest::MAX_INDEX_DEPTH {
                return ForPlatform::Fail(Outcome::new(
                    Verdict::NotAnImage,
                    format!(
                        "{reference}: indexes nested more than {} deep",
                        manifest::MAX_INDEX_DEPTH
                    ),
                ));
            }
            let child = match self.fetch_manifest(pull, entry, wanted).await {
                Ok(child) => child,
                Err(outcome) => return ForPlatform::Fail(outcome),
            };
            return match &*child {
                Manifest::Index(nested) => {
                    Box::pin(self.for_platform(pull, nested, wanted, depth + 1)).await
                }
                _ => ForPlatform::Fail(Outcome::new(
                    Verdict::NotAnImage,
                    format!(
                        "{reference}: the index lists {} as an index, but it is not one",
                        entry.digest
                    ),
                )),
            };
        }
        if !is_manifest_type(&entry.media_type) {
            // images.Manifest: "unexpected media type … for sha256:…".
            return ForPlatform::Fail(Outcome::new(
                Verdict::NotAnImage,
                format!(
                    "{reference}: the {wanted} entry {} is {}, which containerd does not pull as an image",
                    entry.digest.short(),
                    if entry.media_type.is_empty() {
                        "of no media type"
                    } else {
                        &entry.media_type
                    }
                ),
            ));
        }
        let child = match self.fetch_manifest(pull, entry, wanted).await {
            Ok(child) => child,
            Err(outcome) => return ForPlatform::Fail(outcome),
        };
        if entry.size == Some(0) {
            return ForPlatform::Fail(zero_size(reference, &entry.digest));
        }
        let platformless = entry.platform.is_none().then_some(wanted);
        match self.verify_image(pull, &child, platformless).await {
            Ok(mut note) => {
                // containerd's local pull accepts a compatible platform (linux/386 on an
                // amd64 node); the 2.1+ transfer service matches strictly.
                if let Some(p) = &entry.platform
                    && manifest::rank(p, wanted).is_some_and(|r| r > 0)
                {
                    let fallback = format!(
                        "only {p} matches a {wanted} node: containerd's local pull accepts it, the 2.1+ transfer service refuses it"
                    );
                    note = Some(match note {
                        Some(n) => format!("{fallback}; {n}"),
                        None => fallback,
                    });
                }
                ForPlatform::Ok(note)
            }
            Err(o) if o.verdict == Verdict::NoMatchingPlatform => ForPlatform::NoMatch,
            Err(o) => ForPlatform::Fail(o),
        }
    }

    /// An image manifest containerd will unpack (containerd's unpacker and the CRI image
    /// store, by the shape of the manifest): a container image config over real layers
    /// whose count matches the config's `rootfs.diff_ids`; no-layer content only where it
    /// runs (WebAssembly, image volumes, an empty image). For a platform-less index entry,
    /// a config naming a platform the node runs. With `--verify-blobs`, every blob present.
    /// `Ok` carries a note to warn with.
    async fn verify_image(
        &self,
        pull: &Pull<'_>,
        image: &Manifest,
        platform_of_config: Option<&Platform>,
    ) -> Result<Option<String>, Outcome> {
        let reference = pull.reference;
        let (config, layers) = match image {
            Manifest::Schema1 => return Ok(None),
            Manifest::Image { config, layers, .. } => (config, layers),
            Manifest::Invalid(why) => {
                return Err(Outcome::new(
                    Verdict::NotAnImage,
                    format!("{reference}: the registry served an inconsistent manifest ({why})"),
                ));
            }
            Manifest::Index(_) | Manifest::Other(_) => {
                return Err(Outcome::new(
                    Verdict::NotAnImage,
                    format!("{reference}: an index entry marked as an image manifest is not one"),
                ));
            }
        };
        if let Some(d) = std::iter::once(config)
            .chain(layers.iter())
            .find(|d| d.size == Some(0))
        {
            return Err(zero_size(reference, &d.digest));
        }
        let shape = manifest::shape(config, layers);
        let not_an_image = |why: String| {
            Outcome::new(
                Verdict::NotAnImage,
                format!(
                    "{reference} is {}, not a container image: {why}",
                    manifest::artifact_kind(image)
                ),
            )
        };
        if !shape.config_is_image && !shape.layers.is_empty() {
            return Err(not_an_image(format!(
                "its config ({}) is not an image config, so containerd does not unpack its layers",
                config.media_type
            )));
        }
        let wasm_config = config.media_type.starts_with("application/vnd.wasm");
        let needs_config = platform_of_config.is_some()
            || shape.layers.is_empty()
            || (self.config.verify_blobs && shape.config_is_image);
        // containerd fetches the config and every layer; foreign layers come from their
        // URLs first. The layers are asked for together with the config read — one round
        // trip for all blobs — unless the config decides whether this child is pulled at
        // all (a platform-less index entry).
        let layer_checks = || async {
            if self.config.verify_blobs {
                join_all(
                    layers
                        .iter()
                        .filter(|d| !d.foreign)
                        .map(|d| self.blob(pull, d, false)),
                )
                .await
            } else {
                Vec::new()
            }
        };
        let config_read = async {
            if needs_config {
                self.blob(pull, config, true).await.map(|b| b.config)
            } else {
                Ok(None)
            }
        };
        let (facts, layers_checked) = if platform_of_config.is_none() {
            let (facts, checked) = futures::future::join(config_read, layer_checks()).await;
            (facts, Some(checked))
        } else {
            (config_read.await, None)
        };
        // The verdict is decided in the same order as when the requests went one after
        // another: the config first, then its platform and diff_ids, then the layers.
        let facts = facts?;
        if let Some(wanted) = platform_of_config {
            // images.Manifest reads the config of a platform-less child and matches it.
            let matches = facts
                .as_deref()
                .is_some_and(|c| manifest::rank(&c.platform, wanted).is_some());
            if !matches {
                return Err(Outcome::new(
                    Verdict::NoMatchingPlatform,
                    format!("{reference}: the image's config is not for {wanted}"),
                ));
            }
        }
        let diff_ids = facts.as_deref().map(|c| c.diff_ids);
        let mut note = None;
        if shape.layers.is_empty() {
            let wasm = wasm_config
                || facts
                    .as_deref()
                    .is_some_and(|c| c.platform.architecture == "wasm");
            let d = diff_ids.unwrap_or(0);
            if d == 0 && (wasm || pull.image_use == super::ImageUse::Volume) {
                // runwasi runs these from the content store; image volumes mount artifacts.
            } else if d == 0 && shape.config_is_image && shape.others.is_empty() {
                note = Some(format!(
                    "{reference} has no layers: it pulls, but runs only if the runtime needs no root filesystem"
                ));
            } else {
                return Err(not_an_image(if shape.config_is_image {
                    format!("it has no layer containerd unpacks, while its config lists {d}")
                } else {
                    "containerd pulls it as an empty root filesystem at best".to_string()
                }));
            }
        } else if let Some(d) = diff_ids
            && d != shape.layers.len()
        {
            return Err(not_an_image(format!(
                "its config lists {d} diff_ids but the manifest has {} layers (containerd: number of layers and diffIDs don't match)",
                shape.layers.len()
            )));
        }
        if shape
            .layers
            .iter()
            .any(|l| manifest::is_encrypted(&l.media_type))
        {
            let encrypted = format!(
                "{reference} has encrypted layers: they pull only where imgcrypt (ctd-decoder) and the keys are installed on the node"
            );
            note = Some(match note {
                Some(n) => format!("{n}; {encrypted}"),
                None => encrypted,
            });
        }
        let checked = match layers_checked {
            Some(checked) => checked,
            None => layer_checks().await,
        };
        for result in checked {
            result?;
        }
        Ok(note)
    }

    /// A child manifest by digest, from the cache or the pull hosts.
    async fn fetch_manifest(
        &self,
        pull: &Pull<'_>,
        entry: &Entry,
        wanted: &Platform,
    ) -> Result<Shared, Outcome> {
        let key = self.content_key(pull.reference, &entry.digest);
        if let Some(m) = self.manifests.get(&key) {
            return Ok(m);
        }
        let path = format!("manifests/{}", entry.digest);
        let (response, _) = self
            .fetch(
                pull,
                &path,
                Method::GET,
                Some(manifest::MANIFEST_ACCEPT),
                &format!(
                    "manifest {} (the {wanted} entry of {})",
                    entry.digest, pull.reference
                ),
            )
            .await?;
        let body = response.body.unwrap_or_default();
        check_content(pull.reference, &entry.digest, &body)?;
        // containerd reads a child by the media type its index gives it.
        let media_type = Some(&*entry.media_type)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .or_else(|| content_type(&response.headers));
        let parsed = Manifest::parse(media_type.as_deref(), &body).map_err(|e| {
            Outcome::new(
                Verdict::RegistryUnavailable,
                format!("{}: manifest {}: {e}", pull.reference.name(), entry.digest),
            )
        })?;
        let shared = Arc::new(parsed);
        self.manifests.insert(key, shared.clone());
        Ok(shared)
    }

    /// A blob's presence (`HEAD`), or its content when `read` (a config, for its platform).
    async fn blob(
        &self,
        pull: &Pull<'_>,
        blob: &Descriptor,
        read: bool,
    ) -> Result<BlobFacts, Outcome> {
        let key = self.content_key(pull.reference, &blob.digest);
        if let Some(facts) = self.blobs.get(&key)
            && (!read || facts.config.is_some())
        {
            return Ok(facts);
        }
        let path = format!("blobs/{}", blob.digest);
        let method = if read { Method::GET } else { Method::HEAD };
        let what = format!(
            "blob {} ({}) of {}",
            blob.digest, blob.media_type, pull.reference
        );
        let (response, _) = self.fetch(pull, &path, method, None, &what).await?;
        let mut facts = BlobFacts::default();
        if read {
            let body = response.body.unwrap_or_default();
            check_content(pull.reference, &blob.digest, &body)?;
            // The CRI image store unmarshals any config as an image config.
            let doc = serde_json::from_slice::<ConfigDoc>(&body).map_err(|e| {
                Outcome::new(
                    Verdict::NotAnImage,
                    format!(
                        "{}: its config {} is not a JSON image config ({e})",
                        pull.reference, blob.digest
                    ),
                )
            })?;
            facts.config = Some(Arc::new(ConfigFacts {
                platform: Platform::new(&doc.os, &doc.architecture, doc.variant.as_deref()),
                diff_ids: doc.rootfs.map_or(0, |r| r.diff_ids.len()),
            }));
        }
        self.blobs.insert(key, facts.clone());
        Ok(facts)
    }

    /// One content request on the pull hosts in order, as containerd's fetcher: the next
    /// host after a 404; a missing object is `not-found` naming `what`.
    async fn fetch(
        &self,
        pull: &Pull<'_>,
        path: &str,
        method: Method,
        accept: Option<&'static str>,
        what: &str,
    ) -> Result<(super::transport::Response, Option<String>), Outcome> {
        let mut refused = None;
        let mut failed = None;
        for endpoint in &pull.hosts {
            let request = Request {
                method: &method,
                repository: pull.reference.repository(),
                path,
                accept,
                // A blob HEAD that redirects to storage: the registry has the blob.
                redirect_is_answer: method == Method::HEAD,
            };
            match self
                .exchange(endpoint, pull.secret, request, pull.deadline)
                .await
            {
                Exchange::Ok {
                    response,
                    authorization,
                } => return Ok((response, authorization)),
                Exchange::NotFound { .. } => {}
                Exchange::Refused(why) => {
                    refused.get_or_insert(why);
                }
                Exchange::Failed(outcome) => {
                    failed.get_or_insert(outcome);
                }
            }
        }
        if let Some(outcome) = failed {
            return Err(outcome);
        }
        if let Some(why) = refused {
            return Err(Outcome::new(
                Verdict::Unauthorized,
                format!("{what}: {why}"),
            ));
        }
        Err(Outcome::new(
            Verdict::NotFound,
            format!("{what} is missing from the registry: the pull would fail fetching it"),
        ))
    }

    pub(super) fn content_key(&self, reference: &Reference, digest: &Digest) -> ContentKey {
        HashKey::of(&[
            reference.registry().as_bytes(),
            reference.repository().as_bytes(),
            digest.to_string().as_bytes(),
        ])
    }
}

/// containerd refuses to fetch what claims to be empty.
fn zero_size(reference: &Reference, digest: &Digest) -> Outcome {
    Outcome::new(
        Verdict::NotAnImage,
        format!(
            "{reference}: descriptor {digest} reports a content size of zero, which containerd refuses to fetch"
        ),
    )
}

/// containerd verifies fetched content against its digest.
fn check_content(reference: &Reference, digest: &Digest, body: &[u8]) -> Result<(), Outcome> {
    if matches!(digest, Digest::Sha256(_)) && Digest::sha256_of(body) != *digest {
        return Err(Outcome::new(
            Verdict::RegistryUnavailable,
            format!(
                "{}: the registry sent content that does not match digest {digest}",
                reference.name()
            ),
        ));
    }
    Ok(())
}

/// One verdict for the platforms a pod may run on: pullable if the image pulls on any of
/// them (with a note naming those where it would not); otherwise the reason.
fn combine(
    reference: &Reference,
    digest: &Digest,
    entries: &[Entry],
    platforms: &[Platform],
    results: Vec<ForPlatform>,
) -> Outcome {
    let mut ok = false;
    let mut notes: Vec<String> = Vec::new();
    let mut missing: Vec<&Platform> = Vec::new();
    let mut failures: Vec<(&Platform, Outcome)> = Vec::new();
    for (p, r) in platforms.iter().zip(results) {
        match r {
            ForPlatform::Ok(note) => {
                ok = true;
                if let Some(n) = note {
                    notes.push(n);
                }
            }
            ForPlatform::NoMatch => missing.push(p),
            ForPlatform::Fail(o) => failures.push((p, o)),
        }
    }
    let offered = manifest::offered(entries);
    let have = if offered.is_empty() {
        "no platform".to_string()
    } else {
        offered
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if ok {
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|p| p.to_string()).collect();
            notes.push(format!(
                "may land on a {} node, where {reference} has no manifest (it has {have})",
                names.join(" or ")
            ));
        }
        for (p, o) in &failures {
            notes.push(format!("on a {p} node: {}", o.text()));
        }
        let mut outcome = Outcome::pullable(digest.clone());
        if !notes.is_empty() {
            outcome.note = Some(notes.join("; "));
        }
        return outcome;
    }
    if let Some(i) = failures
        .iter()
        .position(|(_, o)| o.verdict.is_indeterminate())
    {
        return failures.swap_remove(i).1;
    }
    if let Some((_, o)) = failures.into_iter().next() {
        return o;
    }
    let wanted: Vec<String> = platforms.iter().map(ToString::to_string).collect();
    let mut outcome = Outcome::new(
        Verdict::NoMatchingPlatform,
        format!(
            "no match for platform {} in {reference}; the image has {have}",
            wanted.join(" or ")
        ),
    );
    outcome.digest = Some(digest.clone());
    outcome
}
