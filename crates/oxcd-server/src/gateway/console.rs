//! The web console at `/ui`: one page of HTML, CSS and JavaScript written for oxcd, embedded in
//! the binary (no build step, no framework, nothing fetched from elsewhere). The page does
//! everything through the gateway's JSON API, which the console serves under `/ui/v3/` as well
//! (so `--enable-grpc-gateway=false` does not take the console with it): the same services gRPC
//! clients call, with the user's token, under the same auth and TLS. The charts read `/metrics`,
//! and the cluster table asks each member for its own status at its client URL.

use axum::Router;
use axum::body::Body;
use axum::handler::Handler;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};

/// Where the console's API calls go (the gateway's methods, as under `/v3/`).
pub(super) const API: &str = "/ui/v3/";

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");

/// Adds the console's routes: the page, its two assets, and the API.
pub(super) fn routes<S, H, T>(router: Router<S>, api: H) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    H: Handler<T, S>,
    T: 'static,
{
    router
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route("/ui/", get(|| async { asset(INDEX, "text/html; charset=utf-8") }))
        .route("/ui/app.js", get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }))
        .route("/ui/app.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
        .route("/ui/v3/{*method}", post(api))
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Scripts and styles from this member only; calls to the other members for their status.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' http: https:; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    resp
}

fn redirect(to: &'static str) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(header::LOCATION, HeaderValue::from_static(to));
    resp
}
