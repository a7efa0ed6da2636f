//! The health endpoints, as etcd 3.5 serves them (on the client port and on
//! `--listen-metrics-urls`):
//!
//! - `/health`: `{"health":"true|false","reason":...}`; false for a raised alarm (unless named by
//!   `?exclude=NOSPACE`), for no leader (unless `?serializable=true`), or when a read (local with
//!   `serializable`, linearizable without) fails.
//! - `/livez` (the member answers local reads) and `/readyz` (no CORRUPT alarm, local and
//!   linearizable reads, not a learner), and each check alone under them
//!   (`/readyz/linearizable_read`); `ok` or the failed checks, `?verbose` lists every check,
//!   `?exclude=<check>` skips one.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use oxcd_api::etcdserverpb::AlarmType;

use super::{Gateway, plain_text, with_etcd_headers};
use crate::server::EtcdServer;

/// The query's values of `name` (`?exclude=a&exclude=b`).
fn query_values(req: &Request, name: &str) -> Vec<String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| v.to_string())
        })
        .collect()
}

/// A read through the member: `serializable` reads the local store, otherwise a linearizable
/// read (bounded by the request timeout).
async fn read_check(server: &EtcdServer, serializable: bool) -> Result<(), String> {
    if serializable {
        return server.store().read().map(drop).map_err(|e| e.to_string());
    }
    match tokio::time::timeout(server.cfg.request_timeout(), server.linearizable_read()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(oxcd_api::EtcdError::Timeout.to_string()),
    }
}

/// `GET /health` (etcd 3.5's `checkHealth` and `checkAPI`).
pub(super) async fn health(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let server = &gw.server;
    let excluded = query_values(&req, "exclude");
    let serializable = query_values(&req, "serializable").first().is_some_and(|v| v == "true");
    drop(req);
    let mut reason = String::new();
    for (alarm, _) in server.alarms().raised() {
        let name = AlarmType::try_from(alarm).map_or("UNKNOWN", |a| a.as_str_name());
        if excluded.iter().any(|e| e == name) {
            continue;
        }
        reason = match AlarmType::try_from(alarm) {
            Ok(AlarmType::Nospace) => "ALARM NOSPACE".into(),
            Ok(AlarmType::Corrupt) => "ALARM CORRUPT".into(),
            _ => "ALARM UNKNOWN".into(),
        };
        break;
    }
    if reason.is_empty() && !serializable && !server.has_leader() {
        reason = "RAFT NO LEADER".into();
    }
    if reason.is_empty()
        && let Err(e) = read_check(server, serializable).await
    {
        reason = format!("RANGE ERROR:{e}");
    }
    let body = serde_json::json!({ "health": if reason.is_empty() { "true" } else { "false" }, "reason": reason });
    if !reason.is_empty() {
        crate::metrics::HEALTH_FAILURES.inc();
        tracing::warn!(reason = %reason, "serving /health false");
        return plain_text(StatusCode::SERVICE_UNAVAILABLE, format!("{body}\n"));
    }
    crate::metrics::HEALTH_SUCCESS.inc();
    // etcd 3.5 writes the JSON body as text/plain.
    let mut resp = with_etcd_headers(Response::new(Body::from(body.to_string())), false);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The checks of `/livez` and `/readyz`, in the order they are reported.
const LIVEZ: &[&str] = &["serializable_read"];
const READYZ: &[&str] = &["data_corruption", "serializable_read", "linearizable_read", "non_learner"];

async fn run_check(server: &EtcdServer, name: &str) -> Result<(), String> {
    match name {
        "serializable_read" => read_check(server, true).await,
        "linearizable_read" => read_check(server, false).await,
        "data_corruption" if server.alarms().corrupt() => Err("alarm activated: CORRUPT".into()),
        "non_learner" if server.is_learner() => Err("not supported for learner".into()),
        _ => Ok(()),
    }
}

/// What a `/livez` or `/readyz` request asks: its path, the checks it excludes, and whether it
/// wants every check's line.
struct Asked {
    path: String,
    excluded: Vec<String>,
    verbose: bool,
}

impl Asked {
    fn of(req: &Request) -> Asked {
        Asked {
            path: req.uri().path().to_string(),
            excluded: query_values(req, "exclude"),
            verbose: !query_values(req, "verbose").is_empty(),
        }
    }
}

/// `/livez`, `/readyz` and their checks (etcd 3.5.x's `CheckRegistry`).
async fn checks(server: &EtcdServer, asked: Asked, names: &[&str]) -> Response {
    let mut out = String::new();
    let mut failed = false;
    for name in names.iter().filter(|n| !asked.excluded.iter().any(|e| e == *n)) {
        match run_check(server, name).await {
            Ok(()) => out.push_str(&format!("[+]{name} ok\n")),
            Err(e) => {
                failed = true;
                out.push_str(&format!("[-]{name} failed: {e}\n"));
            }
        }
    }
    if failed {
        tracing::error!(path = %asked.path, reason = %out, "Health check error");
        return plain_text(StatusCode::SERVICE_UNAVAILABLE, format!("{out}\n"));
    }
    let text = if asked.verbose { format!("{out}ok\n") } else { "ok\n".to_string() };
    plain_text(StatusCode::OK, text)
}

pub(super) async fn livez(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    checks(&gw.server, Asked::of(&req), LIVEZ).await
}

pub(super) async fn readyz(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    checks(&gw.server, Asked::of(&req), READYZ).await
}

/// `/livez/<check>`, `/readyz/<check>`: one check; an unknown one is 404.
pub(super) async fn one_check(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let asked = Asked::of(&req);
    let (group, name) = asked.path.trim_start_matches('/').split_once('/').unwrap_or_default();
    let known = match group {
        "livez" => LIVEZ,
        _ => READYZ,
    };
    match known.iter().find(|n| **n == name) {
        Some(n) => checks(&gw.server, asked, &[n]).await,
        None => super::unknown_path(req).await,
    }
}
