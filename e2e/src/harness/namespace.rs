use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::harness::cluster::Cluster;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace of one test; deleted (in the background) when dropped.
pub struct TestNamespace {
    pub name: String,
    cluster: Cluster,
}

impl TestNamespace {
    pub async fn new(cluster: &Cluster, prefix: &str) -> Self {
        Self::with_labels(cluster, prefix, BTreeMap::new()).await
    }

    pub async fn with_labels(
        cluster: &Cluster,
        prefix: &str,
        labels: BTreeMap<String, String>,
    ) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let api: Api<Namespace> = Api::all(cluster.client().await);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        // The serviceaccount controller creates `default` shortly after.
        Self {
            name,
            cluster: cluster.clone(),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        self.cluster.delete_namespace(&self.name);
        // The node of this test's kubelet double, if it ran one.
        self.cluster.kubectl(
            &[
                "delete",
                "node",
                &format!("kubelet-{}", self.name),
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
    }
}
