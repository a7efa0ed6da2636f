//! oxcdctl against etcdctl 3.4, as a user's script would see them: one scripted session covering
//! every command and output format is run four ways, each on a fresh one-member server started on
//! the same ports (so member and cluster ids are the same):
//!
//! 1. etcdctl against etcd 3.4 — the reference;
//! 2. oxcdctl against etcd 3.4 — must print the same, byte for byte (stdout, stderr, exit code);
//! 3. oxcdctl against oxcd — the same again;
//! 4. etcdctl against oxcd — oxcdctl must match it on every step, including the ones oxcd answers
//!    with an error (both show the server's error).
//!
//! Only lease ids (random per server), durations and database sizes are normalised.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oxcd_testkit::{Binary, Cluster, ClusterOptions, ETCD_34, ETCDCTL_34, free_port, mask_remaining_ttl, sort_list};

/// What a step does.
enum Step {
    /// Runs to completion with this standard input.
    Run(&'static [&'static str], &'static str),
    /// Runs `lease grant` (with these arguments), remembering the lease id under a name (`{L1}`
    /// in later steps) from whatever format it was printed in.
    Grant(&'static str, &'static [&'static str]),
    /// Starts in the background (stdin kept open).
    Start(&'static str, &'static [&'static str], &'static str),
    /// Interrupts a background command (SIGINT) and records what it printed.
    Stop(&'static str),
    /// Waits.
    Sleep(u64),
    /// Waits (up to 20 s) until a background command has printed this text.
    WaitFor(&'static str, &'static str),
}

use Step::*;

/// Steps of the session (then, in `AUTH`, users, roles and authentication).
const COMMON: &[Step] = &[
    // ---- put
    Run(&["put", "foo", "bar"], ""),
    Run(&["-w", "json", "put", "foo", "bar"], ""),
    Run(&["-w", "fields", "put", "foo", "bar"], ""),
    Run(&["-w", "protobuf", "put", "foo", "bar"], ""),
    Run(&["-w", "table", "put", "foo", "bar"], ""),
    Run(&["put", "--prev-kv", "foo", "bar2"], ""),
    Run(&["-w", "json", "put", "--prev-kv", "foo", "bar3"], ""),
    Run(&["-w", "fields", "put", "--prev-kv", "foo", "bar4"], ""),
    Run(&["-w", "protobuf", "put", "--prev-kv", "foo", "bar5"], ""),
    Run(&["put", "stdkey"], "from stdin\nsecond line\n"),
    Run(&["-w", "json", "get", "stdkey"], ""),
    Run(&["put", "--ignore-value", "foo"], ""),
    Run(&["put", "--ignore-value", "missing"], ""),
    Run(&["put", "--ignore-value", "foo", "v"], ""),
    Run(&["put"], ""),
    Run(&["put", "k"], ""),
    Run(&["put", "--lease=zzz", "k", "v"], ""),
    Run(&["put", "--lease=1234", "k", "v"], ""),
    Run(&["put", "", "v"], ""),
    Run(&["put", "--", "dashkey", "-dash-value"], ""),
    Run(&["put", "g/k1", "v1"], ""),
    Run(&["put", "g/k2", "v2"], ""),
    Run(&["put", "g/k3", "v3"], ""),
    Run(&["put", "g/k2", "v2b"], ""),
    Run(&["put", "h/bin", "\u{1}\u{7f}ab\té"], ""),
    // ---- get
    Run(&["get", "foo"], ""),
    Run(&["-w", "json", "get", "foo"], ""),
    Run(&["-w", "fields", "get", "foo"], ""),
    Run(&["-w", "protobuf", "get", "foo"], ""),
    Run(&["-w", "table", "get", "foo"], ""),
    Run(&["get", "g/k1", "g/k3"], ""),
    Run(&["-w", "fields", "get", "g/k1", "g/k3"], ""),
    Run(&["get", "--prefix", "g/"], ""),
    Run(&["-w", "json", "get", "--prefix", "g/"], ""),
    Run(&["get", "--from-key", "g/k2"], ""),
    Run(&["get", "--prefix", "--keys-only", "g/"], ""),
    Run(&["-w", "json", "get", "--prefix", "--keys-only", "g/"], ""),
    Run(&["get", "--prefix", "--limit=2", "g/"], ""),
    Run(&["-w", "json", "get", "--prefix", "--limit=2", "g/"], ""),
    Run(&["get", "--rev=22", "g/k2"], ""),
    Run(&["get", "--rev=1", "g/k2"], ""),
    Run(&["get", "--rev=-1", "g/k2"], ""),
    Run(&["get", "--prefix", "--order=DESCEND", "g/"], ""),
    Run(&["get", "--prefix", "--sort-by=MODIFY", "g/"], ""),
    Run(&["get", "--prefix", "--sort-by=create", "--order=descend", "g/"], ""),
    Run(&["-w", "json", "get", "--prefix", "--sort-by=VALUE", "--order=ASCEND", "g/"], ""),
    Run(&["get", "--prefix", "--print-value-only", "g/"], ""),
    Run(&["get", "--print-value-only", "--keys-only", "g/k1"], ""),
    Run(&["-w", "json", "get", "--print-value-only", "g/k1"], ""),
    Run(&["get", "h/bin"], ""),
    Run(&["--hex", "get", "h/bin"], ""),
    Run(&["-w", "fields", "get", "h/bin"], ""),
    Run(&["-w", "json", "--hex", "get", "h/bin"], ""),
    Run(&["get", "missing"], ""),
    Run(&["-w", "json", "get", "missing"], ""),
    Run(&["-w", "fields", "get", "missing"], ""),
    Run(&["get", "--consistency=s", "foo"], ""),
    Run(&["get", "--consistency=x", "foo"], ""),
    Run(&["get", "--order=BAD", "foo"], ""),
    Run(&["get", "--sort-by=BAD", "foo"], ""),
    Run(&["get"], ""),
    Run(&["get", "--prefix", "--from-key", "g/"], ""),
    Run(&["get", "--prefix", "g/", "h/"], ""),
    Run(&["get", "--rev=1000", "foo"], ""),
    Run(&["get", "", "--prefix", "--keys-only"], ""),
    // ---- del
    Run(&["del", "missing"], ""),
    Run(&["-w", "json", "del", "missing"], ""),
    Run(&["-w", "fields", "del", "missing"], ""),
    Run(&["-w", "protobuf", "del", "missing"], ""),
    Run(&["-w", "table", "del", "missing"], ""),
    Run(&["put", "d/k1", "a"], ""),
    Run(&["put", "d/k2", "b"], ""),
    Run(&["put", "d/k3", "c"], ""),
    Run(&["put", "d/k4", "d"], ""),
    Run(&["del", "--prev-kv", "d/k1"], ""),
    Run(&["-w", "json", "del", "--prev-kv", "d/k2"], ""),
    Run(&["-w", "fields", "del", "--prefix", "--prev-kv", "d/"], ""),
    Run(&["del", "--from-key", "zz"], ""),
    Run(&["del"], ""),
    Run(&["del", "a", "b", "c"], ""),
    Run(&["del", "--prefix", "a", "b"], ""),
    Run(&["del", "--prefix", "--from-key", "a"], ""),
    // ---- txn
    Run(
        &["txn"],
        "mod(\"g/k1\") > \"0\"\ncreate(\"g/k1\") = \"19\"\nvalue(\"g/k2\") = \"v2b\"\nversion(\"g/k2\") > \"1\"\n\n\
         put t/x \"x value\"\nput --prev-kv g/k1 v1b\nget --prefix g/\ndel --prev-kv g/k3\nget g/k1 g/k3\n\nput t/fail f\n\n",
    ),
    Run(&["-w", "json", "txn"], "value(\"t/x\") = \"nope\"\n\nput t/y y\n\nget --keys-only t/x\nput t/z z\n\n"),
    Run(&["-w", "fields", "txn"], "value(\"t/x\") = \"x value\"\n\nput --prev-kv t/x x2\nget t/x\n\n\n"),
    Run(&["-w", "protobuf", "txn"], "\nget t/x\n\n\n"),
    Run(&["-w", "table", "txn"], "\n\n\n"),
    Run(&["txn", "-i"], "value(\"t/x\") != \"2\"\n\nget t/x\n\nput t/fail fv\n\n"),
    Run(&["txn"], "\n\n\n"),
    Run(&["txn"], ""),
    Run(&["txn"], "mod(\"t/x\") > \"0\"\n\nget t/x"),
    Run(&["txn"], "value t/x = 1\n\n\n\n"),
    Run(&["txn"], "value(t/x) = 1\n\n\n\n"),
    Run(&["txn"], "foo(\"t/x\") = \"1\"\n\n\n\n"),
    Run(&["txn"], "mod(\"t/x\") > \"abc\"\n\n\n\n"),
    Run(&["txn"], "mod(\"t/x\") >\n\n\n\n"),
    Run(&["txn"], "\nfoo t/x\n\n\n"),
    Run(&["txn"], "\nget\n\n\n"),
    Run(&["txn"], "\nput t/x\n\n\n"),
    Run(&["txn"], "\nput t/a 1\ndel --prefix t/\n\n\n"),
    Run(&["txn", "extra"], ""),
    // ---- compaction
    Run(&["compaction", "5"], ""),
    Run(&["-w", "json", "compaction", "6"], ""),
    Run(&["compaction", "--physical", "7"], ""),
    Run(&["compaction", "7"], ""),
    Run(&["compaction", "3"], ""),
    Run(&["compaction", "100000"], ""),
    Run(&["compaction", "abc"], ""),
    Run(&["compaction"], ""),
    Run(&["get", "--rev=3", "foo"], ""),
    // ---- watch
    Start("w-simple", &["watch", "w/a"], ""),
    Start("w-json", &["-w", "json", "watch", "w/a"], ""),
    Start("w-fields", &["-w", "fields", "watch", "w/", "--prefix", "--prev-kv"], ""),
    Start("w-proto", &["-w", "protobuf", "watch", "w/a"], ""),
    Start("w-range", &["watch", "w/a", "w/c"], ""),
    Start(
        "w-exec",
        &[
            "watch",
            "w/a",
            "--",
            "sh",
            "-c",
            "echo \"[$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY=$ETCD_WATCH_VALUE $ETCD_WATCH_REVISION]\"",
        ],
        "",
    ),
    Start("w-inter", &["watch", "-i"], "watch w/b\nwatch --prev-kv w/a\nfoo w/a\nwatch\n\n"),
    Sleep(1500),
    Run(&["put", "w/a", "1"], ""),
    Run(&["put", "w/a", "2"], ""),
    Run(&["put", "w/b", "x"], ""),
    Run(&["del", "w/a"], ""),
    Sleep(1000),
    Stop("w-simple"),
    Stop("w-json"),
    Stop("w-fields"),
    Stop("w-proto"),
    Stop("w-range"),
    Stop("w-exec"),
    Stop("w-inter"),
    Run(&["watch", "--rev=2", "foo"], ""),
    Run(&["-w", "json", "watch", "--rev=2", "foo"], ""),
    Run(&["-w", "table", "watch", "--rev=2", "foo"], ""),
    Run(&["watch"], ""),
    Run(&["watch", "--prefix", "a", "b"], ""),
    Run(&["watch", "a", "--"], ""),
    Run(&["watch", "-i"], "watch w/a\n"),
    // ---- lease
    Grant("L1", &["lease", "grant", "300"]),
    Grant("L2", &["lease", "grant", "300"]),
    Grant("L3", &["-w", "json", "lease", "grant", "60"]),
    Grant("L4", &["-w", "fields", "lease", "grant", "60"]),
    Grant("L5", &["lease", "grant", "0"]),
    Run(&["lease", "list"], ""),
    Run(&["-w", "json", "lease", "list"], ""),
    Run(&["-w", "fields", "lease", "list"], ""),
    Run(&["-w", "protobuf", "lease", "list"], ""),
    Run(&["-w", "table", "lease", "list"], ""),
    // L5 has the minimum TTL (2 s): revoked at once, before it can expire on either server.
    Run(&["-w", "protobuf", "lease", "revoke", "{L5}"], ""),
    Run(&["lease", "revoke", "{L5}"], ""),
    Run(&["put", "--lease={L1}", "l/k1", "v"], ""),
    Run(&["put", "--lease={L1}", "l/k2", "v"], ""),
    Run(&["-w", "json", "get", "l/k1"], ""),
    Run(&["put", "--ignore-lease", "l/k1", "v2"], ""),
    Run(&["lease", "timetolive", "{L1}"], ""),
    Run(&["lease", "timetolive", "--keys", "{L1}"], ""),
    Run(&["-w", "json", "lease", "timetolive", "--keys", "{L1}"], ""),
    Run(&["-w", "json", "lease", "timetolive", "{L2}"], ""),
    Run(&["-w", "fields", "lease", "timetolive", "--keys", "{L1}"], ""),
    // The binary form's remaining TTL cannot be masked: a lease granted just before, so both
    // servers report its first second.
    Grant("L6", &["lease", "grant", "300"]),
    Run(&["-w", "protobuf", "lease", "timetolive", "{L6}"], ""),
    Run(&["lease", "timetolive", "1234abcd"], ""),
    Run(&["-w", "json", "lease", "timetolive", "1234abcd"], ""),
    Run(&["lease", "timetolive", "xyz"], ""),
    Run(&["lease", "timetolive"], ""),
    Run(&["lease", "keep-alive", "--once", "{L1}"], ""),
    Run(&["-w", "json", "lease", "keep-alive", "--once", "{L1}"], ""),
    Run(&["-w", "fields", "lease", "keep-alive", "--once", "{L1}"], ""),
    Run(&["lease", "keep-alive", "--once", "1234abcd"], ""),
    Run(&["lease", "keep-alive", "1234abcd"], ""),
    Run(&["lease", "keep-alive"], ""),
    Start("keepalive", &["lease", "keep-alive", "{L2}"], ""),
    WaitFor("keepalive", "keepalived"),
    Stop("keepalive"),
    Run(&["lease", "revoke", "{L2}"], ""),
    Run(&["lease", "revoke", "1234abcd"], ""),
    Run(&["lease", "revoke"], ""),
    Run(&["lease", "revoke", "xyz"], ""),
    Run(&["lease", "grant"], ""),
    Run(&["lease", "grant", "abc"], ""),
    Run(&["-w", "json", "lease", "revoke", "{L3}"], ""),
    Run(&["-w", "fields", "lease", "revoke", "{L4}"], ""),
    Run(&["-w", "protobuf", "lease", "grant", "60"], ""),
    Run(&["-w", "table", "lease", "grant", "60"], ""),
    // ---- lock and elect
    Start("lock1", &["lock", "mylock"], ""),
    WaitFor("lock1", "mylock/"),
    Start("lock2", &["lock", "mylock", "--", "sh", "-c", "echo got $ETCD_LOCK_KEY"], ""),
    Sleep(1000),
    Stop("lock1"),
    WaitFor("lock2", "got mylock/"),
    Stop("lock2"),
    Run(&["lock"], ""),
    Start("elect1", &["elect", "myelection", "p1"], ""),
    WaitFor("elect1", "p1"),
    Start("elect-l", &["elect", "-l", "myelection"], ""),
    Start("elect2", &["elect", "myelection", "p2"], ""),
    WaitFor("elect-l", "p1"),
    Sleep(500),
    Stop("elect1"),
    WaitFor("elect2", "p2"),
    // The observer sees the new leader's value in its own time (a watch event after the
    // resignation): wait for it rather than for a fixed interval.
    WaitFor("elect-l", "p2"),
    Stop("elect2"),
    Sleep(300),
    Stop("elect-l"),
    Run(&["elect"], ""),
    Run(&["elect", "x"], ""),
    Run(&["elect", "-l", "x", "y"], ""),
    // ---- member list, endpoints, alarms
    Run(&["member", "list"], ""),
    Run(&["-w", "json", "member", "list"], ""),
    Run(&["-w", "fields", "member", "list"], ""),
    Run(&["-w", "protobuf", "member", "list"], ""),
    Run(&["-w", "table", "member", "list"], ""),
    Run(&["endpoint", "health"], ""),
    Run(&["-w", "json", "endpoint", "health"], ""),
    Run(&["-w", "table", "endpoint", "health"], ""),
    Run(&["endpoint", "health", "--cluster"], ""),
    Run(&["endpoint", "status"], ""),
    Run(&["-w", "json", "endpoint", "status"], ""),
    Run(&["-w", "fields", "endpoint", "status"], ""),
    Run(&["-w", "table", "endpoint", "status"], ""),
    Run(&["endpoint", "--cluster", "status"], ""),
    Run(&["alarm", "list"], ""),
    // `-w json alarm list` is left out: etcd 3.5 fills the Alarm response's header and 3.4 does
    // not; oxcd answers as 3.5 (the gateway test checks it against etcd 3.5), this session's
    // reference is etcd 3.4.
    Run(&["alarm", "disarm"], ""),
    Run(&["defrag"], ""),
    Run(&["move-leader"], ""),
    Run(&["move-leader", "1"], ""),
    Run(&["endpoint", "hashkv"], ""),
    Run(&["-w", "json", "endpoint", "hashkv"], ""),
    Run(&["-w", "table", "endpoint", "hashkv"], ""),
    Run(&["snapshot", "save", "snap.db"], ""),
    Run(&["snapshot", "status", "snap.db"], ""),
    Run(&["-w", "json", "snapshot", "status", "snap.db"], ""),
    Run(&["-w", "table", "snapshot", "status", "snap.db"], ""),
    Run(&["-w", "fields", "snapshot", "status", "snap.db"], ""),
    Run(&["snapshot", "status", "nofile.db"], ""),
    Run(&["snapshot", "restore"], ""),
    Run(&["snapshot", "restore", "snap.db", "--data-dir", "restored"], ""),
    Run(&["snapshot", "restore", "snap.db", "--data-dir", "restored"], ""),
    Run(&["snapshot", "restore", "nofile.db", "--data-dir", "r2"], ""),
    Run(&["snapshot", "restore", "snap.db", "--name", "nobody", "--data-dir", "r3"], ""),
    // ---- usage, prefix matching and bad input
    Run(&["get", "--help"], ""),
    Run(&["lease"], ""),
    Run(&["lease", "bogus"], ""),
    Run(&["endpoint", "status", "-h"], ""),
    Run(&["mem", "li"], ""),
    Run(&["bogus"], ""),
    Run(&["get", "--bogus", "foo"], ""),
    Run(&["get", "--limit", "x", "foo"], ""),
    Run(&["--dial-timeout=x", "get", "foo"], ""),
    Run(&["--endpoints=127.0.0.1:1", "--dial-timeout=1s", "get", "foo"], ""),
    Run(&["--endpoints=127.0.0.1:1", "--dial-timeout=1s", "endpoint", "health"], ""),
    // ---- membership (last: the learner added stays in the member lists)
    Run(&["member", "add", "c", "--learner", "--peer-urls=http://127.0.0.1:1"], ""),
    Run(&["member", "add", "c"], ""),
    Run(&["member", "update", "123"], ""),
    Run(&["member", "promote", "xyz"], ""),
    Run(&["member", "remove"], ""),
];

/// Users, roles and authentication.
const AUTH: &[Step] = &[
    Run(&["user", "add", "root", "--new-user-password=rootpw"], ""),
    Run(&["-w", "json", "user", "add", "u1:pw1"], ""),
    Run(&["user", "add", "u2", "--interactive=false"], "pw2\n"),
    Run(&["user", "add"], ""),
    Run(&["role", "add", "r1"], ""),
    Run(&["-w", "fields", "role", "add", "r2"], ""),
    Run(&["role", "grant-permission", "r1", "read", "a"], ""),
    Run(&["role", "grant-permission", "r1", "write", "b", "c"], ""),
    Run(&["role", "grant-permission", "--prefix", "r1", "readwrite", "p/"], ""),
    Run(&["role", "grant-permission", "--from-key", "r1", "read", "z"], ""),
    Run(&["role", "grant-permission", "r1", "bogus", "a"], ""),
    Run(&["role", "grant-permission", "r1"], ""),
    Run(&["role", "get", "r1"], ""),
    Run(&["-w", "json", "role", "get", "r1"], ""),
    Run(&["-w", "fields", "role", "get", "r1"], ""),
    Run(&["role", "list"], ""),
    Run(&["-w", "json", "role", "list"], ""),
    Run(&["user", "grant-role", "u1", "r1"], ""),
    Run(&["user", "grant-role", "u1", "nope"], ""),
    Run(&["user", "get", "u1"], ""),
    Run(&["user", "get", "--detail", "u1"], ""),
    Run(&["-w", "json", "user", "get", "u1"], ""),
    Run(&["user", "list"], ""),
    Run(&["-w", "json", "user", "list"], ""),
    Run(&["user", "revoke-role", "u1", "r1"], ""),
    Run(&["role", "revoke-permission", "r1", "a"], ""),
    Run(&["role", "revoke-permission", "r1", "b", "c"], ""),
    Run(&["role", "revoke-permission", "--prefix", "r1", "p/"], ""),
    Run(&["user", "passwd", "u1", "--interactive=false"], "newpw\n"),
    Run(&["auth", "enable"], ""),
    Run(&["get", "foo"], ""),
    Run(&["--user=root:rootpw", "get", "foo"], ""),
    Run(&["--user=root:wrong", "get", "foo"], ""),
    Run(&["--user=root", "--password=rootpw", "user", "list"], ""),
    Run(&["--user=root:rootpw", "auth", "disable"], ""),
    Run(&["role", "delete", "r2"], ""),
    Run(&["user", "delete", "u2"], ""),
    Run(&["user", "delete", "nope"], ""),
];

/// One tool against one server, in its own working directory.
struct Session {
    bin: &'static str,
    endpoint: String,
    dir: PathBuf,
    leases: BTreeMap<String, String>,
    background: BTreeMap<&'static str, (Child, Option<std::process::ChildStdin>, String)>,
    out: Vec<String>,
}

impl Session {
    fn command(&self, args: &[String]) -> Command {
        let mut c = oxcd_testkit::ctl_command(self.bin);
        c.current_dir(&self.dir);
        // An explicit --endpoints given by the step wins (etcdctl refuses two of them).
        if !args.iter().any(|a| a.starts_with("--endpoints")) {
            c.arg(format!("--endpoints={}", self.endpoint));
        }
        c.args(args);
        c
    }

    fn expand(&self, args: &[&str]) -> Vec<String> {
        args.iter()
            .map(|a| self.leases.iter().fold(a.to_string(), |s, (name, id)| s.replace(&format!("{{{name}}}"), id)))
            .collect()
    }

    fn record(&mut self, title: &str, stdout: &[u8], stderr: &[u8], code: Option<i32>, binary: bool) {
        let stdout = if binary {
            stdout.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n"
        } else {
            String::from_utf8_lossy(stdout).into_owned()
        };
        let stderr: Vec<&str> =
            std::str::from_utf8(stderr).unwrap_or("").lines().filter(|l| !l.starts_with("{\"level\"")).collect();
        let text = format!(
            "$ {title}\n{stdout}--- stderr\n{}\n--- exit {}\n",
            stderr.join("\n"),
            code.map_or("signal".to_string(), |c| c.to_string())
        );
        self.out.push(text.replace("oxcdctl", "etcdctl"));
    }

    fn step(&mut self, step: &Step) {
        match step {
            Run(args, stdin) => {
                let args = self.expand(args);
                let mut child = self
                    .command(&args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
                let out = child.wait_with_output().unwrap();
                let binary = args.iter().any(|a| a == "protobuf");
                self.record(&args.join(" "), &out.stdout, &out.stderr, out.status.code(), binary);
            }
            Grant(name, args) => {
                let args = self.expand(args);
                let out = self.command(&args).output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout).replace(['"', ':', ','], " ");
                let words: Vec<&str> = text.split_whitespace().collect();
                let id = match words.iter().position(|w| *w == "lease" || *w == "ID") {
                    Some(i) if words[i] == "lease" => words[i + 1].to_string(),
                    Some(i) => format!("{:x}", words[i + 1].parse::<i64>().unwrap()),
                    None => panic!("no lease granted: {text}"),
                };
                self.leases.insert(name.to_string(), id);
                self.record(&args.join(" "), &out.stdout, &out.stderr, out.status.code(), false);
            }
            Start(name, args, stdin) => {
                let args = self.expand(args);
                let log = self.dir.join(format!("{name}.out"));
                let err = self.dir.join(format!("{name}.err"));
                let mut child = self
                    .command(&args)
                    .stdin(Stdio::piped())
                    .stdout(std::fs::File::create(&log).unwrap())
                    .stderr(std::fs::File::create(&err).unwrap())
                    .spawn()
                    .unwrap();
                let mut input = child.stdin.take().unwrap();
                input.write_all(stdin.as_bytes()).unwrap();
                self.background.insert(name, (child, Some(input), args.join(" ")));
            }
            Stop(name) => {
                let (mut child, input, title) = self.background.remove(name).unwrap();
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                let status = child.wait().unwrap();
                drop(input);
                let stdout = std::fs::read(self.dir.join(format!("{name}.out"))).unwrap();
                let stderr = std::fs::read(self.dir.join(format!("{name}.err"))).unwrap();
                let code = status.code().or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    status.signal().map(|s| 128 + s)
                });
                self.record(&format!("(background) {title}"), &stdout, &stderr, code, title.contains("protobuf"));
            }
            Sleep(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            WaitFor(name, needle) => {
                let out = self.dir.join(format!("{name}.out"));
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while !std::fs::read(&out).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// The transcript with this session's lease ids, timings and sizes replaced by placeholders.
    fn normalized(&self) -> Vec<String> {
        let mut subs: Vec<(String, String)> = Vec::new();
        for (name, hex) in &self.leases {
            let id = i64::from_str_radix(hex, 16).unwrap();
            subs.push((format!("{id:016x}"), format!("<{name}>")));
            subs.push((hex.clone(), format!("<{name}>")));
            subs.push((id.to_string(), format!("<{name}-dec>")));
        }
        self.out
            .iter()
            .map(|t| normalize(&subs.iter().fold(t.clone(), |s, (a, b)| s.replace(a, b))))
            .map(|t| {
                if t.contains("member add") {
                    mask_ids(&t)
                } else if t.contains("timetolive") {
                    // Seconds pass between grant and question; how many depends on the machine.
                    mask_remaining_ttl(&t)
                } else if t.contains("snapshot status") || t.contains("hashkv") {
                    // The file's content hash and key count cover leases made by lock and
                    // election sessions; `snapshot_status_reads_etcd_files` compares exactly.
                    mask_numbers(&mask_ids(&t))
                } else {
                    t
                }
            })
            .collect()
    }
}

/// Masks what differs between two servers fed the same commands: the id of an added member
/// (random) and content hashes (which cover lease ids): long hex words with a letter, long numbers.
/// etcdctl prints member ids with Go's `%16x`, which pads a short (random) id with spaces, so the
/// spaces before a masked id are masked with it.
fn mask_ids(s: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let hex = word.len() >= 5
            && word.chars().all(|c| c.is_ascii_hexdigit())
            && word.chars().any(|c| c.is_ascii_alphabetic())
            && word.chars().any(|c| c.is_ascii_digit());
        let num = word.len() >= 7 && word.chars().all(|c| c.is_ascii_digit());
        if hex || num {
            out.truncate(out.trim_end_matches(' ').len() + usize::from(out.ends_with(' ')));
            out.push_str("<id>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Masks every number of two or more digits.
fn mask_numbers(s: &str) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    for c in s.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        out.push_str(if digits.len() >= 2 { "N" } else { &digits });
        digits.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

/// Whether `t` reads as a Go duration (`1.5ms`, `850µs`, `2s`).
fn is_duration(t: &str) -> bool {
    let digits = t.trim_end_matches(|c: char| c.is_alphabetic() || c == 'µ');
    let unit = &t[digits.len()..];
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && ["ns", "µs", "ms", "s"].contains(&unit)
}

/// Ids of leases the tools made themselves (lock and election sessions), durations, database
/// sizes, and the order of map-ordered lists.
fn normalize(s: &str) -> String {
    let s = sort_list(&sort_list(s, "attached keys([", "])", " "), "\"keys\":[", "]", ",");
    let s = sort_list(&s, "\"leases\":[", "]", ",");
    let s = sort_list(&s, "ETCD_INITIAL_CLUSTER=\"", "\"", ",");
    let mut out: Vec<String> = Vec::new();
    for line in s.split('\n') {
        let mut l = line.to_string();
        for marker in ["mylock/", "myelection/"] {
            if let Some(i) = l.find(marker) {
                let start = i + marker.len();
                let end = l[start..].find(|c: char| !c.is_ascii_hexdigit()).map_or(l.len(), |e| start + e);
                l.replace_range(start..end, "<lease>");
            }
        }
        // Durations, wherever they are; tables then lose their (duration-dependent) widths.
        let tokens: Vec<String> = l
            .split_inclusive([' ', '"', ',', '|'])
            .map(|t| {
                let body = t.trim_end_matches([' ', '"', ',', '|']);
                if is_duration(body) { format!("<took>{}", &t[body.len()..]) } else { t.to_string() }
            })
            .collect();
        l = tokens.concat();
        if l.starts_with('+') || l.starts_with('|') {
            while l.contains("  ") || l.contains("--") {
                l = l.replace("  ", " ").replace("--", "-");
            }
        }
        // Raft indexes count entries, and lock and election sessions made through the Lock and
        // Election services take a different number than etcdctl's client-side recipes.
        if l.contains(", true, false, ") {
            let mut cells: Vec<String> = l.split(", ").map(String::from).collect();
            if cells.len() >= 10 {
                // Server version and file size differ between etcd and oxcd too.
                cells[2] = "V".into();
                cells[3] = "S".into();
                cells[7] = "I".into();
                cells[8] = "I".into();
            }
            l = cells.join(", ");
        }
        if l.starts_with("| ") && l.contains(" | true | false | ") {
            let mut cells: Vec<String> = l.split(" | ").map(String::from).collect();
            if cells.len() >= 10 {
                cells[2] = "V".into();
                cells[3] = "S".into();
                cells[7] = "I".into();
                cells[8] = "I".into();
            }
            l = cells.join(" | ");
        }
        for key in ["\"version\":\"", "\"Version\" : \""] {
            if let Some(i) = l.find(key) {
                let start = i + key.len();
                let end = l[start..].find('"').map_or(l.len(), |e| start + e);
                l.replace_range(start..end, "V");
            }
        }
        for key in ["\"raftIndex\":", "\"raftAppliedIndex\":", "\"RaftIndex\" : ", "\"RaftAppliedIndex\" : "] {
            if let Some(i) = l.find(key) {
                let start = i + key.len();
                let end = l[start..].find(|c: char| !c.is_ascii_digit()).map_or(l.len(), |e| start + e);
                l.replace_range(start..end, "I");
            }
        }
        for key in ["\"dbSize\":", "\"dbSizeInUse\":", "\"DBSize\" : "] {
            if let Some(i) = l.find(key) {
                let start = i + key.len();
                let end = l[start..].find(|c: char| !c.is_ascii_digit()).map_or(l.len(), |e| start + e);
                l.replace_range(start..end, "N");
            }
        }
        out.push(l);
    }
    // Lease ids listed one per line (`lease list`, `"ID" : n` fields) come in map order too.
    let mut i = 0;
    while i < out.len() {
        let is_id = |l: &String| {
            l.starts_with('<') && l.ends_with('>') || l.starts_with("\"ID\" : <") || l.starts_with("\"Key\" : ")
        };
        if is_id(&out[i]) {
            let j = (i..out.len()).find(|&j| !is_id(&out[j])).unwrap_or(out.len());
            out[i..j].sort();
            i = j;
        } else {
            i += 1;
        }
    }
    out.join("\n")
}

/// Runs every step; returns the normalised transcript.
fn run_session(bin: &'static str, endpoint: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session {
        bin,
        endpoint: endpoint.to_string(),
        dir: dir.path().to_path_buf(),
        leases: BTreeMap::new(),
        background: BTreeMap::new(),
        out: Vec::new(),
    };
    for step in COMMON.iter().chain(AUTH) {
        s.step(step);
    }
    s.normalized()
}

const OXCDCTL: &str = env!("CARGO_BIN_EXE_oxcdctl");

fn oxcd_binary() -> PathBuf {
    oxcd_testkit::oxcd_beside(OXCDCTL)
}

/// Runs the session with `bin` against a fresh server of `server` on `ports`.
async fn transcript(server: Binary, ports: (u16, u16), bin: &'static str) -> Vec<String> {
    let opts =
        ClusterOptions { size: 1, heartbeat_ms: 100, election_ms: 1000, ports: vec![ports], ..Default::default() };
    let cluster = Cluster::start(server, opts).await.expect("server starts");
    let ep = cluster.endpoint(0);
    let out = tokio::task::spawn_blocking(move || run_session(bin, &ep)).await.unwrap();
    drop(cluster);
    out
}

fn differences(what: &str, want: &[String], got: &[String]) -> Vec<String> {
    assert_eq!(want.len(), got.len());
    want.iter()
        .zip(got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| format!("=== {what}: expected\n{w}=== got\n{g}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oxcdctl_prints_what_etcdctl_prints() {
    assert!(oxcd_binary().exists(), "build the oxcd binary first ({})", oxcd_binary().display());
    let ports = (free_port(), free_port());
    let etcd = || Binary::Etcd(ETCD_34.into());
    let oxcd = || Binary::Oxcd(oxcd_binary());

    let reference = transcript(etcd(), ports, ETCDCTL_34).await;
    let ours_on_etcd = transcript(etcd(), ports, OXCDCTL).await;
    let ours_on_oxcd = transcript(oxcd(), ports, OXCDCTL).await;
    let theirs_on_oxcd = transcript(oxcd(), ports, ETCDCTL_34).await;
    if let Ok(dir) = std::env::var("OXCDCTL_TRANSCRIPTS") {
        for (name, t) in [
            ("etcdctl-etcd", &reference),
            ("oxcdctl-etcd", &ours_on_etcd),
            ("oxcdctl-oxcd", &ours_on_oxcd),
            ("etcdctl-oxcd", &theirs_on_oxcd),
        ] {
            std::fs::write(Path::new(&dir).join(name), t.concat()).unwrap();
        }
    }
    let mut diffs = differences("oxcdctl on etcd vs etcdctl on etcd", &reference, &ours_on_etcd);
    diffs.extend(differences("oxcdctl on oxcd vs etcdctl on etcd", &reference, &ours_on_oxcd));
    diffs.extend(differences("oxcdctl on oxcd vs etcdctl on oxcd", &theirs_on_oxcd, &ours_on_oxcd));
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
}

/// The TLS flags against a real etcd serving HTTPS with client-certificate authentication:
/// etcdctl and oxcdctl print the same for good certificates, missing ones, a wrong CA and
/// `--insecure-skip-tls-verify`.
#[test]
fn tls_flags_work_as_in_etcdctl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    oxcd_testkit::tls::make_certs(d);
    let (cp, pp) = (free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{cp}");
    let mut etcd = Command::new(ETCD_34)
        .args(["--data-dir", &d.join("data").to_string_lossy()])
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{pp}")])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{pp}")])
        .args(["--initial-cluster", &format!("default=http://127.0.0.1:{pp}")])
        .args(["--cert-file", "server.crt", "--key-file", "server.key", "--trusted-ca-file", "ca.crt"])
        .arg("--client-cert-auth")
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ep = format!("--endpoints=127.0.0.1:{cp}");
    let good = ["--cacert=ca.crt", "--cert=client.crt", "--key=client.key"];
    let run = |bin: &str, args: &[&str]| {
        let out = oxcd_testkit::ctl_command(bin).current_dir(d).arg(&ep).args(args).output().unwrap();
        let stderr: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.starts_with("{\"level\""))
            .map(|l| l.replace("oxcdctl", "etcdctl"))
            .collect();
        format!("{}--- {}\n--- exit {:?}\n", String::from_utf8_lossy(&out.stdout), stderr.join("\n"), out.status.code())
    };
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        run(ETCDCTL_34, &[good[0], good[1], good[2], "put", "ready", "1"]).starts_with("OK")
    });
    assert!(ready, "etcd with TLS did not start");
    let cases: Vec<Vec<&str>> = vec![
        [&good[..], &["put", "k", "v"]].concat(),
        [&good[..], &["get", "k"]].concat(),
        [&good[..], &["-w", "json", "get", "k"]].concat(),
        vec!["--command-timeout=2s", "--cacert=ca.crt", "get", "k"],
        vec!["--cacert=ca.crt", "--cert=client.crt", "get", "k"],
        vec!["--cacert=nope.crt", "--cert=client.crt", "--key=client.key", "get", "k"],
        vec!["--cert=", "get", "k"],
        vec!["--insecure-skip-tls-verify", "--cert=client.crt", "--key=client.key", "get", "k"],
    ];
    let mut diffs = Vec::new();
    for c in &cases {
        let (want, got) = (run(ETCDCTL_34, c), run(OXCDCTL, c));
        if want != got {
            diffs.push(format!("$ {}\n=== etcdctl\n{want}=== oxcdctl\n{got}", c.join(" ")));
        }
    }
    let _ = etcd.kill();
    let _ = etcd.wait();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// `snapshot status` reads the etcd snapshot file itself (bbolt): on the same file, oxcdctl and
/// etcdctl print the same hash, revision, key count and size in every format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_status_reads_etcd_files() {
    let cl = Cluster::start(Binary::Etcd(ETCD_34.into()), ClusterOptions::default()).await.unwrap();
    let ep = cl.endpoint(0);
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let ctl = |bin: &str, args: &[&str]| {
            oxcd_testkit::ctl_command(bin)
                .current_dir(dir.path())
                .arg(format!("--endpoints={ep}"))
                .args(args)
                .output()
                .unwrap()
        };
        // Enough keys for branch pages and overflow pages, a lease, deletions, a compaction.
        for i in 0..3000 {
            let value = if i % 100 == 0 { "x".repeat(9000) } else { format!("value-{i}") };
            ctl(ETCDCTL_34, &["put", &format!("key/{i:05}"), &value]);
        }
        ctl(ETCDCTL_34, &["lease", "grant", "600"]);
        ctl(ETCDCTL_34, &["del", "--prefix", "key/001"]);
        ctl(ETCDCTL_34, &["compaction", "1500"]);
        assert!(ctl(ETCDCTL_34, &["snapshot", "save", "s.db"]).status.success());
        for format in ["simple", "json", "fields", "table", "protobuf"] {
            let want = ctl(ETCDCTL_34, &["-w", format, "snapshot", "status", "s.db"]);
            let got = ctl(OXCDCTL, &["-w", format, "snapshot", "status", "s.db"]);
            let text = |o: &std::process::Output| {
                (
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                    o.status.code(),
                )
            };
            assert_eq!(text(&got), text(&want), "-w {format}");
        }
    })
    .await
    .unwrap();
}
