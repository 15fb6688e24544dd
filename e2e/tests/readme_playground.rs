//! The README's "Try it on your notebook" commands, run exactly as written, as a new user would
//! (on a control plane of this test's own: `NBG_CLUSTER_DIR` and ports in the environment), on
//! the playground's real node: the controllers in containers, the validation pods in the
//! notebook-runner image, the repository through the Service `nbg-system/git`. While
//! the playground runs, a failing notebook must end `Failed` naming its cell, and `hack/just
//! kubectl` must pass a jsonpath and a JSON patch through unchanged. After `hack/just down`, no
//! process of the playground may be left.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nbg_e2e::harness::cluster::repo_root;
use nbg_e2e::harness::process::{as_from_a_shell, free_port};

/// The shell commands of the README block that follows the playground marker.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let after = readme
        .split_once("<!-- playground-commands")
        .map(|(_, rest)| rest)
        .expect("the README marks its playground commands");
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("a sh block after the marker");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

struct Shell {
    env: Vec<(String, String)>,
}

impl Shell {
    /// Runs one command line with bash in the repository, as a user's shell would; returns
    /// whether it succeeded, its stdout and its stderr.
    fn run(&self, line: &str) -> (bool, String, String) {
        let mut bash = Command::new("bash");
        as_from_a_shell(&mut bash);
        let out = bash
            .args(["-c", line])
            .current_dir(repo_root())
            .envs(self.env.iter().cloned())
            .output()
            .expect("bash");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Its stdout; fails the test with both outputs when it fails.
    fn must(&self, line: &str) -> String {
        let (ok, out, err) = self.run(line);
        assert!(ok, "`{line}` failed:\n{out}{err}");
        out
    }
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) && !text.contains("readme_playground") {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn the_readme_playground_validates_a_local_notebook_and_stops_cleanly() {
    let commands = readme_commands();
    assert!(
        commands.first().is_some_and(|c| c == "hack/just up")
            && commands.last().is_some_and(|c| c == "hack/just down"),
        "the block starts the playground and stops it: {commands:?}"
    );
    let dir = repo_root().join("target/readme-playground-cluster");
    let env = vec![
        ("NBG_CLUSTER_DIR".to_string(), dir.display().to_string()),
        ("NBG_ETCD_PORT".to_string(), free_port().to_string()),
        ("NBG_ETCD_PEER_PORT".to_string(), free_port().to_string()),
        ("NBG_APISERVER_PORT".to_string(), free_port().to_string()),
        // A fresh machine has no git identity; a user's has one.
        ("GIT_AUTHOR_NAME".to_string(), "Playground User".to_string()),
        (
            "GIT_AUTHOR_EMAIL".to_string(),
            "user@example.com".to_string(),
        ),
        (
            "GIT_COMMITTER_NAME".to_string(),
            "Playground User".to_string(),
        ),
        (
            "GIT_COMMITTER_EMAIL".to_string(),
            "user@example.com".to_string(),
        ),
    ];
    let sh = Shell { env };
    let _ = std::fs::remove_dir_all("/tmp/my-notebooks");
    sh.run("hack/playground.sh down");

    let started = Instant::now();
    let (body, down) = commands.split_at(commands.len() - 1);
    let mut last = String::new();
    for line in body {
        last = sh.must(line);
    }
    println!(
        "README commands up to `down` took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        last.trim(),
        "cell 0: Success\ncell 1: Success\ncell 2: Success",
        "every cell in the status"
    );

    // Quoting survives `hack/just kubectl`: a jsonpath with braces, quotes and spaces, and a
    // JSON patch.
    let names = sh.must(
        r#"hack/just kubectl get ns -o jsonpath='{range .items[*]}{.metadata.name}{" "}{end}'"#,
    );
    assert!(names.split_whitespace().any(|n| n == "default"), "{names}");
    sh.must(
        r#"hack/just kubectl patch nvj my-notebook --type merge -p '{"metadata": {"annotations": {"team": "fraud detection"}}}'"#,
    );
    let label = sh.must(
        r#"hack/just kubectl get nvj my-notebook -o jsonpath='{.metadata.annotations.team}'"#,
    );
    assert_eq!(label.trim(), "fraud detection");

    // A failing notebook ends Failed, naming its cell.
    let broken =
        std::fs::read_to_string(repo_root().join("manifests/examples/playground/hello.ipynb"))
            .expect("hello.ipynb")
            .replace("mean > 0.85", "mean > 0.95");
    std::fs::write(Path::new("/tmp/my-notebooks/broken.ipynb"), broken).expect("broken notebook");
    sh.must(
        "git -C /tmp/my-notebooks add broken.ipynb && git -C /tmp/my-notebooks commit -q -m broken",
    );
    sh.must(
        "sed -e 's/name: my-notebook/name: broken-notebook/' -e 's/hello.ipynb/broken.ipynb/' manifests/examples/playground/my-notebook.yaml | hack/just kubectl apply -f -",
    );
    sh.must("hack/just kubectl wait nvj/broken-notebook --for=jsonpath='{.status.phase}'=Failed --timeout=5m");
    let message =
        sh.must("hack/just kubectl get nvj broken-notebook -o jsonpath='{.status.message}'");
    assert!(
        message.contains("cellIndex 2") && message.contains("below the bar"),
        "the failing cell and its error: {message}"
    );

    sh.must(&down[0]);
    std::thread::sleep(Duration::from_secs(1));
    let left = processes_with(&dir.display().to_string());
    assert!(
        left.is_empty(),
        "processes left after `hack/just down`: {left:#?}"
    );
}
