//! The `NotebookValidationJob` API (`mlops.mlops.dev/v1alpha1`), wire-compatible with the Go
//! operator of the same name: every spec field it accepts is accepted here with the same name,
//! meaning and schema validation, so its manifests apply unchanged.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    PersistentVolumeClaimVolumeSource, ResourceRequirements, SecretVolumeSource, Toleration,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group, shared with the Go operator.
pub const GROUP: &str = "mlops.mlops.dev";
/// The kind.
pub const KIND: &str = "NotebookValidationJob";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The default of `spec.timeout`.
pub const DEFAULT_TIMEOUT: &str = "30m";

fn default_timeout() -> String {
    DEFAULT_TIMEOUT.to_string()
}

/// Runs a notebook from git in a pod, optionally compares it with a golden notebook, and reports
/// every cell's result in its status.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "mlops.mlops.dev",
    version = "v1alpha1",
    kind = "NotebookValidationJob",
    plural = "notebookvalidationjobs",
    singular = "notebookvalidationjob",
    shortname = "nvj",
    shortname = "nvjob",
    namespaced,
    status = "NotebookValidationJobStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Notebook","type":"string","jsonPath":".spec.notebook.path"}"#,
    printcolumn = r#"{"name":"Git-URL","type":"string","jsonPath":".spec.notebook.git.url","priority":1}"#,
    printcolumn = r#"{"name":"Timeout","type":"string","jsonPath":".spec.timeout"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message"}"#,
    category = "mlops"
)]
#[serde(rename_all = "camelCase")]
pub struct NotebookValidationJobSpec {
    /// The notebook to validate.
    pub notebook: NotebookSource,
    /// The pod that executes the notebook.
    pub pod_config: PodConfig,
    /// A golden notebook whose outputs the executed notebook must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub golden_notebook: Option<NotebookSource>,
    /// How the executed notebook is compared with the golden notebook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison_config: Option<ComparisonConfig>,
    /// Maximum execution time, a Go duration such as `30m` or `1h30m`. Enforced: the pod is
    /// stopped and the job fails with reason `Timeout`.
    #[serde(default = "default_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: String,
    /// Model-aware validation of the Go operator. Accepted and reported as not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_validation: Option<ModelValidation>,
    /// Exit-code validation settings of the Go operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_config: Option<ValidationConfig>,
}

/// A notebook in a git repository.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotebookSource {
    pub git: GitSource,
    /// Path of the notebook inside the repository.
    #[schemars(regex(pattern = r"^.*\.ipynb$"))]
    pub path: String,
    /// Papermill parameters, `spec.notebook` only (an addition to the Go operator's API): each is
    /// papermill's `-p NAME VALUE`, injected in a cell after the one tagged `parameters`; papermill
    /// reads a value that looks like an int, a float, a bool or None as one, else as a string.
    /// Recorded in `status.parameters` with the run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 50))]
    pub parameters: BTreeMap<String, String>,
}

/// A git repository at a ref.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// Repository URL: `https://`, `http://`, `git://`, `ssh://` or `git@host:path`.
    #[schemars(regex(pattern = r"^((https?|git|ssh)://|git@).*$"))]
    pub url: String,
    /// A branch, a tag or a full commit SHA.
    #[schemars(length(min = 1))]
    pub r#ref: String,
    /// Name of a Secret with git credentials: `username` and `password` or `token`, or
    /// `ssh-privatekey`. Its values are passed by reference, never in the pod's command or env.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// The validation pod.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodConfig {
    /// The image the notebook runs in; it needs Python with papermill and a Jupyter kernel,
    /// and `git` on its PATH (the runner clones the notebook's repository with it).
    #[schemars(length(min = 1))]
    pub container_image: String,
    /// When the node pulls `containerImage` (an addition to the Go operator's API). Unset, the
    /// Kubernetes default applies: `Always` for a `:latest` or untagged image, else
    /// `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// The user and groups the notebook runs as (an addition to the Go operator's API). The
    /// pod always runs as non-root: an image whose user is root or a name (not a UID) needs
    /// `runAsUser`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<NotebookSecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Secret names; sugar for `envFrom: [{secretRef: {name}}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// Image build settings of the Go operator. Accepted and reported as not implemented; the
    /// notebook runs in `containerImage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_config: Option<BuildConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<NotebookVolume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

