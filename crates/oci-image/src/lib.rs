//! The project's container images, built without a container runtime: one statically linked
//! binary in a minimal OCI image - the binary at `/usr/local/bin/<name>` as the entrypoint,
//! `/etc/passwd` and `/etc/group` naming the non-root user 65532, a home for it and `/tmp`;
//! no shell, no package manager, nothing else to patch. It runs as that user from a read-only
//! root file system (the charts' defaults).
//!
//! The archive is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) that also
//! carries Docker's `manifest.json`, so `docker load`, `podman load` and `skopeo copy
//! oci-archive:` all accept it. It is reproducible: entries sorted, every time stamp the given
//! creation time (`SOURCE_DATE_EPOCH`), gzip without a time stamp.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The user the images run as: the conventional non-root uid/gid of minimal images.
pub const USER: u32 = 65532;
/// Where the binary is in the image.
pub const BIN_DIR: &str = "/usr/local/bin";

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One image to build.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// `registry/repository:tag`, e.g. `ghcr.io/notebook-gitops/wave-marker:0.1.0`.
    pub reference: String,
    /// The statically linked binary; its file name is the command's name in the image.
    pub binary: PathBuf,
    /// Seconds since the epoch for every time stamp.
    pub created: u64,
    pub labels: BTreeMap<String, String>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub manifest_digest: String,
    pub size: u64,
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The tag of a reference (`latest` when it has none).
fn tag_of(reference: &str) -> &str {
    match reference.rsplit_once(':') {
        Some((_, tag)) if !tag.contains('/') => tag,
        _ => "latest",
    }
}

/// RFC 3339 of seconds since the epoch (UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Refuses a dynamically linked binary: it would not start in an image without a libc.
pub fn check_static(binary: &Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes.get(o..o + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    if bytes.get(0..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        bail!(
            "{} is not a 64-bit little-endian ELF binary",
            binary.display()
        );
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        bail!("{}: truncated ELF header", binary.display());
    };
    const PT_INTERP: u32 = 3;
    for i in 0..usize::from(phnum) {
        let offset = usize::try_from(phoff).unwrap_or(usize::MAX) + i * usize::from(phentsize);
        if u32_at(offset) == Some(PT_INTERP) {
            bail!(
                "{} is dynamically linked (it needs a program interpreter); build it with RUSTFLAGS=\"-C target-feature=+crt-static\" --target x86_64-unknown-linux-gnu (hack/just images does)",
                binary.display()
            );
        }
    }
    Ok(())
}

/// A tar stream whose entries all carry one time stamp, in the order they are added.
struct Tar {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Tar {
    fn new(mtime: u64) -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
            mtime,
        }
    }

    fn entry(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        uid: u32,
        body: &[u8],
    ) -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(uid));
        h.set_size(body.len() as u64);
        h.set_mtime(self.mtime);
        h.set_path(path)
            .with_context(|| format!("tar entry {path}"))?;
        h.set_cksum();
        self.builder.append(&h, body)?;
        Ok(())
    }

    fn dir(&mut self, path: &str, mode: u32, uid: u32) -> anyhow::Result<()> {
        self.entry(path, tar::EntryType::Directory, mode, uid, &[])
    }

    /// A file owned by root.
    fn file(&mut self, path: &str, mode: u32, body: &[u8]) -> anyhow::Result<()> {
        self.entry(path, tar::EntryType::Regular, mode, 0, body)
    }

    fn finish(self) -> anyhow::Result<Vec<u8>> {
        Ok(self.builder.into_inner()?)
    }
}

/// The image's one layer, uncompressed.
pub fn layer(spec: &ImageSpec) -> anyhow::Result<Vec<u8>> {
    check_static(&spec.binary)?;
    let name = binary_name(spec)?;
    let binary = std::fs::read(&spec.binary)
        .with_context(|| format!("cannot read {}", spec.binary.display()))?;
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{USER}:{USER}:nonroot:/home/nonroot:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\nnonroot:x:{USER}:\n");
    let mut out = Tar::new(spec.created);
    out.dir("etc/", 0o755, 0)?;
    out.file("etc/group", 0o644, group.as_bytes())?;
    out.file("etc/passwd", 0o644, passwd.as_bytes())?;
    out.dir("home/", 0o755, 0)?;
    out.dir("home/nonroot/", 0o700, USER)?;
    out.dir("tmp/", 0o1777, 0)?;
    for dir in ["usr/", "usr/local/", "usr/local/bin/"] {
        out.dir(dir, 0o755, 0)?;
    }
    out.file(&format!("usr/local/bin/{name}"), 0o755, &binary)?;
    out.finish()
}

