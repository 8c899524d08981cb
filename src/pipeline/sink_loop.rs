//! The sink task: the commands capture queues for the sink, applied in order.
//!
//! ```text
//!  capture ──SinkCmd (bounded queue)──► sink_loop ──► Sink::{write, commit, message, flush}
//!                                           │  every SINK_TICK ──► Sink::tick
//!                                           └──► watch<Lsn>: the durable position
//! ```
//!
//! # Invariants
//! * Commands are applied in queue order, one at a time (the sink is never called
//!   concurrently).
//! * The published durable position never moves backward.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use super::SINK_TICK;
use crate::Lsn;
use crate::capture::{CapturedMessage, Change, TxnMeta};
use crate::sink::{Sink, SinkError};

/// What capture asks of the sink.
pub(super) enum SinkCmd {
    Write(Arc<TxnMeta>, Vec<Change>),
    Commit(Arc<TxnMeta>, Vec<CapturedMessage>),
    Message(CapturedMessage),
    Flush(oneshot::Sender<Lsn>),
}

/// Applies commands in order and calls the sink's timer; publishes the durable LSN after
/// each. Hands the sink back when the queue closes or a call fails, so a reconnect can reuse
/// it.
pub(super) async fn sink_loop<S: Sink>(
    mut sink: S,
    mut rx: mpsc::Receiver<SinkCmd>,
    durable: watch::Sender<Lsn>,
) -> (S, Result<(), SinkError>) {
    let mut tick = tokio::time::interval(SINK_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let cmd = tokio::select! {
            biased;
            // 1. The timer (at most every SINK_TICK): age flushes happen even under a
            //    sustained stream of commands, and while no data arrives.
            _ = tick.tick() => None,
            // 2. Commands, in order: they carry the data and the flush requests.
            cmd = rx.recv() => match cmd {
                Some(cmd) => Some(cmd),
                None => break,
            },
        };
        let applied = match cmd {
            None => sink.tick().await,
            Some(SinkCmd::Write(meta, changes)) => sink.write(&meta, changes).await,
            Some(SinkCmd::Commit(meta, messages)) => sink.commit(&meta, messages).await,
            Some(SinkCmd::Message(message)) => sink.message(message).await,
            Some(SinkCmd::Flush(reply)) => sink.flush().await.map(|lsn| {
                let _ = reply.send(lsn);
            }),
        };
        if let Err(err) = applied {
            return (sink, Err(err));
        }
        durable.send_if_modified(|d| {
            let new = sink.durable_lsn();
            let moved = new > *d;
            *d = (*d).max(new);
            moved
        });
    }
    (sink, Ok(()))
}
