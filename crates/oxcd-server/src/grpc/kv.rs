//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use oxcd_api::etcdserverpb::kv_server::Kv;
use oxcd_api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
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

    /// Proposes a write and answers with what the applier returned for it.
    async fn write<R: Written>(&self, p: Proposal) -> Result<Response<R>, Status> {
        let applied = self.server.propose(p).await.map_err(status)?;
        let r = R::take(applied).ok_or_else(|| Status::internal("apply result of the wrong kind"))?;
        Ok(self.answer(r))
    }

    /// Completes the header (ids, term) of a response and wraps it.
    fn answer<R: Answer>(&self, mut r: R) -> Response<R> {
        self.server.fill_header(r.header());
        Response::new(r)
    }
}

/// A KV response, whose header the edge completes.
trait Answer: Sized {
    fn header(&mut self) -> &mut Option<ResponseHeader>;
}

/// A KV response the applier hands back.
trait Written: Answer {
    fn take(a: Applied) -> Option<Self>;
}

macro_rules! answer {
    ($t:ty) => {
        impl Answer for $t {
            fn header(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        }
    };
    ($t:ty, $variant:ident) => {
        answer!($t);
        impl Written for $t {
            fn take(a: Applied) -> Option<Self> {
                match a {
                    Applied::$variant(r) => Some(r),
                    _ => None,
                }
            }
        }
    };
}
answer!(RangeResponse);
answer!(PutResponse, Put);
answer!(DeleteRangeResponse, DeleteRange);
answer!(TxnResponse, Txn);
answer!(CompactionResponse, Compaction);

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
        Ok(self.answer(request::range(&view, &r).map_err(status)?))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        require_leader(&self.server, &req)?;
        let r = req.into_inner();
        check_size(&self.server, r.encoded_len())?;
        validate::check_put(&r).map_err(status)?;
        self.write(Proposal::Put(r)).await
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        require_leader(&self.server, &req)?;
        let r = req.into_inner();
        check_size(&self.server, r.encoded_len())?;
        validate::check_delete(&r).map_err(status)?;
        self.write(Proposal::DeleteRange(r)).await
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
            return Ok(self.answer(request::apply_txn(&mut view, &self.server.lessor(), &r).map_err(status)?));
        }
        self.write(Proposal::Txn(r)).await
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        require_leader(&self.server, &req)?;
        self.write(Proposal::Compaction(req.into_inner())).await
    }
}
