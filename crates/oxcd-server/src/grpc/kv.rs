//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use oxcd_api::etcdserverpb::kv_server::Kv;
use oxcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use oxcd_api::oxcdpb::internal_raft_request::Request as Proposal;
use oxcd_api::validate;
use prost::Message;
use tonic::{Request, Response, Status};

use super::{check_size, require_leader, status};
use crate::apply::request;
use crate::server::EtcdServer;
use crate::wait::Response as Applied;

pub struct KvService {
    server: Arc<EtcdServer>,
}

impl KvService {
    pub fn new(server: Arc<EtcdServer>) -> KvService {
        KvService { server }
    }

    /// Proposes a write and returns what the applier answered.
    async fn propose(&self, p: Proposal) -> Result<Applied, Status> {
        self.server.propose(p).await.map_err(status)
    }
}

fn unexpected(r: Applied) -> Status {
    Status::internal(format!("unexpected apply result {r:?}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        require_leader(&self.server, &req)?;
        let r = req.into_inner();
        check_size(&self.server, r.encoded_len())?;
        validate::check_range(&r).map_err(status)?;
        if !r.serializable {
            self.server.linearizable_read().await.map_err(status)?;
        }
        let store = self.server.store();
        let view = store.read().map_err(status)?;
        let mut resp = request::range(&view, &r).map_err(status)?;
        self.server.fill_header(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        require_leader(&self.server, &req)?;
        let r = req.into_inner();
        check_size(&self.server, r.encoded_len())?;
        validate::check_put(&r).map_err(status)?;
        match self.propose(Proposal::Put(r)).await? {
            Applied::Put(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        require_leader(&self.server, &req)?;
        let r = req.into_inner();
        check_size(&self.server, r.encoded_len())?;
        validate::check_delete(&r).map_err(status)?;
        match self.propose(Proposal::DeleteRange(r)).await? {
            Applied::DeleteRange(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        require_leader(&self.server, &req)?;
        let r = req.into_inner();
        check_size(&self.server, r.encoded_len())?;
        validate::check_txn(&r, self.server.cfg.max_txn_ops).map_err(status)?;
        if request::is_txn_readonly(&r) {
            // Served locally, like etcd: after a ReadIndex unless every range is serializable.
            if !request::is_txn_serializable(&r) {
                self.server.linearizable_read().await.map_err(status)?;
            }
            let store = self.server.store();
            let mut view = store.read().map_err(status)?;
            let mut resp = request::apply_txn(&mut view, &self.server.lessor(), &r).map_err(status)?;
            self.server.fill_header(&mut resp.header);
            return Ok(Response::new(resp));
        }
        match self.propose(Proposal::Txn(r)).await? {
            Applied::Txn(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        require_leader(&self.server, &req)?;
        let r = req.into_inner();
        match self.propose(Proposal::Compaction(r)).await? {
            Applied::Compaction(mut resp) => {
                self.server.fill_header(&mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }
}