/// `imagePullPolicy` of the notebook container.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// The identity the notebook container runs as; the rest of the pod's security context is
/// fixed (the "restricted" Pod Security Standard).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotebookSecurityContext {
    /// UID of the notebook container; never 0 (the pod runs as non-root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_user: Option<i64>,
    /// Primary GID of the notebook container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub run_as_group: Option<i64>,
    /// The pod's `fsGroup`: volumes that support ownership management (a model PVC) are made
    /// writable by this group, which every container of the pod belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub fs_group: Option<i64>,
    /// The notebook container's root file system is read-only. papermill and the kernel then
    /// write only where the pod gives them room: the work directory (`HOME`, Jupyter's runtime
    /// files, the executed notebook) and an emptyDir at `/tmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
}

/// A volume of the validation pod: exactly one of a PersistentVolumeClaim, ConfigMap, Secret or
/// emptyDir, as in the Go operator.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.persistentVolumeClaim) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.secret) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) == 1",
    "message": "a volume needs exactly one of persistentVolumeClaim, configMap, secret or emptyDir"
}]))]
pub struct NotebookVolume {
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
}

/// The Go operator's image build settings (not implemented here: reported, never ignored).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuildConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<BuildStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._/-]+$"))]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_generate_requirements: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements_file: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements_sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_dockerfile: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_strategy: Option<FallbackStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_config: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuildStrategy {
    S2i,
    Tekton,
    Kaniko,
    Shipwright,
    Custom,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FallbackStrategy {
    Warn,
    Fail,
    Auto,
}

/// How outputs are compared with the golden notebook.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComparisonConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<ComparisonStrategy>,
    /// Absolute tolerance for numbers, as a decimal string (`"0.0001"`): |a-b| <= tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"))]
    pub floating_point_tolerance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_timestamps: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_execution_count: Option<bool>,
    /// Extra regular expressions whose matches are treated as timestamps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_timestamp_patterns: Vec<String>,
    /// Output types (`stream`, `display_data`, `execute_result`, `error`) left out of the comparison.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_output_types: Vec<String>,
}

