//! The cost ledger: the one piece of state Gantry owns, so it must never lose a record.
//!
//! - **Storage**: SQLite (embedded, no server), WAL journal, `synchronous = FULL`: a write
//!   acknowledged by [`Ledger::append`] has reached the disk and survives a crash or SIGKILL.
//! - **Idempotent**: every accrual has a key (tenant, flavor, start, end); appending the same
//!   accrual again changes nothing, so a writer that restarts can replay its stream from any point.
//!   The same key with different figures is refused: two sources disagree, and silently keeping
//!   either would be wrong.
//! - **Rollups**: hourly and daily sums per tenant and flavor, kept in the same transaction as
//!   the accruals, split across hours by exact integer shares (their sum is the record's figure
//!   to the unit), so every view adds up.
//! - **Retention**: raw accruals older than a cut-off can be dropped once rolled up; the rollups
//!   stay.
//! - **Migrations**: numbered, applied in order inside a transaction, recorded in
//!   `PRAGMA user_version`; a ledger written by a newer Gantry is refused, not downgraded.
//!
//! Units are integers throughout: milli-unit-seconds of use (1 GPU for 1 s = 1000) and
//! micro-units of money, as in the core's ledger (`gantry_core::queue::ledger`).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub use gantry_api::quota::{cost_micros, records_of, Record};

/// What went wrong, naming the file or record and the fix.
#[derive(Debug)]
pub enum LedgerError {
    /// The database could not be opened or written.
    Sqlite { what: String, source: rusqlite::Error },
    /// The file was written by a newer Gantry.
    TooNew { found: i64, known: i64 },
    /// An accrual that cannot be true.
    Invalid { key: String, why: String },
    /// The same key already holds different figures.
    Conflict { key: String },
}

impl std::fmt::Display for LedgerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LedgerError::Sqlite { what, source } => write!(f, "ledger: {what}: {source}"),
            LedgerError::TooNew { found, known } => write!(
                f,
                "ledger: the file has schema version {found}, newer than this Gantry knows ({known}); run the newer Gantry, or restore a backup"
            ),
            LedgerError::Invalid { key, why } => write!(f, "ledger: accrual {key} is not valid: {why}"),
            LedgerError::Conflict { key } => write!(
                f,
                "ledger: accrual {key} is already recorded with other figures; two writers disagree about the same interval, fix the source before replaying"
            ),
        }
    }
}

impl std::error::Error for LedgerError {}

/// Refuses a record that cannot be true, naming its key and why.
fn check(r: &Record) -> Result<(), LedgerError> {
    let bad = |why: &str| Err(LedgerError::Invalid { key: r.key(), why: why.to_string() });
    if r.tenant.is_empty() || r.flavor.is_empty() {
        return bad("tenant and flavor must be named");
    }
    if r.end <= r.start {
        return bad("end must be after start");
    }
    if r.node.as_deref() == Some("") {
        return bad("node, when given, must be named");
    }
    if r.node.is_some() && (r.guaranteed > 0 || r.borrowed > 0) {
        return bad("a node's record carries idle time only; guaranteed and borrowed time come from the scheduler");
    }
    let most = u64::try_from(r.end - r.start).unwrap_or(u64::MAX).saturating_mul(1_000_000_000);
    if r.guaranteed.saturating_add(r.borrowed) > most || r.idle > most {
        return bad("more use than a million units over the interval");
    }
    if [r.guaranteed, r.borrowed, r.idle, r.price_micros].iter().any(|&v| v > i64::MAX as u64) {
        return bad("a figure does not fit a 64-bit signed integer");
    }
    Ok(())
}

fn sql(what: &str) -> impl FnOnce(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Sqlite { what: what.to_string(), source }
}

