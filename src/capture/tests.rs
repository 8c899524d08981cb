//! Assembler tests over hand-built message sequences (the real-server tests are in tests/).

use bytes::Bytes;

use super::*;
use crate::Lsn;
use crate::decode::{
    Begin, Cell, Commit, Insert, LogicalMessage, Message, Relation, RelationColumn,
    ReplicaIdentity, StreamAbort, StreamCommit, StreamStart, Update,
};

fn cfg(max_memory: usize) -> AssemblerConfig {
    AssemblerConfig {
        max_memory,
        spill_dir: None,
        chunk_changes: 7,
        context_prefix: "walaudit".into(),
    }
}

fn relation() -> Message {
    let col = |name: &str, is_key, type_oid| RelationColumn {
        is_key,
        name: name.into(),
        type_oid,
        type_modifier: -1,
    };
    Message::Relation(Relation {
        xid: None,
        oid: 100,
        namespace: "public".into(),
        name: "t".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![col("id", true, 20), col("v", false, 25)],
    })
}

fn text(s: String) -> Cell {
    Cell::Text(Bytes::from(s))
}

fn insert(xid: Option<u32>, id: u64) -> Message {
    Message::Insert(Insert {
        xid,
        relation_oid: 100,
        new: vec![text(id.to_string()), text(format!("value {id:>40}"))],
    })
}

fn context(xid: Option<u32>, content: &str) -> Message {
    Message::Message(LogicalMessage {
        xid,
        transactional: true,
        lsn: Lsn(1),
        prefix: "walaudit".into(),
        content: Bytes::copy_from_slice(content.as_bytes()),
    })
}

fn begin(xid: u32, lsn: u64) -> Message {
    Message::Begin(Begin {
        final_lsn: Lsn(lsn),
        commit_ts: 0,
        xid,
    })
}

fn commit(lsn: u64) -> Message {
    Message::Commit(Commit {
        flags: 0,
        commit_lsn: Lsn(lsn),
        end_lsn: Lsn(lsn + 8),
        commit_ts: 0,
    })
}

/// Feed messages; collect committed transactions with all their changes.
fn run(a: &mut Assembler, msgs: Vec<Message>) -> Vec<(TxnMeta, Vec<Change>)> {
    let mut out = Vec::new();
    for msg in msgs {
        if let Some(Output::Committed(txn)) = a.handle(msg).unwrap() {
            let mut txn = *txn;
            let mut changes = Vec::new();
            while let Some(chunk) = txn.changes.next_chunk().unwrap() {
                assert!(chunk.len() <= 7, "chunks are bounded");
                changes.extend(chunk);
            }
            out.push((txn.meta, changes));
        }
    }
    out
}

