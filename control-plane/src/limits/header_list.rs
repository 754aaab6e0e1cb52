//! `limits.http2.max_header_list_size` on the gRPC listener, enforced where it can be counted.
//!
//! h2 refuses an oversized header block by itself, with a bare HTTP 431 the application never
//! sees (so nothing could count it, and a gRPC client gets an opaque error). So h2 is given
//! twice the limit as a hard ceiling on decoding, and this layer refuses requests between the
//! limit and the ceiling: counted, logged, and answered `RESOURCE_EXHAUSTED` with the numbers.
//! Header blocks beyond the ceiling are still refused by h2, uncounted.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tower::{Layer, Service};

use super::Listener;
use crate::metrics::Metrics;

/// The `limit` label and config field.
const LIMIT: &str = "http2.max_header_list_size";
/// RFC 9113 §6.5.2: each field counts its name, its value and 32 bytes.
const FIELD_OVERHEAD: usize = 32;

/// The ceiling given to h2 for a configured `limit`.
pub fn h2_ceiling(limit: u32) -> u32 {
    limit.saturating_mul(2)
}

#[derive(Debug, Clone)]
pub struct HeaderListLimitLayer {
    max: usize,
    metrics: Arc<Metrics>,
}

impl HeaderListLimitLayer {
    pub fn new(max: u32, metrics: Arc<Metrics>) -> Self {
        Self {
            max: max as usize,
            metrics,
        }
    }
}

impl<S> Layer<S> for HeaderListLimitLayer {
    type Service = HeaderListLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeaderListLimit {
            inner,
            limit: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeaderListLimit<S> {
    inner: S,
    limit: HeaderListLimitLayer,
}

type GrpcResponse = http::Response<tonic::body::Body>;

impl<S, B> Service<http::Request<B>> for HeaderListLimit<S>
where
    S: Service<http::Request<B>, Response = GrpcResponse>,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = Either<Ready<Result<GrpcResponse, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let size = header_list_size(&request);
        if size <= self.limit.max {
            return Either::Right(self.inner.call(request));
        }
        self.limit.metrics.limit_hit(Listener::Grpc, LIMIT);
        let path = request.uri().path();
        tracing::info!(%path, size, limit = LIMIT, max = self.limit.max, "gRPC request refused: header list over the limit");
        let status = tonic::Status::resource_exhausted(format!(
            "request headers take {size} bytes; the control plane's limits.{LIMIT} is {}",
            self.limit.max
        ));
        Either::Left(ready(Ok(status.into_http())))
    }
}

/// The header list's size as HTTP/2 counts it, pseudo-headers included.
fn header_list_size<B>(request: &http::Request<B>) -> usize {
    let uri = request.uri();
    let pseudo = [
        (":method", request.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ];
    let pseudo: usize = pseudo
        .iter()
        .map(|(name, value)| name.len() + value + FIELD_OVERHEAD)
        .sum();
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
        .sum();
    pseudo + fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: usize) -> http::Request<()> {
        http::Request::builder()
            .method("POST")
            .uri("https://cp:8443/ferrule.v1.Identity/Sign")
            .header("te", "trailers")
            .header("x-pad", "a".repeat(extra))
            .body(())
            .expect("request")
    }

    #[test]
    fn sizes_count_names_values_and_32_bytes_per_field() {
        let base = header_list_size(&request(0));
        assert_eq!(header_list_size(&request(100)), base + 100);
        // :method POST, :scheme https, :authority cp:8443, :path, te, x-pad: six fields.
        let path = "/ferrule.v1.Identity/Sign".len();
        let expected = (7 + 4) + (7 + 5) + (10 + 7) + (5 + path) + (2 + 8) + 5 + 6 * 32;
        assert_eq!(base, expected);
    }

    #[test]
    fn the_h2_ceiling_is_twice_the_limit_without_overflow() {
        assert_eq!(h2_ceiling(16 << 10), 32 << 10);
        assert_eq!(h2_ceiling(u32::MAX), u32::MAX);
    }
}