fn binary_name(spec: &ImageSpec) -> anyhow::Result<String> {
    spec.binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow::anyhow!("{} names no file", spec.binary.display()))
}

/// Builds the image and writes its archive to `output`.
pub fn write_archive(spec: &ImageSpec, output: &Path) -> anyhow::Result<Written> {
    let name = binary_name(spec)?;
    let layer_tar = layer(spec)?;
    let image_config = json!({
        "User": format!("{USER}:{USER}"),
        "Entrypoint": [format!("{BIN_DIR}/{name}")],
        "Env": [format!("PATH={BIN_DIR}")],
        "WorkingDir": "/",
        "Labels": spec.labels,
    });
    let history = format!("oci-image: {BIN_DIR}/{name}");
    write_layout(
        &spec.reference,
        &layer_tar,
        image_config,
        &history,
        spec.created,
        flate2::Compression::best(),
        output,
    )
}

/// An image made of one root file system (a tar of a whole Linux tree, as `mmdebstrap` writes
/// it): the notebook runner, and the real node's test images.
#[derive(Debug, Clone)]
pub struct RootfsSpec {
    pub reference: String,
    /// The uncompressed tar of the root file system.
    pub rootfs: PathBuf,
    /// `uid:gid` the image runs as.
    pub user: String,
    pub env: Vec<String>,
    pub working_dir: String,
    /// The program a pod's `args` are given to (`Entrypoint`; a model server's); empty: none, so
    /// a pod's `command` is run as written.
    pub entrypoint: Vec<String>,
    /// The command when the pod names none (`Cmd`).
    pub cmd: Vec<String>,
    pub created: u64,
    pub labels: BTreeMap<String, String>,
}

/// Builds a root-file-system image and writes its archive to `output`.
pub fn write_rootfs_archive(spec: &RootfsSpec, output: &Path) -> anyhow::Result<Written> {
    let layer_tar = std::fs::read(&spec.rootfs)
        .with_context(|| format!("cannot read {}", spec.rootfs.display()))?;
    if layer_tar.len() < 1024 || tar::Archive::new(layer_tar.as_slice()).entries().is_err() {
        bail!(
            "{} is not a tar of a root file system",
            spec.rootfs.display()
        );
    }
    let mut image_config = json!({
        "User": spec.user,
        "Env": spec.env,
        "Cmd": spec.cmd,
        "WorkingDir": spec.working_dir,
        "Labels": spec.labels,
    });
    if !spec.entrypoint.is_empty() {
        image_config["Entrypoint"] = json!(spec.entrypoint);
    }
    let history = format!("oci-image rootfs: {}", spec.reference);
    write_layout(
        &spec.reference,
        &layer_tar,
        image_config,
        &history,
        spec.created,
        // Hundreds of megabytes: the default level takes a third of the time of the best.
        flate2::Compression::default(),
        output,
    )
}

/// Writes an OCI layout archive (plus Docker's manifest.json) of one image with one layer.
fn write_layout(
    reference: &str,
    layer_tar: &[u8],
    image_config: Value,
    history: &str,
    created_secs: u64,
    compression: flate2::Compression,
    output: &Path,
) -> anyhow::Result<Written> {
    let diff_id = sha256(layer_tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), compression);
    gz.write_all(layer_tar)?;
    let layer_gz = gz.finish()?;
    let created = rfc3339(created_secs);
    let config = json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": history}],
    });
    let config_bytes = serde_json::to_vec(&config)?;
    let descriptor = |media: &str, bytes: &[u8]| json!({"mediaType": media, "digest": sha256(bytes), "size": bytes.len()});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, &config_bytes),
        "layers": [descriptor(LAYER_TYPE, &layer_gz)],
        "annotations": {"org.opencontainers.image.ref.name": tag_of(reference)},
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let mut manifest_descriptor = descriptor(MANIFEST_TYPE, &manifest_bytes);
    manifest_descriptor["annotations"] = json!({
        "io.containerd.image.name": reference,
        "org.opencontainers.image.ref.name": tag_of(reference),
    });
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest_descriptor],
    });
    let blob_path = |bytes: &[u8]| format!("blobs/sha256/{}", &sha256(bytes)["sha256:".len()..]);
    let docker_manifest = json!([{
        "Config": blob_path(&config_bytes),
        "RepoTags": [reference],
        "Layers": [blob_path(&layer_gz)],
    }]);

    let mut archive = Tar::new(created_secs);
    archive.dir("blobs/", 0o755, 0)?;
    archive.dir("blobs/sha256/", 0o755, 0)?;
    let mut blobs = [
        (blob_path(&config_bytes), config_bytes.as_slice()),
        (blob_path(&layer_gz), layer_gz.as_slice()),
        (blob_path(&manifest_bytes), manifest_bytes.as_slice()),
    ];
    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, body) in &blobs {
        archive.file(path, 0o644, body)?;
    }
    archive.file("index.json", 0o644, &serde_json::to_vec(&index)?)?;
    archive.file(
        "manifest.json",
        0o644,
        &serde_json::to_vec(&docker_manifest)?,
    )?;
    archive.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let bytes = archive.finish()?;
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(output, &bytes).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(Written {
        manifest_digest: sha256(&manifest_bytes),
        size: bytes.len() as u64,
    })
}

