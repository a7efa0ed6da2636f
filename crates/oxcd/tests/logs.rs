//! The log as etcd 3.5 writes it (zap's JSON lines), through a leader's death: every line of every
//! member parses as one JSON object with `level`, `ts`, `caller` and `msg` first, Raft's lines
//! carry `"logger":"raft"` and member ids in hex, and the survivors log the leader change as etcd
//! does (`lost leader`, `elected leader`).

mod common;

use std::time::Duration;

use common::cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_change_is_logged_as_json_lines() {
    let mut cl = cluster(3).await;
    cl.wait_ready(Duration::from_secs(30)).await.unwrap();
    let old = cl.leader().await.unwrap();
    let mut c = cl.client(old).await.unwrap();
    c.put("before", "v", None).await.unwrap();
    let old_id = format!("{:x}", c.status().await.unwrap().header().unwrap().member_id());
    cl.kill(old);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    // A new leader, and a write through it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let new = loop {
        if let Ok(l) = cl.leader().await
            && l != old
        {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut c = cl.client(new).await.unwrap();
    c.put("after", "v", None).await.unwrap();
    let new_id = format!("{:x}", c.status().await.unwrap().header().unwrap().member_id());

    for i in 0..3 {
        let log = std::fs::read_to_string(cl.log_path(i)).unwrap();
        assert!(log.lines().count() > 5, "member {i} logged little:\n{log}");
        for line in log.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("member {i}: not JSON ({e}): {line}"));
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            assert!(v["level"].is_string() && v["ts"].is_string() && v["msg"].is_string(), "{line}");
            assert!(line.starts_with("{\"level\":"), "level first: {line}");
            assert!(v["caller"].is_string(), "{line}");
            assert!(keys.iter().all(|k| !k.contains('_')), "etcd's field names have no underscores: {line}");
        }
        if i == old {
            continue;
        }
        // The survivors: raft's lines (hex ids), and the change of leader.
        let raft: Vec<&str> = log.lines().filter(|l| l.contains("\"logger\":\"raft\"")).collect();
        assert!(raft.iter().any(|l| l.contains(&format!("lost leader {old_id}"))), "member {i}:\n{}", raft.join("\n"));
        assert!(
            raft.iter().any(|l| l.contains(&format!("elected leader {new_id}"))
                || l.contains(&format!("to {new_id} at term"))),
            "member {i}:\n{}",
            raft.join("\n")
        );
        if i == new {
            assert!(
                raft.iter().any(|l| l.contains(&format!("\"msg\":\"{new_id} became leader at term"))),
                "{}",
                raft.join("\n")
            );
        }
    }
    assert_eq!(survivors.len(), 2);
}
