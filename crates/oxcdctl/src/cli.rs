//! etcdctl's command tree, flags and defaults. Positional arguments are taken as a list and checked
//! by each command, as etcdctl's commands do, so that a wrong count gets etcdctl's message.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// A simple command line client for etcd3 (and oxcd).
#[derive(Debug, Parser)]
#[command(name = "oxcdctl", version, disable_version_flag = true, infer_subcommands = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The global flags; each can also come from `ETCDCTL_<FLAG>` (see [`crate::env`]).
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// gRPC endpoints
    #[arg(long, default_value = "127.0.0.1:2379", value_delimiter = ',', global = true)]
    pub endpoints: Vec<String>,
    /// dial timeout for client connections
    #[arg(long, default_value = "2s", value_parser = parse_duration, global = true)]
    pub dial_timeout: Duration,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, default_value = "5s", value_parser = parse_duration, global = true)]
    pub command_timeout: Duration,
    /// keepalive time for client connections
    #[arg(long, default_value = "2s", value_parser = parse_duration, global = true)]
    pub keepalive_time: Duration,
    /// keepalive timeout for client connections
    #[arg(long, default_value = "6s", value_parser = parse_duration, global = true)]
    pub keepalive_timeout: Duration,
    /// disable transport security for client connections
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", global = true)]
    pub insecure_transport: bool,
    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, default_value = "", global = true)]
    pub cacert: String,
    /// identify secure client using this TLS certificate file
    #[arg(long, default_value = "", global = true)]
    pub cert: String,
    /// identify secure client using this TLS key file
    #[arg(long, default_value = "", global = true)]
    pub key: String,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, default_value = "", global = true)]
    pub user: String,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, default_value = "", global = true)]
    pub password: String,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(short = 'w', long, default_value = "simple", global = true)]
    pub write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true)]
    pub hex: bool,
    /// enable client-side debug logging
    #[arg(long, global = true)]
    pub debug: bool,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long, default_value = "", global = true)]
    pub discovery_srv: String,
    /// service name to query when using DNS discovery
    #[arg(long, default_value = "", global = true)]
    pub discovery_srv_name: String,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", global = true)]
    pub insecure_discovery: bool,
}

const PUT_LONG: &str = "
Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.
";
const MEMBER_LIST_LONG: &str =
    "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.
The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.";
const MEMBER_PROMOTE_LONG: &str = "Promotes a non-voting learner member to a voting one in the cluster.";
const ENDPOINT_STATUS_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.";
const SNAPSHOT_STATUS_LONG: &str =
    "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are hash, revision, total keys, total size.";
const CHECK_DATASCALE_LONG: &str = "If no endpoint is provided, localhost will be used. If multiple endpoints are provided, first endpoint will be used.";

