//! What the tests of `nvj-validator run` share: the project's pinned notebook Python, scratch
//! directories, notebooks written from cell sources, and the run itself.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

pub fn python() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/python-env.sh");
        let out = Command::new(script)
            .output()
            .expect("run hack/python-env.sh");
        assert!(
            out.status.success(),
            "python env: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("{}/python", String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// A scratch directory of one test, under cargo's directory for test scratch (not the host's
/// /tmp), removed when the test ends.
pub struct ScratchDir(PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn dir(name: &str) -> ScratchDir {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nbg-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    ScratchDir(d)
}

pub fn notebook(path: &Path, cells: &[&str]) {
    let tagged: Vec<(&[&str], &str)> = cells.iter().map(|src| (&[][..], *src)).collect();
    tagged_notebook(path, &tagged);
}

/// A notebook of code cells, each with its tags.
pub fn tagged_notebook(path: &Path, cells: &[(&[&str], &str)]) {
    let cells: Vec<Value> = cells
        .iter()
        .map(|(tags, src)| json!({"cell_type": "code", "source": src, "metadata": {"tags": tags}, "outputs": [], "execution_count": null}))
        .collect();
    let nb = json!({"nbformat": 4, "nbformat_minor": 5, "cells": cells,
                    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}});
    std::fs::write(path, serde_json::to_string(&nb).expect("json")).expect("write notebook");
}

pub fn run(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_nvj-validator"))
        .arg("run")
        .args(args)
        .args(["--json", "--python", python()])
        .output()
        .expect("run nvj-validator");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}): {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}