impl ComparisonConfig {
    /// The effective strategy (the Go operator's default is `normalized`).
    pub fn strategy(&self) -> ComparisonStrategy {
        self.strategy.unwrap_or(ComparisonStrategy::Normalized)
    }
    /// The effective tolerance string (default `0.0001`).
    pub fn tolerance(&self) -> &str {
        self.floating_point_tolerance.as_deref().unwrap_or("0.0001")
    }
    pub fn ignore_timestamps(&self) -> bool {
        self.ignore_timestamps.unwrap_or(true)
    }
    pub fn ignore_execution_count(&self) -> bool {
        self.ignore_execution_count.unwrap_or(true)
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComparisonStrategy {
    Exact,
    Normalized,
}

/// Checks of the served models once this NVJ's restarts of them have rolled out
/// (docs/trigger-controller.md, "Checking the served model"; [`crate::model_validation`]).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.platform) || self.platform == 'kserve' || self.platform == 'openshift-ai'",
    "message": "platform: only kserve and openshift-ai (KServe) are supported: the check speaks KServe's V1 and V2 inference protocols to InferenceServices"
}, {
    "rule": "!has(self.customPlatform)",
    "message": "customPlatform: custom platforms are not supported; name KServe InferenceServices in targetModels"
}, {
    "rule": "!has(self.phase) || self.phase != 'clean'",
    "message": "phase: clean (checking that the platform is installed) is what trigger-controller does before every restart; use existing or both"
}]))]
pub struct ModelValidation {
    /// `false`: no model is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `kserve` (the default) or `openshift-ai`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<ModelPlatform>,
    /// `existing` or `both` (the default): the served models are checked after their restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ModelValidationPhase>,
    /// The InferenceServices (`name`, or `namespace/name`) checked once this NVJ's restart of
    /// them (`mlops.dev/on-success-trigger`) has rolled out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_models: Vec<String>,
    /// What each model must answer; without it, it must report itself ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_validation: Option<PredictionValidation>,
    /// Rejected: custom platforms are not supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_platform: Option<CustomPlatform>,
    /// How long the new predictor has to answer as expected after its rollout (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ModelPlatform {
    Kserve,
    OpenshiftAi,
    Vllm,
    Torchserve,
    TensorflowServing,
    Triton,
    RayServe,
    Seldon,
    Bentoml,
    Custom,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelValidationPhase {
    Clean,
    Existing,
    Both,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictionValidation {
    /// `false`: the models must only report themselves ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// JSON: the instances (`[[5.1, 3.5, 1.4, 0.2]]`: V1's `instances`, V2's input tensor), or
    /// a whole request body with `instances` (V1) or `inputs` (V2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_data: Option<String>,
    /// JSON: the predictions expected (`[0]`: V1's `predictions`, V2's first output's data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_output: Option<String>,
    /// The largest difference between a number predicted and expected that matches (default
    /// 0.01).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"))]
    pub tolerance: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomPlatform {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_endpoint: Option<String>,
}

/// Checks of what the notebook produced, beyond its cells running (docs/nvj-validator.md,
/// "Output checks"): run by the runner in the validation pod after the cells, before the golden
/// comparison. A failed check fails the run with reason `OutputCheckFailed`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.requireExplicitExitCodes) || !self.requireExplicitExitCodes",
    "message": "requireExplicitExitCodes cannot be honoured: notebook cells have no exit codes (a cell that raises, or calls sys.exit with a non-zero code, fails the run already); remove it"
}, {
    "rule": "!has(self.verifyAssertions) || self.verifyAssertions",
    "message": "verifyAssertions: false cannot be honoured: a failed assert raises AssertionError and fails its cell; remove it"
}, {
    "rule": "!has(self.educationalMode) || !self.educationalMode",
    "message": "educationalMode has no effect in notebook-gitops (every failure names the cell and what failed); remove it"
}]))]
pub struct ValidationConfig {
    /// A preset: `learning` adds no check; `development` adds detectSilentFailures; `staging`
    /// also failOnWarnings; `production` also failOnStderr. A field set explicitly wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<ValidationLevel>,
    /// failOnStderr, failOnWarnings and detectSilentFailures, each unless set to false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_mode: Option<bool>,
    /// A code cell that wrote to its stderr stream fails the run (warnings are written there too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on_stderr: Option<bool>,
    /// A Python warning shown while a cell ran (as `warnings.showwarning` shows it, after the
    /// warning filters) fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on_warnings: Option<bool>,
    /// A cell that printed a Python traceback to stderr without raising (an exception caught
    /// and logged, e.g. `logging.exception`, `traceback.print_exc()`) fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_silent_failures: Option<bool>,
    /// Rejected when true: notebook cells have no exit codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_explicit_exit_codes: Option<bool>,
    /// `false`: the golden comparison compares the cells' output text without their output
    /// types (a `print` against a displayed value of the same text matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_output_types: Option<bool>,
    /// Always on (a failed assert fails its cell); rejected when false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_assertions: Option<bool>,
    /// Rejected when true: it has no effect here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub educational_mode: Option<bool>,
    /// Checks of values the notebook produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub expected_outputs: Vec<ExpectedOutput>,
}

