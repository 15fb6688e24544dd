//! `mlops.dev/on-success-trigger`: a YAML list of targets to act on when a run succeeds.
//!
//! ```yaml
//! - apiVersion: serving.kserve.io/v1beta1
//!   kind: InferenceService
//!   name: fraud-model
//!   action: restart
//! - apiVersion: argoproj.io/v1alpha1
//!   kind: Application
//!   name: fraud-serving
//!   namespace: argocd
//!   action: sync
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Values larger than this are rejected before parsing. Kubernetes caps all annotations of an
/// object at 256 KiB together, so a legitimate list is far smaller.
pub const MAX_TRIGGER_ANNOTATION_BYTES: usize = 64 * 1024;
/// At most this many targets in one annotation.
pub const MAX_TRIGGERS: usize = 50;

/// What to do with a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TriggerAction {
    /// Roll the target's pods (readiness-respecting), or evict them with `strategy: evict`.
    Restart,
    /// An Argo CD sync of an Application.
    Sync,
    /// An Argo CD refresh of an Application, or `mlops.dev/refresh-requested` on other kinds.
    Refresh,
    /// Flux's reconcile request (`reconcile.fluxcd.io/requestedAt`, as `flux reconcile` writes
    /// it) on a Flux object: a Kustomization, HelmRelease, GitRepository or OCIRepository.
    Reconcile,
}

impl TriggerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerAction::Restart => "restart",
            TriggerAction::Sync => "sync",
            TriggerAction::Refresh => "refresh",
            TriggerAction::Reconcile => "reconcile",
        }
    }
}

impl fmt::Display for TriggerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How `restart` restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartStrategy {
    /// The kind's own rolling restart (the default).
    #[default]
    Rollout,
    /// Evict pods one at a time through the Eviction API, honouring PodDisruptionBudgets.
    Evict,
}

/// Which Argo CD refresh `refresh` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefreshKind {
    #[default]
    Normal,
    Hard,
}

impl RefreshKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshKind::Normal => "normal",
            RefreshKind::Hard => "hard",
        }
    }
}

/// One validated entry of the annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerTarget {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// `None` means the NVJ's own namespace.
    pub namespace: Option<String>,
    pub action: TriggerAction,
    /// `strategy` (restart only): `rollout` (default) or `evict`.
    pub strategy: RestartStrategy,
    /// `refresh` (refresh only): `normal` (default) or `hard`.
    pub refresh: RefreshKind,
    /// Other keys of the entry, kept for forward compatibility (scalars, as text).
    pub extra: BTreeMap<String, String>,
}

/// The API group of an `apiVersion` (empty for the core group).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

impl TriggerTarget {
    /// The API group of `apiVersion` (empty for the core group).
    pub fn group(&self) -> &str {
        group_of(&self.api_version)
    }

    /// The target namespace, defaulting to the NVJ's.
    pub fn namespace_or<'a>(&'a self, nvj_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(nvj_namespace)
    }
}

/// Why the annotation was rejected. Nothing is done for a rejected annotation: not even its
/// valid entries, so a typo never half-applies a list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerSpecError {
    #[error("{ON}: value is {len} bytes, larger than the {max} bytes allowed", ON = super::ON_SUCCESS_TRIGGER)]
    TooLarge { len: usize, max: usize },
    #[error("{ON}: not valid YAML: {0}", ON = super::ON_SUCCESS_TRIGGER)]
    Yaml(String),
    #[error("{ON}: expected a YAML list of targets, found {0}", ON = super::ON_SUCCESS_TRIGGER)]
    NotAList(&'static str),
    #[error("{ON}: {count} targets, more than the {max} allowed", ON = super::ON_SUCCESS_TRIGGER)]
    TooMany { count: usize, max: usize },
    #[error("{ON}: entry {index}{label}: field `{field}`: {problem}", ON = super::ON_SUCCESS_TRIGGER)]
    Entry {
        /// Zero-based position in the list.
        index: usize,
        /// ` (name "x")` when the entry has a usable name, to find it in a long list.
        label: String,
        field: String,
        problem: String,
    },
}

