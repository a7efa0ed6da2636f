//! `v3lockpb.Lock` and `v3electionpb.Election` (the logic lives in `crate::concurrency`).

use std::sync::Arc;

use oxcd_api::EtcdError;
use oxcd_api::v3electionpb::election_server::Election;
use oxcd_api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use oxcd_api::v3lockpb::lock_server::Lock;
use oxcd_api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::{require_leader, status};
use crate::server::EtcdServer;

/// etcd's Lock and Election services act through an etcd client inside the server, so every
/// error they pass on (a lease not found, a permission denied, an invalid token) reaches the
/// caller as a plain error: code Unknown, with the error's text.
fn client_error(e: impl Into<crate::error::ServeError>) -> Status {
    let s = status(e);
    if s.code() == tonic::Code::Unknown { s } else { Status::unknown(s.message().to_string()) }
}

pub struct LockService {
    server: Arc<EtcdServer>,
}

impl LockService {
    pub fn new(server: Arc<EtcdServer>) -> LockService {
        LockService { server }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(client_error)?;
        let r = req.into_inner();
        let (mut header, key) = self.server.lock(&who, &r.name, r.lease).await.map_err(client_error)?;
        self.server.fill_header_from(&mut header);
        Ok(Response::new(LockResponse { header: Some(header), key }))
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(client_error)?;
        let header = self.server.unlock(&who, req.into_inner().key).await.map_err(client_error)?;
        Ok(Response::new(UnlockResponse { header: Some(header) }))
    }
}

pub struct ElectionService {
    server: Arc<EtcdServer>,
}

impl ElectionService {
    pub fn new(server: Arc<EtcdServer>) -> ElectionService {
        ElectionService { server }
    }
}

fn leader_key(k: Option<LeaderKey>) -> Result<LeaderKey, Status> {
    k.ok_or_else(|| EtcdError::ElectionMissingLeaderKey.to_status())
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, req: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(client_error)?;
        let r = req.into_inner();
        let (mut header, key, rev) =
            self.server.campaign(&who, &r.name, r.lease, r.value).await.map_err(client_error)?;
        self.server.fill_header_from(&mut header);
        Ok(Response::new(CampaignResponse {
            header: Some(header),
            leader: Some(LeaderKey { name: r.name, key, rev, lease: r.lease }),
        }))
    }

    async fn proclaim(&self, req: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(client_error)?;
        let r = req.into_inner();
        let l = leader_key(r.leader)?;
        let header = self.server.proclaim(&who, &l.key, l.rev, l.lease, r.value).await.map_err(client_error)?;
        Ok(Response::new(ProclaimResponse { header: Some(header) }))
    }

    async fn leader(&self, req: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(client_error)?;
        let (header, kv) = self.server.election_leader(&who, &req.into_inner().name).await.map_err(client_error)?;
        Ok(Response::new(LeaderResponse { header: Some(header), kv: Some(kv) }))
    }

    async fn observe(&self, req: Request<LeaderRequest>) -> Result<Response<BoxStream<LeaderResponse>>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(client_error)?;
        let name = req.into_inner().name;
        let (tx, rx) = mpsc::channel(16);
        let server = self.server.clone();
        tokio::spawn(async move {
            let out = tx.clone();
            let result = server
                .observe(&who, &name, |mut header, kv| {
                    server.fill_header_from(&mut header);
                    let tx = out.clone();
                    async move { tx.send(Ok(LeaderResponse { header: Some(header), kv: Some(kv) })).await.is_ok() }
                })
                .await;
            if let Err(e) = result {
                let _ = tx.send(Err(status(e))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(&self, req: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        require_leader(&self.server, &req)?;
        let who = self.server.who(&req).await.map_err(client_error)?;
        let l = leader_key(req.into_inner().leader)?;
        let header = self.server.resign(&who, &l.key, l.rev).await.map_err(client_error)?;
        Ok(Response::new(ResignResponse { header: Some(header) }))
    }
}