/// An image read back from its archive.
#[derive(Debug)]
pub struct Image {
    /// `io.containerd.image.name` of the index.
    pub reference: String,
    /// The manifest's digest, as a registry serves it.
    pub manifest_digest: String,
    pub manifest: Value,
    pub config: Value,
    /// The layers, uncompressed, in order.
    pub layers: Vec<Vec<u8>>,
}

/// Reads an archive written by [`write_archive`] (or any single-image OCI archive), checking
/// every blob's digest.
pub fn read_archive(path: &Path) -> anyhow::Result<Image> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut body = Vec::new();
        entry.read_to_end(&mut body)?;
        entries.insert(name, body);
    }
    let blob = |digest: &str| -> anyhow::Result<&Vec<u8>> {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let body = entries
            .get(&format!("blobs/sha256/{hex}"))
            .ok_or_else(|| anyhow::anyhow!("{}: blob {digest} missing", path.display()))?;
        if sha256(body) != digest {
            bail!(
                "{}: blob {digest} does not match its digest",
                path.display()
            );
        }
        Ok(body)
    };
    let index: Value = serde_json::from_slice(
        entries
            .get("index.json")
            .ok_or_else(|| anyhow::anyhow!("{}: no index.json", path.display()))?,
    )?;
    let descriptor = &index["manifests"][0];
    let reference = descriptor["annotations"]["io.containerd.image.name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let manifest_digest = descriptor["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let manifest: Value = serde_json::from_slice(blob(&manifest_digest)?)?;
    let config: Value = serde_json::from_slice(blob(
        manifest["config"]["digest"].as_str().unwrap_or_default(),
    )?)?;
    let mut layers = Vec::new();
    for l in manifest["layers"].as_array().into_iter().flatten() {
        let gz = blob(l["digest"].as_str().unwrap_or_default())?;
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut tar)?;
        layers.push(tar);
    }
    Ok(Image {
        reference,
        manifest_digest,
        manifest,
        config,
        layers,
    })
}

impl Image {
    /// Unpacks the layers into `root`, as a runtime would (ownership and modes kept when
    /// run as root).
    pub fn unpack(&self, root: &Path) -> anyhow::Result<()> {
        for layer in &self.layers {
            let mut archive = tar::Archive::new(layer.as_slice());
            archive.set_preserve_permissions(true);
            archive.set_preserve_ownerships(true);
            archive
                .unpack(root)
                .with_context(|| format!("cannot unpack into {}", root.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_547_200), "2025-12-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of("ghcr.io/a/b:0.1.0"), "0.1.0");
        assert_eq!(tag_of("localhost:5000/a/b"), "latest");
    }

    #[test]
    fn a_dynamically_linked_binary_is_refused_with_the_fix() {
        // The test binary itself is dynamically linked (no crt-static for tests).
        let me = std::env::current_exe().expect("test binary");
        let err = check_static(&me)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("dynamically linked") && err.contains("crt-static"),
            "{err}"
        );
        let text = std::env::temp_dir().join(format!("not-elf-{}", std::process::id()));
        std::fs::write(&text, "#!/bin/sh\n").expect("write");
        let err = check_static(&text).err().map(|e| e.to_string());
        let _ = std::fs::remove_file(&text);
        assert!(err.is_some_and(|e| e.contains("not a 64-bit")));
    }
}
