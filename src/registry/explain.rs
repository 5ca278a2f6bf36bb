//! After a 404: is it the tag, the digest or the whole repository? Nearby tags are
//! suggested ("did you mean …?"). A courtesy: any failure here keeps the plain not-found.

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use super::suggest::{nearest_tags, quoted_alternatives};
use super::transport::{Ask, next_link};
use super::{Endpoint, Registry};
use crate::reference::Reference;
use crate::verdict::{Outcome, Verdict};

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Registry {
    /// The not-found outcome for `reference`, read on `endpoint` with `authorization`.
    pub(super) async fn explain_not_found(
        &self,
        reference: &Reference,
        endpoint: &Endpoint,
        authorization: Option<&str>,
        deadline: Instant,
    ) -> Outcome {
        let name = reference.name();
        if let Some(digest) = reference.digest() {
            return Outcome::new(
                Verdict::NotFound,
                format!("manifest {digest} not found in {name}"),
            );
        }
        let tag = reference.manifest_reference();
        let Some(mut url) = endpoint.url(reference.repository(), "tags/list?n=1000") else {
            return Outcome::new(
                Verdict::NotFound,
                format!("tag {tag:?} not found in {name}"),
            );
        };
        let mut tags: Vec<String> = Vec::new();
        let mut readable = false;
        for _ in 0..self.config.max_tag_pages.max(1) {
            let Ok(page) = self
                .send(
                    &endpoint.host,
                    Ask::new(Method::GET, url.clone(), endpoint.client)
                        .authorized(authorization)
                        .with_headers(&endpoint.headers),
                    deadline,
                )
                .await
            else {
                break;
            };
            if page.status == StatusCode::NOT_FOUND && !readable {
                return Outcome::new(
                    Verdict::NotFound,
                    format!("repository {name} not found (tag {tag:?} requested)"),
                );
            }
            if !page.status.is_success() {
                break;
            }
            readable = true;
            let body = page.body.unwrap_or_default();
            if let Ok(list) = serde_json::from_slice::<TagList>(&body) {
                tags.extend(list.tags.unwrap_or_default());
            }
            match next_link(&page.headers).and_then(|l| page.url.join(&l).ok()) {
                Some(next) => url = next,
                None => break,
            }
        }
        let mut message = format!("tag {tag:?} not found in {name}");
        let suggestions = nearest_tags(tag, tags.iter().map(String::as_str), 3);
        if !suggestions.is_empty() {
            message.push_str(&format!(
                " (did you mean {}?)",
                quoted_alternatives(&suggestions)
            ));
        } else if readable && tags.is_empty() {
            message.push_str(" (the repository has no tags)");
        }
        Outcome::new(Verdict::NotFound, message)
    }
}