fn ids(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match &c.row[0] {
            Cell::Text(v) => String::from_utf8(v.to_vec()).unwrap(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn context_anywhere_in_the_transaction_applies_to_all_its_changes() {
    let mut a = Assembler::new(cfg(1 << 20));
    let got = run(
        &mut a,
        vec![
            relation(),
            begin(7, 1000),
            insert(None, 1),
            context(None, r#"{"actor":"alice","request_id":"r-1"}"#),
            insert(None, 2),
            commit(1000),
            begin(8, 2000),
            insert(None, 3),
            context(None, "{broken"),
            commit(2000),
        ],
    );
    assert_eq!(got.len(), 2);
    let (meta, changes) = &got[0];
    assert_eq!(
        meta.context.as_ref().unwrap().actor.as_deref(),
        Some("alice")
    );
    assert_eq!(
        (meta.commit_lsn, meta.end_lsn, meta.change_count),
        (Lsn(1000), Lsn(1008), 2)
    );
    assert_eq!(
        changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let broken = got[1].0.context.as_ref().unwrap();
    assert_eq!((broken.actor.as_deref(), broken.well_formed), (None, false));
    assert_eq!(got[1].1.len(), 1, "a malformed context never drops changes");
    assert_eq!(a.stats().malformed_contexts, 1);
}

#[test]
fn streamed_transactions_interleave_and_release_in_commit_order() {
    let mut a = Assembler::new(cfg(1 << 20));
    let start = |xid, first| {
        Message::StreamStart(StreamStart {
            xid,
            first_segment: first,
        })
    };
    let stream_commit = |xid, lsn| {
        Message::StreamCommit(StreamCommit {
            xid,
            flags: 0,
            commit_lsn: Lsn(lsn),
            end_lsn: Lsn(lsn + 8),
            commit_ts: 0,
        })
    };
    let got = run(
        &mut a,
        vec![
            relation(),
            start(10, true),
            insert(Some(10), 1),
            insert(Some(11), 2), // subtransaction 11 of 10, rolled back below
            Message::StreamStop,
            start(20, true),
            insert(Some(20), 100),
            context(Some(20), r#"{"user":"bob"}"#),
            Message::StreamStop,
            start(10, false),
            insert(Some(10), 3),
            Message::StreamStop,
            Message::StreamAbort(StreamAbort {
                xid: 10,
                subxid: 11,
            }),
            begin(30, 500),
            insert(None, 200),
            commit(500),
            stream_commit(20, 600),
            stream_commit(10, 700),
        ],
    );
    let order: Vec<_> = got.iter().map(|(m, _)| m.xid).collect();
    assert_eq!(order, vec![30, 20, 10]);
    assert_eq!(
        ids(&got[2].1),
        vec!["1", "3"],
        "the rolled-back subtransaction left nothing"
    );
    assert_eq!(got[2].0.change_count, 2);
    assert!(got[2].0.streamed);
    assert_eq!(
        got[1].0.context.as_ref().unwrap().actor.as_deref(),
        Some("bob")
    );
    assert!(!a.has_open_txn());
}

#[test]
fn aborted_stream_leaves_nothing() {
    let mut a = Assembler::new(cfg(1 << 20));
    let got = run(
        &mut a,
        vec![
            relation(),
            Message::StreamStart(StreamStart {
                xid: 5,
                first_segment: true,
            }),
            insert(Some(5), 1),
            Message::StreamStop,
            Message::StreamAbort(StreamAbort { xid: 5, subxid: 5 }),
        ],
    );
    assert!(got.is_empty());
    assert_eq!((a.memory(), a.has_open_txn()), (0, false));
    assert_eq!(a.stats().txns_aborted, 1);
}

#[test]
fn large_transaction_spills_and_comes_back_in_order_within_budget() {
    let budget = 64 * 1024;
    let mut a = Assembler::new(cfg(budget));
    let mut msgs = vec![relation(), begin(1, 9000)];
    msgs.extend((0..5000).map(|i| insert(None, i)));
    msgs.push(commit(9000));
    let got = run(&mut a, msgs);
    let stats = a.stats();
    assert!(
        stats.spill_events > 0 && stats.spilled_bytes > 0,
        "{stats:?}"
    );
    assert!(
        stats.peak_memory <= budget + 1024,
        "peak {} > budget {budget}",
        stats.peak_memory
    );
    let changes = &got[0].1;
    assert_eq!(changes.len(), 5000);
    assert_eq!(
        ids(changes),
        (0..5000).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert!(changes.iter().enumerate().all(|(i, c)| c.seq == i as u64));
}

#[test]
fn spilled_subtransaction_abort_is_filtered_on_replay() {
    let mut a = Assembler::new(cfg(16 * 1024));
    let mut msgs = vec![
        relation(),
        Message::StreamStart(StreamStart {
            xid: 1,
            first_segment: true,
        }),
    ];
    msgs.extend((0..500).map(|i| insert(Some(if i % 2 == 0 { 1 } else { 2 }), i)));
    msgs.push(Message::StreamStop);
    msgs.push(Message::StreamAbort(StreamAbort { xid: 1, subxid: 2 }));
    msgs.push(Message::StreamCommit(StreamCommit {
        xid: 1,
        flags: 0,
        commit_lsn: Lsn(50),
        end_lsn: Lsn(58),
        commit_ts: 0,
    }));
    let got = run(&mut a, msgs);
    assert!(a.stats().spill_events > 0);
    let expect: Vec<String> = (0..500)
        .filter(|i| i % 2 == 0)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(ids(&got[0].1), expect);
    assert_eq!(got[0].0.change_count, 250);
}

#[test]
fn protocol_violations_are_errors() {
    let mut a = Assembler::new(cfg(1 << 20));
    assert!(a.handle(commit(1)).is_err());
    assert!(
        a.handle(insert(None, 1)).is_err(),
        "change outside a transaction"
    );
    a.handle(begin(1, 10)).unwrap();
    let err = a.handle(insert(None, 1)).unwrap_err();
    assert!(matches!(err, CaptureError::UnknownRelation { oid: 100 }));
    let update = Message::Update(Update {
        xid: None,
        relation_oid: 100,
        old: None,
        new: vec![],
    });
    a.handle(relation()).unwrap();
    assert!(matches!(
        a.handle(update).unwrap_err(),
        CaptureError::ColumnCount { .. }
    ));
}
