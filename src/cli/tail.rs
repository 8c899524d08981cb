//! `walaudit tail`: print each committed change as one JSON object per line.
//!
//! By default it watches from now on through a temporary slot that the server drops when
//! tail exits. With `--slot NAME` it reads an existing slot and never confirms progress on it,
//! so it cannot disturb the engine that owns the slot. `--drain` stops at the server's WAL
//! position at start.

use std::process::ExitCode;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::capture::AssemblerConfig;
pub use crate::capture::json::{JsonLinesSink, change_json};
use crate::config::Config;
use crate::pipeline::{self, PipelineOptions, SlotMode};
use crate::source::ConnParams;

#[derive(Clone, Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// Read this existing slot instead of a temporary one; progress is never confirmed on it.
    #[arg(long)]
    pub slot: Option<String>,
    /// Stop once everything up to the server's WAL position at start was printed.
    #[arg(long)]
    pub drain: bool,
}

/// A prepared `tail`.
pub struct Tail {
    options: PipelineOptions,
}

impl Tail {
    pub fn new(args: TailArgs, config: Config) -> anyhow::Result<Tail> {
        let source = ConnParams::parse(config.source_url()?)?;
        let slot = match args.slot {
            Some(name) => SlotMode::ReadOnly { name },
            None => SlotMode::Temporary {
                name: format!("walaudit_tail_{}", std::process::id()),
            },
        };
        let options = PipelineOptions {
            source,
            slot,
            publication: config.source.publication.clone(),
            // A debugging view does not create publications behind the operator's back.
            create_publication: false,
            publication_tables: Vec::new(),
            status_interval: config.source.status_interval,
            assembler: AssemblerConfig::new(&config.capture, &config.source.context_prefix),
            drain: args.drain,
            metrics: Default::default(),
            streaming: None,
        };
        Ok(Tail { options })
    }

    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
        let sink = JsonLinesSink::new(Box::new(std::io::stdout()));
        let summary = pipeline::run(self.options, sink, cancel).await?;
        tracing::info!(
            transactions = summary.capture.txns_committed,
            changes = summary.capture.changes,
            "tail finished"
        );
        Ok(ExitCode::SUCCESS)
    }
}
