//! The judge's rules, on NVJs built here.

use super::*;

fn nvj(
    name: &str,
    generation: i64,
    annotations: serde_json::Value,
    status: serde_json::Value,
) -> NotebookValidationJob {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlops.mlops.dev/v1alpha1",
        "kind": "NotebookValidationJob",
        "metadata": {"name": name, "namespace": "ml", "generation": generation,
                     "annotations": annotations, "labels": {"team": "a"}},
        "spec": {"notebook": {"git": {"url": "https://example.com/r.git", "ref": "main"}, "path": "a.ipynb"},
                 "podConfig": {"containerImage": "img"}},
        "status": status
    }))
    .expect("nvj")
}

fn complete(name: &str, block: &str) -> NotebookValidationJob {
    nvj(
        name,
        2,
        serde_json::json!({BLOCK_WAVE: block, WAVE_COMPLETE: "0", WAVE_GENERATION: "2"}),
        serde_json::json!({"phase": "Succeeded", "observedGeneration": 2}),
    )
}

fn running(name: &str, block: &str) -> NotebookValidationJob {
    nvj(
        name,
        2,
        serde_json::json!({BLOCK_WAVE: block}),
        serde_json::json!({"phase": "Running", "observedGeneration": 2}),
    )
}

fn by_block(b: i32) -> Query {
    Query {
        block_wave: Some(b),
        ..Default::default()
    }
}

#[test]
fn complete_when_every_match_is_marked_for_its_generation() {
    let nvjs = [
        complete("a", "5"),
        complete("b", "5"),
        running("other", "6"),
    ];
    let (entries, verdict) = judge(&by_block(5), &nvjs, 1);
    assert_eq!(verdict, Verdict::Complete);
    assert_eq!(entries.len(), 2);
}

#[test]
fn waits_for_the_running_one_and_says_its_phase() {
    let nvjs = [complete("a", "5"), running("b", "5")];
    let (entries, verdict) = judge(&by_block(5), &nvjs, 1);
    assert_eq!(verdict, Verdict::Waiting);
    assert_eq!(entries[1].state, State::Pending("phase Running".into()));
}

#[test]
fn a_failure_stops_the_wait_at_once_with_its_message() {
    let failed = nvj(
        "f",
        2,
        serde_json::json!({BLOCK_WAVE: "5", WAVE_FAILED: "0", WAVE_GENERATION: "2"}),
        serde_json::json!({"phase": "Failed", "observedGeneration": 2, "message": "cell 3 failed"}),
    );
    let nvjs = [running("a", "5"), failed];
    let (entries, verdict) = judge(&by_block(5), &nvjs, 1);
    assert_eq!(verdict, Verdict::Failed);
    assert_eq!(entries[1].state, State::Failed("cell 3 failed".into()));
}

#[test]
fn a_stale_mark_never_releases_a_waiter() {
    // The spec changed to generation 3; the mark and the status still describe generation 2.
    let stale = nvj(
        "a",
        3,
        serde_json::json!({WAVE_COMPLETE: "0", WAVE_GENERATION: "2"}),
        serde_json::json!({"phase": "Succeeded", "observedGeneration": 2}),
    );
    let (entries, verdict) = judge(&Query::default(), [&stale], 1);
    assert_eq!(verdict, Verdict::Waiting);
    let State::Pending(why) = &entries[0].state else {
        panic!("pending expected")
    };
    assert!(
        why.contains("generation 3 not picked up") && why.contains("mark is of generation 2"),
        "{why}"
    );
    // Even a stale failure mark does not fail the wait.
    let stale_failed = nvj(
        "a",
        3,
        serde_json::json!({WAVE_FAILED: "0", WAVE_GENERATION: "2"}),
        serde_json::json!({"phase": "Failed", "observedGeneration": 2}),
    );
    assert_eq!(
        judge(&Query::default(), [&stale_failed], 1).1,
        Verdict::Waiting
    );
}

