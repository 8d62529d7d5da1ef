//! Memory bounded at any concurrency: a layer that lets at most `permits` requests with a large
//! body (above `inline` bytes by `Content-Length`, or of unknown length) be read and handled at
//! once. The permit is taken *before* the body is read, so the others wait in their sockets (the
//! kernel's buffers, not the process's memory); one that cannot get a permit within `wait` is
//! answered 503 and retries. Small requests (health, metrics, a 1-GPU filter) never wait.
//!
//! Worst-case memory of a service is then `permits × (its body limit + what handling one such
//! body allocates)` plus its small requests: `BENCHMARKS.md` (§ memory) measures it per service.

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The layer; see the module docs.
#[derive(Clone)]
pub struct LargeBodies {
    permits: Arc<Semaphore>,
    inline: usize,
    wait: Duration,
}

impl LargeBodies {
    pub fn new(permits: usize, inline: usize, wait: Duration) -> LargeBodies {
        LargeBodies { permits: Arc::new(Semaphore::new(permits.max(1))), inline, wait }
    }
}

impl<S> tower_layer::Layer<S> for LargeBodies {
    type Service = LargeBodiesService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LargeBodiesService { inner, limit: self.clone() }
    }
}

#[derive(Clone)]
pub struct LargeBodiesService<S> {
    inner: S,
    limit: LargeBodies,
}

impl<S> tower_service::Service<Request<Body>> for LargeBodiesService<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let bodiless = length.is_none()
            && matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
        if bodiless || length.is_some_and(|n| n <= self.limit.inline) {
            return Box::pin(self.inner.call(request));
        }
        // The service that was made ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit.clone();
        Box::pin(async move {
            match tokio::time::timeout(limit.wait, limit.permits.acquire_owned()).await {
                Ok(Ok(permit)) => {
                    let response = inner.call(request).await;
                    drop(permit);
                    response
                }
                _ => {
                    let mut busy = Response::new(Body::from("busy with other large requests; retry\n"));
                    *busy.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    Ok(busy)
                }
            }
        })
    }
}

/// Counts the JSON values of `bytes` without parsing them (a value starts at each `[`, `{` or
/// `,` outside strings, plus the first); stops with `Err(limit)` once past `limit`. Malformed
/// JSON is left for the parser to name.
pub fn count_json_values(bytes: &[u8], limit: usize) -> Result<usize, usize> {
    let (mut n, mut in_string, mut escaped) = (1usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' | b',' => {
                n += 1;
                if n > limit {
                    return Err(limit);
                }
            }
            _ => {}
        }
    }
    Ok(n)
}