/// Schema migrations, in order; `user_version` is how many have run.
const MIGRATIONS: [&str; 3] = ["
    CREATE TABLE accruals (
        key TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        flavor TEXT NOT NULL,
        start INTEGER NOT NULL,
        end INTEGER NOT NULL,
        guaranteed INTEGER NOT NULL,
        borrowed INTEGER NOT NULL,
        idle INTEGER NOT NULL,
        price_micros INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX accruals_by_time ON accruals (start);
    CREATE TABLE hourly (
        tenant TEXT NOT NULL, flavor TEXT NOT NULL, at INTEGER NOT NULL,
        guaranteed INTEGER NOT NULL, borrowed INTEGER NOT NULL, idle INTEGER NOT NULL,
        guaranteed_cost INTEGER NOT NULL, borrowed_cost INTEGER NOT NULL, idle_cost INTEGER NOT NULL,
        PRIMARY KEY (tenant, at, flavor)
    ) WITHOUT ROWID;
    CREATE TABLE daily (
        tenant TEXT NOT NULL, flavor TEXT NOT NULL, at INTEGER NOT NULL,
        guaranteed INTEGER NOT NULL, borrowed INTEGER NOT NULL, idle INTEGER NOT NULL,
        guaranteed_cost INTEGER NOT NULL, borrowed_cost INTEGER NOT NULL, idle_cost INTEGER NOT NULL,
        PRIMARY KEY (tenant, at, flavor)
    ) WITHOUT ROWID;
", "
    -- 2: periods over every tenant read the hourly rollup by time (days are kept in memory).
    CREATE INDEX hourly_by_time ON hourly (at);
", "
    -- 3: where retention dropped raw accruals: older ones cannot be told from replays any more.
    CREATE TABLE retention (dropped_before INTEGER NOT NULL);
    INSERT INTO retention VALUES (-9223372036854775808);
"];

/// Rollup granularities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Hour,
    Day,
}

impl Step {
    pub fn seconds(self) -> i64 {
        match self {
            Step::Hour => 3600,
            Step::Day => 86_400,
        }
    }
    fn table(self) -> &'static str {
        match self {
            Step::Hour => "hourly",
            Step::Day => "daily",
        }
    }
}

/// Use and money in one bucket (or over a period): milli-unit-seconds and micro-units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    pub guaranteed: u64,
    pub borrowed: u64,
    pub idle: u64,
    pub guaranteed_cost: u64,
    pub borrowed_cost: u64,
    pub idle_cost: u64,
}

impl Sums {
    pub fn add(&mut self, o: &Sums) {
        self.guaranteed += o.guaranteed;
        self.borrowed += o.borrowed;
        self.idle += o.idle;
        self.guaranteed_cost += o.guaranteed_cost;
        self.borrowed_cost += o.borrowed_cost;
        self.idle_cost += o.idle_cost;
    }
}

/// One rollup row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub tenant: String,
    pub flavor: String,
    /// Unix seconds of the bucket's start (UTC hour or day).
    pub at: i64,
    pub sums: Sums,
}

/// `total`'s share of `[a, b)` within `[start, end)`: the difference of floors of cumulative
/// shares, so the shares of consecutive pieces add up to `total` exactly.
fn share(total: u64, start: i64, end: i64, a: i64, b: i64) -> u64 {
    let len = (end - start) as u128;
    let upto = |t: i64| (u128::from(total) * (t - start) as u128 / len) as u64;
    upto(b) - upto(a)
}

/// The ledger file.
pub struct Ledger {
    conn: Connection,
    /// The daily rollup, also in memory: sums over whole days for every tenant are read from
    /// here (a year of 100 tenants on two flavors is 73,000 entries), updated after each commit.
    daily: Series,
    /// The hourly rollup of the [`RECENT`] seconds before the newest hour, in memory too:
    /// the partial days at the edges of recent periods are read from here.
    recent: Series,
    /// The newest hour in the hourly rollup.
    newest: i64,
    /// Raw accruals ending at or before this were dropped by retention: such accruals are refused,
    /// as they cannot be told from replays.
    dropped_before: i64,
}

/// How far back the hourly rollup is also kept in memory: 62 days, so "the last 30 days" and
/// the month so far are read from memory (100 tenants on two flavors: 298,000 entries).
pub const RECENT: i64 = 62 * 86_400;

type Series = HashMap<(String, String), BTreeMap<i64, Sums>>;

/// What one record adds to a rollup: (bucket start, sums).
type Parts = Vec<(i64, Sums)>;

