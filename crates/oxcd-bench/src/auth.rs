//! `authenticate` (not in etcd's tool): every client logs in with `--user`'s credentials, over and
//! over; what a burst of clients logging in again after an election costs the server.

use clap::Args;
use oxcd_api::etcdserverpb::AuthenticateRequest;
use oxcd_api::etcdserverpb::auth_client::AuthClient;

use crate::{Cli, Conn, closed_loop};

#[derive(Debug, Args)]
pub(crate) struct AuthenticateArgs {
    /// Total number of Authenticate requests
    #[arg(long, default_value_t = 1000)]
    total: u64,
}

pub(crate) async fn authenticate(cli: &Cli, a: &AuthenticateArgs) -> anyhow::Result<()> {
    let (name, password) = cli.credentials()?.ok_or_else(|| anyhow::anyhow!("authenticate needs --user"))?;
    let chans = cli.dial(cli.conns).await?;
    let req = AuthenticateRequest { name, password };
    let clients: Vec<(AuthClient<Conn>, AuthenticateRequest)> =
        (0..cli.clients.max(1)).map(|c| (AuthClient::new(chans[c % chans.len()].clone()), req.clone())).collect();
    closed_loop(cli, a.total, clients, |(auth, req)| {
        Box::pin(async move { auth.authenticate(req.clone()).await.map(drop).map_err(|e| e.message().to_string()) })
    })
    .await
}