impl ValidationConfig {
    /// Whether a code cell writing to stderr fails the run: the field, else strictMode, else the
    /// level (`production`).
    pub fn fails_on_stderr(&self) -> bool {
        self.fail_on_stderr
            .or(self.strict_mode.filter(|s| *s))
            .unwrap_or(self.level == Some(ValidationLevel::Production))
    }

    /// Whether a shown Python warning fails the run: the field, else strictMode, else the level
    /// (`staging` and `production`).
    pub fn fails_on_warnings(&self) -> bool {
        self.fail_on_warnings
            .or(self.strict_mode.filter(|s| *s))
            .unwrap_or(matches!(
                self.level,
                Some(ValidationLevel::Staging | ValidationLevel::Production)
            ))
    }

    /// Whether a traceback printed without raising fails the run: the field, else strictMode,
    /// else the level (all but `learning`).
    pub fn detects_silent_failures(&self) -> bool {
        self.detect_silent_failures
            .or(self.strict_mode.filter(|s| *s))
            .unwrap_or(matches!(
                self.level,
                Some(
                    ValidationLevel::Development
                        | ValidationLevel::Staging
                        | ValidationLevel::Production
                )
            ))
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValidationLevel {
    Learning,
    Development,
    Staging,
    Production,
}

/// A check of one value the notebook produced (docs/nvj-validator.md, "Output checks"): the
/// result of the cell at index `cell` (the Go operator's addressing) or of the one cell tagged
/// `cellTag`, or the value the notebook glued under `name` (scrapbook's `glue`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.cell) ? 1 : 0) + (has(self.cellTag) ? 1 : 0) + (has(self.name) ? 1 : 0) == 1",
    "message": "an expected output needs exactly one of cell, cellTag or name"
}, {
    "rule": "has(self.type) || has(self.shape) || has(self.minValue) || has(self.maxValue) || (has(self.notEmpty) && self.notEmpty)",
    "message": "an expected output needs at least one of type, shape, minValue, maxValue or notEmpty: true"
}]))]
pub struct ExpectedOutput {
    /// The cell's index in the notebook (from 0, every cell counted, as `results[].cellIndex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub cell: Option<i32>,
    /// A tag of exactly one cell (`metadata.tags`, as papermill's `parameters`): stays with the
    /// cell when cells are added or moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cell_tag: Option<String>,
    /// A value the notebook recorded with `scrapbook.glue(name, value)` (JSON or text encoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub name: Option<String>,
    /// A name the value's type answers to: its class or a base class, plain (`DataFrame`,
    /// `float`), with its module (`pandas.core.frame.DataFrame`) or its package
    /// (`pandas.DataFrame`); `number` for any real number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// The value's shape, `rows,cols` (as `.shape`, or the length of a list); `*` or `-1`
    /// matches any size: `1000,20`, `*,20`, `-1,20`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^ *(\*|-1|[0-9]+)( *, *(\*|-1|[0-9]+))* *$"))]
    pub shape: Option<String>,
    /// The value is a real number at least this (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"))]
    pub min_value: Option<String>,
    /// The value is a real number at most this (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"))]
    pub max_value: Option<String>,
    /// The value exists and is not None, an empty string or collection, or an array or frame
    /// with no elements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_empty: Option<bool>,
}

/// The phase of a validation. This implementation only ever writes `Initializing`,
/// `ValidationRunning`, `Succeeded` and `Failed`; the Go operator's `Building`,
/// `BuildComplete`, `Pending` and `Running` are accepted when read.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    Initializing,
    Building,
    BuildComplete,
    ValidationRunning,
    Succeeded,
    Failed,
    Pending,
    Running,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Initializing => "Initializing",
            Phase::Building => "Building",
            Phase::BuildComplete => "BuildComplete",
            Phase::ValidationRunning => "ValidationRunning",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Pending => "Pending",
            Phase::Running => "Running",
        }
    }

    /// True for `Succeeded` and `Failed`, the phases a run ends in.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state. Each field group has one writer (docs/design.md): nvj-validator writes