/// Go-style durations as etcdctl takes them: `2s`, `500ms`, `1m`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    oxcd_api::duration::parse(s)
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Gets the key or a range of keys
    #[command(override_usage = "get [options] <key> [range_end]")]
    Get(GetArgs),
    /// Puts the given key into the store
    #[command(override_usage = "put [options] <key> <value> (<value> can also be given from stdin)", long_about = PUT_LONG)]
    Put(PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    #[command(override_usage = "del [options] <key> [range_end]")]
    Del(DelArgs),
    /// Txn processes all the requests in one transaction
    #[command(override_usage = "txn [options]")]
    Txn {
        /// Input transaction in interactive mode
        #[arg(short, long)]
        interactive: bool,
        args: Vec<String>,
    },
    /// Compacts the event history in etcd
    #[command(override_usage = "compaction [options] <revision>")]
    Compaction {
        /// 'true' to wait for compaction to physically remove all old revisions
        #[arg(long)]
        physical: bool,
        args: Vec<String>,
    },
    /// Watches events stream on keys or prefixes
    #[command(override_usage = "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]")]
    Watch(WatchArgs),
    /// Lease related commands
    #[command(override_usage = "lease <subcommand>")]
    Lease {
        #[command(subcommand)]
        cmd: LeaseCmd,
    },
    /// Membership related commands
    #[command(override_usage = "member <subcommand>")]
    Member {
        #[command(subcommand)]
        cmd: MemberCmd,
    },
    /// Endpoint related commands
    #[command(override_usage = "endpoint <subcommand>")]
    Endpoint {
        /// use all endpoints from the cluster member list
        #[arg(long, global = true)]
        cluster: bool,
        #[command(subcommand)]
        cmd: EndpointCmd,
    },
    /// Alarm related commands
    #[command(override_usage = "alarm <subcommand>")]
    Alarm {
        #[command(subcommand)]
        cmd: AlarmCmd,
    },
    /// Defragments the storage of the etcd members with given endpoints
    #[command(override_usage = "defrag")]
    Defrag {
        /// use all endpoints from the cluster member list
        #[arg(long)]
        cluster: bool,
        /// Optional. If present, defragments a data directory not in use by etcd.
        #[arg(verbatim_doc_comment, long, default_value = "")]
        data_dir: String,
        args: Vec<String>,
    },
    /// Manages etcd node snapshots
    #[command(override_usage = "snapshot <subcommand>")]
    Snapshot {
        #[command(subcommand)]
        cmd: SnapshotCmd,
    },
    /// Acquires a named lock
    #[command(override_usage = "lock <lockname> [exec-command arg1 arg2 ...]")]
    Lock {
        /// timeout for session
        #[arg(long, default_value_t = 10)]
        ttl: i64,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Observes and participates in leader election
    #[command(override_usage = "elect <election-name> [proposal]")]
    Elect {
        /// observation mode
        #[arg(short, long)]
        listen: bool,
        args: Vec<String>,
    },
    /// Enable or disable authentication
    #[command(override_usage = "auth <enable or disable>")]
    Auth {
        #[command(subcommand)]
        cmd: AuthCmd,
    },
    /// User related commands
    #[command(override_usage = "user <subcommand>")]
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Role related commands
    #[command(override_usage = "role <subcommand>")]
    Role {
        #[command(subcommand)]
        cmd: RoleCmd,
    },
    /// Transfers leadership to another etcd cluster member.
    #[command(verbatim_doc_comment, override_usage = "move-leader <transferee-member-id>")]
    MoveLeader { args: Vec<String> },
    /// commands for checking properties of the etcd cluster
    #[command(override_usage = "check <subcommand>")]
    Check {
        #[command(subcommand)]
        cmd: CheckCmd,
    },
    /// Makes a mirror at the destination etcd cluster
    #[command(override_usage = "make-mirror [options] <destination>")]
    MakeMirror(MirrorArgs),
    /// Prints the version of oxcdctl
    #[command(override_usage = "version")]
    Version { args: Vec<String> },
    /// Generates shell completion (bash, zsh, fish, elvish or powershell); etcdctl has none
    Completion { shell: clap_complete::Shell },
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// Get only the keys
    #[arg(long)]
    pub keys_only: bool,
    /// Get only the count (etcdctl 3.5)
    #[arg(long, hide = true)]
    pub count_only: bool,
    /// Maximum number of results
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Get keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// Only write values when using the "simple" output format
    #[arg(long)]
    pub print_value_only: bool,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long, default_value = "")]
    pub sort_by: String,
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// updates the key using its current lease
    #[arg(long)]
    pub ignore_lease: bool,
    /// updates the key using its current value
    #[arg(long)]
    pub ignore_value: bool,
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long)]
    pub prev_kv: bool,
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DelArgs {
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long)]
    pub from_key: bool,
    /// delete keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long)]
    pub prev_kv: bool,
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short, long)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long)]
    pub prefix: bool,
    /// get the previous key-value pair before the event happens
    #[arg(long)]
    pub prev_kv: bool,
    /// Revision to start watching
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// get periodic watch progress notification from server (etcdctl 3.5)
    #[arg(long, hide = true)]
    pub progress_notify: bool,
    pub args: Vec<String>,
    /// The exec command after `--` (split off before parsing).
    #[arg(skip)]
    pub exec: Option<Vec<String>>,
}

