//! `oci-image`: builds one image archive from a statically linked binary, or describes one
//! (see the library's documentation; `hack/just images` builds every image of the project).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nbg_oci_image::{ImageSpec, RootfsSpec, read_archive, write_archive, write_rootfs_archive};

#[derive(Parser, Debug)]
#[command(
    name = "oci-image",
    version,
    about = "Builds a minimal non-root OCI image archive from a statically linked binary, without a container runtime."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes the image archive (OCI layout plus Docker's manifest.json).
    Build {
        /// The statically linked binary; it becomes /usr/local/bin/<its name>, the entrypoint.
        #[arg(long, env = "OCI_IMAGE_BINARY")]
        binary: PathBuf,
        /// registry/repository:tag
        #[arg(long, env = "OCI_IMAGE_REFERENCE")]
        reference: String,
        /// The archive to write.
        #[arg(long, env = "OCI_IMAGE_OUTPUT")]
        output: PathBuf,
        /// Seconds since the epoch for every time stamp (reproducible builds).
        #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
        created: u64,
        /// Image labels, KEY=VALUE (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Writes the archive of an image made of one root file system tar (the notebook runner).
    Rootfs {
        /// The uncompressed tar of the root file system.
        #[arg(long)]
        rootfs: PathBuf,
        /// registry/repository:tag
        #[arg(long)]
        reference: String,
        /// The archive to write.
        #[arg(long)]
        output: PathBuf,
        /// uid:gid the image runs as.
        #[arg(long)]
        user: String,
        /// Environment, KEY=VALUE (repeatable).
        #[arg(long = "env")]
        env: Vec<String>,
        #[arg(long, default_value = "/")]
        working_dir: String,
        /// The entrypoint (repeatable, in order): what a pod's args are given to.
        #[arg(long = "entrypoint")]
        entrypoint: Vec<String>,
        /// The default command (repeatable, in order).
        #[arg(long = "cmd")]
        cmd: Vec<String>,
        #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
        created: u64,
        /// Image labels, KEY=VALUE (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Prints an archive's reference, entrypoint, user and manifest digest.
    Inspect { archive: PathBuf },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build {
            binary,
            reference,
            output,
            created,
            labels,
        } => {
            let spec = ImageSpec {
                reference: reference.clone(),
                binary,
                created,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
            };
            write_archive(&spec, &output).map(|w| {
                println!(
                    "{reference} -> {} ({} bytes, manifest {})",
                    output.display(),
                    w.size,
                    w.manifest_digest
                );
            })
        }
        Command::Rootfs {
            rootfs,
            reference,
            output,
            user,
            env,
            working_dir,
            entrypoint,
            cmd,
            created,
            labels,
        } => {
            let spec = RootfsSpec {
                reference: reference.clone(),
                rootfs,
                user,
                env,
                working_dir,
                entrypoint,
                cmd,
                created,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
            };
            write_rootfs_archive(&spec, &output).map(|w| {
                println!(
                    "{reference} -> {} ({} bytes, manifest {})",
                    output.display(),
                    w.size,
                    w.manifest_digest
                );
            })
        }
        Command::Inspect { archive } => read_archive(&archive).map(|image| {
            println!("reference:  {}", image.reference);
            println!("entrypoint: {}", image.config["config"]["Entrypoint"]);
            println!("user:       {}", image.config["config"]["User"]);
            println!("layers:     {}", image.layers.len());
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
