//! A git server for tests: serves bare repositories over git's smart HTTP protocol - what git
//! hosts speak, and the only one Flux's source-controller (go-git) fetches with - by handing
//! each request to `git http-backend` as CGI, on 127.0.0.1 or a given address, optionally behind
//! HTTP basic auth, so validation pods and Flux fetch with real git over a real network
//! protocol, credentials included.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

pub struct GitServer {
    pub root: PathBuf,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Some(v) = (status == StatusCode::UNAUTHORIZED)
        .then(|| "Basic realm=\"git\"".parse().ok())
        .flatten()
    {
        r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, v);
    }
    r
}

/// Runs `git http-backend` for one request (CGI: the request in environment variables and on
/// stdin, the response's headers and body on stdout).
async fn http_backend(root: PathBuf, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let header = |name: hyper::header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST, b"unreadable request body".to_vec());
    };
    let mut cgi = tokio::process::Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header(hyper::header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header(hyper::header::CONTENT_ENCODING),
        )
        .env(
            "GIT_PROTOCOL",
            header(hyper::header::HeaderName::from_static("git-protocol")),
        )
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let Ok(mut child) = cgi.spawn() else {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            b"git http-backend did not start".to_vec(),
        );
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A backend that answers without reading everything (an error) closes its stdin early.
        let _ = stdin.write_all(&body).await;
    }
    let Ok(out) = child.wait_with_output().await else {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            b"git http-backend failed".to_vec(),
        );
    };
    cgi_response(&out.stdout).unwrap_or_else(|| {
        let mut message = b"git http-backend answered no CGI response: ".to_vec();
        message.extend_from_slice(&out.stderr);
        reply(StatusCode::BAD_GATEWAY, message)
    })
}

/// A CGI response: header lines, an empty line, the body; `Status:` sets the status code.
fn cgi_response(stdout: &[u8]) -> Option<Response<Full<Bytes>>> {
    let (head, body) = [&b"\r\n\r\n"[..], b"\n\n"]
        .iter()
        .filter_map(|sep| {
            stdout
                .windows(sep.len())
                .position(|w| w == *sep)
                .map(|at| (&stdout[..at], &stdout[at + sep.len()..]))
        })
        .min_by_key(|(head, _)| head.len())?;
    let mut response = reply(StatusCode::OK, body.to_vec());
    for line in String::from_utf8_lossy(head).lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next()?.parse::<u16>().ok()?;
            *response.status_mut() = StatusCode::from_u16(code).ok()?;
        } else if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    Some(response)
}

impl GitServer {
    /// Starts serving `root`; with `auth`, every request needs that user and password.
    pub async fn start(root: &Path, auth: Option<(&str, &str)>) -> Self {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST, root, auth).await
    }

    /// Serves on `ip` (a real node's pods reach the host at the host end of the node's link).
    pub async fn start_on(ip: std::net::Ipv4Addr, root: &Path, auth: Option<(&str, &str)>) -> Self {
        std::fs::create_dir_all(root).expect("git root");
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind git server");
        let addr = listener.local_addr().expect("addr");
        let expected = auth.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let served = root.to_path_buf();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let root = served.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let root = root.clone();
                        let expected = expected.clone();
                        async move {
                            if let Some(want) = &expected {
                                let got = req
                                    .headers()
                                    .get(hyper::header::AUTHORIZATION)
                                    .and_then(|v| v.to_str().ok());
                                if got != Some(want.as_str()) {
                                    return Ok::<_, Infallible>(reply(
                                        StatusCode::UNAUTHORIZED,
                                        b"authentication required".to_vec(),
                                    ));
                                }
                            }
                            let path = req.uri().path().trim_start_matches('/');
                            if path.split('/').any(|p| p == ".." || p.is_empty()) {
                                return Ok(reply(StatusCode::BAD_REQUEST, vec![]));
                            }
                            Ok(http_backend(root, req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            root: root.to_path_buf(),
            addr,
            task,
        }
    }

    /// The URL of repository `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=e2e",
            "-c",
            "user.email=e2e@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository served by a [`GitServer`]: a working copy that pushes to a bare repository.
pub struct GitRepo {
    work: PathBuf,
    bare: PathBuf,
}

impl GitRepo {
    pub fn create(server: &GitServer, name: &str) -> Self {
        Self::at(&server.root, name)
    }

    /// A repository under `root`, for clients that read it from disk (`file://`).
    pub fn at(root: &Path, name: &str) -> Self {
        let bare = root.join(format!("{name}.git"));
        let work = root.join(format!("{name}-work"));
        let _ = std::fs::remove_dir_all(&bare);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&bare).expect("bare dir");
        std::fs::create_dir_all(&work).expect("work dir");
        git(&bare, &["init", "-q", "--bare"]);
        git(&work, &["init", "-q"]);
        git(&work, &["remote", "add", "origin", &bare.to_string_lossy()]);
        Self { work, bare }
    }

    /// Writes files, commits, pushes `main`, and returns the commit SHA.
    pub fn commit(&self, files: &[(&str, String)], message: &str) -> String {
        for (path, content) in files {
            let p = self.work.join(path);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).expect("dir");
            }
            std::fs::write(p, content).expect("write file");
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(
            &self.work,
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
        git(&self.bare, &["update-server-info"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// The bare repository as a `file://` URL.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn tag(&self, tag: &str) {
        git(&self.work, &["tag", tag]);
        git(&self.work, &["push", "-q", "origin", tag]);
        git(&self.bare, &["update-server-info"]);
    }
}

/// A notebook (nbformat 4, python3 kernel) with one code cell per source.
pub fn notebook(cells: &[&str]) -> String {
    let untagged: Vec<(&[&str], &str)> = cells.iter().map(|src| (&[][..], *src)).collect();
    tagged_notebook(&untagged)
}

/// A notebook of code cells, each with its tags (`metadata.tags`) and source.
pub fn tagged_notebook(cells: &[(&[&str], &str)]) -> String {
    let cells: Vec<serde_json::Value> = cells
        .iter()
        .map(|(tags, src)| serde_json::json!({"cell_type": "code", "source": src, "metadata": {"tags": tags}, "outputs": [], "execution_count": null}))
        .collect();
    serde_json::json!({"nbformat": 4, "nbformat_minor": 5, "cells": cells,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}})
    .to_string()
}

/// A git credentials Secret as `credentialsSecret` names it (`username` + `password`).
pub fn credentials_secret(
    name: &str,
    username: &str,
    password: &str,
) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..kube::api::ObjectMeta::default()
        },
        string_data: Some(std::collections::BTreeMap::from([
            ("username".to_string(), username.to_string()),
            ("password".to_string(), password.to_string()),
        ])),
        ..k8s_openapi::api::core::v1::Secret::default()
    }
}