#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// Creates leases
    #[command(override_usage = "grant <ttl>")]
    Grant { args: Vec<String> },
    /// Revokes leases
    #[command(override_usage = "revoke <leaseID>")]
    Revoke { args: Vec<String> },
    /// Get lease information
    #[command(override_usage = "timetolive <leaseID> [options]")]
    Timetolive {
        /// Get keys attached to this lease
        #[arg(long)]
        keys: bool,
        args: Vec<String>,
    },
    /// List all active leases
    #[command(override_usage = "list")]
    List { args: Vec<String> },
    /// Keeps leases alive (renew)
    #[command(override_usage = "keep-alive [options] <leaseID>")]
    KeepAlive {
        /// Resets the keep-alive time to its original value and exits immediately
        #[arg(long)]
        once: bool,
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemberCmd {
    /// Adds a member into the cluster
    #[command(override_usage = "add <memberName> [options]")]
    Add {
        /// indicates if the new member is raft learner
        #[arg(long)]
        learner: bool,
        /// comma separated peer URLs for the new member.
        #[arg(verbatim_doc_comment, long, default_value = "")]
        peer_urls: String,
        args: Vec<String>,
    },
    /// Removes a member from the cluster
    #[command(override_usage = "remove <memberID>")]
    Remove { args: Vec<String> },
    /// Updates a member in the cluster
    #[command(override_usage = "update <memberID> [options]")]
    Update {
        /// comma separated peer URLs for the updated member.
        #[arg(verbatim_doc_comment, long, default_value = "")]
        peer_urls: String,
        args: Vec<String>,
    },
    /// Lists all members in the cluster
    #[command(override_usage = "list", long_about = MEMBER_LIST_LONG)]
    List { args: Vec<String> },
    /// Promotes a non-voting member in the cluster
    #[command(override_usage = "promote <memberID>", long_about = MEMBER_PROMOTE_LONG)]
    Promote { args: Vec<String> },
}

#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    #[command(override_usage = "health")]
    Health { args: Vec<String> },
    /// Prints out the status of endpoints specified in `--endpoints` flag
    #[command(override_usage = "status", long_about = ENDPOINT_STATUS_LONG)]
    Status { args: Vec<String> },
    /// Prints the KV history hash for each endpoint in --endpoints
    #[command(override_usage = "hashkv")]
    Hashkv {
        /// maximum revision to hash (default: all revisions)
        #[arg(long, default_value_t = 0)]
        rev: i64,
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlarmCmd {
    /// Disarms all alarms
    #[command(override_usage = "disarm")]
    Disarm { args: Vec<String> },
    /// Lists all alarms
    #[command(override_usage = "list")]
    List { args: Vec<String> },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Stores an etcd node backend snapshot to a given file
    #[command(override_usage = "save <filename>")]
    Save { args: Vec<String> },
    /// Restores an etcd member snapshot to an etcd directory
    #[command(override_usage = "restore <filename> [options]")]
    Restore {
        /// Path to the data directory
        #[arg(long, default_value = "")]
        data_dir: String,
        /// Path to the WAL directory (use --data-dir if none given)
        #[arg(long, default_value = "")]
        wal_dir: String,
        /// Initial cluster configuration for restore bootstrap
        #[arg(long, default_value = "default=http://localhost:2380")]
        initial_cluster: String,
        /// Initial cluster token for the etcd cluster during restore bootstrap
        #[arg(long, default_value = "etcd-cluster")]
        initial_cluster_token: String,
        /// List of this member's peer URLs to advertise to the rest of the cluster
        #[arg(long, default_value = "http://localhost:2380")]
        initial_advertise_peer_urls: String,
        /// Human-readable name for this member
        #[arg(long, default_value = "default")]
        name: String,
        /// Ignore snapshot integrity hash value (required if copied from data directory)
        #[arg(long)]
        skip_hash_check: bool,
        args: Vec<String>,
    },
    /// Gets backend snapshot status of a given file
    #[command(override_usage = "status <filename>", long_about = SNAPSHOT_STATUS_LONG)]
    Status { args: Vec<String> },
}

#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Enables authentication
    #[command(override_usage = "enable")]
    Enable { args: Vec<String> },
    /// Disables authentication
    #[command(override_usage = "disable")]
    Disable { args: Vec<String> },
    /// Returns authentication status
    #[command(override_usage = "status", hide = true)]
    Status { args: Vec<String> },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Adds a new user
    #[command(override_usage = "add <user name or user:password> [options]")]
    Add {
        /// Read password from stdin instead of interactive terminal
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        interactive: bool,
        /// Supply password from the command line flag
        #[arg(long, default_value = "")]
        new_user_password: String,
        /// Create a user without password (CN based auth only)
        #[arg(long)]
        no_password: bool,
        args: Vec<String>,
    },
    /// Deletes a user
    #[command(override_usage = "delete <user name>")]
    Delete { args: Vec<String> },
    /// Gets detailed information of a user
    #[command(override_usage = "get <user name> [options]")]
    Get {
        /// Show permissions of roles granted to the user
        #[arg(long)]
        detail: bool,
        args: Vec<String>,
    },
    /// Lists all users
    #[command(override_usage = "list")]
    List { args: Vec<String> },
    /// Changes password of user
    #[command(override_usage = "passwd <user name> [options]")]
    Passwd {
        /// If true, read password from stdin instead of interactive terminal
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        interactive: bool,
        args: Vec<String>,
    },
    /// Grants a role to a user
    #[command(override_usage = "grant-role <user name> <role name>")]
    GrantRole { args: Vec<String> },
    /// Revokes a role from a user
    #[command(override_usage = "revoke-role <user name> <role name>")]
    RevokeRole { args: Vec<String> },
}

#[derive(Debug, Subcommand)]
pub enum RoleCmd {
    /// Adds a new role
    #[command(override_usage = "add <role name>")]
    Add { args: Vec<String> },
    /// Deletes a role
    #[command(override_usage = "delete <role name>")]
    Delete { args: Vec<String> },
    /// Gets detailed information of a role
    #[command(override_usage = "get <role name>")]
    Get { args: Vec<String> },
    /// Lists all roles
    #[command(override_usage = "list")]
    List { args: Vec<String> },
    /// Grants a key to a role
    #[command(override_usage = "grant-permission [options] <role name> <permission type> <key> [endkey]")]
    GrantPermission {
        /// grant a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long)]
        from_key: bool,
        /// grant a prefix permission
        #[arg(long)]
        prefix: bool,
        args: Vec<String>,
    },
    /// Revokes a key from a role
    #[command(override_usage = "revoke-permission <role name> <key> [endkey]")]
    RevokePermission {
        /// revoke a permission of keys that are greater than or equal to the given key using byte compare
        #[arg(long)]
        from_key: bool,
        /// revoke a prefix permission
        #[arg(long)]
        prefix: bool,
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CheckCmd {
    /// Check the performance of the etcd cluster
    #[command(override_usage = "perf [options]")]
    Perf(PerfArgs),
    /// Check the memory usage of holding data for different workloads on a given server endpoint.
    #[command(
        verbatim_doc_comment,
        override_usage = "datascale [options]",
        long_about = CHECK_DATASCALE_LONG
    )]
    Datascale(DatascaleArgs),
}

/// Flags both checks take.
#[derive(Debug, Args)]
pub struct CheckCleanup {
    /// Compact storage with last revision after test is finished.
    #[arg(verbatim_doc_comment, long)]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(verbatim_doc_comment, long)]
    pub auto_defrag: bool,
}

#[derive(Debug, Args)]
pub struct PerfArgs {
    #[command(flatten)]
    pub cleanup: CheckCleanup,
    /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the performance check's keys.
    #[arg(verbatim_doc_comment, long, default_value = "/etcdctl-check-perf/")]
    pub prefix: String,
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DatascaleArgs {
    #[command(flatten)]
    pub cleanup: CheckCleanup,
    /// The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the datascale check's keys.
    #[arg(verbatim_doc_comment, long, default_value = "/etcdctl-check-datascale/")]
    pub prefix: String,
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long, default_value = "")]
    pub dest_cacert: String,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long, default_value = "")]
    pub dest_cert: String,
    /// Identify secure client using this TLS key file
    #[arg(long, default_value = "")]
    pub dest_key: String,
    /// Disable transport security for client connections
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub dest_insecure_transport: bool,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long, default_value = "")]
    pub dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long)]
    pub no_dest_prefix: bool,
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    pub prefix: String,
    pub args: Vec<String>,
}
