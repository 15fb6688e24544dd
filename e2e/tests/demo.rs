//! `just demo`'s scenario as a test, so the README's first command cannot rot: both acts play
//! out on the local control plane exactly as the demo shows them.

use nbg_e2e::demo::{self, DemoConfig, Timeline};
use nbg_e2e::{Cluster, TestNamespace};

#[tokio::test]
async fn the_demo_plays_both_acts() {
    let cluster = Cluster::get();
    let ns = TestNamespace::new(&cluster, "demo").await;
    let argo = TestNamespace::new(&cluster, "demo-argocd").await;
    let config = DemoConfig {
        namespace: ns.name.clone(),
        argocd_namespace: argo.name.clone(),
        real_kserve: true,
    };
    let summary = demo::run(&cluster, &config, &Timeline::new())
        .await
        .expect("the demo runs");
    summary.print();
    assert!(summary.as_promised(), "{summary:#?}");
    assert!(
        summary.act1_comparison.starts_with("Matched"),
        "{}",
        summary.act1_comparison
    );
    assert!(
        summary.act2_message.contains("KeyError")
            && summary.act2_message.contains("merchant_category"),
        "{}",
        summary.act2_message
    );
}
