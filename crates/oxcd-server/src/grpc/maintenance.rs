//! `etcdserverpb.Maintenance`: Status and Alarm (the rest arrives with later issues).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use oxcd_api::etcdserverpb::maintenance_server::Maintenance;
use oxcd_api::etcdserverpb::{AlarmRequest, AlarmResponse, StatusRequest, StatusResponse, alarm_request};
use tonic::{Request, Response, Status};

use super::{SERVER_VERSION, require_leader};
use crate::server::EtcdServer;

pub struct MaintenanceService {
    server: Arc<EtcdServer>,
}

impl MaintenanceService {
    pub fn new(server: Arc<EtcdServer>) -> MaintenanceService {
        MaintenanceService { server }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        require_leader(&self.server, &req)?;
        let s = &self.server;
        let backend = s.backend();
        let size = backend.size_bytes() as i64;
        Ok(Response::new(StatusResponse {
            header: Some(s.header(s.store().current_rev())),
            version: SERVER_VERSION.to_string(),
            db_size: size,
            leader: s.raft.leader(),
            raft_index: s.raft.committed.load(Ordering::Acquire),
            raft_term: s.raft.term(),
            raft_applied_index: s.applied.load(Ordering::Acquire),
            errors: Vec::new(),
            db_size_in_use: size,
            is_learner: false,
            storage_version: String::new(),
            db_size_quota: s.cfg.quota_bytes() as i64,
            downgrade_info: None,
        }))
    }

    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        require_leader(&self.server, &req)?;
        let r = req.into_inner();
        match alarm_request::AlarmAction::try_from(r.action) {
            // No alarm can be raised yet (quota alarms arrive with the NOSPACE work): none active.
            // etcd's alarm responses carry no header (its applier builds them bare).
            Ok(alarm_request::AlarmAction::Get) | Ok(alarm_request::AlarmAction::Deactivate) => {
                Ok(Response::new(AlarmResponse { header: None, alarms: Vec::new() }))
            }
            _ => Err(Status::unimplemented("alarm activation is not served yet")),
        }
    }
}
