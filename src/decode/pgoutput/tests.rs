use super::*;

/// Hand-written wire bytes: whitespace-separated hex tokens (`0000_4000`, `_` ignored) and
/// `"ascii"` tokens. Independent of the encoder, so fixtures check the real byte layout.
fn wire(spec: &str) -> Bytes {
    let mut out = Vec::new();
    for token in spec.split_whitespace() {
        if let Some(ascii) = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            out.extend_from_slice(ascii.as_bytes());
        } else {
            let hex = token.replace('_', "");
            assert!(hex.len() % 2 == 0, "odd hex token {token}");
            for i in (0..hex.len()).step_by(2) {
                out.push(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex token"));
            }
        }
    }
    Bytes::from(out)
}

fn text(s: &str) -> Cell {
    Cell::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn ok(spec: &str, in_stream: bool) -> Message {
    parse(wire(spec), in_stream).expect("valid fixture")
}

#[test]
fn transaction_boundaries_and_origin() {
    let begin = "42 0000_0001_0000_0010 0000_0000_0000_002a 0000_0007";
    let want = Begin {
        final_lsn: Lsn(0x1_0000_0010),
        commit_ts: 42,
        xid: 7,
    };
    assert_eq!(ok(begin, false), Message::Begin(want.clone()));
    // Begin carries no stream xid, so the flag does not change it.
    assert_eq!(ok(begin, true), Message::Begin(want));
    let commit = "43 00 0000_0000_0000_0010 0000_0000_0000_0038 0000_0000_0000_0063";
    let want = Commit {
        flags: 0,
        commit_lsn: Lsn(0x10),
        end_lsn: Lsn(0x38),
        commit_ts: 99,
    };
    assert_eq!(ok(commit, false), Message::Commit(want));
    let origin = ok(r#"4f 0000_0000_0000_0005 "node_a" 00"#, false);
    assert_eq!(
        origin,
        Message::Origin(Origin {
            commit_lsn: Lsn(5),
            name: "node_a".into()
        })
    );
}

#[test]
fn relation_with_two_columns_and_a_key() {
    let msg = ok(
        r#"52 0000_4000 "public" 00 "orders" 00 "d" 0002
           01 "id" 00 0000_0017 ffff_ffff  00 "note" 00 0000_0413 0000_0044"#,
        false,
    );
    let col = |is_key, name: &str, type_oid, type_modifier| RelationColumn {
        is_key,
        name: name.into(),
        type_oid,
        type_modifier,
    };
    let want = Relation {
        xid: None,
        oid: 16384,
        namespace: "public".into(),
        name: "orders".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![col(true, "id", 23, -1), col(false, "note", 1043, 68)],
    };
    assert_eq!(msg, Message::Relation(want));
    let ty = ok(r#"59 0001_1170 "public" 00 "mood" 00"#, false);
    let want = TypeInfo {
        xid: None,
        oid: 70000,
        namespace: "public".into(),
        name: "mood".into(),
    };
    assert_eq!(ty, Message::Type(want));
}

#[test]
fn insert_with_null_unchanged_and_text_cells_is_zero_copy() {
    let buf = wire(r#"49 0000_4000 "N" 0004 "n" "u" "t" 0000_0002 "hi" "b" 0000_0001 ff"#);
    let msg = parse(buf.clone(), false);
    let Ok(Message::Insert(insert)) = msg else {
        panic!("not an insert: {msg:?}")
    };
    assert_eq!(insert.xid, None);
    assert_eq!(insert.relation_oid, 16384);
    let binary = Cell::Binary(Bytes::from_static(&[0xff]));
    assert_eq!(
        insert.new,
        vec![Cell::Null, Cell::UnchangedToast, text("hi"), binary]
    );
    let Cell::Text(hi) = &insert.new[2] else {
        unreachable!()
    };
    assert_eq!(
        hi.as_ptr(),
        buf[15..].as_ptr(),
        "text cell must point into the input"
    );
}

#[test]
fn updates_and_deletes() {
    let key = r#"55 0000_4000 "K" 0002 "t" 0000_0001 "1" "n"
                 "N" 0002 "t" 0000_0001 "2" "t" 0000_0003 "abc""#;
    let old = Some((OldKind::Key, vec![text("1"), Cell::Null]));
    let want = Update {
        xid: None,
        relation_oid: 16384,
        old,
        new: vec![text("2"), text("abc")],
    };
    assert_eq!(ok(key, false), Message::Update(want));

    let full = r#"55 0000_0007 "O" 0002 "t" 0000_0001 "1" "t" 0000_0001 "x"
                  "N" 0002 "t" 0000_0001 "1" "u""#;
    let old = Some((OldKind::Full, vec![text("1"), text("x")]));
    let new = vec![text("1"), Cell::UnchangedToast];
    assert_eq!(
        ok(full, false),
        Message::Update(Update {
            xid: None,
            relation_oid: 7,
            old,
            new
        })
    );

    let plain = ok(r#"55 0000_0007 "N" 0001 "n""#, false);
    let want = Update {
        xid: None,
        relation_oid: 7,
        old: None,
        new: vec![Cell::Null],
    };
    assert_eq!(plain, Message::Update(want));

    let delete = ok(r#"44 0000_0007 "K" 0002 "t" 0000_0002 "42" "n""#, false);
    let old = (OldKind::Key, vec![text("42"), Cell::Null]);
    assert_eq!(
        delete,
        Message::Delete(Delete {
            xid: None,
            relation_oid: 7,
            old
        })
    );
}

#[test]
fn truncate_two_relations() {
    let msg = ok("54 0000_0002 03 0000_4000 0000_4006", false);
    let want = Truncate {
        xid: None,
        options: 3,
        relation_oids: vec![16384, 16390],
    };
    assert_eq!(msg, Message::Truncate(want));
}

#[test]
fn logical_messages() {
    let msg = ok(
        r#"4d 01 0000_0000_0000_0020 "walaudit" 00 0000_0005 "actor""#,
        false,
    );
    let prefix = "walaudit".to_owned();
    let content = Bytes::from_static(b"actor");
    let want = LogicalMessage {
        xid: None,
        transactional: true,
        lsn: Lsn(0x20),
        prefix,
        content,
    };
    assert_eq!(msg, Message::Message(want));
    // Inside a streamed block the xid comes first.
    let msg = ok(
        r#"4d 0000_0009 00 0000_0000_0000_0001 "p" 00 0000_0000"#,
        true,
    );
    let (prefix, content) = ("p".to_owned(), Bytes::new());
    let want = LogicalMessage {
        xid: Some(9),
        transactional: false,
        lsn: Lsn(1),
        prefix,
        content,
    };
    assert_eq!(msg, Message::Message(want));
}

#[test]
fn stream_control_messages() {
    let start = |first| {
        Message::StreamStart(StreamStart {
            xid: 900,
            first_segment: first,
        })
    };
    assert_eq!(ok("53 0000_0384 01", false), start(true));
    assert_eq!(ok("53 0000_0384 00", false), start(false));
    assert_eq!(ok("45", true), Message::StreamStop);
    let commit = "63 0000_0384 00 0000_0000_0000_0100 0000_0000_0000_0128 0000_0000_0000_004d";
    let want = StreamCommit {
        xid: 900,
        flags: 0,
        commit_lsn: Lsn(0x100),
        end_lsn: Lsn(0x128),
        commit_ts: 77,
    };
    assert_eq!(ok(commit, false), Message::StreamCommit(want));
    let abort = Message::StreamAbort(StreamAbort {
        xid: 900,
        subxid: 901,
    });
    assert_eq!(ok("41 0000_0384 0000_0385", false), abort);
    // Protocol v4 with parallel streaming appends abort LSN and timestamp.
    assert_eq!(
        ok(
            &format!("41 0000_0384 0000_0385 {}", "ab".repeat(16)),
            false
        ),
        abort
    );
}

#[test]
fn streamed_insert_carries_xid() {
    let spec = r#"49 0000_0384 0000_4000 "N" 0001 "t" 0000_0001 "5""#;
    let want = Insert {
        xid: Some(900),
        relation_oid: 16384,
        new: vec![text("5")],
    };
    assert_eq!(ok(spec, true), Message::Insert(want));
    // Read without the stream flag, the xid is taken for the oid and 'N' is missing.
    assert!(parse(wire(spec), false).is_err());
}

#[test]
fn malformed_inputs_are_precise_errors() {
    // `wire bytes => error message`.
    let cases = [
        r#" => pgoutput message ended early: needed 1 more bytes for message tag"#,
        r#""Z" => unknown pgoutput message tag 90"#,
        r#"42 0000_0000_0000_0000 0000_0000_0000_0000 0000_00
           => pgoutput message ended early: needed 1 more bytes for Begin xid"#,
        r#"45 00 => 1 trailing bytes after a complete Stream Stop message"#,
        r#"43 00 0000_0000_0000_0000 0000_0000_0000_0000 0000_0000_0000_0000 0102
           => 2 trailing bytes after a complete Commit message"#,
        r#"49 0000_0001 "N" 0001 "t" ffff_ffff => tuple cell length has an invalid length -1"#,
        r#"49 0000_0001 "N" 0001 "t" 0000_0009 "ab"
           => pgoutput message ended early: needed 7 more bytes for tuple cell value"#,
        r#"49 0000_0001 "N" fffe => tuple column count has an invalid length -2"#,
        r#"49 0000_0001 "N" 0001 "x" => unknown tuple cell kind 120"#,
        r#"49 0000_0001 "K" => unexpected byte 75 where Insert new tuple marker 'N' was expected"#,
        r#"55 0000_0001 "K" 0000 "O"
           => unexpected byte 79 where Update new tuple marker 'N' was expected"#,
        r#"55 0000_0001 "X"
           => unexpected byte 88 where Update tuple marker 'K', 'O' or 'N' was expected"#,
        r#"44 0000_0001 "N"
           => unexpected byte 78 where Delete old tuple marker 'K' or 'O' was expected"#,
        r#"52 0000_0001 "s" 00 "t" 00 "x" 0000
           => unexpected byte 120 where Relation replica identity 'd', 'n', 'f' or 'i' was expected"#,
        r#"52 0000_0001 "s" 00 "t" 00 "d" 8000
           => Relation column count has an invalid length -32768"#,
        r#"4f 0000_0000_0000_0001 fffe 00 => Origin name is not valid UTF-8"#,
        r#"4f 0000_0000_0000_0001 "no-nul"
           => pgoutput message ended early: needed 1 more bytes for Origin name"#,
        r#"54 ffff_ffff 00 => Truncate relation count has an invalid length -1"#,
        r#"54 0000_0002 00 0000_0001
           => pgoutput message ended early: needed 4 more bytes for Truncate relation oid"#,
        r#"4d 01 0000_0000_0000_0001 "p" 00 ffff_fffb
           => Message content length has an invalid length -5"#,
        r#"41 0000_0384 0000_0385 0000_0000_0000_0000
           => 8 trailing bytes after a complete Stream Abort message"#,
    ];
    for case in cases {
        let (spec, want) = case.split_once("=>").expect("case has `=>`");
        let err = parse(wire(spec), false).expect_err(spec);
        assert_eq!(err.to_string(), want.trim(), "input {spec}");
    }
}
