//! `gantry ledger import`: accruals as JSON lines on a reader, appended in durable batches, each
//! record acknowledged (`ok KEY` on the writer) only after its batch has committed. A writer
//! killed at any point and started again on the same stream loses nothing and counts nothing
//! twice: acknowledged records are on disk, and replayed ones are recognised by their key.

use crate::ledger::{Ledger, LedgerError, Record};
use std::io::{BufRead, Write};

/// Records per transaction: each commit waits for the disk, so batching sets the throughput.
pub const BATCH: usize = 64;

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub read: usize,
    pub new: usize,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input (a line that is not an accrual, or a read or acknowledgement that failed).
    #[error("{0}")]
    Input(String),
    /// The ledger refused a batch or could not write it.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Line `n` (from 0) as an accrual.
fn parse(n: usize, line: &str) -> Result<Record, ImportError> {
    serde_json::from_str(line).map_err(|e| {
        ImportError::Input(format!("line {}: not an accrual ({e}); expected {{\"tenant\", \"flavor\", \"start\", \"end\", \"guaranteed\", \"borrowed\", \"idle\", \"priceMicros\"}}", n + 1))
    })
}

/// Every accrual of JSON lines `input`, read before any is written (the quota API's batches); a
/// line that is not an accrual refuses the whole input, naming the line.
pub fn records(input: &[u8]) -> Result<Vec<Record>, ImportError> {
    let mut out = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| ImportError::Input(format!("line {}: cannot read: {e}", n + 1)))?;
        if !line.trim().is_empty() {
            out.push(parse(n, &line)?);
        }
    }
    Ok(out)
}

/// Reads JSON-lines accruals from `input` and appends them to `ledger`, acknowledging each on
/// `acks` after its commit. A line that is not an accrual stops the import, naming the line.
pub fn import(
    ledger: &mut Ledger,
    input: impl BufRead,
    mut acks: impl Write,
) -> Result<Imported, ImportError> {
    let mut done = Imported::default();
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    let mut flush =
        |batch: &mut Vec<Record>, done: &mut Imported, acks: &mut dyn Write| -> Result<(), ImportError> {
            if batch.is_empty() {
                return Ok(());
            }
            done.new += ledger.append(batch).map_err(ImportError::Ledger)?;
            for r in batch.drain(..) {
                writeln!(acks, "ok {}", r.key())
                    .map_err(|e| ImportError::Input(format!("cannot acknowledge: {e}")))?;
            }
            acks.flush().map_err(|e| ImportError::Input(format!("cannot acknowledge: {e}")))
        };
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| ImportError::Input(format!("line {}: cannot read: {e}", n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        batch.push(parse(n, &line)?);
        done.read += 1;
        if batch.len() == BATCH {
            flush(&mut batch, &mut done, &mut acks)?;
        }
    }
    flush(&mut batch, &mut done, &mut acks)?;
    Ok(done)
}
