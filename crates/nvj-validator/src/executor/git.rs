//! Fetching a notebook's repository at a ref (branch, tag or full commit SHA) with the `git`
//! command: every argument is its own argv entry (no shell), and credentials are passed to the
//! git child process through its environment, read from files of the mounted Secret - never
//! through the pod's command, args or env.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use nbg_core::nvj::GitSource;

/// Why fetching failed, and whether retrying could help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GitError {
    pub message: String,
    /// Network trouble (retry); otherwise the URL, ref or credentials are wrong (do not).
    pub transient: bool,
}

/// Credentials from a mounted Secret: `username` + `password` or `token`, or `ssh-privatekey`.
#[derive(Debug, Clone)]
pub enum GitCredentials {
    Basic { username: String, password: String },
    SshKey(PathBuf),
}

impl GitCredentials {
    /// Reads the Secret's files from `dir`; `None` when it holds none of the known keys.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>, GitError> {
        // A key that is there but unreadable is said as such, never as a missing key.
        let read = |name: &str| -> Result<Option<String>, GitError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(Some(s.trim_end_matches(['\n', '\r']).to_string())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(GitError {
                    message: format!(
                        "cannot read the git credentials file {}: {e} (the notebook container runs as {})",
                        path.display(),
                        current_user()
                    ),
                    transient: false,
                }),
            }
        };
        let key = dir.join("ssh-privatekey");
        if key.is_file() {
            read("ssh-privatekey")?;
            return Ok(Some(GitCredentials::SshKey(key)));
        }
        let secret = match read("password")? {
            Some(p) => Some(p),
            None => read("token")?,
        };
        match secret {
            Some(password) if !password.is_empty() => {
                let username = read("username")?
                    .filter(|u| !u.is_empty())
                    .unwrap_or_else(|| "git".to_string());
                Ok(Some(GitCredentials::Basic { username, password }))
            }
            _ if dir.is_dir() => Err(GitError {
                message: format!(
                    "the git credentials Secret mounted at {} has none of the keys ssh-privatekey, password or token",
                    dir.display()
                ),
                transient: false,
            }),
            _ => Ok(None),
        }
    }
}

/// "uid U gid G" of this process, from /proc (no libc call, no `unsafe`).
fn current_user() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let first = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "?".into())
    };
    format!("uid {} gid {}", first("Uid:"), first("Gid:"))
}

/// `scheme://host/` of an http(s) URL, to scope the auth header to that origin only.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    Some(format!("{scheme}://{host}/"))
}

/// The transports validation pods may use: never `file` or `ext::` remote helpers named by a URL.
pub const NETWORK_PROTOCOLS: &str = "https:http:ssh:git";

struct Git<'a> {
    dir: &'a Path,
    url: &'a str,
    allowed_protocols: &'a str,
}

impl Git<'_> {
    fn run(&self, args: &[&str], creds: Option<&GitCredentials>) -> Result<String, GitError> {
        git(
            Some(self.dir),
            args,
            creds,
            self.url,
            self.allowed_protocols,
        )
    }
}

fn git(
    dir: Option<&Path>,
    args: &[&str],
    creds: Option<&GitCredentials>,
    url: &str,
    allowed_protocols: &str,
) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", allowed_protocols)
        .env("GIT_CONFIG_NOSYSTEM", "1");
    match creds {
        Some(GitCredentials::Basic { username, password }) => {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            let key = origin_of(url).map_or_else(
                || "http.extraHeader".to_string(),
                |o| format!("http.{o}.extraHeader"),
            );
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", key)
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {token}"),
                );
        }
        Some(GitCredentials::SshKey(path)) => {
            let ssh = format!(
                "ssh -i '{}' -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o BatchMode=yes",
                path.display().to_string().replace('\'', "")
            );
            cmd.env("GIT_SSH_COMMAND", ssh);
        }
        None => {}
    }
    let out = cmd.output().map_err(|e| GitError {
        message: format!("cannot run git: {e}"),
        transient: false,
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(GitError {
        transient: is_transient(&stderr),
        message: stderr,
    })
}

fn is_transient(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "could not resolve host",
        "connection refused",
        "connection timed out",
        "timed out",
        "connection reset",
        "temporary failure",
        "returned error: 5",
        "network is unreachable",
        "early eof",
        "remote end hung up unexpectedly",
    ]
    .iter()
    .any(|m| s.contains(m))
}

