//! Writing a controller's part of an object's status. Every controller writes only the status
//! fields it owns, with server-side apply under its own field manager, so controllers sharing
//! one status never overwrite each other. With server-side apply, a field a manager applied
//! before and omits now is removed: callers pass everything they own, every time.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A namespaced object of a known type, as the writers here take it.
pub trait Owned:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Owned for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
{
}

/// Applies `status` (the fields `field_manager` owns) to `obj`'s status subresource. With
/// `if_unchanged`, the write is conditioned on the resourceVersion `obj` was read at: a
/// controller that decided from a stale copy gets a 409 conflict instead of acting on it.
pub async fn apply_status<K>(
    client: &kube::Client,
    obj: &K,
    field_manager: &str,
    status: &impl Serialize,
    if_unchanged: bool,
) -> Result<K, kube::Error>
where
    K: Owned,
{
    let mut body = serde_json::json!({ "status": status });
    if if_unchanged {
        body["metadata"] = serde_json::json!({"resourceVersion": obj.meta().resource_version});
    }
    apply(client, obj, field_manager, body, true).await
}

/// Server-side apply of `body` (the fields, without apiVersion and kind) to `obj` - its status
/// subresource with `status` - as `field_manager`, taking over fields another manager set (force).
async fn apply<K>(
    client: &kube::Client,
    obj: &K,
    field_manager: &str,
    mut body: serde_json::Value,
    status: bool,
) -> Result<K, kube::Error>
where
    K: Owned,
{
    body["apiVersion"] = K::api_version(&()).into();
    body["kind"] = K::kind(&()).into();
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let params = PatchParams::apply(field_manager).force();
    if status {
        api.patch_status(&obj.name_any(), &params, &Patch::Apply(body))
            .await
    } else {
        api.patch(&obj.name_any(), &params, &Patch::Apply(body))
            .await
    }
}

/// Applies `annotations` - every annotation `field_manager` owns on `obj`, so one it applied
/// before and omits now is removed - and nothing else: other owners' annotations (Argo CD's
/// tracking id, kubectl's last-applied copy, users' own) are never touched. Returns the object
/// as written.
pub async fn apply_annotations<K>(
    client: &kube::Client,
    obj: &K,
    field_manager: &str,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<K, kube::Error>
where
    K: Owned,
{
    let body = serde_json::json!({
        "metadata": {"name": obj.name_any(), "annotations": annotations},
    });
    apply(client, obj, field_manager, body, false).await
}