/// everything but `triggers` and `modelValidationResult`, which trigger-controller writes with
/// its own field manager.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotebookValidationJobStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status describes; a run is `<uid>/<observedGeneration>`.
    /// `0`, the default the API server fills in, until nvj-validator observes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus) and `ValidationComplete` (Go operator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Per-cell results, bounded in size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub results: Vec<CellResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub retry_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_retry_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison_result: Option<ComparisonResult>,
    /// The papermill parameters (`spec.notebook.parameters`) of the run this status describes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// One entry per trigger target, written only by trigger-controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["kind", "namespace", "name", "action"]))]
    #[schemars(length(max = 100))]
    pub triggers: Vec<TriggerRecord>,
    /// The served models checked after this run's restarts (`spec.modelValidation`), in the Go
    /// operator's shape; written only by trigger-controller, once every checked model has a
    /// result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_validation_result: Option<crate::model_validation::ModelValidationResult>,
}

impl NotebookValidationJobStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CellStatus {
    Success,
    Failure,
    Skipped,
}

/// The result of one executed cell.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CellResult {
    #[schemars(range(min = 0))]
    pub cell_index: i32,
    pub status: CellStatus,
    /// A Go duration string such as `1.204s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_time: Option<String>,
    /// The cell's text output, truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `ErrorName: value` and a bounded traceback when the cell failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The output checks (`spec.validationConfig`) of this cell's values and streams.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<OutputCheck>,
}

/// One output check of a cell: what was checked, the value seen, and whether it held.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputCheck {
    /// The check: `expectedOutputs[0]`, `failOnStderr`, `failOnWarnings`, `detectSilentFailures`.
    pub check: String,
    pub passed: bool,
    /// The value as the check saw it, bounded: `0.9512 (float)`, `shape 1000,20 (DataFrame)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Why it failed, naming the bound: `0.71 is below minValue 0.8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ComparisonOutcome {
    Matched,
    Failed,
    Skipped,
}

/// The golden comparison.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComparisonResult {
    pub strategy: ComparisonStrategy,
    pub result: ComparisonOutcome,
    #[schemars(range(min = 0))]
    pub total_cells: i32,
    #[schemars(range(min = 0))]
    pub matched_cells: i32,
    #[schemars(range(min = 0))]
    pub mismatched_cells: i32,
    /// The first differences, bounded in number and size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub diffs: Vec<CellDiff>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CellType {
    Code,
    Markdown,
    Raw,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffType {
    OutputMismatch,
    ExecutionError,
    MissingCell,
    ExtraCell,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiffSeverity {
    Minor,
    Major,
    Critical,
}

/// One difference between the executed and the golden notebook.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CellDiff {
    #[schemars(range(min = 0))]
    pub cell_index: i32,
    pub cell_type: CellType,
    pub diff_type: DiffType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub severity: DiffSeverity,
}

/// What a trigger did for one target, keyed by target and action.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerRecord {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub action: String,
    /// The run it fired for: `<metadata.uid>/<observedGeneration>`.
    pub run: String,
    pub outcome: TriggerOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub time: Time,
    /// A restart: when its rollout was seen complete (the served model is checked from then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_complete_time: Option<Time>,
    /// A restart of a model `spec.modelValidation` names: how the new model answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<ServedModelCheck>,
}

/// How a restarted model answered its check (`spec.modelValidation`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServedModelCheck {
    /// It answered.
    pub available: bool,
    /// It answered as expected.
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<crate::model_validation::PredictionValidationResult>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TriggerOutcome {
    /// Applied; waiting for the target to report the rollout complete.
    InProgress,
    Succeeded,
    Failed,
    Denied,
}

impl TriggerOutcome {
    /// The outcome as written in the status (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "InProgress",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Denied => "Denied",
        }
    }
}

