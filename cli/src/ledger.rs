//! `gantry ledger`: the cost ledger file from the command line.

use clap::{Args, Subcommand};
use gantry_quota_api::import::import;
use gantry_quota_api::ledger::Ledger;
use std::path::PathBuf;

#[derive(Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Append accruals read as JSON lines from standard input; print `ok KEY` for each once it
    /// is on disk. Replaying the same lines changes nothing.
    Import {
        /// The ledger file (SQLite); created if missing.
        #[arg(long, value_name = "FILE")]
        ledger: PathBuf,
    },
    /// Print the number of accruals and their totals (milli-unit-seconds and micro-units).
    Totals {
        #[arg(long, value_name = "FILE")]
        ledger: PathBuf,
    },
}

pub fn run(args: LedgerArgs) -> Result<(), String> {
    match args.command {
        LedgerCommand::Import { ledger } => {
            let mut l = Ledger::open(&ledger).map_err(|e| e.to_string())?;
            let done = import(&mut l, std::io::stdin().lock(), std::io::stdout().lock())
                .map_err(|e| e.to_string())?;
            eprintln!(
                "gantry ledger: {} accruals read, {} new, in {}",
                done.read,
                done.new,
                ledger.display()
            );
            Ok(())
        }
        LedgerCommand::Totals { ledger } => {
            let l = Ledger::open(&ledger).map_err(|e| e.to_string())?;
            let (n, s) = l.totals().map_err(|e| e.to_string())?;
            println!(
                "accruals {n} guaranteed {} borrowed {} idle {} guaranteed_cost {} borrowed_cost {} idle_cost {}",
                s.guaranteed, s.borrowed, s.idle, s.guaranteed_cost, s.borrowed_cost, s.idle_cost
            );
            Ok(())
        }
    }
}
