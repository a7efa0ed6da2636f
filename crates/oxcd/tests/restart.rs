//! A member holding 100,000 keys is killed and restarted: it must come back, serve every key, and
//! the time it takes is printed (recorded in the issue notes; never asserted).

mod common;

use std::time::{Duration, Instant};

use etcd_client::{GetOptions, Txn, TxnOp};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_with_100k_keys_restarts_and_serves_reads() {
    let mut cl = common::cluster(1).await;
    let c = cl.client(0).await.unwrap();
    const KEYS: usize = 100_000;
    const PER_TXN: usize = 100;
    // Eight writers, each a slice of the key space, 100 puts per txn.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for batch in (w * PER_TXN..KEYS).step_by(8 * PER_TXN) {
                    let ops: Vec<_> = (batch..batch + PER_TXN)
                        .map(|i| TxnOp::put(format!("key/{i:06}"), format!("value-{i}"), None))
                        .collect();
                    c.txn(Txn::new().and_then(ops)).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut c = cl.client(0).await.unwrap();
    let before = c.get("key/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    assert_eq!(before.count(), KEYS as i64);
    let rev = before.header().unwrap().revision();

    cl.kill(0);
    let started = Instant::now();
    cl.restart(0).unwrap();
    let deadline = started + Duration::from_secs(60);
    let (mut c, count) = loop {
        if let Ok(mut c) = cl.client(0).await
            && let Ok(r) = c.get("key/", Some(GetOptions::new().with_prefix().with_count_only())).await
        {
            break (c, r.count());
        }
        assert!(Instant::now() < deadline, "not serving 60 s after restart:\n{}", cl.log_tail(0, 20));
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = started.elapsed();
    eprintln!("restart with {KEYS} keys: serving reads after {} ms", took.as_millis());
    assert_eq!(count, KEYS as i64);
    let r = c.get("key/099999", None).await.unwrap();
    assert_eq!(r.kvs()[0].value_str().unwrap(), "value-99999");
    assert_eq!(r.header().unwrap().revision(), rev);
}
