//! `pause`: the pod sandbox's process on the project's local node (containerd's
//! `sandbox_image`, built by hack/node-images.sh into an image of its own). It holds the pod's
//! namespaces open, reaps children it inherits, and exits on SIGTERM or SIGINT - what the
//! upstream pause image does.

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> std::process::ExitCode {
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGCHLD]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pause: cannot handle signals: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for signal in signals.forever() {
        if signal == SIGCHLD {
            // Reap every child that ended (processes of the pod re-parented to us).
            while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                if status == WaitStatus::StillAlive {
                    break;
                }
            }
        } else {
            break;
        }
    }
    std::process::ExitCode::SUCCESS
}
