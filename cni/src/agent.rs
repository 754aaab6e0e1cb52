//! The agent's local CNI API (HTTP/1.1 + JSON on its enrollment socket): a small hyper client
//! over a Unix stream, one connection per call. `ferrule-agent uninstall` uses it too, to tell a
//! running agent to stop enrolling ([`AgentClient::uninstall`]).

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;

use crate::netconf::Attachment;

pub const ADD: &str = "/v1/cni/add";
pub const DEL: &str = "/v1/cni/del";
pub const CHECK: &str = "/v1/cni/check";
pub const GC: &str = "/v1/cni/gc";
pub const READY: &str = "/v1/ready";
pub const UNINSTALL: &str = "/v1/uninstall";

/// The body of add, del and check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRequest {
    pub container_id: String,
    /// Empty on a DEL that came without a netns.
    pub netns: PathBuf,
    pub ifname: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub ips: Vec<IpAddr>,
}

/// The agent's answer to add.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AddReply {
    pub meshed: bool,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The agent's answer to uninstall.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UninstallReply {
    /// An earlier call had started it already.
    pub already: bool,
    /// Pods whose proxies the agent closed.
    pub released_pods: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRequest {
    pub valid_attachments: Vec<Attachment>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {}: {source}", socket.display())]
    Connect { socket: PathBuf, source: io::Error },
    #[error("no answer from {} within {}s", socket.display(), after.as_secs())]
    Timeout { socket: PathBuf, after: Duration },
    #[error("connection to {} failed: {source}", socket.display())]
    Http {
        socket: PathBuf,
        source: hyper::Error,
    },
    /// The agent answered with an error status; `message` is its `error` field.
    #[error("{message} (HTTP {status})")]
    Refused { status: StatusCode, message: String },
    #[error("unexpected answer from the agent: {0}")]
    BadReply(#[from] serde_json::Error),
}

impl Error {
    /// The agent is down, starting or hung: nobody decided anything about the pod.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Timeout { .. } | Error::Http { .. }
        )
    }
}

/// Calls the agent on `socket`; each call gives up after `timeout`.
#[derive(Debug, Clone)]
pub struct AgentClient {
    socket: PathBuf,
    timeout: Duration,
}

impl AgentClient {
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> AgentClient {
        AgentClient {
            socket: socket.into(),
            timeout,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn add(&self, pod: &PodRequest) -> Result<AddReply, Error> {
        let body = self.call(Method::POST, ADD, Some(json(pod))).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    pub async fn del(&self, pod: &PodRequest) -> Result<(), Error> {
        self.call(Method::POST, DEL, Some(json(pod)))
            .await
            .map(drop)
    }

    pub async fn check(&self, pod: &PodRequest) -> Result<(), Error> {
        self.call(Method::POST, CHECK, Some(json(pod)))
            .await
            .map(drop)
    }

    pub async fn gc(&self, valid_attachments: &[Attachment]) -> Result<(), Error> {
        let body = GcRequest {
            valid_attachments: valid_attachments.to_vec(),
        };
        self.call(Method::POST, GC, Some(json(&body)))
            .await
            .map(drop)
    }

    pub async fn ready(&self) -> Result<(), Error> {
        self.call(Method::GET, READY, None).await.map(drop)
    }

    /// The node is being uninstalled: the agent enrolls nothing from now on.
    pub async fn uninstall(&self) -> Result<UninstallReply, Error> {
        let body = self.call(Method::POST, UNINSTALL, None).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// One request; a non-2xx status is [`Error::Refused`] with the agent's message.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, Error> {
        let exchange = self.exchange(method, path, body);
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::Timeout {
                socket: self.socket.clone(),
                after: self.timeout,
            })??;
        if status.is_success() {
            return Ok(body);
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
        }
        let message = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => e.error,
            Err(_) => String::from_utf8_lossy(&body).trim().to_owned(),
        };
        Err(Error::Refused { status, message })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), Error> {
        let http = |source| Error::Http {
            socket: self.socket.clone(),
            source,
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| Error::Connect {
                socket: self.socket.clone(),
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let connection = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "agent");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("a constant method, path and headers make a valid request");
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(http)?;
        connection.abort();
        Ok((status, body.to_bytes()))
    }
}

fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("request bodies are plain data")
}
