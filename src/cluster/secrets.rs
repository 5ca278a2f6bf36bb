//! The pull-secret store: each Secret decoded once, when the watch delivers it, into what
//! the keyring needs (its parsed docker config, or why the kubelet would not use it).
//! Neither the Secret object nor its raw content is kept: ten thousand pull secrets cost
//! their credentials and names, not their JSON. Namespaces are stored once each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher;

use super::{SecretProblem, docker_config_of};
use crate::keyring::DockerConfig;

/// What a Secret gave: its decoded docker config, or the problem the kubelet meets with it.
#[derive(Debug, Clone)]
enum Decoded {
    Config(Arc<DockerConfig>),
    /// Rare (a wrong type, no data, content the kubelet cannot decode): boxed, so the
    /// common case stays two words.
    Problem(Box<SecretProblem>),
}

/// namespace → name → what the Secret gave.
type Table = HashMap<Box<str>, HashMap<Box<str>, Decoded>>;

/// One watch's pull secrets, shared and cheap to clone.
#[derive(Clone)]
pub struct SecretStore {
    table: Arc<RwLock<Table>>,
    /// The table being rebuilt by a (re-)list, swapped in whole when it is done.
    pending: Arc<Mutex<Option<Table>>>,
    synced: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for SecretStore {
    fn default() -> Self {
        Self {
            table: Arc::default(),
            pending: Arc::default(),
            synced: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("secrets", &self.len())
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    /// Apply one watch event; a re-list (`Init` … `InitDone`) replaces the table whole.
    pub fn apply(&self, event: watcher::Event<Secret>) {
        match event {
            watcher::Event::Apply(secret) => insert(&mut self.write(), &secret),
            watcher::Event::Delete(secret) => {
                if let (Some(namespace), Some(name)) = (
                    secret.metadata.namespace.as_deref(),
                    secret.metadata.name.as_deref(),
                ) {
                    remove(&mut self.write(), namespace, name);
                }
            }
            watcher::Event::Init => *self.pending() = Some(Table::default()),
            watcher::Event::InitApply(secret) => {
                if let Some(table) = self.pending().as_mut() {
                    insert(table, &secret);
                }
            }
            watcher::Event::InitDone => {
                if let Some(fresh) = self.pending().take() {
                    *self.write() = fresh;
                }
                self.synced.send_replace(true);
            }
        }
    }

    /// The docker config of Secret `name` in `namespace`, as the kubelet reads it.
    pub fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Result<Arc<DockerConfig>, SecretProblem>> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        Some(match table.get(namespace)?.get(name)? {
            Decoded::Config(config) => Ok(config.clone()),
            Decoded::Problem(problem) => Err((**problem).clone()),
        })
    }

    pub fn len(&self) -> usize {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn mark_synced(&self) {
        self.synced.send_replace(true);
    }

    /// Resolves once the first full list is in.
    pub async fn wait_until_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|synced| *synced).await;
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Option<Table>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn insert(table: &mut Table, secret: &Secret) {
    let (Some(namespace), Some(name)) = (
        secret.metadata.namespace.as_deref(),
        secret.metadata.name.as_deref(),
    ) else {
        return;
    };
    let decoded = match docker_config_of(secret) {
        Ok(config) => Decoded::Config(Arc::new(config)),
        Err(problem) => Decoded::Problem(Box::new(problem)),
    };
    let names = match table.get_mut(namespace) {
        Some(names) => names,
        None => table.entry(Box::from(namespace)).or_default(),
    };
    names.insert(Box::from(name), decoded);
}

fn remove(table: &mut Table, namespace: &str, name: &str) {
    if let Some(names) = table.get_mut(namespace) {
        names.remove(name);
        if names.is_empty() {
            table.remove(namespace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn secret(namespace: &str, name: &str, content: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            type_: Some(super::super::DOCKER_CONFIG_JSON.into()),
            data: Some(BTreeMap::from([(
                ".dockerconfigjson".to_string(),
                ByteString(content.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    const GOOD: &str = r#"{"auths":{"r.io":{"username":"u","password":"p"}}}"#;

    #[test]
    fn a_secret_is_decoded_once_and_answers_by_namespace_and_name() {
        let store = SecretStore::default();
        store.apply(watcher::Event::Apply(secret("a", "regcred", GOOD)));
        store.apply(watcher::Event::Apply(secret(
            "b",
            "broken",
            r#"{"auths":{"r.io":{"auth":"%%"}}}"#,
        )));
        let config = store.get("a", "regcred").expect("stored").expect("decoded");
        assert_eq!(config.len(), 1);
        assert!(store.get("b", "regcred").is_none());
        assert!(matches!(
            store.get("b", "broken"),
            Some(Err(SecretProblem::Rejected { ref name, .. })) if name == "broken"
        ));
        assert_eq!(store.len(), 2);
        store.apply(watcher::Event::Delete(secret("a", "regcred", "")));
        assert!(store.get("a", "regcred").is_none());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn an_update_replaces_the_decoded_config() {
        let store = SecretStore::default();
        store.apply(watcher::Event::Apply(secret("a", "regcred", GOOD)));
        store.apply(watcher::Event::Apply(secret("a", "regcred", "")));
        assert!(matches!(
            store.get("a", "regcred"),
            Some(Err(SecretProblem::NoData(..)))
        ));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_relist_replaces_the_table_when_done() {
        let store = SecretStore::default();
        store.apply(watcher::Event::Apply(secret("a", "old", GOOD)));
        store.apply(watcher::Event::Init);
        store.apply(watcher::Event::InitApply(secret("a", "new", GOOD)));
        assert!(store.get("a", "old").is_some(), "not yet");
        assert!(!*store.synced.borrow());
        store.apply(watcher::Event::InitDone);
        assert!(*store.synced.borrow());
        assert!(store.get("a", "old").is_none());
        assert!(store.get("a", "new").is_some());
        assert_eq!(store.len(), 1);
    }
}
