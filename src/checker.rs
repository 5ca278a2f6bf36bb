//! Images and their credentials in, findings out: every unique (reference, credentials,
//! platforms) probed once, all concurrently, under one deadline.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use tokio::time::Instant;

use crate::cache::{CacheKey, Lookup, VerdictCache};
use crate::keyring::{Credential, Keyring};
use crate::platform::Platform;
use crate::provider::{NodeProviders, ProviderAnswers};
use crate::reference::Reference;
use crate::registry::{ImageUse, Registry};
use crate::verdict::{Finding, Outcome, Verdict};

/// One image to check, as found in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub container: Option<String>,
    /// The image volume it is for (`volumes[].image`), instead of a container.
    pub volume: Option<String>,
    pub image: String,
    /// Why it is not checked (`imagePullPolicy: Never`, an exempt image pattern).
    pub exempt: Option<String>,
    /// A container's image or an image volume's.
    pub image_use: ImageUse,
}

impl ImageSpec {
    pub fn new(container: Option<&str>, image: &str) -> Self {
        Self {
            container: container.map(str::to_string),
            volume: None,
            image: image.to_string(),
            exempt: None,
            image_use: ImageUse::Container,
        }
    }
}

/// What the checker reports as it works (metrics). Both methods default to nothing.
pub trait Observer: Send + Sync {
    fn cache_lookup(&self, _lookup: Lookup) {}
    /// A registry probe finished (cache misses only).
    fn probe(&self, _verdict: Verdict, _elapsed: std::time::Duration) {}
}