/// The status every NVJ reads with until nvj-validator's first write: the CRD's default for
/// `status`, which the API server fills in on every read of an object without one.
/// `observedGeneration: 0` is a generation no object has (they start at 1), so kstatus - the
/// library Flux's health checks, `kstatus` and cli-utils use - reads a new NVJ as in progress
/// ("generation is 1, but latest observed generation is 0") from its first second; without a
/// status it would read it as Current and let everything gated on it through.
pub fn status_before_first_run() -> serde_json::Value {
    serde_json::json!({ "observedGeneration": 0 })
}

impl NotebookValidationJob {
    /// The generation the status describes; `None` before nvj-validator observed one (no
    /// status, or the CRD default's `0`).
    pub fn observed_generation(&self) -> Option<i64> {
        self.status
            .as_ref()?
            .observed_generation
            .filter(|generation| *generation > 0)
    }

    /// The identity of the run this object's status describes, `<uid>/<observedGeneration>`,
    /// once the validator has observed a generation.
    pub fn run_id(&self) -> Option<String> {
        let uid = self.metadata.uid.as_deref()?;
        let generation = self.observed_generation()?;
        Some(format!("{uid}/{generation}"))
    }

    /// Whether this run succeeded but a model it restarted failed its check afterwards
    /// (`status.modelValidationResult` of this run, written by trigger-controller): what serves
    /// is not what the validation passed. Argo CD's health check reads it the same way.
    pub fn served_model_failed(&self) -> bool {
        let Some(run) = self.run_id() else {
            return false;
        };
        self.current_phase() == Some(Phase::Succeeded)
            && self
                .status
                .as_ref()
                .and_then(|s| s.model_validation_result.as_ref())
                .is_some_and(|r| r.run == run && !r.success)
    }

    /// The phase if the status describes the current spec generation; `None` while the
    /// validator has not caught up with a spec change.
    pub fn current_phase(&self) -> Option<Phase> {
        let status = self.status.as_ref()?;
        if status.observed_generation? != self.metadata.generation? {
            return None;
        }
        status.phase
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "mlops.mlops.dev/v1alpha1",
            "kind": "NotebookValidationJob",
            "metadata": {"name": "x", "namespace": "ns", "uid": "u1", "generation": 2},
            "spec": {
                "notebook": {"git": {"url": "https://example.com/r.git", "ref": "main"}, "path": "a.ipynb"},
                "podConfig": {"containerImage": "img", "credentials": ["aws"], "someFutureField": 1},
                "comparisonConfig": {"floatingPointTolerance": "0.01"}
            },
            "status": {"phase": "Succeeded", "observedGeneration": 2}
        })
    }

    #[test]
    fn go_operator_objects_deserialize_with_defaults() {
        let nvj: NotebookValidationJob = serde_json::from_value(sample()).expect("sample parses");
        assert_eq!(nvj.spec.timeout, "30m");
        assert_eq!(nvj.spec.pod_config.credentials, vec!["aws".to_string()]);
        let cmp = nvj.spec.comparison_config.clone().unwrap_or_default();
        assert_eq!(cmp.strategy(), ComparisonStrategy::Normalized);
        assert_eq!(cmp.tolerance(), "0.01");
        assert!(cmp.ignore_timestamps());
        assert_eq!(nvj.run_id().as_deref(), Some("u1/2"));
        assert_eq!(nvj.current_phase(), Some(Phase::Succeeded));
    }

    #[test]
    fn stale_status_has_no_current_phase() {
        let mut v = sample();
        v["metadata"]["generation"] = 3.into();
        let nvj: NotebookValidationJob = serde_json::from_value(v).expect("parses");
        assert_eq!(nvj.current_phase(), None);
    }

    #[test]
    fn legacy_phases_are_read() {
        for p in ["Building", "BuildComplete", "Pending", "Running"] {
            let phase: Phase = serde_json::from_value(p.into()).expect("legacy phase parses");
            assert_eq!(phase.as_str(), p);
            assert!(!phase.is_terminal());
        }
    }
}
