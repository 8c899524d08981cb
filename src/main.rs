//! The `walaudit` binary: parse the command line, load config, run one command.

use std::process::ExitCode;

use clap::Parser;

use walaudit::cli::{Cli, init_logging};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    match try_main(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", walaudit::report::chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn try_main(cli: Cli) -> anyhow::Result<ExitCode> {
    // Config is loaded synchronously, before the runtime starts.
    let command = cli.command.prepare(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("walaudit")
        .build()?;
    // The command runs on a worker thread, not in `block_on`: the replication loop is cheaper
    // there (measured: about half the system time).
    runtime.block_on(async { tokio::spawn(command.run()).await? })
}
