//! The GitOps object `--application` or `--kustomization` selects NVJs by, watched: what it
//! manages changes as it syncs.

use futures::StreamExt;
use kube::api::{Api, ApiResource};
use kube::runtime::{WatchStreamExt, watcher};

use super::judge::Query;

/// Flux's Kustomization, read as the wait reads it.
pub(super) fn kustomization_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(
            nbg_core::foreign::flux::KUSTOMIZE_GROUP,
            "v1",
            "Kustomization",
        ),
        "kustomizations",
    )
}

/// The GitOps object as last seen; `None` once deleted.
pub(super) enum Owner {
    Application(Box<nbg_core::foreign::Application>),
    Kustomization(Box<nbg_core::foreign::flux::FluxObject>),
    Unreadable(String),
}

pub(super) type OwnerEvent = Result<Option<Owner>, watcher::Error>;

/// A watch of the one object `name` behind `api`, as [`Owner`] changes.
pub(super) fn owned_by<K>(
    api: Api<K>,
    name: &str,
    wrap: fn(K) -> Owner,
) -> futures::stream::BoxStream<'static, OwnerEvent>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher(api, config)
        .default_backoff()
        .filter_map(move |event| async move {
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    Some(Ok(Some(wrap(o))))
                }
                Ok(watcher::Event::Delete(_)) => Some(Ok(None)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        })
        .boxed()
}

pub(super) fn set_owner(query: &mut Query, live: Option<Owner>) {
    match live {
        Some(Owner::Application(a)) => {
            if let Some(by) = query.application.as_mut() {
                by.live = Some(*a);
            }
        }
        Some(Owner::Kustomization(k)) => {
            if let Some(by) = query.kustomization.as_mut() {
                by.live = Some(*k);
            }
        }
        Some(Owner::Unreadable(_)) | None => {
            if let Some(by) = query.application.as_mut() {
                by.live = None;
            }
            if let Some(by) = query.kustomization.as_mut() {
                by.live = None;
            }
        }
    }
}
