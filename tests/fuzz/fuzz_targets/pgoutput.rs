//! pgoutput message parser (`decode::pgoutput::parse`). Input: `[flags] [message]`, flags bit 0
//! = inside a streamed block.
//!
//! Checks, for every input that decodes:
//! * zero-copy: every tuple cell and message content is a slice of the input;
//! * the xid of the xid-bearing messages is there exactly inside a streamed block;
//! * round trip: the message re-encodes (`decode::encode`) to at most as many bytes, which
//!   decode to the same message;
//! * no complete message has a complete prefix (the parser never decides on the length left),
//!   except a Stream Abort, whose v4 form appends 16 optional bytes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use walaudit::decode::pgoutput::{encoded, parse};
use walaudit::decode::{Cell, DecodeError, Message, Tuple};

fuzz_target!(|data: &[u8]| {
    walaudit_fuzz::input(data);
    let Some((&flags, wire)) = data.split_first() else {
        return;
    };
    let in_stream = flags & 1 != 0;
    let buf = Bytes::copy_from_slice(wire);
    let Ok(msg) = parse(buf.clone(), in_stream) else {
        return;
    };

    for slice in slices(&msg) {
        let inside = buf.as_ptr_range();
        let range = slice.as_ptr_range();
        assert!(
            slice.is_empty() || (inside.start <= range.start && range.end <= inside.end),
            "a cell of {msg:?} is not a slice of the input"
        );
    }
    if let Some(xid) = stream_xid(&msg) {
        assert_eq!(
            xid.is_some(),
            in_stream,
            "xid of {msg:?}, in_stream {in_stream}"
        );
    }

    let again = encoded(&msg);
    assert!(
        again.len() <= wire.len(),
        "{msg:?} re-encodes to {} bytes, read from {}",
        again.len(),
        wire.len()
    );
    assert_eq!(parse(again, in_stream), Ok(msg.clone()), "round trip");

    if !matches!(msg, Message::StreamAbort(_)) {
        let prefix = buf.slice(..buf.len() - 1);
        assert!(
            matches!(
                parse(prefix, in_stream),
                Err(DecodeError::Truncated { needed, .. }) if needed > 0
            ),
            "a strict prefix of {msg:?} is not reported as truncated"
        );
    }
});

/// The `Bytes` a message shares with its input.
fn slices(msg: &Message) -> Vec<&Bytes> {
    let tuples: Vec<&Tuple> = match msg {
        Message::Insert(m) => vec![&m.new],
        Message::Update(m) => m.old.iter().map(|(_, t)| t).chain([&m.new]).collect(),
        Message::Delete(m) => vec![&m.old.1],
        Message::Message(m) => return vec![&m.content],
        _ => Vec::new(),
    };
    tuples
        .into_iter()
        .flatten()
        .filter_map(|cell| match cell {
            Cell::Text(b) | Cell::Binary(b) => Some(b),
            Cell::Null | Cell::UnchangedToast => None,
        })
        .collect()
}

/// The xid field of the messages that carry one inside a streamed block.
fn stream_xid(msg: &Message) -> Option<Option<u32>> {
    Some(match msg {
        Message::Relation(m) => m.xid,
        Message::Type(m) => m.xid,
        Message::Insert(m) => m.xid,
        Message::Update(m) => m.xid,
        Message::Delete(m) => m.xid,
        Message::Truncate(m) => m.xid,
        Message::Message(m) => m.xid,
        _ => return None,
    })
}