/// Sums per key of `series` over `[from, to)`, for `tenant` or all, sorted.
fn sum_series(series: &Series, tenant: Option<&str>, from: i64, to: i64) -> Vec<(String, String, Sums)> {
    let mut out: Vec<(String, String, Sums)> = series
        .iter()
        .filter(|((t, _), _)| tenant.is_none_or(|x| x == t))
        .filter_map(|((t, f), s)| {
            let mut sum = Sums::default();
            let mut any = false;
            for (_, p) in s.range(from..to.max(from)) {
                sum.add(p);
                any = true;
            }
            any.then(|| (t.clone(), f.clone(), sum))
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        let what = format!("cannot open {}", path.display());
        let conn = Connection::open(path).map_err(sql(&what))?;
        Ledger::setup(conn, &what)
    }

    /// A ledger in memory (tests, `gantry simulate --serve`).
    pub fn in_memory() -> Result<Ledger, LedgerError> {
        Ledger::setup(Connection::open_in_memory().map_err(sql("cannot open an in-memory ledger"))?, "in memory")
    }

    fn setup(mut conn: Connection, what: &str) -> Result<Ledger, LedgerError> {
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql(what))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql(what))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql(what))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql(what))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(LedgerError::TooNew { found: version, known });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive).map_err(sql(what))?;
            tx.execute_batch(migration).map_err(sql("cannot migrate the schema"))?;
            tx.pragma_update(None, "user_version", i as i64 + 1).map_err(sql("cannot record the schema version"))?;
            tx.commit().map_err(sql("cannot commit the schema migration"))?;
        }
        let newest: Option<i64> = conn.query_row("SELECT MAX(at) FROM hourly", [], |r| r.get(0)).map_err(sql(what))?;
        let dropped_before: i64 = conn.query_row("SELECT dropped_before FROM retention", [], |r| r.get(0)).map_err(sql(what))?;
        let mut ledger = Ledger { conn, daily: HashMap::new(), recent: HashMap::new(), newest: newest.unwrap_or(i64::MIN), dropped_before };
        for b in ledger.buckets(Step::Day, None, i64::MIN, i64::MAX)? {
            ledger.daily.entry((b.tenant, b.flavor)).or_default().insert(b.at, b.sums);
        }
        for b in ledger.buckets(Step::Hour, None, ledger.horizon(), i64::MAX)? {
            ledger.recent.entry((b.tenant, b.flavor)).or_default().insert(b.at, b.sums);
        }
        Ok(ledger)
    }

    /// The schema version.
    pub fn version(&self) -> Result<i64, LedgerError> {
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql("cannot read the schema version"))
    }

    /// Appends `records` in one durable transaction; returns how many were new. Records already
    /// present with the same figures are skipped; with other figures the whole batch is refused.
    pub fn append(&mut self, records: &[Record]) -> Result<usize, LedgerError> {
        for r in records {
            check(r)?;
            if r.end <= self.dropped_before {
                return Err(LedgerError::Invalid {
                    key: r.key(),
                    why: format!("it ends before {}, where retention dropped raw accruals, so it may be counted already", self.dropped_before),
                });
            }
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql("cannot begin a write"))?;
        let mut new = 0;
        // Per new record: its index, and what it added to the hourly and the daily rollup.
        let mut parts: Vec<(usize, Parts, Parts)> = Vec::new();
        {
            let mut existing = tx
                .prepare_cached("SELECT guaranteed, borrowed, idle, price_micros FROM accruals WHERE key = ?1")
                .map_err(sql("cannot read accruals"))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO accruals (key, tenant, flavor, start, end, guaranteed, borrowed, idle, price_micros) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(sql("cannot write accruals"))?;
            for (i, r) in records.iter().enumerate() {
                let key = r.key();
                let found: Option<(i64, i64, i64, i64)> =
                    existing.query_row(params![key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))).optional().map_err(sql("cannot read accruals"))?;
                let figures = (r.guaranteed as i64, r.borrowed as i64, r.idle as i64, r.price_micros as i64);
                match found {
                    Some(f) if f == figures => continue,
                    Some(_) => return Err(LedgerError::Conflict { key }),
                    None => {}
                }
                insert
                    .execute(params![key, r.tenant, r.flavor, r.start, r.end, figures.0, figures.1, figures.2, figures.3])
                    .map_err(sql("cannot write an accrual"))?;
                parts.push((i, roll_up(&tx, Step::Hour, r)?, roll_up(&tx, Step::Day, r)?));
                new += 1;
            }
        }
        tx.commit().map_err(sql("cannot commit the accruals"))?;
        // Only what is on disk goes into memory.
        let before = self.horizon();
        for (i, hours, days) in parts {
            let key = (records[i].tenant.clone(), records[i].flavor.clone());
            let series = self.daily.entry(key.clone()).or_default();
            for (at, p) in days {
                series.entry(at).or_default().add(&p);
            }
            self.newest = self.newest.max(hours.last().map_or(i64::MIN, |h| h.0));
            let recent = self.recent.entry(key).or_default();
            for (at, p) in hours.into_iter().filter(|(at, _)| *at >= before) {
                recent.entry(at).or_default().add(&p);
            }
        }
        // Forget hours that left the window.
        let horizon = self.horizon();
        if horizon > before {
            for series in self.recent.values_mut() {
                *series = series.split_off(&horizon);
            }
        }
        Ok(new)
    }

    /// Rollup rows of `tenant` (all tenants when `None`) with buckets starting in `[from, to)`.
    /// With a tenant the read is a range of the table's primary key (tenant, at, flavor).
    pub fn buckets(&self, step: Step, tenant: Option<&str>, from: i64, to: i64) -> Result<Vec<Bucket>, LedgerError> {
        let filter = if tenant.is_some() { "tenant = ?1 AND at >= ?2 AND at < ?3" } else { "at >= ?1 AND at < ?2" };
        let query = format!(
            "SELECT tenant, flavor, at, guaranteed, borrowed, idle, guaranteed_cost, borrowed_cost, idle_cost FROM {} WHERE {filter} ORDER BY tenant, at, flavor",
            step.table()
        );
        let mut stmt = self.conn.prepare_cached(&query).map_err(sql("cannot read the rollups"))?;
        let read = |row: &rusqlite::Row| {
            let n = |i: usize| row.get::<_, i64>(i).map(|v| v as u64);
            Ok(Bucket {
                tenant: row.get(0)?,
                flavor: row.get(1)?,
                at: row.get(2)?,
                sums: Sums { guaranteed: n(3)?, borrowed: n(4)?, idle: n(5)?, guaranteed_cost: n(6)?, borrowed_cost: n(7)?, idle_cost: n(8)? },
            })
        };
        let rows: Result<Vec<Bucket>, rusqlite::Error> = match tenant {
            Some(t) => stmt.query_map(params![t, from, to], read).and_then(|r| r.collect()),
            None => stmt.query_map(params![from, to], read).and_then(|r| r.collect()),
        };
        rows.map_err(sql("cannot read the rollups"))
    }

    /// Sums per tenant and flavor over the `step` buckets starting in `[from, to)`, of `tenant`
    /// or of every tenant, sorted: days and recent hours from memory, older hours summed by SQLite.
    pub fn sums(&self, step: Step, tenant: Option<&str>, from: i64, to: i64) -> Result<Vec<(String, String, Sums)>, LedgerError> {
        match step {
            Step::Day => return Ok(sum_series(&self.daily, tenant, from, to)),
            Step::Hour if from >= self.horizon() => return Ok(sum_series(&self.recent, tenant, from, to)),
            Step::Hour => {}
        }
        let filter = if tenant.is_some() { "tenant = ?1 AND at >= ?2 AND at < ?3" } else { "at >= ?1 AND at < ?2" };
        let query = format!(
            "SELECT tenant, flavor, SUM(guaranteed), SUM(borrowed), SUM(idle), SUM(guaranteed_cost), SUM(borrowed_cost), SUM(idle_cost) \
             FROM {} WHERE {filter} GROUP BY tenant, flavor ORDER BY tenant, flavor",
            step.table()
        );
        let mut stmt = self.conn.prepare_cached(&query).map_err(sql("cannot sum the rollups"))?;
        let read = |row: &rusqlite::Row| {
            let n = |i: usize| row.get::<_, i64>(i).map(|v| v as u64);
            Ok((row.get(0)?, row.get(1)?, Sums { guaranteed: n(2)?, borrowed: n(3)?, idle: n(4)?, guaranteed_cost: n(5)?, borrowed_cost: n(6)?, idle_cost: n(7)? }))
        };
        let rows: Result<Vec<_>, rusqlite::Error> = match tenant {
            Some(t) => stmt.query_map(params![t, from, to], read).and_then(|r| r.collect()),
            None => stmt.query_map(params![from, to], read).and_then(|r| r.collect()),
        };
        rows.map_err(sql("cannot sum the rollups"))
    }

    /// The oldest hour kept in memory.
    fn horizon(&self) -> i64 {
        self.newest.saturating_sub(RECENT)
    }

    /// Whether an accrual with this key is recorded.
    pub fn has(&self, key: &str) -> Result<bool, LedgerError> {
        let mut stmt = self.conn.prepare_cached("SELECT 1 FROM accruals WHERE key = ?1").map_err(sql("cannot read accruals"))?;
        stmt.exists(params![key]).map_err(sql("cannot read accruals"))
    }

    /// Totals over every accrual recorded (for checks; the API reads rollups).
    pub fn totals(&self) -> Result<(usize, Sums), LedgerError> {
        let mut stmt = self.conn.prepare("SELECT guaranteed, borrowed, idle, price_micros FROM accruals").map_err(sql("cannot read accruals"))?;
        let mut rows = stmt.query([]).map_err(sql("cannot read accruals"))?;
        let (mut n, mut sums) = (0, Sums::default());
        while let Some(row) = rows.next().map_err(sql("cannot read accruals"))? {
            let v = |i: usize| row.get::<_, i64>(i).map(|v| v as u64).map_err(sql("cannot read an accrual"));
            let (g, b, i, p) = (v(0)?, v(1)?, v(2)?, v(3)?);
            let cost = |m: u64| cost_micros(m, p);
            sums.add(&Sums { guaranteed: g, borrowed: b, idle: i, guaranteed_cost: cost(g), borrowed_cost: cost(b), idle_cost: cost(i) });
            n += 1;
        }
        Ok((n, sums))
    }

    /// Drops raw accruals that ended at or before `before` (their rollups stay); returns how
    /// many. From then on accruals ending that early are refused: their keys are gone, so a
    /// replay of one could not be recognised.
    pub fn retain(&mut self, before: i64) -> Result<usize, LedgerError> {
        let before = before.max(self.dropped_before);
        let tx = self.conn.transaction().map_err(sql("cannot apply retention"))?;
        tx.execute("UPDATE retention SET dropped_before = ?1", params![before]).map_err(sql("cannot apply retention"))?;
        let n = tx.execute("DELETE FROM accruals WHERE end <= ?1", params![before]).map_err(sql("cannot apply retention"))?;
        tx.commit().map_err(sql("cannot apply retention"))?;
        self.dropped_before = before;
        Ok(n)
    }
}

