//! Property test: random sequences of put, delete, txn, range-at-revision and compact against a
//! fresh one-member oxcd (through the `etcd-client` crate) and against the plain in-memory model
//! give identical results, revisions included.

mod common;

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use oxcd_testkit::model::{Cmp, Kv, Model, ModelError, Op, OpOut, Target};
use proptest::prelude::*;

const KEYS: &[&str] = &["a", "b", "ba", "c", "d", "e"];

#[derive(Debug, Clone)]
enum End {
    Single,
    Prefix,
    FromKey,
    To(usize),
}

#[derive(Debug, Clone)]
enum Step {
    Put(usize, u8),
    Delete(usize, End),
    /// Range at `current - back` (0 = latest; past the start it is the future).
    Range(usize, End, i64, i64),
    Txn {
        key: usize,
        cmp: Cmp,
        target: u8,
        operand: i64,
        then: Vec<(usize, bool)>,
        els: Vec<(usize, bool)>,
    },
    Compact(i64),
}

fn end_strategy() -> impl Strategy<Value = End> {
    prop_oneof![Just(End::Single), Just(End::Prefix), Just(End::FromKey), (0..KEYS.len()).prop_map(End::To)]
}

fn branch() -> impl Strategy<Value = Vec<(usize, bool)>> {
    // Distinct keys (etcd rejects overlapping writes in a branch); bool: put (true) or delete.
    proptest::sample::subsequence((0..KEYS.len()).collect::<Vec<_>>(), 0..3)
        .prop_flat_map(|ks| {
            let n = ks.len();
            (Just(ks), proptest::collection::vec(any::<bool>(), n))
        })
        .prop_map(|(ks, puts)| ks.into_iter().zip(puts).collect())
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..KEYS.len(), any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
        2 => (0..KEYS.len(), end_strategy()).prop_map(|(k, e)| Step::Delete(k, e)),
        3 => (0..KEYS.len(), end_strategy(), -1i64..6, 0i64..3).prop_map(|(k, e, b, l)| Step::Range(k, e, b, l)),
        2 => (
            0..KEYS.len(),
            prop_oneof![Just(Cmp::Equal), Just(Cmp::Greater), Just(Cmp::Less), Just(Cmp::NotEqual)],
            0u8..3,
            0i64..6,
            branch(),
            branch()
        )
            .prop_map(|(key, cmp, target, operand, then, els)| Step::Txn { key, cmp, target, operand, then, els }),
        1 => (-1i64..8).prop_map(Step::Compact),
    ]
}

fn range_end(key: usize, end: &End) -> (Option<Vec<u8>>, GetOptions, DeleteOptions) {
    match end {
        End::Single => (None, GetOptions::new(), DeleteOptions::new()),
        End::Prefix => {
            let mut e = KEYS[key].as_bytes().to_vec();
            *e.last_mut().unwrap() += 1;
            (Some(e), GetOptions::new().with_prefix(), DeleteOptions::new().with_prefix())
        }
        End::FromKey => (Some(vec![]), GetOptions::new().with_from_key(), DeleteOptions::new().with_from_key()),
        End::To(k) => (
            Some(KEYS[*k].as_bytes().to_vec()),
            GetOptions::new().with_range(KEYS[*k]),
            DeleteOptions::new().with_range(KEYS[*k]),
        ),
    }
}

fn kv(k: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: k.key().to_vec(),
        value: k.value().to_vec(),
        create_revision: k.create_revision(),
        mod_revision: k.mod_revision(),
        version: k.version(),
    }
}

fn model_err(e: etcd_client::Error) -> ModelError {
    match common::status(e).1.as_str() {
        "etcdserver: mvcc: required revision has been compacted" => ModelError::Compacted,
        "etcdserver: mvcc: required revision is a future revision" => ModelError::FutureRev,
        other => panic!("unexpected error {other}"),
    }
}

