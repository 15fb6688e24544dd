//! The contracts every notebook-gitops controller shares: the `NotebookValidationJob` API,
//! the minimal foreign types we read and write (KServe `InferenceService`, Argo CD
//! `Application`), the annotation contract and its parsers, and condition helpers.
//!
//! Nothing here performs I/O, so every decision built on these types can be unit-tested
//! without a cluster.

pub mod annotations;
pub mod conditions;
pub mod duration;
pub mod foreign;
pub mod model_validation;
pub mod nvj;

pub use nvj::{
    NotebookValidationJob, NotebookValidationJobSpec, NotebookValidationJobStatus, Phase,
};

/// Every CustomResourceDefinition this project owns, in the order they are written to
/// `manifests/crds/`.
pub fn crds() -> Vec<(
    &'static str,
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
)> {
    use kube::CustomResourceExt;
    let mut nvj = NotebookValidationJob::crd();
    for version in &mut nvj.spec.versions {
        let status = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|properties| properties.get_mut("status"));
        if let Some(status) = status {
            status.default = Some(
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                    nvj::status_before_first_run(),
                ),
            );
        }
    }
    vec![("mlops.mlops.dev_notebookvalidationjobs.yaml", nvj)]
}