/// The engine: a shared registry client and a shared verdict cache.
#[derive(Clone)]
pub struct Checker {
    registry: Arc<Registry>,
    cache: VerdictCache,
    /// `--node-pull-secret`: tried after the pod's own credentials, as the kubelet does.
    node_keyring: Arc<Keyring>,
    /// The nodes' credential provider plugins (tried after the node docker config), and
    /// registries whose node credentials pullgate cannot see.
    node_providers: NodeProviders,
    observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("registry", &self.registry)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Checker {
    pub fn new(registry: Arc<Registry>, cache: VerdictCache) -> Self {
        Self {
            registry,
            cache,
            node_keyring: Arc::new(Keyring::new()),
            node_providers: NodeProviders::default(),
            observer: None,
        }
    }

    pub fn with_node_keyring(mut self, keyring: Keyring) -> Self {
        self.node_keyring = Arc::new(keyring);
        self
    }

    /// Registries whose credentials come from a node credential provider pullgate cannot
    /// see: `unauthorized` there cannot be trusted.
    pub fn with_node_auth_registries(mut self, patterns: Vec<String>) -> Self {
        self.node_providers = self.node_providers.with_unseen_registries(patterns);
        self
    }

    /// The nodes' credential provider plugins, run here as the kubelet runs them.
    pub fn with_node_providers(mut self, providers: NodeProviders) -> Self {
        self.node_providers = providers;
        self
    }

    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn cache(&self) -> &VerdictCache {
        &self.cache
    }

    /// The candidate credentials for a reference: the pod's keyring, then the node's.
    pub fn candidates(&self, keyring: &Keyring, reference: &Reference) -> Vec<Credential> {
        Keyring::lookup_union(&[keyring, &self.node_keyring], &reference.name())
    }

    /// Check every image; findings come back in the order of `images`.
    pub async fn check(
        &self,
        images: &[ImageSpec],
        keyring: &Keyring,
        platforms: &[Platform],
        deadline: Instant,
    ) -> Vec<Finding> {
        enum Plan {
            Done(Finding),
            Probe {
                reference: Reference,
                candidates: Vec<Credential>,
                slot: usize,
            },
        }
        // The kubelet asks its credential provider plugins for every image before a pull.
        let answers = self
            .node_providers
            .lookup(
                images
                    .iter()
                    .filter(|spec| spec.exempt.is_none())
                    .filter_map(|spec| Reference::parse_for_pull(&spec.image).ok())
                    .map(|reference| reference.name()),
                deadline,
            )
            .await;
        let mut unique: HashMap<CacheKey, usize> = HashMap::new();
        let mut probes: Vec<(CacheKey, Reference, Vec<Credential>, ImageUse)> = Vec::new();
        let plans: Vec<Plan> = images
            .iter()
            .map(|spec| {
                if let Some(reason) = &spec.exempt {
                    return Plan::Done(finding(spec, None, Verdict::Exempt, None, reason.clone()));
                }
                let reference = match Reference::parse_for_pull(&spec.image) {
                    Ok(r) => r,
                    Err(e) => {
                        return Plan::Done(finding(
                            spec,
                            None,
                            Verdict::InvalidReference,
                            None,
                            format!("invalid image reference: {e}"),
                        ));
                    }
                };
                let name = reference.name();
                if let Some(message) = answers.late(&name) {
                    return Plan::Done(finding(
                        spec,
                        Some(&reference),
                        Verdict::Timeout,
                        None,
                        message,
                    ));
                }
                let mut candidates = Keyring::lookup_union(&[keyring, &self.node_keyring], &name);
                candidates.extend_from_slice(answers.credentials(&name));
                let key = CacheKey::new(&reference, &candidates, platforms, spec.image_use);
                let slot = *unique.entry(key).or_insert_with(|| {
                    probes.push((key, reference.clone(), candidates.clone(), spec.image_use));
                    probes.len() - 1
                });
                Plan::Probe {
                    reference,
                    candidates,
                    slot,
                }
            })
            .collect();

        let outcomes: Vec<Arc<Outcome>> = join_all(probes.into_iter().map(
            |(key, reference, candidates, image_use)| async move {
                let probe = || async {
                    let started = Instant::now();
                    let outcome = self
                        .registry
                        .probe(&reference, &candidates, platforms, image_use, deadline)
                        .await;
                    if let Some(observer) = &self.observer {
                        observer.probe(outcome.verdict, started.elapsed());
                    }
                    outcome
                };
                match tokio::time::timeout_at(deadline, self.cache.get_or_probe(key, probe)).await {
                    Ok((outcome, lookup)) => {
                        if let Some(observer) = &self.observer {
                            observer.cache_lookup(lookup);
                        }
                        outcome
                    }
                    Err(_) => Arc::new(Outcome::new(
                        Verdict::Timeout,
                        format!(
                            "no answer from {} before the deadline",
                            reference.registry()
                        ),
                    )),
                }
            },
        ))
        .await;

        plans
            .into_iter()
            .zip(images)
            .map(|(plan, spec)| match plan {
                Plan::Done(f) => f,
                Plan::Probe {
                    reference,
                    candidates,
                    slot,
                } => self.to_finding(spec, &reference, &candidates, &outcomes[slot], &answers),
            })
            .collect()
    }

    /// Put the caller's own context on a (possibly shared, cached) outcome: which of its
    /// credentials were tried, what to do about it.
    fn to_finding(
        &self,
        spec: &ImageSpec,
        reference: &Reference,
        candidates: &[Credential],
        outcome: &Outcome,
        answers: &ProviderAnswers,
    ) -> Finding {
        let mut verdict = outcome.verdict;
        let mut message = outcome.text();
        if verdict == Verdict::Unauthorized {
            if let Some(why) = self.node_providers.distrust_refusal(answers, reference) {
                verdict = Verdict::RegistryUnavailable;
                message = format!("{message}; {why}");
            } else if candidates.is_empty() {
                message = format!(
                    "{message}: add an imagePullSecret for {}",
                    reference.registry()
                );
            } else {
                let tried: Vec<String> = candidates.iter().map(Credential::label).collect();
                message = format!("{message}; tried {}", tried.join(", "));
            }
        }
        let mut f = finding(
            spec,
            Some(reference),
            verdict,
            outcome.digest.as_ref().map(ToString::to_string),
            message,
        );
        f.note = outcome.note.clone();
        f
    }
}

fn finding(
    spec: &ImageSpec,
    reference: Option<&Reference>,
    verdict: Verdict,
    digest: Option<String>,
    message: String,
) -> Finding {
    Finding {
        image: spec.image.clone(),
        reference: reference.map(ToString::to_string),
        container: spec.container.clone(),
        volume: spec.volume.clone(),
        verdict,
        digest,
        message,
        note: None,
        node_copies: None,
    }
}