/// Adds `r` to the `step` rollup, one row per bucket it overlaps; returns what it added.
fn roll_up(tx: &rusqlite::Transaction, step: Step, r: &Record) -> Result<Parts, LedgerError> {
    let size = step.seconds();
    let query = format!(
        "INSERT INTO {} (tenant, flavor, at, guaranteed, borrowed, idle, guaranteed_cost, borrowed_cost, idle_cost) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (tenant, at, flavor) DO UPDATE SET \
         guaranteed = guaranteed + excluded.guaranteed, borrowed = borrowed + excluded.borrowed, idle = idle + excluded.idle, \
         guaranteed_cost = guaranteed_cost + excluded.guaranteed_cost, borrowed_cost = borrowed_cost + excluded.borrowed_cost, \
         idle_cost = idle_cost + excluded.idle_cost",
        step.table()
    );
    let mut stmt = tx.prepare_cached(&query).map_err(sql("cannot write the rollups"))?;
    let costs = [r.cost(r.guaranteed), r.cost(r.borrowed), r.cost(r.idle)];
    let mut parts = Vec::new();
    let mut at = r.start.div_euclid(size) * size;
    while at < r.end {
        let (a, b) = (at.max(r.start), (at + size).min(r.end));
        let part = |total: u64| share(total, r.start, r.end, a, b);
        let p = Sums {
            guaranteed: part(r.guaranteed),
            borrowed: part(r.borrowed),
            idle: part(r.idle),
            guaranteed_cost: part(costs[0]),
            borrowed_cost: part(costs[1]),
            idle_cost: part(costs[2]),
        };
        let v = |x: u64| x as i64;
        stmt.execute(params![r.tenant, r.flavor, at, v(p.guaranteed), v(p.borrowed), v(p.idle), v(p.guaranteed_cost), v(p.borrowed_cost), v(p.idle_cost)])
            .map_err(sql("cannot write the rollups"))?;
        parts.push((at, p));
        at += size;
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_exactly() {
        for total in [0u64, 1, 7, 999_999_937, u64::MAX / 4] {
            let (start, end) = (100, 100 + 7 * 3600 + 13);
            let mut cuts: Vec<i64> = vec![start];
            cuts.extend((1..8).map(|h| h * 3600).filter(|&t| t > start && t < end));
            cuts.push(end);
            let sum: u64 = cuts.windows(2).map(|w| share(total, start, end, w[0], w[1])).sum();
            assert_eq!(sum, total);
        }
    }
}
