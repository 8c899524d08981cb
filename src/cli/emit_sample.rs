//! `walaudit emit-sample [COUNT]`: a load generator for trying walaudit on a source.
//!
//! It creates the sample shop schema when missing (customers, products, orders, order_items),
//! then commits COUNT transactions, each opened by an audit-context message naming one of the
//! actors. Deterministic with `--seed`. Prints a JSON summary on stdout.

use std::process::ExitCode;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::demo::workload::{self, OpMix, WorkloadOptions};
use crate::source::ConnParams;

#[derive(Clone, Debug, Args)]
pub struct EmitSampleArgs {
    /// Transactions to commit.
    #[arg(default_value_t = 1000)]
    pub count: u64,
    /// Source database URL (else source.url in the config file, else WALAUDIT_SOURCE).
    #[arg(long, visible_alias = "url")]
    pub source: Option<String>,
    /// Transactions per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Operations per transaction.
    #[arg(long, default_value_t = 3)]
    pub tx_size: u32,
    /// Weights of the operations on orders.
    #[arg(long, default_value = "insert=60,update=30,delete=10")]
    pub mix: String,
    /// Actors the transactions are attributed to (one per transaction, drawn at random).
    #[arg(long, value_delimiter = ',', default_value = "alice,bob,carol")]
    pub actors: Vec<String>,
    /// Seed of the random choices: the same seed on the same data repeats the workload.
    #[arg(long)]
    pub seed: Option<u64>,
}

impl EmitSampleArgs {
    pub fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            source: self.source.clone(),
            ..Default::default()
        }
    }
}

/// A prepared `emit-sample`.
pub struct EmitSample {
    source: ConnParams,
    options: WorkloadOptions,
}

impl EmitSample {
    pub fn new(args: EmitSampleArgs, config: Config) -> anyhow::Result<EmitSample> {
        let source = ConnParams::parse(config.source_url()?)?;
        let mix: OpMix = args.mix.parse()?;
        anyhow::ensure!(
            args.rate >= 0.0 && args.rate.is_finite(),
            "--rate must be a number of transactions per second, 0 for as fast as possible"
        );
        let seed = args
            .seed
            .unwrap_or_else(|| crate::clock::unix_nanos() as u64);
        let options = WorkloadOptions {
            count: args.count,
            rate: args.rate,
            tx_size: args.tx_size,
            mix,
            actors: args.actors.into_iter().filter(|a| !a.is_empty()).collect(),
            seed,
            context_prefix: config.source.context_prefix.clone(),
        };
        Ok(EmitSample { source, options })
    }

    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
        let stats = workload::emit(&self.source, &self.options, &cancel).await?;
        println!("{}", serde_json::to_string(&stats)?);
        Ok(ExitCode::SUCCESS)
    }
}
