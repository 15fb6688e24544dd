//! `just demo`'s scenario as tests, so the README's first command cannot rot: the acts
//! play out exactly as the demo shows them, each on a control plane of its own with a real node
//! (the validation pods and the model server in containers): with the real Argo CD and KServe,
//! and with both played (`--no-argocd --no-kserve`).

use nbg_e2e::demo::{self, DemoConfig, DemoSummary, Timeline};
use nbg_e2e::harness::real_node::RealNode;

fn check(summary: &DemoSummary) {
    summary.print();
    assert!(summary.as_promised(), "{summary:#?}");
    assert!(
        summary.act1_comparison.starts_with("Matched"),
        "{}",
        summary.act1_comparison
    );
    assert!(
        summary.act3_message.contains("KeyError")
            && summary.act3_message.contains("merchant_category"),
        "{}",
        summary.act3_message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_plays_its_acts_with_the_real_argo_cd_and_kserve() {
    let node = RealNode::start("demo-argocd").expect("a control plane with a real node");
    let plane = &node.plane;
    let config = DemoConfig {
        namespace: "fraud-detection".into(),
        argocd_namespace: "argocd".into(),
        real_kserve: true,
        real_argocd: true,
    };
    let summary = demo::run(&plane.cluster, &config, &Timeline::new())
        .await
        .expect("the demo runs");
    check(&summary);
    assert!(
        summary
            .act1_restart
            .contains("created after the run completed (not restarted)"),
        "wave 4 held until the run succeeded: {}",
        summary.act1_restart
    );
    assert!(
        summary.act3_health.contains("KeyError"),
        "Argo CD shows our message: {}",
        summary.act3_health
    );
}

#[tokio::test]
async fn the_demo_plays_its_acts_without_argo_cd_and_kserve() {
    let node = RealNode::start("demo-played").expect("a control plane with a real node");
    let config = DemoConfig {
        namespace: "fraud-detection".into(),
        argocd_namespace: "argocd".into(),
        real_kserve: false,
        real_argocd: false,
    };
    let summary = demo::run(&node.plane.cluster, &config, &Timeline::new())
        .await
        .expect("the demo runs");
    check(&summary);
}