impl TriggerSpecError {
    /// The field the error is about, when it is about one entry's field.
    pub fn field(&self) -> Option<&str> {
        match self {
            TriggerSpecError::Entry { field, .. } => Some(field),
            _ => None,
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() > MAX {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    } else {
        s.to_string()
    }
}

/// RFC 1123 subdomain, as Kubernetes object names are.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// RFC 1123 label, as namespace names are.
fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && is_dns_subdomain(s)
}

fn is_api_version(s: &str) -> bool {
    let (group, version) = match s.split_once('/') {
        Some((g, v)) => (Some(g), v),
        None => (None, s),
    };
    let version_ok = !version.is_empty()
        && version
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && version.starts_with('v');
    version_ok && group.is_none_or(is_dns_subdomain)
}

fn is_kind(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Parses and validates the annotation value. Total: any input gives targets or an error.
pub fn parse_on_success_trigger(value: &str) -> Result<Vec<TriggerTarget>, TriggerSpecError> {
    if value.len() > MAX_TRIGGER_ANNOTATION_BYTES {
        return Err(TriggerSpecError::TooLarge {
            len: value.len(),
            max: MAX_TRIGGER_ANNOTATION_BYTES,
        });
    }
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value = serde_saphyr::from_str_with_options(value, yaml_options())
        .map_err(|e| TriggerSpecError::Yaml(shorten_error(&e.to_string())))?;
    let entries = match doc {
        Value::Array(entries) => entries,
        Value::Null => return Ok(Vec::new()),
        other => return Err(TriggerSpecError::NotAList(type_name(&other))),
    };
    if entries.len() > MAX_TRIGGERS {
        return Err(TriggerSpecError::TooMany {
            count: entries.len(),
            max: MAX_TRIGGERS,
        });
    }
    let mut targets: Vec<TriggerTarget> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let target = parse_entry(index, entry)?;
        if let Some(first) = targets.iter().position(|t| {
            t.kind == target.kind
                && t.name == target.name
                && t.namespace == target.namespace
                && t.action == target.action
        }) {
            return Err(TriggerSpecError::Entry {
                index,
                label: format!(" (name {:?})", target.name),
                field: "name".into(),
                problem: format!("repeats entry {first} (same kind, name, namespace and action)"),
            });
        }
        targets.push(target);
    }
    Ok(targets)
}

/// The parser's limits for an annotation of at most 50 entries: YAML 1.2 core booleans only (a
/// namespace called `n` or `yes` stays a string), and an alias may replay at most as many events
/// as a full annotation holds - the library's default (a million) lets an alias bomb within 64 KiB
/// take seconds before it is refused.
fn yaml_options() -> serde_saphyr::Options {
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = 20_000;
    serde_saphyr::options! { strict_booleans: true, alias_limits: alias_limits }
}

fn shorten_error(message: &str) -> String {
    // Parser messages can quote the input; keep them to one readable line.
    let one_line = message.lines().next().unwrap_or(message);
    if one_line.chars().count() > 300 {
        format!("{}...", one_line.chars().take(300).collect::<String>())
    } else {
        one_line.to_string()
    }
}

fn parse_entry(index: usize, entry: &Value) -> Result<TriggerTarget, TriggerSpecError> {
    let map = match entry {
        Value::Object(map) => map,
        other => {
            return Err(TriggerSpecError::Entry {
                index,
                label: String::new(),
                field: "(entry)".into(),
                problem: format!(
                    "expected a mapping with apiVersion, kind, name and action, found {}",
                    type_name(other)
                ),
            });
        }
    };
    let label = match map.get("name") {
        Some(Value::String(n)) if !n.is_empty() => format!(" (name {:?})", shorten(n)),
        _ => String::new(),
    };
    let err = |field: &str, problem: String| TriggerSpecError::Entry {
        index,
        label: label.clone(),
        field: field.to_string(),
        problem,
    };
    // Names may be all digits, which YAML reads as numbers: accept integer scalars as text.
    let text = |field: &str, allow_number: bool| -> Result<Option<String>, TriggerSpecError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if allow_number && (n.is_u64() || n.is_i64()) => {
                Ok(Some(n.to_string()))
            }
            Some(other) => Err(err(
                field,
                format!(
                    "expected a string, found {} (quote the value)",
                    type_name(other)
                ),
            )),
        }
    };
    let required = |field: &str, allow_number: bool| -> Result<String, TriggerSpecError> {
        match text(field, allow_number)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(err(field, "is required".into())),
        }
    };

    let api_version = required("apiVersion", false)?;
    if !is_api_version(&api_version) {
        return Err(err(
            "apiVersion",
            format!(
                "{:?} is not an API version such as \"apps/v1\"",
                shorten(&api_version)
            ),
        ));
    }
    let kind = required("kind", false)?;
    if !is_kind(&kind) {
        return Err(err(
            "kind",
            format!(
                "{:?} is not a Kubernetes kind such as \"Deployment\"",
                shorten(&kind)
            ),
        ));
    }
    let name = required("name", true)?;
    if !is_dns_subdomain(&name) {
        return Err(err(
            "name",
            format!(
                "{:?} is not a valid object name (lower-case RFC 1123 subdomain)",
                shorten(&name)
            ),
        ));
    }
    let namespace = text("namespace", true)?;
    if let Some(ns) = namespace.as_deref().filter(|ns| !is_dns_label(ns)) {
        return Err(err(
            "namespace",
            format!(
                "{:?} is not a valid namespace name (lower-case RFC 1123 label)",
                shorten(ns)
            ),
        ));
    }
    let action = match required("action", false)?.as_str() {
        "restart" => TriggerAction::Restart,
        "sync" => TriggerAction::Sync,
        "refresh" => TriggerAction::Refresh,
        "reconcile" => TriggerAction::Reconcile,
        other => {
            return Err(err(
                "action",
                format!(
                    "unknown action {:?}; expected restart, sync, refresh or reconcile",
                    shorten(other)
                ),
            ));
        }
    };
    let strategy = match text("strategy", false)?.as_deref() {
        None | Some("rollout") => RestartStrategy::Rollout,
        Some("evict") if action == TriggerAction::Restart => RestartStrategy::Evict,
        Some("evict") => {
            return Err(err(
                "strategy",
                format!("only applies to action restart, not {action}"),
            ));
        }
        Some(other) => {
            return Err(err(
                "strategy",
                format!(
                    "unknown strategy {:?}; expected rollout or evict",
                    shorten(other)
                ),
            ));
        }
    };
    let refresh = match text("refresh", false)?.as_deref() {
        None | Some("normal") => RefreshKind::Normal,
        Some("hard") if action == TriggerAction::Refresh => RefreshKind::Hard,
        Some("hard") => {
            return Err(err(
                "refresh",
                format!("only applies to action refresh, not {action}"),
            ));
        }
        Some(other) => {
            return Err(err(
                "refresh",
                format!(
                    "unknown refresh {:?}; expected normal or hard",
                    shorten(other)
                ),
            ));
        }
    };
    if action == TriggerAction::Sync
        && !(kind == "Application" && api_version.starts_with("argoproj.io/"))
    {
        return Err(err(
            "action",
            format!("sync applies to argoproj.io Applications only, not {api_version} {kind}"),
        ));
    }
    if action == TriggerAction::Reconcile
        && !group_of(&api_version).ends_with(crate::foreign::flux::FLUX_GROUP_SUFFIX)
    {
        return Err(err(
            "action",
            format!(
                "reconcile applies to Flux objects (*.toolkit.fluxcd.io) only, not {api_version} {kind}; use restart, sync or refresh"
            ),
        ));
    }

    let mut extra = BTreeMap::new();
    for (key, value) in map {
        if matches!(
            key.as_str(),
            "apiVersion" | "kind" | "name" | "namespace" | "action" | "strategy" | "refresh"
        ) {
            continue;
        }
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(err(
                    key,
                    format!("extra keys must be scalars, found {}", type_name(other)),
                ));
            }
        };
        extra.insert(key.clone(), text);
    }

    Ok(TriggerTarget {
        api_version,
        kind,
        name,
        namespace,
        action,
        strategy,
        refresh,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_full_list() {
        let v = r#"
- apiVersion: serving.kserve.io/v1beta1
  kind: InferenceService
  name: fraud-model
  action: restart
- apiVersion: apps/v1
  kind: Deployment
  name: api
  action: restart
  strategy: evict
  note: rolled by training
- apiVersion: argoproj.io/v1alpha1
  kind: Application
  name: serving
  namespace: argocd
  action: refresh
  refresh: hard
"#;
        let t = parse_on_success_trigger(v).expect("valid list");
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].group(), "serving.kserve.io");
        assert_eq!(t[0].namespace_or("team"), "team");
        assert_eq!(t[1].strategy, RestartStrategy::Evict);
        assert_eq!(
            t[1].extra.get("note").map(String::as_str),
            Some("rolled by training")
        );
        assert_eq!(t[2].refresh, RefreshKind::Hard);
        assert_eq!(t[2].namespace.as_deref(), Some("argocd"));
    }

    #[test]
    fn flow_style_json_is_yaml_too() {
        let t = parse_on_success_trigger(
            r#"[{"apiVersion":"v1","kind":"ConfigMap","name":"123","action":"refresh"}]"#,
        )
        .expect("json is yaml");
        assert_eq!(t[0].group(), "");
        assert_eq!(t[0].name, "123");
    }

    #[test]
    fn reconcile_is_for_flux_objects() {
        let t = parse_on_success_trigger(
            "- {apiVersion: kustomize.toolkit.fluxcd.io/v1, kind: Kustomization, name: serving, namespace: flux-system, action: reconcile}",
        )
        .expect("valid");
        assert_eq!(t[0].action, TriggerAction::Reconcile);
        assert_eq!(t[0].group(), "kustomize.toolkit.fluxcd.io");
        let (_, field, problem) =
            entry_err("- {apiVersion: apps/v1, kind: Deployment, name: api, action: reconcile}");
        assert_eq!(field, "action");
        assert!(
            problem.contains("reconcile applies to Flux objects (*.toolkit.fluxcd.io) only, not apps/v1 Deployment"),
            "{problem}"
        );
    }

    fn entry_err(v: &str) -> (usize, String, String) {
        match parse_on_success_trigger(v) {
            Err(TriggerSpecError::Entry {
                index,
                field,
                problem,
                ..
            }) => (index, field, problem),
            other => panic!("expected an entry error for {v:?}, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let ok = "- {apiVersion: apps/v1, kind: Deployment, name: a, action: restart}\n";
        let (i, f, p) = entry_err(&format!(
            "{ok}- {{apiVersion: apps/v1, kind: Deployment, name: b, action: restrat}}"
        ));
        assert_eq!((i, f.as_str()), (1, "action"));
        assert!(
            p.contains("restrat") && p.contains("restart, sync, refresh or reconcile"),
            "{p}"
        );
        assert_eq!(
            entry_err("- {apiVersion: apps/v1, kind: Deployment, action: restart}").1,
            "name"
        );
        assert_eq!(
            entry_err("- {kind: Deployment, name: a, action: restart}").1,
            "apiVersion"
        );
        assert_eq!(
            entry_err("- {apiVersion: apps/v1, kind: deployment, name: a, action: restart}").1,
            "kind"
        );
        assert_eq!(
            entry_err("- {apiVersion: apps/v1, kind: Deployment, name: A_b, action: restart}").1,
            "name"
        );
        assert_eq!(entry_err("- {apiVersion: apps/v1, kind: Deployment, name: a, namespace: x.y, action: restart}").1, "namespace");
        assert_eq!(
            entry_err("- {apiVersion: apps/v1, kind: Deployment, name: a, action: sync}").1,
            "action"
        );
        assert_eq!(entry_err("- {apiVersion: apps/v1, kind: Deployment, name: a, action: restart, strategy: kill}").1, "strategy");
        assert_eq!(
            entry_err(
                "- {apiVersion: apps/v1, kind: Deployment, name: a, action: restart, x: [1]}"
            )
            .1,
            "x"
        );
        assert_eq!(entry_err("- just a string").1, "(entry)");
        let (i, f, p) = entry_err(
            "- {apiVersion: v1, kind: Pod, name: a, action: restart}\n- {apiVersion: v1, kind: Pod, name: a, action: restart}",
        );
        assert_eq!((i, f.as_str()), (1, "name"));
        assert!(p.contains("repeats entry 0"));
    }

    #[test]
    fn whole_value_errors() {
        assert!(matches!(
            parse_on_success_trigger("a: [unclosed"),
            Err(TriggerSpecError::Yaml(_))
        ));
        assert!(matches!(
            parse_on_success_trigger("kind: Deployment"),
            Err(TriggerSpecError::NotAList("a mapping"))
        ));
        assert!(matches!(
            parse_on_success_trigger(&"x".repeat(10 * 1024 * 1024)),
            Err(TriggerSpecError::TooLarge { .. })
        ));
        let many: String = (0..51)
            .map(|i| format!("- {{apiVersion: v1, kind: Pod, name: p{i}, action: restart}}\n"))
            .collect();
        assert!(matches!(
            parse_on_success_trigger(&many),
            Err(TriggerSpecError::TooMany { count: 51, .. })
        ));
        assert_eq!(parse_on_success_trigger(""), Ok(vec![]));
        assert_eq!(parse_on_success_trigger("[]"), Ok(vec![]));
    }

    #[test]
    fn display_names_annotation_entry_and_field() {
        let e = parse_on_success_trigger(
            "- {apiVersion: apps/v1, kind: Deployment, name: api, action: nuke}",
        )
        .expect_err("invalid");
        let text = e.to_string();
        assert!(
            text.starts_with(
                "mlops.dev/on-success-trigger: entry 0 (name \"api\"): field `action`"
            ),
            "{text}"
        );
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]";
        assert!(parse_on_success_trigger(bomb).is_err());
    }

    /// Hostile inputs a user (or a broken tool) can put in the annotation: each is rejected
    /// with an error, quickly, without a panic or a blown stack.
    #[test]
    fn hostile_inputs_are_rejected_quickly() {
        let mut garbage = Vec::with_capacity(10 << 20);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while garbage.len() < 10 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            garbage.extend_from_slice(&x.to_le_bytes());
        }
        let garbage = String::from_utf8_lossy(&garbage).into_owned();
        let laughs = {
            let mut y = String::from(
                "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
            );
            for i in 1..30 {
                let prev = if i == 1 {
                    "a".to_string()
                } else {
                    format!("a{}", i - 1)
                };
                y.push_str(&format!("a{i}: &a{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
            }
            y
        };
        let cases = [
            ("10 MB of random bytes", garbage),
            (
                "10 MB of one valid entry repeated",
                "- {apiVersion: apps/v1, kind: Deployment, name: m, action: restart}\n"
                    .repeat(150_000),
            ),
            ("deeply nested flow sequences", "[".repeat(60_000)),
            (
                "deeply nested block mappings",
                (0..300).map(|i| format!("{}k:\n", " ".repeat(i))).collect(),
            ),
            ("deeply nested flow mappings", "{a: ".repeat(15_000)),
            ("an alias bomb", laughs),
            (
                "a NUL and control characters",
                "- \u{0}\u{1b}[31m: \u{7f}".into(),
            ),
        ];
        for (what, input) in cases {
            let started = std::time::Instant::now();
            let result = std::panic::catch_unwind(|| parse_on_success_trigger(&input));
            assert!(matches!(result, Ok(Err(_))), "{what}: must be an error");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{what}: took {:?}",
                started.elapsed()
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_text(s in "\\PC{0,300}") { let _ = parse_on_success_trigger(&s); }

        #[test]
        fn never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..8192)) {
            let _ = parse_on_success_trigger(&String::from_utf8_lossy(&b));
        }

        /// Valid entries with random damage: an error naming an entry or the whole, never a panic.
        #[test]
        fn never_panics_on_damaged_entries(cut in 0usize..120, insert in "\\PC{0,4}") {
            let mut v = String::from("- apiVersion: apps/v1\n  kind: Deployment\n  name: m\n  action: restart\n- {apiVersion: argoproj.io/v1alpha1, kind: Application, name: a, action: sync}\n");
            let at = v.char_indices().map(|(i, _)| i).nth(cut % v.chars().count()).unwrap_or(0);
            v.insert_str(at, &insert);
            let _ = parse_on_success_trigger(&v);
        }

        #[test]
        fn never_panics_on_yaml_like(s in "[-:\\[\\]{}, \\n&*!|>'\"a-zA-Z0-9]{0,200}") { let _ = parse_on_success_trigger(&s); }

        #[test]
        fn valid_entries_round_trip(name in "[a-z][a-z0-9-]{0,20}[a-z0-9]", ns in "[a-z][a-z0-9]{0,10}|n|y|yes|no|on|off", act in 0usize..3) {
            let action = ["restart", "sync", "refresh"][act];
            let (api, kind) = if action == "sync" { ("argoproj.io/v1alpha1", "Application") } else { ("apps/v1", "Deployment") };
            let v = format!("- apiVersion: {api}\n  kind: {kind}\n  name: {name}\n  namespace: {ns}\n  action: {action}\n");
            let t = parse_on_success_trigger(&v).expect("generated entry is valid");
            prop_assert_eq!(&t[0].name, &name);
            prop_assert_eq!(t[0].namespace.as_deref(), Some(ns.as_str()));
            prop_assert_eq!(t[0].action.as_str(), action);
        }
    }
}
