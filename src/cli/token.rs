//! `walaudit token create`: a new API token, printed once, and the config entry that keeps
//! only its SHA-256.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::api::auth::{Role, new_token};

#[derive(Clone, Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub action: TokenAction,
}

#[derive(Clone, Debug, Subcommand)]
pub enum TokenAction {
    /// Make a token: prints it once, and the [[api.tokens]] entry to add to the config.
    Create {
        /// Who holds it (the author of the job changes made with it).
        #[arg(long)]
        name: String,
        /// viewer < auditor < operator < admin; each has the rights of those before it.
        #[arg(long, value_enum)]
        role: Role,
    },
}

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        TokenAction::Create { name, role } => {
            if name.trim().is_empty() || name.contains(['"', '\n', '\\']) {
                anyhow::bail!("--name must be a plain, non-empty name (no quotes or newlines)");
            }
            let (token, sha256) = new_token()
                .map_err(|e| anyhow::anyhow!("the system gives no random bytes: {e}"))?;
            println!("token (shown once; give it as `Authorization: Bearer <token>`):");
            println!("  {token}");
            println!();
            println!("add to the config file (only the SHA-256 is kept):");
            println!("[[api.tokens]]");
            println!("name = \"{name}\"");
            println!("role = \"{}\"", role.as_str());
            println!("sha256 = \"{sha256}\"");
            Ok(ExitCode::SUCCESS)
        }
    }
}
