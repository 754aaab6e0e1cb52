//! The HTTP side of the enrollment API.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use ferrule_config::http::{Reply, ServeLimits};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::UnixListener;

use super::cni::{CniEvents, CniRequest};
use super::{EnrollError, PodLifecycle, PodSpec};

/// Pod specs are small; anything bigger is a mistake or an attack.
const MAX_BODY: usize = 64 * 1024;

/// Serves the API on `listener` until `shutdown` completes. `cni` answers the CNI plugin
/// (Kubernetes mode); without it those endpoints are 404.
pub async fn serve(
    listener: UnixListener,
    pods: Arc<dyn PodLifecycle>,
    cni: Option<Arc<dyn CniEvents>>,
    shutdown: impl Future<Output = ()>,
    limits: ServeLimits,
) {
    let respond = move |req| {
        let pods = pods.clone();
        let cni = cni.clone();
        async move { route(pods.as_ref(), cni.as_deref(), req).await }
    };
    let callers = super::callers::Callers(listener);
    ferrule_config::http::serve_limited(callers, "enrollment API", respond, shutdown, limits).await;
}

async fn route(
    pods: &dyn PodLifecycle,
    cni: Option<&dyn CniEvents>,
    req: Request<Incoming>,
) -> Reply {
    let path = req.uri().path().to_owned();
    if let Some(cni) = cni
        && (path.starts_with("/v1/cni/") || path == "/v1/ready")
    {
        return cni_route(cni, req).await;
    }
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/v1/pods") => enroll(pods, req).await,
        (Method::GET, "/v1/pods") => json(StatusCode::OK, &pods.list()),
        (Method::GET, "/v1/config") => json(StatusCode::OK, &pods.config()),
        (Method::POST, "/v1/uninstall") => {
            let answer = pods.uninstall().await;
            if let Some(cni) = cni {
                cni.stop_installing().await;
            }
            tracing::warn!(?answer, "uninstalling: no pod is enrolled from now on");
            json(StatusCode::OK, &answer)
        }
        (Method::DELETE, p) if p.starts_with("/v1/pods/") => {
            let uid = &p["/v1/pods/".len()..];
            match pods.unenroll(uid).await {
                Ok(true) => empty(StatusCode::NO_CONTENT),
                Ok(false) => error(StatusCode::NOT_FOUND, &format!("pod {uid} is not enrolled")),
                Err(e) => refusal(&e),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no such endpoint; see POST/GET /v1/pods, DELETE /v1/pods/<uid>, POST /v1/uninstall",
        ),
    }
}

async fn cni_route(cni: &dyn CniEvents, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    if (req.method(), path.as_str()) == (&Method::GET, "/v1/ready") {
        let readiness = cni.readiness();
        let status = match readiness.ready {
            true => StatusCode::OK,
            false => StatusCode::SERVICE_UNAVAILABLE,
        };
        return json(status, &readiness);
    }
    if req.method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "CNI events are POSTed");
    }
    let request: CniRequest = match read_json(req, "CNI request").await {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let (uid, container) = (request.uid.clone(), request.container_id.clone());
    let result = match path.as_str() {
        "/v1/cni/add" => cni
            .add(request)
            .await
            .map(|answer| json(StatusCode::OK, &answer)),
        "/v1/cni/del" => cni.del(request).await.map(|()| empty(StatusCode::OK)),
        "/v1/cni/check" => cni.check(request).await.map(|()| empty(StatusCode::OK)),
        _ => return error(StatusCode::NOT_FOUND, "CNI endpoints: add, del, check"),
    };
    result.unwrap_or_else(|e| {
        tracing::warn!(%uid, %container, endpoint = %path, error = %e, "CNI event refused");
        refusal(&e)
    })
}

/// The body as JSON of type `T`, or the 400 answer naming `what` was wrong.
async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    what: &str,
) -> Result<T, Reply> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("reading the body: {e}"),
            ));
        }
    };
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid {what}: {e}")))
}

async fn enroll(pods: &dyn PodLifecycle, req: Request<Incoming>) -> Reply {
    let spec: PodSpec = match read_json(req, "pod spec").await {
        Ok(spec) => spec,
        Err(reply) => return reply,
    };
    if let Err(e) = spec.validate().and_then(|()| spec.check_target()) {
        tracing::warn!(uid = %spec.uid, error = %e, "pod enrollment refused");
        return refusal(&e);
    }
    let uid = spec.uid.clone();
    match pods.enroll(spec).await {
        Ok(pod) => {
            tracing::info!(%uid, id = %pod.spiffe_id, "pod enrolled");
            json(StatusCode::CREATED, &pod)
        }
        Err(e) => {
            tracing::warn!(%uid, error = %e, "pod enrollment failed");
            refusal(&e)
        }
    }
}

fn refusal(e: &EnrollError) -> Reply {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, &e.to_string())
}

pub(super) fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn empty(status: StatusCode) -> Reply {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .expect("static response parts are valid")
}
