//! wave-marker end to end, under its chart's RBAC, with the test playing nvj-validator (runs
//! marked Succeeded or Failed with its field manager):
//! - marks for success, failure, a new generation, no sync-wave, malformed waves, a deleted NVJ,
//!   with an Argo CD tracking id and a user annotation surviving every write;
//! - `wave-marker wait` under the chart's waiter RBAC: exit 0 / 1 / 2 / 3 with their messages,
//!   started before the NVJs exist, while they run and after they finished, and never released
//!   by a mark of the previous generation;
//! - 200 NVJs finishing while the controller is SIGKILLed at random points.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use nbg_core::annotations::{
    ARGOCD_TRACKING_ID, BLOCK_WAVE, COMPLETION_TIME, SYNC_WAVE, WAVE_COMPLETE, WAVE_FAILED,
    WAVE_GENERATION,
};
use nbg_core::nvj::{NotebookValidationJob, Phase};
use nbg_e2e::harness::cluster::eventually;
use nbg_e2e::harness::controller::{ChartedController, ControllerSpec};
use nbg_e2e::harness::nvj::{annotations, mark_finished, minimal};
use nbg_e2e::harness::process::service_account_kubeconfig;
use nbg_e2e::harness::waiter::Waiter;
use nbg_e2e::{Cluster, TestNamespace};

const WAITER: &str = "nvj-waiter";

async fn start_marker(cluster: &Cluster, ns: &str) -> ChartedController {
    ChartedController::start(
        cluster,
        ControllerSpec {
            name: "wave-marker",
            release_namespace: ns,
            namespaces: &[ns],
            values: &[
                format!("waiters[0].name={WAITER}"),
                format!("waiters[0].namespace={ns}"),
            ],
            args: &[],
        },
    )
    .await
}

async fn create(
    api: &Api<NotebookValidationJob>,
    name: &str,
    pairs: &[(&str, &str)],
) -> NotebookValidationJob {
    api.create(&PostParams::default(), &minimal(name, &annotations(pairs)))
        .await
        .expect("create the NVJ")
}

async fn finish(
    api: &Api<NotebookValidationJob>,
    name: &str,
    phase: Phase,
    message: &str,
) -> NotebookValidationJob {
    let nvj = api.get(name).await.expect("read the NVJ");
    mark_finished(api, &nvj, phase, message)
        .await
        .expect("write the run's status")
}

