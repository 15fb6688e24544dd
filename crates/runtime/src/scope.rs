//! Namespace scoping: a controller acts in the namespaces given by `--namespaces` (all when
//! empty), and, with `--namespace-selector`, only in those whose labels match, so a feature
//! can be switched on per namespace by labelling it.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::{Notify, watch};

/// Where a controller acts.
#[derive(Clone)]
pub struct Scope {
    namespaces: Vec<String>,
    selector: Option<String>,
    /// Namespaces matching the selector, once the namespace watch has listed them.
    selected: Arc<RwLock<Option<BTreeSet<String>>>>,
    changed: Arc<Notify>,
    synced: watch::Receiver<bool>,
    synced_tx: Arc<watch::Sender<bool>>,
}

impl Scope {
    pub fn new(namespaces: Vec<String>, selector: Option<String>) -> Self {
        let namespaces: Vec<String> = namespaces
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        let selector = selector.filter(|s| !s.trim().is_empty());
        let (tx, rx) = watch::channel(selector.is_none());
        Self {
            namespaces,
            selector,
            selected: Arc::default(),
            changed: Arc::default(),
            synced: rx,
            synced_tx: Arc::new(tx),
        }
    }

    /// The explicitly listed namespaces; empty means all.
    pub fn listed_namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Pure membership test.
    pub fn allows(&self, namespace: &str) -> bool {
        if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == namespace) {
            return false;
        }
        match &self.selector {
            None => true,
            Some(_) => self
                .selected
                .read()
                .ok()
                .and_then(|s| s.as_ref().map(|s| s.contains(namespace)))
                .unwrap_or(false),
        }
    }

    /// Resolves once the namespace selector (if any) has been evaluated.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|v| *v).await;
    }

    /// Resolves each time the set of selected namespaces changes.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Watches namespaces matching the selector; does nothing without a selector.
    pub async fn watch_namespaces(self, client: Client, watches: crate::watch::Watches) {
        let Some(selector) = self.selector.clone() else {
            return;
        };
        let api: Api<Namespace> = Api::all(client);
        let config = watcher::Config::default().labels(&selector);
        let mut pending: BTreeSet<String> = BTreeSet::new();
        let mut stream = watches
            .resilient("namespaces", None, watcher(api, config))
            .boxed();
        while let Some(event) = stream.next().await {
            let mut current = self
                .selected
                .read()
                .ok()
                .and_then(|s| s.clone())
                .unwrap_or_default();
            match event {
                Ok(watcher::Event::Init) => pending.clear(),
                Ok(watcher::Event::InitApply(ns)) => {
                    if let Some(n) = ns.metadata.name {
                        pending.insert(n);
                    }
                    continue;
                }
                Ok(watcher::Event::InitDone) => current = std::mem::take(&mut pending),
                Ok(watcher::Event::Apply(ns)) => {
                    if let Some(n) = ns.metadata.name {
                        current.insert(n);
                    }
                }
                Ok(watcher::Event::Delete(ns)) => {
                    if let Some(n) = ns.metadata.name {
                        current.remove(&n);
                    }
                }
                // Handled (logged, counted, waited out) by the resilient watch.
                Err(_) => continue,
            }
            let changed =
                self.selected.read().ok().and_then(|s| s.clone()).as_ref() != Some(&current);
            if let Ok(mut s) = self.selected.write() {
                *s = Some(current);
            }
            let _ = self.synced_tx.send(true);
            if changed {
                self.changed.notify_waiters();
            }
        }
    }

    /// Test hook and building block: sets the selected namespaces directly.
    pub fn set_selected(&self, namespaces: impl IntoIterator<Item = String>) {
        if let Ok(mut s) = self.selected.write() {
            *s = Some(namespaces.into_iter().collect());
        }
        let _ = self.synced_tx.send(true);
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_selector() {
        let all = Scope::new(vec![], None);
        assert!(all.allows("anything"));
        let listed = Scope::new(vec!["a".into(), " b ".into()], None);
        assert!(listed.allows("b") && !listed.allows("c"));
        let selected = Scope::new(vec![], Some("mlops.dev/enabled=true".into()));
        assert!(
            !selected.allows("a"),
            "nothing is allowed before the selector is evaluated"
        );
        selected.set_selected(["a".to_string()]);
        assert!(selected.allows("a") && !selected.allows("b"));
        let both = Scope::new(vec!["a".into(), "b".into()], Some("x=y".into()));
        both.set_selected(["b".to_string(), "c".to_string()]);
        assert!(!both.allows("a") && both.allows("b") && !both.allows("c"));
    }
}
