//! `gantry ledger`: the cost ledger file from the command line.

use clap::{Args, Subcommand};
use gantry_quota_api::import::import;
use gantry_quota_api::ledger::{Ledger, Rollup, Sums};
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
    /// Print usage and cost per tenant and flavor, over the whole ledger: unit-hours (GPU-hours;
    /// core-hours for `cpu`) within quota, borrowed and idle, and what they cost.
    Totals {
        #[arg(long, value_name = "FILE")]
        ledger: PathBuf,
        /// The currency the prices were set in (the tenants file's `currency`), to label amounts.
        #[arg(long, value_name = "CODE")]
        currency: Option<String>,
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
        LedgerCommand::Totals { ledger, currency } => {
            let l = Ledger::open(&ledger).map_err(|e| e.to_string())?;
            let (n, _) = l.totals().map_err(|e| e.to_string())?;
            // From the daily rollups: they outlive accruals dropped by retention.
            let rows = l.sums(Rollup::Day, None, i64::MIN, i64::MAX).map_err(|e| e.to_string())?;
            print!("{}", totals_table(&rows, currency.as_deref().unwrap_or("units")));
            println!("{n} accruals kept in {}", ledger.display());
            Ok(())
        }
    }
}

/// The rows as an aligned table with a total line: hours with one decimal, money with two.
fn totals_table(rows: &[(String, String, Sums)], currency: &str) -> String {
    let hours = |milli_seconds: u64| format!("{:.1}", milli_seconds as f64 / 3_600_000.0);
    let money = |micros: u64| format!("{:.2}", micros as f64 / 1e6);
    let mut total = Sums::default();
    let mut lines = vec![[
        "TENANT".to_string(),
        "FLAVOR".into(),
        "HOURS IN QUOTA".into(),
        "BORROWED".into(),
        "OF THOSE IDLE".into(),
        format!("COST ({currency})"),
        "IDLE COST".into(),
    ]];
    let mut row = |tenant: &str, flavor: &str, s: &Sums| {
        let cost = s.guaranteed_cost.saturating_add(s.borrowed_cost);
        lines.push([
            tenant.into(),
            flavor.into(),
            hours(s.guaranteed),
            hours(s.borrowed),
            hours(s.idle),
            money(cost),
            money(s.idle_cost),
        ]);
    };
    for (tenant, flavor, s) in rows {
        row(tenant, flavor, s);
        total.add(s);
    }
    row("total", "", &total);
    let widths: Vec<usize> = (0..7).map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (v, w))| if c < 2 { format!("{v:<w$}") } else { format!("{v:>w$}") })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