#[test]
fn succeeded_but_unmarked_is_pending_and_names_wave_marker() {
    let unmarked = nvj(
        "a",
        2,
        serde_json::json!({}),
        serde_json::json!({"phase": "Succeeded", "observedGeneration": 2}),
    );
    let (entries, verdict) = judge(&Query::default(), [&unmarked], 1);
    assert_eq!(verdict, Verdict::Waiting);
    assert!(matches!(&entries[0].state, State::Pending(w) if w.contains("wave-marker")));
}

#[test]
fn the_tally_follows_changes_one_at_a_time() {
    let q = by_block(5);
    let mut tally = Tally::default();
    assert!(!tally.update(&q, "ml/a", Some(&running("a", "5"))));
    assert!(
        !tally.update(&q, "ml/other", Some(&running("other", "6"))),
        "not a match"
    );
    assert_eq!((tally.len(), tally.verdict(1)), (1, Verdict::Waiting));
    assert!(
        tally.update(&q, "ml/a", Some(&complete("a", "5"))),
        "just completed"
    );
    assert!(
        !tally.update(&q, "ml/a", Some(&complete("a", "5"))),
        "not again"
    );
    assert_eq!(tally.verdict(1), Verdict::Complete);
    assert_eq!(tally.verdict(2), Verdict::Waiting);
    // A new generation takes the completion back; a deletion removes the match.
    tally.update(&q, "ml/a", Some(&running("a", "5")));
    assert_eq!((tally.complete(), tally.verdict(1)), (0, Verdict::Waiting));
    tally.update(&q, "ml/a", None);
    assert!(tally.is_empty());
    tally.set("ml/x", Some(State::Invalid("unreadable".into())));
    assert_eq!(tally.verdict(0), Verdict::Failed);
    tally.set("ml/x", None);
    assert_eq!(tally.verdict(0), Verdict::Complete);
}

#[test]
fn require_stops_a_vacuous_pass() {
    let (entries, verdict) = judge(&by_block(5), std::iter::empty(), 1);
    assert_eq!((entries.len(), verdict), (0, Verdict::Waiting));
    let nvjs = [complete("a", "5")];
    assert_eq!(judge(&by_block(5), &nvjs, 2).1, Verdict::Waiting);
    assert_eq!(judge(&by_block(5), &nvjs, 1).1, Verdict::Complete);
}

#[test]
fn malformed_waves_are_errors_never_complete() {
    let bad = nvj(
        "bad",
        2,
        serde_json::json!({BLOCK_WAVE: "five", WAVE_COMPLETE: "0", WAVE_GENERATION: "2"}),
        serde_json::json!({"phase": "Succeeded", "observedGeneration": 2}),
    );
    let (entries, verdict) = judge(&by_block(5), [&bad], 1);
    assert_eq!(verdict, Verdict::Failed);
    assert!(
        matches!(&entries[0].state, State::Invalid(m) if m.contains(BLOCK_WAVE) && m.contains("five"))
    );
    let bad_wave = nvj(
        "bad",
        2,
        serde_json::json!({SYNC_WAVE: "1.5"}),
        serde_json::json!({}),
    );
    let q = Query {
        wave: Some(1),
        ..Default::default()
    };
    assert_eq!(judge(&q, [&bad_wave], 1).1, Verdict::Failed);
    // A malformed sync-wave does not drag an NVJ of another block wave into the wait.
    let other = nvj(
        "other",
        2,
        serde_json::json!({SYNC_WAVE: "x", BLOCK_WAVE: "6"}),
        serde_json::json!({}),
    );
    assert!(!matches(&by_block(5), &other));
}

