//! Every case of every `health_test.yaml` runs in a sandbox equal to Argo CD's default and must
//! return exactly the status and message it names. Also: the sandbox really lacks `string` and
//! `math`, a script that uses them fails the suite, and no object makes a check return an
//! invalid status.

use nbg_argocd_health::random_objects::json_value;
use nbg_argocd_health::test_cases::{customizations_dir, test_cases};
use nbg_argocd_health::{Sandbox, all_checks};
use proptest::prelude::*;
use serde_json::json;

#[test]
fn every_case_of_every_health_test_passes_in_the_argocd_sandbox() {
    let sandbox = Sandbox::new().expect("sandbox");
    let mut cases = 0;
    for check in all_checks() {
        let dir = customizations_dir().join(check.dir);
        let on_disk = std::fs::read_to_string(dir.join("health.lua")).expect("health.lua");
        assert_eq!(on_disk, check.script, "the embedded script is the file");
        let list = test_cases(check).unwrap_or_else(|e| panic!("{e}"));
        assert!(!list.is_empty());
        for case in &list {
            let input = &case.input;
            let health = sandbox
                .evaluate(check.script, &case.object)
                .unwrap_or_else(|e| panic!("{}/{input}: {e}", check.dir));
            assert_eq!(health.status, case.status, "{}/{input}", check.dir);
            assert_eq!(health.message, case.message, "{}/{input}", check.dir);
            cases += 1;
        }
        // Every testdata file is used by a case.
        let files = std::fs::read_dir(dir.join("testdata"))
            .expect("testdata")
            .count();
        assert_eq!(
            files,
            list.len(),
            "{}: testdata files without a case",
            check.dir
        );
    }
    assert!(cases >= 30, "only {cases} cases");
}

#[test]
fn the_sandbox_lacks_string_math_io_and_most_of_os() {
    let sandbox = Sandbox::new().expect("sandbox");
    for (chunk, want) in [
        ("return type(string)", "nil"),
        ("return type(math)", "nil"),
        ("return type(io)", "nil"),
        ("return type(debug)", "nil"),
        ("return type(os.exit)", "nil"),
        ("return type(os.execute)", "nil"),
        ("return type(os.getenv)", "nil"),
        ("return type(os.time)", "function"),
        ("return type(os.date)", "function"),
        ("return type(table.insert)", "function"),
        ("return type(require)", "function"),
        ("return type(tostring)", "function"),
        ("return 'a' .. 1", "a1"),
    ] {
        assert_eq!(sandbox.eval_to_string(chunk).expect(chunk), want, "{chunk}");
    }
    // Method syntax on strings needs the string library too.
    assert!(sandbox.eval_to_string("return ('abc'):upper()").is_err());
}

#[test]
fn a_check_that_uses_string_find_fails_the_suite() {
    let sandbox = Sandbox::new().expect("sandbox");
    let nvj = all_checks()
        .iter()
        .find(|c| c.kind == "NotebookValidationJob")
        .expect("nvj check");
    let broken = nvj.script.replace(
        "local phase = text(status.phase)",
        "local phase = text(status.phase)\nif phase ~= nil and string.find(phase, \"Succ\") then phase = \"Succeeded\" end",
    );
    assert_ne!(broken, nvj.script, "the injection point exists");
    let object = json!({"metadata": {"generation": 1}, "status": {"phase": "Succeeded", "observedGeneration": 1}});
    assert!(sandbox.evaluate(nvj.script, &object).is_ok());
    let err = sandbox
        .evaluate(&broken, &object)
        .expect_err("string is absent in Argo CD's sandbox");
    assert!(err.to_string().contains("string"), "{err}");
}

proptest! {
    #[test]
    fn every_check_returns_a_valid_status_for_any_object(object in json_value()) {
        let sandbox = Sandbox::new().expect("sandbox");
        for check in all_checks() {
            let result = sandbox.evaluate(check.script, &object);
            prop_assert!(result.is_ok(), "{}: {:?} on {}", check.dir, result, object);
        }
    }
}
