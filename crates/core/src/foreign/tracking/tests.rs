use super::*;

fn meta(annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> ObjectMeta {
    let map = |p: &[(&str, &str)]| {
        Some(
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    ObjectMeta {
        name: Some("a".into()),
        namespace: Some("ml".into()),
        annotations: map(annotations),
        labels: map(labels),
        ..Default::default()
    }
}

fn cm(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tracking(pairs: &[(&str, &str)]) -> Tracking {
    Tracking::from_argocd_cm(
        Some(&cm(pairs)),
        &TrackingOverrides::default(),
        "argocd",
        SettingsSource::ArgocdCm,
    )
    .expect("valid settings")
}

fn app(ns: &str, name: &str) -> Option<AppRef> {
    Some(AppRef {
        namespace: ns.into(),
        name: name.into(),
    })
}

const NVJ_ID: &str = "training:mlops.mlops.dev/NotebookValidationJob:ml/a";

#[test]
fn annotation_tracking_reads_the_tracking_id_as_argocd_does() {
    let t = tracking(&[(TRACKING_METHOD_KEY, "annotation")]);
    let id = |v: &str| meta(&[(ARGOCD_TRACKING_ID, v)], &[]);
    assert_eq!(t.application(&id(NVJ_ID)), app("argocd", "training"));
    assert_eq!(
        t.application(&id(
            "team-a_training:mlops.mlops.dev/NotebookValidationJob:ml/a"
        )),
        app("team-a", "training")
    );
    assert_eq!(t.application(&id("no-colon")), None);
    assert_eq!(t.application(&id(":x")), None);
    assert_eq!(t.application(&id("_x:y")), None);
    // The label does not count with annotation tracking.
    assert_eq!(
        t.application(&meta(&[], &[(DEFAULT_LABEL_KEY, "training")])),
        None
    );
}

#[test]
fn label_tracking_reads_the_configured_key_and_the_instance_name() {
    let key = "argocd.argoproj.io/instance";
    let t = tracking(&[(TRACKING_METHOD_KEY, "label"), (INSTANCE_LABEL_KEY, key)]);
    assert_eq!(t.label_key, key);
    assert_eq!(
        t.application(&meta(&[], &[(key, "training")])),
        app("argocd", "training")
    );
    // An Application outside Argo CD's namespace: `<namespace>_<app>`, as in the annotation.
    assert_eq!(
        t.application(&meta(&[], &[(key, "team-a_training")])),
        app("team-a", "training")
    );
    // The default key is not this installation's; the annotation does not count.
    assert_eq!(
        t.application(&meta(
            &[(ARGOCD_TRACKING_ID, NVJ_ID)],
            &[(DEFAULT_LABEL_KEY, "x")]
        )),
        None
    );
    assert_eq!(
        t.instance_name(&AppRef {
            namespace: "team-a".into(),
            name: "training".into()
        }),
        "team-a_training"
    );
}

#[test]
fn annotation_and_label_tracking_is_decided_by_the_annotation() {
    let t = tracking(&[(TRACKING_METHOD_KEY, "annotation+label")]);
    assert_eq!(
        t.application(&meta(
            &[(ARGOCD_TRACKING_ID, "serving:/ConfigMap:ml/x")],
            &[(DEFAULT_LABEL_KEY, "training")]
        )),
        app("argocd", "serving")
    );
    assert_eq!(
        t.application(&meta(&[], &[(DEFAULT_LABEL_KEY, "training")])),
        None
    );
}

#[test]
fn without_a_method_in_argocd_cm_the_annotation_counts_and_else_the_label() {
    // Argo CD 3 reads the annotation, Argo CD 2 the label: argocd-cm does not say which runs.
    let t = tracking(&[]);
    assert_eq!(t.method, None);
    assert_eq!(
        t.application(&meta(
            &[(ARGOCD_TRACKING_ID, NVJ_ID)],
            &[(DEFAULT_LABEL_KEY, "other")]
        )),
        app("argocd", "training")
    );
    assert_eq!(
        t.application(&meta(&[], &[(DEFAULT_LABEL_KEY, "other")])),
        app("argocd", "other")
    );
}

#[test]
fn the_installation_id_must_match_the_annotations_as_argocd_requires() {
    let t = tracking(&[(INSTALLATION_ID_KEY, "prod")]);
    let ours = meta(
        &[
            (ARGOCD_TRACKING_ID, NVJ_ID),
            (INSTALLATION_ID_ANNOTATION, "prod"),
        ],
        &[],
    );
    let theirs = meta(
        &[
            (ARGOCD_TRACKING_ID, NVJ_ID),
            (INSTALLATION_ID_ANNOTATION, "staging"),
        ],
        &[],
    );
    let unmarked = meta(&[(ARGOCD_TRACKING_ID, NVJ_ID)], &[]);
    assert_eq!(t.application(&ours), app("argocd", "training"));
    assert_eq!(t.application(&theirs), None);
    assert_eq!(t.application(&unmarked), None);
    // Without an installation id, an annotation another installation wrote is not ours.
    let plain = tracking(&[(TRACKING_METHOD_KEY, "annotation")]);
    assert_eq!(plain.application(&theirs), None);
    assert_eq!(plain.application(&unmarked), app("argocd", "training"));
}

#[test]
fn overrides_win_and_a_misspelt_method_is_an_error_naming_the_key() {
    let overrides = TrackingOverrides {
        method: Some(TrackingMethod::Label),
        label_key: Some("team/app".into()),
        installation_id: None,
    };
    let t = Tracking::from_argocd_cm(
        Some(&cm(&[
            (TRACKING_METHOD_KEY, "annotation"),
            (INSTANCE_LABEL_KEY, "x/y"),
            (INSTALLATION_ID_KEY, "id"),
        ])),
        &overrides,
        "gitops",
        SettingsSource::ArgocdCm,
    )
    .expect("valid");
    assert_eq!(t.method, Some(TrackingMethod::Label));
    assert_eq!(t.label_key, "team/app");
    assert_eq!(t.installation_id, "id");
    assert!(!overrides.complete());
    let err = Tracking::from_argocd_cm(
        Some(&cm(&[(TRACKING_METHOD_KEY, "labels")])),
        &TrackingOverrides::default(),
        "argocd",
        SettingsSource::ArgocdCm,
    )
    .expect_err("misspelt");
    assert!(
        err.contains("argocd-cm in namespace argocd, application.resourceTrackingMethod: unknown tracking method \"labels\""),
        "{err}"
    );
}

#[test]
fn status_resources_decide_and_a_disagreement_is_named() {
    let key = "argocd.argoproj.io/instance";
    let t = tracking(&[(TRACKING_METHOD_KEY, "label"), (INSTANCE_LABEL_KEY, key)]);
    let application: Application = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "training", "namespace": "argocd"},
        "status": {"resources": [{"group": "mlops.mlops.dev", "kind": "NotebookValidationJob", "namespace": "ml", "name": "a"}]}
    }))
    .expect("app");
    let g = "mlops.mlops.dev";
    let k = "NotebookValidationJob";
    assert_eq!(
        t.attribution(&application, g, k, &meta(&[], &[(key, "training")])),
        Attribution::Managed
    );
    // A label naming the Application does not make an unlisted object its own.
    let mut unlisted = meta(&[], &[(key, "training")]);
    unlisted.name = Some("b".into());
    assert_eq!(
        t.attribution(&application, g, k, &unlisted),
        Attribution::NotListed
    );
    // Listed, but only the default key is set: the settings disagree with Argo CD's.
    let attribution = t.attribution(
        &application,
        g,
        k,
        &meta(&[], &[(DEFAULT_LABEL_KEY, "training")]),
    );
    assert_eq!(attribution, Attribution::ListedNotTracked { tracked: None });
    let message = t.mismatch_message(
        &AppRef::of(&application),
        "NotebookValidationJob ml/a",
        None,
    );
    assert!(message.contains("lists NotebookValidationJob ml/a in status.resources, but its tracking names no Application under label tracking (key argocd.argoproj.io/instance), from argocd-cm in argocd"), "{message}");
    assert!(
        message.contains("application.instanceLabelKey"),
        "{message}"
    );
}