#[test]
fn wave_and_application_select_by_what_the_application_lists_and_tracking() {
    use nbg_core::annotations::ARGOCD_TRACKING_ID;
    let in_app = nvj(
        "a",
        2,
        serde_json::json!({SYNC_WAVE: "2",
        ARGOCD_TRACKING_ID: "apps_training:mlops.mlops.dev/NotebookValidationJob:ml/a"}),
        serde_json::json!({}),
    );
    let labelled: NotebookValidationJob = {
        let mut n = nvj("b", 2, serde_json::json!({}), serde_json::json!({}));
        n.metadata.labels = Some(
            [(
                nbg_core::foreign::tracking::DEFAULT_LABEL_KEY.to_string(),
                "training".to_string(),
            )]
            .into(),
        );
        n
    };
    let listing = |ns: &str, names: &[&str]| -> Application {
        let resources: Vec<_> = names.iter().map(|n| serde_json::json!({"group": "mlops.mlops.dev", "kind": "NotebookValidationJob", "namespace": "ml", "name": n})).collect();
        serde_json::from_value(serde_json::json!({"metadata": {"name": "training", "namespace": ns}, "status": {"resources": resources}})).expect("app")
    };
    // argocd-cm sets no method: the annotation counts, else the label.
    let tracking = Arc::new(Tracking::defaults("argocd"));
    let q = |app: &str, live: Option<Application>| Query {
        application: Some(ManagedBy {
            live,
            ..ManagedBy::new(app, tracking.clone())
        }),
        ..Default::default()
    };
    assert!(matches(
        &q("apps/training", Some(listing("apps", &["a"]))),
        &in_app
    ));
    assert!(
        !matches(&q("apps/training", None), &in_app),
        "an Application not read yet manages nothing"
    );
    assert!(
        !matches(&q("apps/training", Some(listing("apps", &[]))), &in_app),
        "tracking alone is not enough: the Application must list it"
    );
    assert!(
        !matches(&q("training", Some(listing("argocd", &["a"]))), &in_app),
        "an Application in Argo CD's namespace is another one"
    );
    assert!(matches(
        &q("training", Some(listing("argocd", &["b"]))),
        &labelled
    ));
    let wave = |w| Query {
        wave: Some(w),
        ..Default::default()
    };
    assert!(matches(&wave(2), &in_app));
    assert!(!matches(&wave(0), &in_app));
    assert!(
        matches(&wave(0), &labelled),
        "no sync-wave is Argo CD's wave 0"
    );
}

#[test]
fn a_kustomization_selects_what_its_inventory_lists_and_the_labels_name() {
    let labelled = |kustomization: &str| {
        let mut n = nvj("a", 2, serde_json::json!({}), serde_json::json!({}));
        n.metadata.labels = Some(
            [
                (
                    flux::KUSTOMIZE_NAME_LABEL.to_string(),
                    kustomization.to_string(),
                ),
                (
                    flux::KUSTOMIZE_NAMESPACE_LABEL.to_string(),
                    "flux-system".to_string(),
                ),
            ]
            .into(),
        );
        n
    };
    let listing = |ids: &[&str]| -> FluxObject {
        let entries: Vec<_> = ids
            .iter()
            .map(|id| serde_json::json!({"id": id, "v": "v1alpha1"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "training", "namespace": "flux-system"},
            "status": {"inventory": {"entries": entries}}}))
        .expect("a Kustomization")
    };
    let q = |live: Option<FluxObject>| Query {
        kustomization: Some(KustomizedBy {
            live,
            ..KustomizedBy::new("training")
        }),
        ..Default::default()
    };
    let id = "ml_a_mlops.mlops.dev_NotebookValidationJob";
    assert!(matches(&q(Some(listing(&[id]))), &labelled("training")));
    assert!(
        !matches(&q(None), &labelled("training")),
        "a Kustomization not read yet manages nothing"
    );
    assert!(
        !matches(&q(Some(listing(&[]))), &labelled("training")),
        "labels alone are not enough: the inventory must list it"
    );
    assert!(!matches(&q(Some(listing(&[id]))), &labelled("other")));
    assert_eq!(
        KustomizedBy::new("team-a/serving").kustomization,
        KustomizationRef {
            namespace: "team-a".into(),
            name: "serving".into()
        }
    );
}
