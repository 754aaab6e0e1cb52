//! What each path of the public endpoint answers. GET and HEAD only; everything is a small
//! document held in memory.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use super::PublicDocuments;

/// Caches may keep a document at most this long even when the CRL's next update is further away,
/// so a revocation reaches gateways within a minute of being published.
pub(super) const MAX_AGE_CAP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Document {
    CrlPem,
    CrlDer,
    BundlePem,
    SpiffeBundle,
}

impl Document {
    fn from_path(path: &str) -> Option<Self> {
        Some(match path {
            "/crl.pem" => Self::CrlPem,
            "/crl" => Self::CrlDer,
            "/bundle.pem" => Self::BundlePem,
            "/.well-known/spiffe-bundle" => Self::SpiffeBundle,
            _ => return None,
        })
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::CrlPem | Self::BundlePem => "application/x-pem-file",
            Self::CrlDer => "application/pkix-crl",
            Self::SpiffeBundle => "application/json",
        }
    }

    fn body(self, docs: &PublicDocuments) -> Bytes {
        match self {
            Self::CrlPem => Bytes::copy_from_slice(docs.crl_chain_pem.as_bytes()),
            Self::CrlDer => Bytes::copy_from_slice(docs.crl.der()),
            Self::BundlePem => Bytes::copy_from_slice(docs.bundle_pem.as_bytes()),
            Self::SpiffeBundle => Bytes::copy_from_slice(docs.spiffe_bundle_json.as_bytes()),
        }
    }
}

pub(super) fn respond(
    method: &Method,
    path: &str,
    docs: &PublicDocuments,
    now: SystemTime,
) -> Response<Full<Bytes>> {
    let Some(document) = Document::from_path(path) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let head = match *method {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
    };
    let body = document.body(docs);
    let length = body.len();
    let mut response = Response::new(Full::new(if head { Bytes::new() } else { body }));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(document.content_type()),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(CACHE_CONTROL, cache_control(docs, now));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Fresh until the CRL's next update, capped by [`MAX_AGE_CAP`]; a CRL already past its next
/// update (the publisher is behind) must be revalidated every time.
fn cache_control(docs: &PublicDocuments, now: SystemTime) -> HeaderValue {
    let left = docs
        .crl
        .next_update()
        .duration_since(now)
        .unwrap_or_default();
    let max_age = left.min(MAX_AGE_CAP).as_secs();
    if max_age == 0 {
        HeaderValue::from_static("no-cache")
    } else {
        HeaderValue::from_str(&format!("public, max-age={max_age}"))
            .expect("digits are a valid header value")
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use ferrule_identity::testing::TestCa;
    use http_body_util::BodyExt;

    const HOUR: Duration = Duration::from_secs(3600);

    fn documents(now: SystemTime, next_update: SystemTime) -> PublicDocuments {
        let test = TestCa::new("example.org");
        let crl = test.ca.sign_crl(&[], 1, now, next_update).unwrap();
        PublicDocuments::new(test.ca.bundle(), Arc::new(crl), &Default::default(), 1).unwrap()
    }

    async fn body(response: Response<Full<Bytes>>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    fn header<'a>(response: &'a Response<Full<Bytes>>, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("expected a {name} header"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn documents_have_their_types_and_bodies() {
        let now = SystemTime::now();
        let docs = documents(now, now + HOUR);
        let cases = [
            (
                "/crl.pem",
                "application/x-pem-file",
                docs.crl.pem().into_bytes(),
            ),
            ("/crl", "application/pkix-crl", docs.crl.der().to_vec()),
            (
                "/bundle.pem",
                "application/x-pem-file",
                docs.bundle_pem.clone().into_bytes(),
            ),
            (
                "/.well-known/spiffe-bundle",
                "application/json",
                docs.spiffe_bundle_json.clone().into_bytes(),
            ),
        ];
        for (path, content_type, expected) in cases {
            let response = respond(&Method::GET, path, &docs, now);
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&response, "content-type"), content_type, "{path}");
            assert_eq!(header(&response, "cache-control"), "public, max-age=60");
            assert_eq!(body(response).await, expected, "{path}");
        }
    }

    #[tokio::test]
    async fn head_has_the_length_but_no_body() {
        let now = SystemTime::now();
        let docs = documents(now, now + HOUR);
        let response = respond(&Method::HEAD, "/crl", &docs, now);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "content-length"),
            docs.crl.der().len().to_string()
        );
        assert!(body(response).await.is_empty());
    }

    #[tokio::test]
    async fn unknown_paths_and_other_methods_are_refused() {
        let now = SystemTime::now();
        let docs = documents(now, now + HOUR);
        let response = respond(&Method::GET, "/crl.der", &docs, now);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(body(response).await, "not found\n");
        let response = respond(&Method::POST, "/crl.pem", &docs, now);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&response, "allow"), "GET, HEAD");
        assert_eq!(body(response).await, "method not allowed\n");
    }

    #[test]
    fn max_age_follows_the_next_update() {
        let now = SystemTime::now();
        let docs = documents(now, now + Duration::from_secs(30));
        let response = respond(&Method::GET, "/crl.pem", &docs, now);
        // Whole seconds in the CRL: 29 or 30 left depending on where `now` fell in its second.
        let value = header(&response, "cache-control");
        assert!(
            value == "public, max-age=29" || value == "public, max-age=30",
            "expected the time left until next update, got {value}"
        );
        let late = respond(&Method::GET, "/crl.pem", &docs, now + HOUR);
        assert_eq!(header(&late, "cache-control"), "no-cache");
    }
}