async fn run(c: &mut Client, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut m = Model::new();
    for (n, s) in steps.iter().enumerate() {
        match s {
            Step::Put(k, v) => {
                let r = c.put(KEYS[*k], vec![*v], Some(PutOptions::new().with_prev_key())).await.unwrap();
                let (rev, prev) = m.put(KEYS[*k].as_bytes(), &[*v]);
                prop_assert_eq!(r.header().unwrap().revision(), rev, "step {}: {:?}", n, s);
                prop_assert_eq!(r.prev_key().map(kv), prev, "step {}: {:?}", n, s);
            }
            Step::Delete(k, end) => {
                let (e, _, opts) = range_end(*k, end);
                let r = c.delete(KEYS[*k], Some(opts.with_prev_key())).await.unwrap();
                let (rev, gone) = m.delete(KEYS[*k].as_bytes(), e.as_deref());
                prop_assert_eq!(r.header().unwrap().revision(), rev, "step {}: {:?}", n, s);
                prop_assert_eq!(r.prev_kvs().iter().map(kv).collect::<Vec<_>>(), gone, "step {}: {:?}", n, s);
            }
            Step::Range(k, end, back, limit) => {
                let (e, opts, _) = range_end(*k, end);
                let rev = if *back == 0 { 0 } else { m.rev() - back };
                let got = c.get(KEYS[*k], Some(opts.with_revision(rev.max(0)).with_limit(*limit))).await;
                let want = m.range(KEYS[*k].as_bytes(), e.as_deref(), rev.max(0), *limit);
                match (got, want) {
                    (Ok(r), Ok(w)) => {
                        prop_assert_eq!(r.kvs().iter().map(kv).collect::<Vec<_>>(), w.kvs, "step {}: {:?}", n, s);
                        prop_assert_eq!((r.count(), r.more()), (w.count, w.more), "step {}: {:?}", n, s);
                        prop_assert_eq!(r.header().unwrap().revision(), m.rev(), "step {}: {:?}", n, s);
                    }
                    (Err(e), Err(w)) => prop_assert_eq!(model_err(e), w, "step {}: {:?}", n, s),
                    (g, w) => {
                        prop_assert!(false, "step {}: {:?}: oxcd {:?}, model {:?}", n, s, g.map(|_| ()), w.map(|_| ()))
                    }
                }
            }
            Step::Txn { key, cmp, target, operand, then, els } => {
                let target_m = match target {
                    0 => Target::Version(*operand),
                    1 => Target::Create(*operand + m.rev() - 3),
                    _ => Target::Mod(*operand + m.rev() - 3),
                };
                let op = match cmp {
                    Cmp::Equal => CompareOp::Equal,
                    Cmp::Greater => CompareOp::Greater,
                    Cmp::Less => CompareOp::Less,
                    Cmp::NotEqual => CompareOp::NotEqual,
                };
                let compare = match target_m {
                    Target::Version(v) => Compare::version(KEYS[*key], op, v),
                    Target::Create(v) => Compare::create_revision(KEYS[*key], op, v),
                    Target::Mod(v) => Compare::mod_revision(KEYS[*key], op, v),
                };
                let to_ops = |b: &[(usize, bool)]| -> (Vec<TxnOp>, Vec<Op>) {
                    let mut client_ops = Vec::new();
                    let mut model_ops = Vec::new();
                    for (k, is_put) in b {
                        if *is_put {
                            client_ops.push(TxnOp::put(
                                KEYS[*k],
                                format!("t{n}"),
                                Some(PutOptions::new().with_prev_key()),
                            ));
                            model_ops.push(Op::Put { key: KEYS[*k].into(), value: format!("t{n}").into_bytes() });
                        } else {
                            client_ops.push(TxnOp::delete(KEYS[*k], None));
                            model_ops.push(Op::Delete { key: KEYS[*k].into(), end: None });
                        }
                    }
                    // A read of everything at the end of the branch.
                    client_ops.push(TxnOp::get("\0", Some(GetOptions::new().with_from_key())));
                    model_ops.push(Op::Range { key: vec![0], end: Some(vec![]) });
                    (client_ops, model_ops)
                };
                let (ct, mt) = to_ops(then);
                let (ce, me) = to_ops(els);
                let r = c.txn(Txn::new().when([compare]).and_then(ct).or_else(ce)).await.unwrap();
                let (ok, rev, outs) = m.txn(&[(KEYS[*key].into(), *cmp, target_m)], &mt, &me);
                prop_assert_eq!(r.succeeded(), ok, "step {}: {:?}", n, s);
                prop_assert_eq!(r.header().unwrap().revision(), rev, "step {}: {:?}", n, s);
                for (got, want) in r.op_responses().iter().zip(outs) {
                    match (got, want) {
                        (TxnOpResponse::Put(p), OpOut::Put { prev }) => prop_assert_eq!(p.prev_key().map(kv), prev),
                        (TxnOpResponse::Delete(d), OpOut::Delete { deleted }) => prop_assert_eq!(d.deleted(), deleted),
                        (TxnOpResponse::Get(g), OpOut::Range { kvs }) => {
                            prop_assert_eq!(g.kvs().iter().map(kv).collect::<Vec<_>>(), kvs, "step {}: {:?}", n, s)
                        }
                        (g, w) => prop_assert!(false, "step {}: response {:?} vs {:?}", n, g, w),
                    }
                }
            }
            Step::Compact(back) => {
                let rev = m.rev() - back;
                let got = c.compact(rev, None).await.map(|_| ()).map_err(model_err);
                prop_assert_eq!(got, m.compact(rev), "step {}: {:?} at {}", n, s, rev);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn oxcd_matches_the_model(steps in proptest::collection::vec(step(), 1..60)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let cl = common::cluster(1).await;
            let mut c = cl.client(0).await.unwrap();
            run(&mut c, &steps).await
        })?;
    }
}
