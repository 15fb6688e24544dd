//! The images `hack/just images` builds: each archive names the image the chart deploys by
//! default, runs its binary as the non-root user from the unpacked root file system (nothing
//! else in it: no shell, no libc), and says so in its config.

use std::path::{Path, PathBuf};
use std::process::Command;

use nbg_oci_image::{BIN_DIR, USER, read_archive};

const CONTROLLERS: [&str; 5] = [
    "nvj-validator",
    "trigger-controller",
    "wave-marker",
    "app-status-aggregator",
    "event-notifier",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The image a controller's chart deploys by default: registry/repository:appVersion.
fn chart_default_image(controller: &str) -> String {
    let chart = repo().join("charts").join(controller);
    let values = yaml(&chart.join("values.yaml"));
    let app_version = yaml(&chart.join("Chart.yaml"))["appVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    format!(
        "{}/{}:{}",
        values["image"]["registry"].as_str().unwrap_or_default(),
        values["image"]["repository"].as_str().unwrap_or_default(),
        app_version
    )
}

/// The archive `hack/just images` wrote for `controller`.
fn archive(controller: &str) -> PathBuf {
    let path = repo().join(format!(
        "target/images/{controller}-{}.oci.tar",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        path.exists(),
        "{} is missing: run `hack/just images` first (hack/test.sh does)",
        path.display()
    );
    path
}

#[test]
fn every_image_runs_its_binary_as_the_non_root_user_and_is_what_the_chart_deploys() {
    let version = env!("CARGO_PKG_VERSION");
    for controller in CONTROLLERS {
        let archive = archive(controller);
        let image = read_archive(&archive).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            image.reference,
            chart_default_image(controller),
            "{controller}"
        );
        let config = &image.config["config"];
        let entrypoint = format!("{BIN_DIR}/{controller}");
        assert_eq!(
            config["Entrypoint"],
            serde_json::json!([entrypoint]),
            "{controller}"
        );
        assert_eq!(config["User"], format!("{USER}:{USER}"), "{controller}");
        assert_eq!(image.config["os"], "linux");
        assert_eq!(image.layers.len(), 1);

        let root =
            std::env::temp_dir().join(format!("nbg-image-{controller}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("root dir");
        image.unpack(&root).unwrap_or_else(|e| panic!("{e:#}"));
        for shell in ["bin/sh", "bin/bash", "usr/bin/sh", "bin/busybox"] {
            assert!(
                !root.join(shell).exists(),
                "{controller}: {shell} in the image"
            );
        }
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("etc/passwd");
        assert!(passwd.contains(&format!(":{USER}:{USER}:")), "{passwd}");

        // Run as the image's user, with the unpacked file system as root: a user namespace
        // maps this user to 65532; the binary finds no libraries there, so it must be static.
        let out = Command::new("unshare")
            .args([
                "--user",
                &format!("--map-user={USER}"),
                &format!("--map-group={USER}"),
            ])
            .arg(format!("--root={}", root.display()))
            .args([entrypoint.as_str(), "--version"])
            .env_clear()
            .output()
            .expect("run unshare");
        let _ = std::fs::remove_dir_all(&root);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(version),
            "{controller} --version in its image: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The Containerfile (for builds with a container runtime; none runs on our machines) has one
/// target per controller, with the same entrypoint and user as `hack/just images`' images.
#[test]
fn the_containerfile_builds_the_same_images() {
    let text = std::fs::read_to_string(repo().join("Containerfile")).expect("Containerfile");
    assert!(
        text.contains(&format!("USER {USER}:{USER}")),
        "non-root user"
    );
    assert!(
        text.contains("FROM scratch AS base"),
        "nothing but the binary and its user"
    );
    for controller in CONTROLLERS {
        let target = format!("FROM base AS {controller}\n");
        let entrypoint = format!("ENTRYPOINT [\"{BIN_DIR}/{controller}\"]");
        let section = text
            .split_once(&target)
            .map(|(_, rest)| rest.split("\nFROM ").next().unwrap_or_default())
            .unwrap_or_else(|| panic!("no target {controller}"));
        assert!(section.contains(&entrypoint), "{controller}: {section}");
        assert!(
            text.contains(&format!("-p {controller}")),
            "{controller} is built"
        );
    }
}

/// The pinned crane (go-containerregistry), built and cached by hack/build-binaries.sh.
fn crane() -> PathBuf {
    let script = repo().join("hack/build-binaries.sh");
    let status = Command::new(&script)
        .arg("crane")
        .status()
        .expect("build crane");
    assert!(status.success(), "hack/build-binaries.sh crane failed");
    let out = Command::new(&script)
        .args(["--path", "crane"])
        .output()
        .expect("crane's path");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A registry of crane's on loopback, stopped when dropped.
struct Registry(std::process::Child, String);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Each archive is read as `docker load` reads it (Docker's manifest.json, `crane validate
/// --tarball`) and, as an OCI layout, pushed to a registry and validated there with the same
/// manifest digest - the path `skopeo copy oci-archive:` and `podman load` take.
#[test]
fn every_archive_loads_as_docker_and_as_an_oci_layout() {
    let version = env!("CARGO_PKG_VERSION");
    let crane = crane();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let address = format!("127.0.0.1:{port}");
    let registry = Registry(
        Command::new(&crane)
            .args(["registry", "serve", "--address", &address])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("crane registry serve"),
        address.clone(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(&registry.1).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the registry did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for controller in CONTROLLERS {
        let archive = archive(controller);
        let run = |args: &[&str]| {
            let out = Command::new(&crane).args(args).output().expect("run crane");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "crane {args:?}: {text}");
            text
        };
        run(&["validate", "--tarball", &archive.to_string_lossy()]);

        let layout =
            std::env::temp_dir().join(format!("nbg-layout-{controller}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&layout);
        std::fs::create_dir_all(&layout).expect("layout dir");
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&layout)
            .status()
            .expect("tar");
        assert!(status.success());
        let pushed_to = format!("{}/notebook-gitops/{controller}:{version}", registry.1);
        let pushed = run(&["push", &layout.to_string_lossy(), &pushed_to, "--insecure"]);
        let _ = std::fs::remove_dir_all(&layout);
        run(&["validate", "--remote", &pushed_to, "--insecure"]);
        let remote_digest = run(&["digest", &pushed_to, "--insecure"]);
        let image = read_archive(&archive).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            remote_digest.trim(),
            image.manifest_digest,
            "{controller}: the registry serves the archive's manifest ({pushed})"
        );
    }
}
