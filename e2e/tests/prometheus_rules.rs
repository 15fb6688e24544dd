//! The event-notifier chart's PrometheusRule, rendered by helm and tested by Prometheus's own
//! `promtool test rules` (built by `hack/build-binaries.sh promtool`) on synthetic series of our
//! metrics: a failed validation alerts, then stops; a controller that stops exposing metrics,
//! one without a leader and one whose reconciles fail alert after their `for`.

use std::process::Command;

use nbg_e2e::Cluster;
use nbg_e2e::harness::cluster::repo_root;
use nbg_e2e::harness::process::{built_tool, render_chart_documents};
use serde_json::json;

#[test]
fn the_alerts_fire_when_they_should() {
    let cluster = Cluster::get();
    let docs = render_chart_documents(
        &cluster,
        &repo_root().join("charts/event-notifier"),
        "en",
        "notebook-gitops",
        &[
            "prometheusRule.enabled=true",
            "prometheusRule.controllers={nvj-validator,event-notifier}",
        ],
    );
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let dir = repo_root().join("target/promtool");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("rules.json"),
        json!({"groups": rule["spec"]["groups"]}).to_string(),
    )
    .expect("rules");
    let build = |c: &str| json!({"series": format!("nbg_build_info{{controller=\"{c}\",version=\"0.1.0\"}}"), "values": "1x40"});
    let tests = json!({
        "rule_files": ["rules.json"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": "nbg_notifications_total{type=\"validation-failure\"}", "values": "0 0 0 1x30"},
                    build("nvj-validator"),
                    build("event-notifier"),
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "NotebookValidationFailed", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "NotebookValidationFailed", "exp_alerts": [{
                        "exp_labels": {"severity": "warning"},
                        "exp_annotations": {
                            "summary": "1 notebook validation(s) failed in the last 10 minutes",
                            "description": "See the failures with: kubectl get events -A -l mlops.dev/notification-type=validation-failure"}}]},
                    {"eval_time": "20m", "alertname": "NotebookValidationFailed", "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "NotebookGitopsControllerDown", "exp_alerts": []}
                ]
            },
            {
                "interval": "1m",
                "input_series": [
                    {"series": "nbg_build_info{controller=\"nvj-validator\",version=\"0.1.0\"}", "values": "1x40"},
                    {"series": "nbg_build_info{controller=\"event-notifier\",version=\"0.1.0\"}", "values": "1x4 stale"},
                    {"series": "nbg_leader{controller=\"nvj-validator\"}", "values": "0x40"},
                    {"series": "nbg_reconciles_total{controller=\"event-notifier\"}", "values": "0+60x40"},
                    {"series": "nbg_reconcile_errors_total{controller=\"event-notifier\",error=\"Kube\"}", "values": "0+30x40"}
                ],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "NotebookGitopsControllerDown", "exp_alerts": []},
                    {"eval_time": "12m", "alertname": "NotebookGitopsControllerDown", "exp_alerts": [{
                        "exp_labels": {"severity": "critical", "controller": "event-notifier"},
                        "exp_annotations": {
                            "summary": "event-notifier has not been scraped for 5 minutes",
                            "description": "No replica of event-notifier exposes metrics: it is down, crash-looping or not scraped."}}]},
                    {"eval_time": "3m", "alertname": "NotebookGitopsNoLeader", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "NotebookGitopsNoLeader", "exp_alerts": [{
                        "exp_labels": {"severity": "critical", "controller": "nvj-validator"},
                        "exp_annotations": {
                            "summary": "No replica of nvj-validator holds its lease",
                            "description": "nvj-validator runs but none of its replicas acts (it cannot renew its Lease; check the API server and its RBAC)."}}]},
                    {"eval_time": "10m", "alertname": "NotebookGitopsReconcileErrors", "exp_alerts": []},
                    {"eval_time": "30m", "alertname": "NotebookGitopsReconcileErrors", "exp_alerts": [{
                        "exp_labels": {"severity": "warning", "controller": "event-notifier"},
                        "exp_annotations": {
                            "summary": "event-notifier: 50% of reconciles fail",
                            "description": "See nbg_reconcile_errors_total by error, and the controller's log."}}]}
                ]
            }
        ]
    });
    std::fs::write(dir.join("tests.json"), tests.to_string()).expect("tests");
    let out =
        Command::new(built_tool("promtool").expect("promtool (hack/build-binaries.sh promtool)"))
            .current_dir(&dir)
            .args(["test", "rules", "tests.json"])
            .output()
            .expect("promtool");
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