/// Fetches `source.url` at `source.ref` into `dest` and checks it out. Shallow when the server
/// allows it; a full fetch otherwise (dumb HTTP servers, SHAs that are not advertised).
/// `allowed_protocols` is [`NETWORK_PROTOCOLS`] in validation pods.
pub fn fetch(
    source: &GitSource,
    dest: &Path,
    creds: Option<&GitCredentials>,
    allowed_protocols: &str,
) -> Result<String, GitError> {
    let url = source.url.as_str();
    let r#ref = source.r#ref.as_str();
    if r#ref.starts_with('-') || url.starts_with('-') {
        return Err(GitError {
            message: format!("invalid git ref or URL {ref:?}"),
            transient: false,
        });
    }
    std::fs::create_dir_all(dest).map_err(|e| GitError {
        message: format!("cannot create {}: {e}", dest.display()),
        transient: false,
    })?;
    let g = Git {
        dir: dest,
        url,
        allowed_protocols,
    };
    g.run(&["init", "-q"], None)?;
    g.run(&["remote", "add", "origin", url], None)?;
    let target = match g.run(&["fetch", "-q", "--depth", "1", "origin", r#ref], creds) {
        Ok(_) => "FETCH_HEAD".to_string(),
        Err(first) => {
            if let Err(e) = g.run(&["fetch", "-q", "--tags", "origin"], creds) {
                let message = format!("cannot fetch {url}: {}", e.message);
                return Err(GitError {
                    message,
                    transient: e.transient || first.transient,
                });
            }
            let candidates = [
                r#ref.to_string(),
                format!("origin/{ref}"),
                format!("refs/tags/{ref}"),
            ];
            candidates
                .into_iter()
                .find(|c| {
                    g.run(
                        &[
                            "rev-parse",
                            "--verify",
                            "--quiet",
                            &format!("{c}^{{commit}}"),
                        ],
                        None,
                    )
                    .is_ok()
                })
                .ok_or_else(|| GitError {
                    message: format!("ref {ref:?} not found in {url}"),
                    transient: false,
                })?
        }
    };
    g.run(&["checkout", "-q", "--detach", &target], None)?;
    Ok(g.run(&["rev-parse", "HEAD"], None)?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_is_scoped_to_the_origin() {
        assert_eq!(
            origin_of("https://git.example.com/team/r.git").as_deref(),
            Some("https://git.example.com/")
        );
        assert_eq!(
            origin_of("https://user@git.example.com:8443/r.git").as_deref(),
            Some("https://git.example.com:8443/")
        );
        assert_eq!(origin_of("git@host:r.git"), None);
    }

    #[test]
    fn a_credentials_key_that_cannot_be_read_is_named_not_reported_missing() {
        let path = std::env::temp_dir().join(format!("nbg-creds-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("mkdir");
        struct Cleanup<'a>(&'a Path);
        impl Drop for Cleanup<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(self.0);
            }
        }
        let _cleanup = Cleanup(&path);
        let dir = &path.as_path();
        // Root reads any file; an entry that is not a readable file stands in for a Secret key
        // the container's user may not read.
        std::fs::create_dir(dir.join("token")).expect("mkdir");
        let err = GitCredentials::from_dir(dir).expect_err("unreadable");
        assert!(
            err.message.contains("cannot read the git credentials file"),
            "{}",
            err.message
        );
        assert!(err.message.contains("/token"), "{}", err.message);
        assert!(err.message.contains("runs as uid "), "{}", err.message);
        assert!(!err.transient);
        std::fs::remove_dir(dir.join("token")).expect("rmdir");
        std::fs::write(dir.join("token"), "t0k\n").expect("write");
        match GitCredentials::from_dir(dir) {
            Ok(Some(GitCredentials::Basic { username, password })) => {
                assert_eq!((username.as_str(), password.as_str()), ("git", "t0k"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transient_errors_are_recognised() {
        assert!(is_transient(
            "fatal: unable to access 'https://x/': Could not resolve host: x"
        ));
        assert!(is_transient(
            "fatal: unable to access 'https://x/': The requested URL returned error: 503"
        ));
        assert!(!is_transient(
            "fatal: Authentication failed for 'https://x/'"
        ));
        assert!(!is_transient("fatal: couldn't find remote ref nope"));
    }

    fn run(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("git")
            .status
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn fetches_branches_tags_and_shas_from_a_local_repository() {
        let base = std::env::temp_dir().join(format!("nbg-git-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let origin = base.join("origin");
        std::fs::create_dir_all(&origin).expect("dir");
        run(&origin, &["init", "-q", "-b", "main"]);
        std::fs::write(origin.join("a.txt"), "one").expect("write");
        run(&origin, &["add", "."]);
        run(
            &origin,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "one",
            ],
        );
        run(&origin, &["tag", "v1"]);
        let first = String::from_utf8_lossy(
            &Command::new("git")
                .arg("-C")
                .arg(&origin)
                .args(["rev-parse", "HEAD"])
                .output()
                .expect("git")
                .stdout,
        )
        .trim()
        .to_string();
        std::fs::write(origin.join("a.txt"), "two").expect("write");
        run(
            &origin,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qam",
                "two",
            ],
        );

        // A local path uses git's `file` transport, which validation pods never allow.
        let fetch_local = |r: &str, dest: &str| {
            let src = GitSource {
                url: origin.display().to_string(),
                r#ref: r.into(),
                credentials_secret: None,
            };
            fetch(&src, &base.join(dest), None, "file")
        };
        fetch_local("main", "b").expect("branch");
        assert_eq!(
            std::fs::read_to_string(base.join("b/a.txt")).expect("file"),
            "two"
        );
        fetch_local("v1", "t").expect("tag");
        assert_eq!(
            std::fs::read_to_string(base.join("t/a.txt")).expect("file"),
            "one"
        );
        fetch_local(&first, "s").expect("sha");
        assert_eq!(
            std::fs::read_to_string(base.join("s/a.txt")).expect("file"),
            "one"
        );
        let missing = fetch_local("nope", "n").expect_err("missing ref");
        assert!(!missing.transient, "{missing:?}");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn network_only_transports_refuse_local_paths() {
        let src = GitSource {
            url: "/etc".into(),
            r#ref: "main".into(),
            credentials_secret: None,
        };
        let dest = std::env::temp_dir().join(format!("nbg-git-refuse-{}", std::process::id()));
        let err = fetch(&src, &dest, None, NETWORK_PROTOCOLS).expect_err("file transport refused");
        assert!(!err.transient, "{err:?}");
        let _ = std::fs::remove_dir_all(&dest);
    }
}
