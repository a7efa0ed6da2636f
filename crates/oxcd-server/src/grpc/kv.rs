//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact (the operations live in `crate::kv`).

use std::sync::Arc;

use oxcd_api::etcdserverpb::kv_server::Kv;
use oxcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use oxcd_auth::AuthInfo;
use prost::Message;
use tonic::{Request, Response, Status};

use super::{require_leader, status};
use crate::server::EtcdServer;

pub struct KvService {
    server: Arc<EtcdServer>,
}

impl KvService {
    pub fn new(server: Arc<EtcdServer>) -> KvService {
        KvService { server }
    }
}

/// The edge checks of every KV request: leader required, and who sent it (Go gRPC's size limit
/// is the client port's, `listener.rs`).
async fn admit<T: Message>(server: &EtcdServer, req: Request<T>) -> Result<(AuthInfo, T), Status> {
    require_leader(server, &req)?;
    let who = server.who(&req).await.map_err(status)?;
    let r = req.into_inner();
    Ok((who, r))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let (who, r) = admit(&self.server, req).await?;
        self.server.range(&who, r).await.map(Response::new).map_err(status)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let (who, r) = admit(&self.server, req).await?;
        self.server.put(&who, r).await.map(Response::new).map_err(status)
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let (who, r) = admit(&self.server, req).await?;
        self.server.delete_range(&who, r).await.map(Response::new).map_err(status)
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let (who, r) = admit(&self.server, req).await?;
        self.server.txn(&who, r).await.map(Response::new).map_err(status)
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let (who, r) = admit(&self.server, req).await?;
        self.server.compact(&who, r).await.map(Response::new).map_err(status)
    }
}
