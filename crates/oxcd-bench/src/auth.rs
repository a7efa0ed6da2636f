//! `authenticate` (not in etcd's tool): every client logs in with `--user`'s credentials, over and
//! over; what a burst of clients logging in again after an election costs the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Args;
use oxcd_api::etcdserverpb::AuthenticateRequest;
use oxcd_api::etcdserverpb::auth_client::AuthClient;

use crate::Cli;
use crate::progress::Bar;
use crate::report::{Recorder, Report};

#[derive(Debug, Args)]
pub(crate) struct AuthenticateArgs {
    /// Total number of Authenticate requests
    #[arg(long, default_value_t = 1000)]
    total: u64,
}

pub(crate) async fn authenticate(cli: &Cli, a: &AuthenticateArgs) -> anyhow::Result<()> {
    let (name, password) = cli.credentials()?.ok_or_else(|| anyhow::anyhow!("authenticate needs --user"))?;
    let chans = cli.dial(cli.conns).await?;
    let next = Arc::new(AtomicU64::new(0));
    let bar = Arc::new(Bar::start(a.total));
    let report = Report::start(cli.format());
    let total = a.total;
    let mut tasks = Vec::new();
    for c in 0..cli.clients.max(1) {
        let mut auth = AuthClient::new(chans[c % chans.len()].clone());
        let (next, bar, mut rec): (_, _, Recorder) = (next.clone(), bar.clone(), report.recorder());
        let req = AuthenticateRequest { name: name.clone(), password: password.clone() };
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let start = Instant::now();
                let result = auth.authenticate(req.clone()).await.map(drop).map_err(|e| e.message().to_string());
                rec.record(start, Instant::now(), result);
                bar.inc(1);
            }
            anyhow::Ok(rec)
        }));
    }
    let mut all = report.recorder();
    for t in tasks {
        all.merge(t.await??);
    }
    bar.finish();
    cli.print("", &report.finish(all), "");
    Ok(())
}