/// Changes the spec: a new generation, a new run.
async fn change_spec(
    api: &Api<NotebookValidationJob>,
    name: &str,
    path: &str,
) -> NotebookValidationJob {
    let patch = serde_json::json!({"spec": {"notebook": {"path": path}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("change the spec")
}

/// wave-marker's four annotations on the NVJ, as they are now.
fn marks(nvj: &NotebookValidationJob) -> BTreeMap<String, String> {
    let a = nvj.annotations();
    [WAVE_COMPLETE, WAVE_FAILED, COMPLETION_TIME, WAVE_GENERATION]
        .iter()
        .filter_map(|k| a.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect()
}

async fn wait_for_marks(
    api: &Api<NotebookValidationJob>,
    name: &str,
    what: &str,
    check: impl Fn(&BTreeMap<String, String>) -> bool,
) -> NotebookValidationJob {
    eventually(Duration::from_secs(20), what, || async {
        let nvj = api.get(name).await.ok()?;
        check(&marks(&nvj)).then_some(nvj)
    })
    .await
}

/// A `wave-marker wait` process, as a hook Job would run it with the waiter ServiceAccount.

#[tokio::test(flavor = "multi_thread")]
async fn marks_follow_each_run_and_touch_nothing_else() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "wm-marks").await;
    let client = cluster.client().await;
    let api: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);
    let controller = start_marker(&cluster, &ns.name).await;

    let tracking = format!(
        "training:mlops.mlops.dev/NotebookValidationJob:{}/train",
        ns.name
    );
    create(
        &api,
        "train",
        &[
            (SYNC_WAVE, "3"),
            (ARGOCD_TRACKING_ID, &tracking),
            ("team.example/owner", "fraud"),
        ],
    )
    .await;
    create(&api, "no-wave", &[]).await;
    create(&api, "bad-wave", &[(SYNC_WAVE, "three")]).await;
    create(&api, "bad-block", &[(BLOCK_WAVE, "2.5")]).await;

    // Running: no mark.
    finish(&api, "train", Phase::Running, "executing").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(marks(&api.get("train").await.expect("get")).is_empty());

    // Success: wave-complete with the run's completion time and generation.
    let done = finish(&api, "train", Phase::Succeeded, "all cells succeeded").await;
    let nvj = wait_for_marks(&api, "train", "wave-complete on train", |m| {
        m.contains_key(WAVE_COMPLETE)
    })
    .await;
    let completion = done
        .status
        .as_ref()
        .and_then(|s| s.completion_time.clone())
        .expect("completionTime");
    assert_eq!(
        marks(&nvj),
        annotations(&[
            (WAVE_COMPLETE, "3"),
            (COMPLETION_TIME, &completion.0.to_string()),
            (WAVE_GENERATION, "1")
        ])
    );
    let kept = nvj.annotations();
    assert_eq!(
        kept.get(ARGOCD_TRACKING_ID),
        Some(&tracking),
        "Argo CD's tracking id survives"
    );
    assert_eq!(
        kept.get("team.example/owner").map(String::as_str),
        Some("fraud")
    );
    // wave-marker owns exactly its annotations, nothing else of the object.
    let owned: Vec<String> = nvj
        .managed_fields()
        .iter()
        .filter(|m| m.manager.as_deref() == Some("wave-marker") && m.subresource.is_none())
        .flat_map(|m| serde_json::to_value(&m.fields_v1).ok())
        .flat_map(|v| {
            v.pointer("/f:metadata/f:annotations")
                .and_then(|a| a.as_object())
                .map(|a| a.keys().filter(|k| *k != ".").cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(owned.len(), 3, "{owned:?}");
    assert!(
        owned.iter().all(|k| k.starts_with("f:mlops.dev/")),
        "{owned:?}"
    );

    // A new generation: the mark goes at once, then the new result comes.
    change_spec(&api, "train", "b.ipynb").await;
    wait_for_marks(&api, "train", "the generation-1 mark removed", |m| {
        m.is_empty()
    })
    .await;
    finish(
        &api,
        "train",
        Phase::Failed,
        "cell 3 failed: KeyError 'amount'",
    )
    .await;
    let nvj = wait_for_marks(&api, "train", "wave-failed for generation 2", |m| {
        m.contains_key(WAVE_FAILED)
    })
    .await;
    let m = marks(&nvj);
    assert_eq!(
        (
            m.get(WAVE_FAILED).map(String::as_str),
            m.get(WAVE_GENERATION).map(String::as_str)
        ),
        (Some("3"), Some("2"))
    );
    assert!(!m.contains_key(WAVE_COMPLETE));
    assert_eq!(nvj.annotations().get(ARGOCD_TRACKING_ID), Some(&tracking));

    // No sync-wave: Argo CD's wave 0.
    finish(&api, "no-wave", Phase::Succeeded, "ok").await;
    wait_for_marks(&api, "no-wave", "wave-complete 0", |m| {
        m.get(WAVE_COMPLETE).map(String::as_str) == Some("0")
    })
    .await;

    // Malformed waves: no mark, a condition and a Warning Event naming the annotation.
    finish(&api, "bad-wave", Phase::Succeeded, "ok").await;
    finish(&api, "bad-block", Phase::Succeeded, "ok").await;
    for (name, annotation, value, reason) in [
        ("bad-wave", SYNC_WAVE, "three", "InvalidSyncWave"),
        ("bad-block", BLOCK_WAVE, "2.5", "InvalidBlockWave"),
    ] {
        let nvj = eventually(
            Duration::from_secs(20),
            "the WavesValid condition",
            || async {
                let nvj = api.get(name).await.ok()?;
                nvj.status
                    .as_ref()?
                    .condition("WavesValid")
                    .is_some()
                    .then_some(nvj)
            },
        )
        .await;
        let c = nvj
            .status
            .as_ref()
            .and_then(|s| s.condition("WavesValid"))
            .cloned()
            .expect("condition");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason));
        assert!(
            c.message.contains(annotation) && c.message.contains(value),
            "{}",
            c.message
        );
        assert!(marks(&nvj).is_empty(), "no mark on {name}");
        let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
        eventually(Duration::from_secs(10), "the Warning Event", || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .find(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                })
                .filter(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.note.as_deref().unwrap_or_default().contains(annotation)
                })
                .map(|_| ())
        })
        .await;
    }
    // Fixed: the condition goes and the mark comes.
    api.patch(
        "bad-wave",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"annotations": {SYNC_WAVE: "2"}}})),
    )
    .await
    .expect("fix the wave");
    let nvj = wait_for_marks(&api, "bad-wave", "the mark after the fix", |m| {
        m.get(WAVE_COMPLETE).map(String::as_str) == Some("2")
    })
    .await;
    eventually(Duration::from_secs(10), "the condition removed", || async {
        let nvj = api.get("bad-wave").await.ok()?;
        nvj.status
            .as_ref()?
            .condition("WavesValid")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        nvj.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(Phase::Succeeded)),
        "nvj-validator's status kept"
    );

    // A deleted NVJ: gone without a finalizer; the controller carries on.
    api.delete("no-wave", &Default::default())
        .await
        .expect("delete");
    eventually(Duration::from_secs(10), "no-wave deleted", || async {
        api.get_opt("no-wave").await.ok()?.is_none().then_some(())
    })
    .await;
    create(&api, "after-delete", &[]).await;
    finish(&api, "after-delete", Phase::Succeeded, "ok").await;
    wait_for_marks(&api, "after-delete", "a mark after a deletion", |m| {
        m.contains_key(WAVE_COMPLETE)
    })
    .await;

    // One write per transition: train had 3 transitions (complete, removed, failed), no-wave 1,
    // bad-wave 1 (condition) + 1 (mark) + 1 (condition removed), bad-block 1, after-delete 1.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let patches = controller
        .metric("nbg_api_requests_total{verb=\"patch\"}")
        .unwrap_or_default();
    assert_eq!(
        patches,
        9.0,
        "patches by wave-marker:\n{}",
        controller.metrics()
    );
    assert_eq!(
        controller.metric("nbg_wave_marks_total{result=\"WaveComplete\"}"),
        Some(4.0)
    );
    assert_eq!(
        controller.metric("nbg_wave_marks_total{result=\"WaveFailed\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_exits_0_1_2_3_and_ignores_stale_marks() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "wm-wait").await;
    let client = cluster.client().await;
    let api: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);
    let _controller = start_marker(&cluster, &ns.name).await;
    let kubeconfig = service_account_kubeconfig(&cluster, &ns.name, WAITER, "").await;
    let n = ns.name.as_str();

    // 0: started before the NVJs exist; they are created, run, then succeed.
    let mut before = Waiter::start(
        &kubeconfig,
        &[
            "--block-wave",
            "5",
            "-n",
            n,
            "--require",
            "2",
            "--timeout",
            "60s",
        ],
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    create(&api, "gate-a", &[(BLOCK_WAVE, "5")]).await;
    create(&api, "gate-b", &[(BLOCK_WAVE, "5"), (SYNC_WAVE, "1")]).await;
    create(&api, "other", &[(BLOCK_WAVE, "6")]).await;
    finish(&api, "gate-a", Phase::Running, "executing").await;
    finish(&api, "gate-a", Phase::Succeeded, "ok").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(before.is_running(), "one of the two is not complete yet");
    // Started while they run.
    let during = Waiter::start(
        &kubeconfig,
        &["--block-wave", "5", "-n", n, "--timeout", "60s"],
    );
    finish(&api, "gate-b", Phase::Succeeded, "ok").await;
    let (code, out) = before.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("complete  {n}/gate-a"))
            && out.contains(&format!("complete  {n}/gate-b")),
        "{out}"
    );
    assert!(out.contains("all 2 NVJs blocking wave 5 complete"), "{out}");
    let (code, out) = during.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{out}");
    // After they finished: at once.
    let started = std::time::Instant::now();
    let (code, out) = Waiter::start(
        &kubeconfig,
        &["--block-wave", "5", "-n", n, "--output", "json"],
    )
    .finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let last: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).expect("json result");
    assert_eq!(
        (last["result"].as_str(), last["complete"].as_u64()),
        (Some("complete"), Some(2))
    );

    // 1: a failure is reported at once, with its message, while another still runs.
    create(&api, "slow", &[(BLOCK_WAVE, "7")]).await;
    create(&api, "broken", &[(BLOCK_WAVE, "7")]).await;
    finish(&api, "slow", Phase::Running, "executing").await;
    let failing = Waiter::start(
        &kubeconfig,
        &["--block-wave", "7", "-n", n, "--timeout", "60s"],
    );
    finish(
        &api,
        "broken",
        Phase::Failed,
        "cell 4 failed: AssertionError: accuracy 0.71 < 0.9",
    )
    .await;
    let (code, out) = failing.finish(Duration::from_secs(20));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{n}/broken: cell 4 failed: AssertionError")),
        "{out}"
    );
    // A malformed block-wave is an error, never complete.
    create(&api, "typo", &[(BLOCK_WAVE, "eight")]).await;
    let (code, out) = Waiter::start(
        &kubeconfig,
        &["--name", "typo", "-n", n, "--timeout", "20s"],
    )
    .finish(Duration::from_secs(20));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("mlops.dev/block-wave") && out.contains("eight"),
        "{out}"
    );
    // Nobody can tell which wave it meant to block: every block-wave waiter fails on it.
    let (code, out) =
        Waiter::start(&kubeconfig, &["--block-wave", "7", "-n", n]).finish(Duration::from_secs(20));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{n}/typo")), "{out}");
    api.delete("typo", &Default::default())
        .await
        .expect("delete typo");

    // 2: timeout, naming what is pending and where it stands; and a selector matching nothing.
    let (code, out) = Waiter::start(&kubeconfig, &["--name", "slow", "-n", n, "--timeout", "2s"])
        .finish(Duration::from_secs(20));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("still pending: {n}/slow (phase Running)")),
        "{out}"
    );
    let (code, out) = Waiter::start(
        &kubeconfig,
        &["-l", "team=nobody", "-n", n, "--timeout", "2s"],
    )
    .finish(Duration::from_secs(20));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("found 0 of the 1 required NVJs with labels team=nobody"),
        "{out}"
    );

    // 3: RBAC (the waiter may not read another namespace), connection, usage.
    let (code, out) = Waiter::start(
        &kubeconfig,
        &["--name", "x", "-n", "kube-system", "--timeout", "20s"],
    )
    .finish(Duration::from_secs(20));
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains(
            "cannot list notebookvalidationjobs.mlops.mlops.dev in namespace \"kube-system\""
        ) && out.contains("forbidden"),
        "{out}"
    );
    let unreachable = std::env::temp_dir().join(format!("wm-unreachable-{}", std::process::id()));
    let admin = std::fs::read_to_string(&cluster.kubeconfig).expect("kubeconfig");
    let server_line = admin
        .lines()
        .find(|l| l.trim_start().starts_with("server:"))
        .expect("server line")
        .to_string();
    std::fs::write(
        &unreachable,
        admin.replace(&server_line, "    server: https://127.0.0.1:1"),
    )
    .expect("write");
    let (code, out) =
        Waiter::start(&unreachable, &["--name", "x", "-n", n]).finish(Duration::from_secs(30));
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("cannot list notebookvalidationjobs") && out.contains("127.0.0.1:1"),
        "{out}"
    );
    let (code, out) =
        Waiter::start(&kubeconfig, &["--block-wave", "two"]).finish(Duration::from_secs(10));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("--block-wave"), "{out}");

    // A stale mark never releases a waiter: spec change, then wait at once.
    create(&api, "retrain", &[(BLOCK_WAVE, "9")]).await;
    finish(&api, "retrain", Phase::Succeeded, "ok").await;
    wait_for_marks(&api, "retrain", "generation 1 marked", |m| {
        m.contains_key(WAVE_COMPLETE)
    })
    .await;
    change_spec(&api, "retrain", "v2.ipynb").await;
    let mut stale = Waiter::start(
        &kubeconfig,
        &["--block-wave", "9", "-n", n, "--timeout", "60s"],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        stale.is_running(),
        "released by a mark of generation 1:\n{}",
        stale.output()
    );
    finish(&api, "retrain", Phase::Succeeded, "ok").await;
    let (code, out) = stale.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{out}");
    let nvj = api.get("retrain").await.expect("get");
    assert_eq!(
        marks(&nvj).get(WAVE_GENERATION).map(String::as_str),
        Some("2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_200_finish_leaves_exactly_the_right_marks() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "wm-kill").await;
    let client = cluster.client().await;
    let api: Api<NotebookValidationJob> = Api::namespaced(client.clone(), &ns.name);
    let mut controller = start_marker(&cluster, &ns.name).await;
    const N: usize = 200;
    let expected = |i: usize| {
        if i.is_multiple_of(3) {
            Phase::Failed
        } else {
            Phase::Succeeded
        }
    };
    let mut created = Vec::new();
    for i in 0..N {
        let wave = (i % 5).to_string();
        created.push(create(&api, &format!("nvj-{i:03}"), &[(SYNC_WAVE, &wave)]).await);
    }
    // Finish them in batches while the controller is SIGKILLed at pseudo-random points.
    let mut seed: u64 = 0x5eed_u64 ^ u64::from(std::process::id());
    let mut kills = 0;
    for (batch, chunk) in created.chunks(20).enumerate() {
        let writes = chunk.iter().enumerate().map(|(j, nvj)| {
            let i = batch * 20 + j;
            let api = api.clone();
            async move {
                mark_finished(&api, nvj, expected(i), "done")
                    .await
                    .expect("finish");
            }
        });
        futures::future::join_all(writes).await;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 400)).await;
        if batch.is_multiple_of(2) {
            controller.kill();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(100 + seed % 300)).await;
            controller.restart();
        }
    }
    assert!(kills >= 5);
    let wrong = eventually(Duration::from_secs(60), "every NVJ marked", || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        let wrong: Vec<String> = list
            .items
            .iter()
            .filter(|nvj| {
                let i: usize = nvj.name_any()[4..].parse().unwrap_or(usize::MAX);
                let m = marks(nvj);
                let wave = (i % 5).to_string();
                let (want, other) = match expected(i) {
                    Phase::Failed => (WAVE_FAILED, WAVE_COMPLETE),
                    _ => (WAVE_COMPLETE, WAVE_FAILED),
                };
                !(m.get(want) == Some(&wave)
                    && !m.contains_key(other)
                    && m.get(WAVE_GENERATION).map(String::as_str) == Some("1"))
            })
            .map(|n| format!("{}: {:?}", n.name_any(), marks(n)))
            .collect();
        (list.items.len() == N && wrong.is_empty()).then_some(wrong)
    })
    .await;
    assert!(wrong.is_empty());
}
