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
//! - **Runs**: a record may be the part of its tenant's use charged to a Kubeflow Pipelines run
//!   (`run`, with its `experiment` and `pipeline` when known; the scheduler splits each interval
//!   exactly, see `gantry_core::queue::ledger`). The tenant rollups hold every record as before;
//!   the hourly rollup per run ([`Ledger::charged_sums`]) holds the charged parts with the same
//!   integer shares, so a tenant's cost less its runs' is exactly what no run was charged.
//! - **Retention**: raw accruals older than a cut-off can be dropped once rolled up; the rollups
//!   stay.
//! - **Notebook stops**: one line per notebook the scheduler stopped for idle GPUs
//!   ([`NotebookStopRecord`], [`Ledger::append_stops`]), keyed by namespace, notebook and second
//!   like accruals (the same line again changes nothing, other figures under its key are refused).
//!   They are not rolled up: their idle time is in the accruals already, and a line only says why
//!   a notebook stopped and what its idle stretch cost. A handful a day, so retention keeps them.
//! - **Migrations**: numbered, applied in order inside a transaction, recorded in
//!   `PRAGMA user_version`; a ledger written by a newer Gantry is refused, not downgraded.
//!
//! - **One writer**: [`Ledger::open`] takes an exclusive lock (`flock`) on `FILE.lock` next to
//!   the file, held as long as the ledger is open; a second process opening the same file is
//!   refused, naming it, rather than both accepting writes and serving diverging totals.
//! - **Bounded records**: every time lies in [`EARLIEST`, `LATEST`), an accrual spans at most
//!   [`MAX_ACCRUAL`] (the scheduler closes accruals at month starts) and a node's idle window at
//!   most [`MAX_IDLE_WINDOW`], so one record adds at most a few hundred rollup rows; money is
//!   computed with checked arithmetic, and a record whose cost, or whose tenant's totals, would
//!   not fit a 64-bit signed integer is refused.
//!
//! Units are integers throughout: milli-unit-seconds of use (1 GPU for 1 s = 1000) and
//! micro-units of money, as in the core's ledger (`gantry_core::queue::ledger`).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub use gantry_api::quota::{cost_micros, records_of, NotebookStopRecord, Record};

/// What went wrong, naming the file or record and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database could not be opened or written.
    #[error("ledger: {what}: {source}")]
    Sqlite {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer Gantry.
    #[error(
        "ledger: the file has schema version {found}, newer than this Gantry knows ({known}); run the newer Gantry, or restore a backup"
    )]
    TooNew { found: i64, known: i64 },
    /// An accrual that cannot be true.
    #[error("ledger: accrual {key} is not valid: {why}")]
    Invalid { key: String, why: String },
    /// The same key already holds different figures.
    #[error(
        "ledger: accrual {key} is already recorded with other figures; two writers disagree about the same interval, fix the source before replaying"
    )]
    Conflict { key: String },
    /// An accrual whose cost of one kind (guaranteed, borrowed or idle) does not fit a 64-bit
    /// signed integer, as SQLite stores it: the price or the use is wrong, and keeping it would
    /// overflow every sum it entered.
    #[error(
        "ledger: accrual {key} is not valid: its {kind} cost ({usage} milli-unit-seconds at priceMicros {price_micros}) does not fit a 64-bit signed integer; check the price"
    )]
    CostTooLarge { key: String, kind: &'static str, usage: u64, price_micros: u64 },
    /// A notebook stop that cannot be true.
    #[error("ledger: notebook stop {key} is not valid: {why}")]
    InvalidStop { key: String, why: String },
    /// A notebook stop whose cost does not fit a 64-bit signed integer, for the same reason as
    /// [`LedgerError::CostTooLarge`].
    #[error(
        "ledger: notebook stop {key} is not valid: its cost ({idle} milli-GPU-seconds at priceMicros {price_micros}) does not fit a 64-bit signed integer; check the price"
    )]
    StopCostTooLarge { key: String, idle: u64, price_micros: u64 },
    /// The same notebook and second already holds another stop.
    #[error(
        "ledger: notebook stop {key} is already recorded with other figures; two writers disagree about the same stop, fix the source before sending again"
    )]
    StopConflict { key: String },
    /// Another process has the file open for writing.
    #[error(
        "ledger: {path} is in use: {why}; only one quota API (or `gantry ledger import`) may write a ledger at a time: stop the other one, or give this one another --ledger file"
    )]
    Locked { path: String, why: String },
}

/// The earliest time a record may hold: 1970-01-01T00:00:00Z (unix seconds).
pub const EARLIEST: i64 = 0;

/// The time every record must end before: 2200-01-01T00:00:00Z (unix seconds).
pub const LATEST: i64 = 7_258_118_400;

/// The longest accrual: 32 days (the scheduler closes every accrual at a month start, so none
/// spans more than 31).
pub const MAX_ACCRUAL: i64 = 32 * 86_400;

/// The longest idle window a node agent may report: one day (the agent's windows are a minute).
pub const MAX_IDLE_WINDOW: i64 = 86_400;

/// `t` (unix seconds) as RFC 3339, for messages.
fn date(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |d| d.to_string())
}

/// Why a record's times are out of bounds, if they are.
pub fn window_error(start: i64, end: i64, idle_window: bool) -> Option<String> {
    if end <= start {
        return Some("end must be after start".into());
    }
    if start < EARLIEST || end > LATEST {
        return Some(format!("start and end must lie between {} and {} (unix seconds {EARLIEST} to {LATEST}); send the interval's real times", date(EARLIEST), date(LATEST)));
    }
    let (most, what) = if idle_window {
        (MAX_IDLE_WINDOW, "an idle window may span at most 1 day; send shorter windows")
    } else {
        (
            MAX_ACCRUAL,
            "an accrual may span at most 32 days; close accruals at month starts, as the scheduler does",
        )
    };
    if end - start > most {
        return Some(format!("it spans {} s: {what}", end - start));
    }
    None
}

/// The record's cost of each kind (guaranteed, borrowed, idle) in micro-units, or the kind whose
/// cost does not fit a 64-bit signed integer.
fn costs(r: &Record) -> Result<[u64; 3], LedgerError> {
    let mut out = [0; 3];
    for (i, (kind, usage)) in
        [("guaranteed", r.guaranteed), ("borrowed", r.borrowed), ("idle", r.idle)].into_iter().enumerate()
    {
        let cost = u128::from(usage).checked_mul(u128::from(r.price_micros)).map(|m| m / 3_600_000);
        out[i] = match cost.and_then(|c| u64::try_from(c).ok()).filter(|&c| c <= i64::MAX as u64) {
            Some(c) => c,
            None => {
                return Err(LedgerError::CostTooLarge {
                    key: r.key(),
                    kind,
                    usage,
                    price_micros: r.price_micros,
                })
            }
        };
    }
    Ok(out)
}

/// Refuses a record that cannot be true, naming its key and why.
fn check(r: &Record) -> Result<(), LedgerError> {
    let bad = |why: &str| Err(LedgerError::Invalid { key: r.key(), why: why.to_string() });
    if r.tenant.is_empty() || r.flavor.is_empty() {
        return bad("tenant and flavor must be named");
    }
    if let Some(why) = window_error(r.start, r.end, r.node.is_some()) {
        return bad(&why);
    }
    if r.node.as_deref() == Some("") {
        return bad("node, when given, must be named");
    }
    if r.node.is_some() && (r.guaranteed > 0 || r.borrowed > 0) {
        return bad(
            "a node's record carries idle time only; guaranteed and borrowed time come from the scheduler",
        );
    }
    if r.run.is_none() && (r.experiment.is_some() || r.pipeline.is_some()) {
        return bad("experiment and pipeline are a run's: send them with its run, or leave them out");
    }
    if r.run.is_some() && r.node.is_some() {
        return bad("a node's idle time is the tenant's, not a run's: leave run out");
    }
    for (what, v) in [("run", &r.run), ("experiment", &r.experiment), ("pipeline", &r.pipeline)] {
        if v.as_deref().is_some_and(|v| gantry_api::charge::name(v).is_none()) {
            return bad(&format!(
                "{what}, when given, must be 1 to {} letters, digits, '-', '_' or '.'",
                gantry_api::charge::MAX_NAME
            ));
        }
    }
    let most = u64::try_from(r.end - r.start).unwrap_or(u64::MAX).saturating_mul(1_000_000_000);
    if r.guaranteed.saturating_add(r.borrowed) > most || r.idle > most {
        return bad("more use than a million units over the interval");
    }
    if [r.guaranteed, r.borrowed, r.idle, r.price_micros].iter().any(|&v| v > i64::MAX as u64) {
        return bad("a figure does not fit a 64-bit signed integer");
    }
    costs(r).map(|_| ())
}

/// The longest name of a tenant or flavor in a notebook stop (the tenancy's names are far
/// shorter; this only bounds what one line may make the ledger keep).
pub const MAX_STOP_NAME: usize = 253;

/// The longest message of a notebook stop, in bytes (the core's run to a few hundred).
pub const MAX_STOP_MESSAGE: usize = 4096;

/// Whether `v` is a DNS-1123 label (a namespace's name): 1 to 63 lowercase letters, digits and
/// '-', starting and ending with a letter or digit.
fn dns_label(v: &str) -> bool {
    let b = v.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `v` is a DNS-1123 subdomain (a Kubernetes object's name, as a Notebook's): at most
/// 253 characters, dot-separated labels.
fn dns_subdomain(v: &str) -> bool {
    v.len() <= 253 && v.split('.').all(dns_label)
}

/// The stop's cost in micro-units, or the refusal when it does not fit a 64-bit signed integer.
fn stop_cost(s: &NotebookStopRecord) -> Result<u64, LedgerError> {
    u128::from(s.idle)
        .checked_mul(u128::from(s.price_micros))
        .map(|m| m / 3_600_000)
        .and_then(|c| u64::try_from(c).ok())
        .filter(|&c| c <= i64::MAX as u64)
        .ok_or_else(|| LedgerError::StopCostTooLarge {
            key: s.key(),
            idle: s.idle,
            price_micros: s.price_micros,
        })
}

/// Refuses a notebook stop that cannot be true, naming its key and the field at fault; returns
/// its cost in micro-units.
pub fn check_stop(s: &NotebookStopRecord) -> Result<u64, LedgerError> {
    let bad = |why: String| Err(LedgerError::InvalidStop { key: s.key(), why });
    // Tenant and flavor as the accruals take them (named), bounded; no control characters, as
    // the dashboard and CSV-minded readers show them.
    for (what, v) in [("tenant", &s.tenant), ("flavor", &s.flavor)] {
        if v.is_empty() || v.len() > MAX_STOP_NAME || v.chars().any(char::is_control) {
            return bad(format!("{what} must be named: 1 to {MAX_STOP_NAME} bytes, no control characters"));
        }
    }
    if !dns_label(&s.namespace) {
        return bad(format!(
            "namespace {:?} is not a namespace's name (1 to 63 lowercase letters, digits or '-')",
            s.namespace
        ));
    }
    if !dns_subdomain(&s.notebook) {
        return bad(format!("notebook {:?} is not a Notebook's name (a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253)", s.notebook));
    }
    for (what, t) in [("idleSince", s.idle_since), ("at", s.at)] {
        if !(EARLIEST..LATEST).contains(&t) {
            return bad(format!(
                "{what} ({t}) must lie between {} and {} (unix seconds {EARLIEST} to {LATEST})",
                date(EARLIEST),
                date(LATEST)
            ));
        }
    }
    if s.idle_since > s.at {
        return bad(format!(
            "idleSince ({}) is after at ({}): a notebook is stopped after its GPUs went idle",
            date(s.idle_since),
            date(s.at)
        ));
    }
    // At most a million GPUs over the idle stretch, as accruals are bounded.
    let most = u64::try_from(s.at - s.idle_since).unwrap_or(u64::MAX).saturating_mul(1_000_000_000);
    if s.idle > most {
        return bad(format!(
            "idle ({}) is more than a million GPUs over the {} s from idleSince to at",
            s.idle,
            s.at - s.idle_since
        ));
    }
    for (what, v) in [("idle", s.idle), ("priceMicros", s.price_micros)] {
        if v > i64::MAX as u64 {
            return bad(format!("{what} does not fit a 64-bit signed integer"));
        }
    }
    if s.message.len() > MAX_STOP_MESSAGE {
        return bad(format!("message is {} bytes; at most {MAX_STOP_MESSAGE}", s.message.len()));
    }
    stop_cost(s)
}

/// Which notebook stops [`Ledger::stops`] reads: of a tenant or all, those stopped in
/// `[from, to)`, the newest `limit`.
#[derive(Clone, Debug)]
pub struct StopQuery<'a> {
    pub tenant: Option<&'a str>,
    pub from: i64,
    pub to: i64,
    pub limit: usize,
}

/// Notebook stops read back: the newest first, with how many there are in the period and their
/// totals (the list may be cut at the limit; the totals are not).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stops {
    pub stops: Vec<NotebookStopRecord>,
    pub count: u64,
    /// Milli-GPU-seconds and micro-units over every stop in the period.
    pub idle: u64,
    pub cost_micros: u64,
}

fn sql(what: &str) -> impl FnOnce(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Sqlite { what: what.to_string(), source }
}

/// Schema migrations, in order; `user_version` is how many have run.
const MIGRATIONS: [&str; 5] = [
    "
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
",
    "
    -- 2: periods over every tenant read the hourly rollup by time (days are kept in memory).
    CREATE INDEX hourly_by_time ON hourly (at);
",
    "
    -- 3: where retention dropped raw accruals: older ones cannot be told from replays any more.
    CREATE TABLE retention (dropped_before INTEGER NOT NULL);
    INSERT INTO retention VALUES (-9223372036854775808);
",
    "
    -- 4: the pipeline run a record's part was charged to (NULL on the tenant's own records and on
    -- every record written before), and the hourly rollup per run ('' for an experiment or
    -- pipeline not known: key columns are never NULL).
    ALTER TABLE accruals ADD COLUMN run TEXT;
    ALTER TABLE accruals ADD COLUMN experiment TEXT;
    ALTER TABLE accruals ADD COLUMN pipeline TEXT;
    CREATE TABLE run_hourly (
        tenant TEXT NOT NULL, at INTEGER NOT NULL,
        run TEXT NOT NULL, experiment TEXT NOT NULL, pipeline TEXT NOT NULL, flavor TEXT NOT NULL,
        guaranteed INTEGER NOT NULL, borrowed INTEGER NOT NULL, idle INTEGER NOT NULL,
        guaranteed_cost INTEGER NOT NULL, borrowed_cost INTEGER NOT NULL, idle_cost INTEGER NOT NULL,
        PRIMARY KEY (tenant, at, run, experiment, pipeline, flavor)
    ) WITHOUT ROWID;
",
    "
    -- 5: notebooks stopped for idle GPUs, one line each (keyed namespace/notebook/at), with the
    -- cost of the idle stretch as computed when written, so sums over a period are exact.
    CREATE TABLE notebook_stops (
        key TEXT PRIMARY KEY,
        tenant TEXT NOT NULL, namespace TEXT NOT NULL, notebook TEXT NOT NULL, flavor TEXT NOT NULL,
        idle_since INTEGER NOT NULL, at INTEGER NOT NULL,
        idle INTEGER NOT NULL, price_micros INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX notebook_stops_by_tenant ON notebook_stops (tenant, at);
    CREATE INDEX notebook_stops_by_time ON notebook_stops (at);
",
];

/// What the charged parts of a tenant's use are summed by ([`Ledger::charged_sums`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Per run (with its experiment and pipeline).
    Run,
    Pipeline,
    Experiment,
}

impl Group {
    pub fn parse(v: &str) -> Option<Group> {
        match v {
            "run" => Some(Group::Run),
            "pipeline" => Some(Group::Pipeline),
            "experiment" => Some(Group::Experiment),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Group::Run => "run",
            Group::Pipeline => "pipeline",
            Group::Experiment => "experiment",
        }
    }
}

/// Sums of one flavor's use charged to one run, pipeline or experiment (by [`Group`]): the
/// fields not grouped by are `None`, as is an experiment or pipeline the pods did not name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargedSums {
    pub flavor: String,
    pub run: Option<String>,
    pub experiment: Option<String>,
    pub pipeline: Option<String>,
    pub sums: Sums,
}

/// Rollup granularities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollup {
    Hour,
    Day,
}

impl Rollup {
    pub fn seconds(self) -> i64 {
        match self {
            Rollup::Hour => 3600,
            Rollup::Day => 86_400,
        }
    }
    fn table(self) -> &'static str {
        match self {
            Rollup::Hour => "hourly",
            Rollup::Day => "daily",
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
    /// The six sums in a row's columns `first..first + 6`, in the order of the fields.
    fn read(row: &rusqlite::Row, first: usize) -> rusqlite::Result<Sums> {
        let n = |i: usize| row.get::<_, i64>(first + i).map(|v| v as u64);
        Ok(Sums {
            guaranteed: n(0)?,
            borrowed: n(1)?,
            idle: n(2)?,
            guaranteed_cost: n(3)?,
            borrowed_cost: n(4)?,
            idle_cost: n(5)?,
        })
    }

    /// Adds `o` (saturating: the ledger keeps every tenant's totals within `i64::MAX`, so only
    /// sums over many tenants could reach the limit).
    pub fn add(&mut self, o: &Sums) {
        self.guaranteed = self.guaranteed.saturating_add(o.guaranteed);
        self.borrowed = self.borrowed.saturating_add(o.borrowed);
        self.idle = self.idle.saturating_add(o.idle);
        self.guaranteed_cost = self.guaranteed_cost.saturating_add(o.guaranteed_cost);
        self.borrowed_cost = self.borrowed_cost.saturating_add(o.borrowed_cost);
        self.idle_cost = self.idle_cost.saturating_add(o.idle_cost);
    }

    /// `self + o`, if every figure stays within `i64::MAX` (what SQLite stores).
    pub fn checked_add(&self, o: &Sums) -> Option<Sums> {
        let f = |a: u64, b: u64| a.checked_add(b).filter(|&v| v <= i64::MAX as u64);
        Some(Sums {
            guaranteed: f(self.guaranteed, o.guaranteed)?,
            borrowed: f(self.borrowed, o.borrowed)?,
            idle: f(self.idle, o.idle)?,
            guaranteed_cost: f(self.guaranteed_cost, o.guaranteed_cost)?,
            borrowed_cost: f(self.borrowed_cost, o.borrowed_cost)?,
            idle_cost: f(self.idle_cost, o.idle_cost)?,
        })
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
    /// The lock file held while the ledger is open (none in memory).
    _lock: Option<std::fs::File>,
}

/// Takes the exclusive lock on `FILE.lock` for `path`, or says who holds it.
fn lock(path: &Path) -> Result<std::fs::File, LedgerError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = std::path::PathBuf::from(name);
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(
            |e| LedgerError::Locked {
                path: path.display().to_string(),
                why: format!("cannot open the lock file {}: {e}", lock_path.display()),
            },
        )?;
    // std's file lock is flock(2) on Unix: held until the file is closed, also by a killed process.
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let why = format!("another process holds {} and writes this ledger", lock_path.display());
            return Err(LedgerError::Locked { path: path.display().to_string(), why });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            let why = format!("cannot lock {}: {e}", lock_path.display());
            return Err(LedgerError::Locked { path: path.display().to_string(), why });
        }
    }
    Ok(file)
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
        let lock = lock(path)?;
        let conn = Connection::open(path).map_err(sql(&what))?;
        let mut ledger = Ledger::setup(conn, &what)?;
        ledger._lock = Some(lock);
        Ok(ledger)
    }

    /// A ledger in memory (tests, `gantry simulate --serve`).
    pub fn in_memory() -> Result<Ledger, LedgerError> {
        Ledger::setup(
            Connection::open_in_memory().map_err(sql("cannot open an in-memory ledger"))?,
            "in memory",
        )
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
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(sql("cannot record the schema version"))?;
            tx.commit().map_err(sql("cannot commit the schema migration"))?;
        }
        let newest: Option<i64> =
            conn.query_row("SELECT MAX(at) FROM hourly", [], |r| r.get(0)).map_err(sql(what))?;
        let dropped_before: i64 =
            conn.query_row("SELECT dropped_before FROM retention", [], |r| r.get(0)).map_err(sql(what))?;
        let mut ledger = Ledger {
            conn,
            daily: HashMap::new(),
            recent: HashMap::new(),
            newest: newest.unwrap_or(i64::MIN),
            dropped_before,
            _lock: None,
        };
        for b in ledger.buckets(Rollup::Day, None, i64::MIN, i64::MAX)? {
            ledger.daily.entry((b.tenant, b.flavor)).or_default().insert(b.at, b.sums);
        }
        for b in ledger.buckets(Rollup::Hour, None, ledger.horizon(), i64::MAX)? {
            ledger.recent.entry((b.tenant, b.flavor)).or_default().insert(b.at, b.sums);
        }
        Ok(ledger)
    }

    /// The schema version.
    pub fn version(&self) -> Result<i64, LedgerError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql("cannot read the schema version"))
    }

    /// Appends `records` in one durable transaction; returns how many were new. Records already
    /// present with the same figures are skipped; with other figures the whole batch is refused.
    pub fn append(&mut self, records: &[Record]) -> Result<usize, LedgerError> {
        let _span = tracing::debug_span!("ledger_write", records = records.len()).entered();
        // Every (tenant, flavor)'s all-time totals, with this batch, must fit what SQLite stores:
        // then so does every rollup row and every sum the API reads.
        let mut totals: HashMap<(&str, &str), Sums> = HashMap::new();
        for r in records {
            check(r)?;
            let [gc, bc, ic] = costs(r)?;
            let add = Sums {
                guaranteed: r.guaranteed,
                borrowed: r.borrowed,
                idle: r.idle,
                guaranteed_cost: gc,
                borrowed_cost: bc,
                idle_cost: ic,
            };
            let key = (r.tenant.as_str(), r.flavor.as_str());
            let total = totals.entry(key).or_insert_with(|| {
                let mut s = Sums::default();
                for d in
                    self.daily.get(&(r.tenant.clone(), r.flavor.clone())).into_iter().flat_map(|m| m.values())
                {
                    s.add(d);
                }
                s
            });
            *total = total.checked_add(&add).ok_or_else(|| LedgerError::Invalid {
                key: r.key(),
                why: format!("tenant {}'s totals of flavor {} would no longer fit a 64-bit signed integer; check the figures and the price", r.tenant, r.flavor),
            })?;
            if r.end <= self.dropped_before {
                return Err(LedgerError::Invalid {
                    key: r.key(),
                    why: format!("it ends before {}, where retention dropped raw accruals, so it may be counted already", self.dropped_before),
                });
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("cannot begin a write"))?;
        let mut new = 0;
        // Per new record: its index, and what it added to the hourly and the daily rollup.
        let mut parts: Vec<(usize, Parts, Parts)> = Vec::new();
        {
            let mut existing = tx
                .prepare_cached(
                    "SELECT guaranteed, borrowed, idle, price_micros FROM accruals WHERE key = ?1",
                )
                .map_err(sql("cannot read accruals"))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO accruals (key, tenant, flavor, start, end, guaranteed, borrowed, idle, price_micros, run, experiment, pipeline) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(sql("cannot write accruals"))?;
            for (i, r) in records.iter().enumerate() {
                let key = r.key();
                let found: Option<(i64, i64, i64, i64)> = existing
                    .query_row(params![key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
                    .optional()
                    .map_err(sql("cannot read accruals"))?;
                let figures = (r.guaranteed as i64, r.borrowed as i64, r.idle as i64, r.price_micros as i64);
                match found {
                    Some(f) if f == figures => continue,
                    Some(_) => return Err(LedgerError::Conflict { key }),
                    None => {}
                }
                insert
                    .execute(params![
                        key,
                        r.tenant,
                        r.flavor,
                        r.start,
                        r.end,
                        figures.0,
                        figures.1,
                        figures.2,
                        figures.3,
                        r.run,
                        r.experiment,
                        r.pipeline
                    ])
                    .map_err(sql("cannot write an accrual"))?;
                let hours = roll_up(&tx, Rollup::Hour, r)?;
                if r.run.is_some() {
                    roll_up_run(&tx, r, &hours)?;
                }
                parts.push((i, hours, roll_up(&tx, Rollup::Day, r)?));
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
    pub fn buckets(
        &self,
        step: Rollup,
        tenant: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<Bucket>, LedgerError> {
        let filter =
            if tenant.is_some() { "tenant = ?1 AND at >= ?2 AND at < ?3" } else { "at >= ?1 AND at < ?2" };
        let query = format!(
            "SELECT tenant, flavor, at, guaranteed, borrowed, idle, guaranteed_cost, borrowed_cost, idle_cost FROM {} WHERE {filter} ORDER BY tenant, at, flavor",
            step.table()
        );
        let mut stmt = self.conn.prepare_cached(&query).map_err(sql("cannot read the rollups"))?;
        let read = |row: &rusqlite::Row| {
            Ok(Bucket {
                tenant: row.get(0)?,
                flavor: row.get(1)?,
                at: row.get(2)?,
                sums: Sums::read(row, 3)?,
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
    pub fn sums(
        &self,
        step: Rollup,
        tenant: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, String, Sums)>, LedgerError> {
        match step {
            Rollup::Day => return Ok(sum_series(&self.daily, tenant, from, to)),
            Rollup::Hour if from >= self.horizon() => return Ok(sum_series(&self.recent, tenant, from, to)),
            Rollup::Hour => {}
        }
        let filter =
            if tenant.is_some() { "tenant = ?1 AND at >= ?2 AND at < ?3" } else { "at >= ?1 AND at < ?2" };
        let query = format!(
            "SELECT tenant, flavor, SUM(guaranteed), SUM(borrowed), SUM(idle), SUM(guaranteed_cost), SUM(borrowed_cost), SUM(idle_cost) \
             FROM {} WHERE {filter} GROUP BY tenant, flavor ORDER BY tenant, flavor",
            step.table()
        );
        let mut stmt = self.conn.prepare_cached(&query).map_err(sql("cannot sum the rollups"))?;
        let read = |row: &rusqlite::Row| Ok((row.get(0)?, row.get(1)?, Sums::read(row, 2)?));
        let rows: Result<Vec<_>, rusqlite::Error> = match tenant {
            Some(t) => stmt.query_map(params![t, from, to], read).and_then(|r| r.collect()),
            None => stmt.query_map(params![from, to], read).and_then(|r| r.collect()),
        };
        rows.map_err(sql("cannot sum the rollups"))
    }

    /// Sums of `tenant`'s use charged to pipeline runs, per flavor and `group`, over the hours
    /// starting in `[from, to)`, sorted by flavor then group. Use charged to no run, or to runs
    /// that do not name the pipeline or experiment grouped by, is not among them.
    pub fn charged_sums(
        &self,
        tenant: &str,
        group: Group,
        from: i64,
        to: i64,
    ) -> Result<Vec<ChargedSums>, LedgerError> {
        let (columns, filter) = match group {
            Group::Run => ("run, experiment, pipeline", ""),
            Group::Pipeline => ("'', '', pipeline", "AND pipeline != ''"),
            Group::Experiment => ("'', experiment, ''", "AND experiment != ''"),
        };
        let query = format!(
            "SELECT flavor, {columns}, SUM(guaranteed), SUM(borrowed), SUM(idle), SUM(guaranteed_cost), SUM(borrowed_cost), SUM(idle_cost) \
             FROM run_hourly WHERE tenant = ?1 AND at >= ?2 AND at < ?3 {filter} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        );
        let mut stmt = self.conn.prepare_cached(&query).map_err(sql("cannot sum the runs' rollup"))?;
        let read = |row: &rusqlite::Row| {
            let named = |i: usize| row.get::<_, String>(i).map(|v| Some(v).filter(|v| !v.is_empty()));
            Ok(ChargedSums {
                flavor: row.get(0)?,
                run: named(1)?,
                experiment: named(2)?,
                pipeline: named(3)?,
                sums: Sums::read(row, 4)?,
            })
        };
        let rows: Result<Vec<ChargedSums>, rusqlite::Error> =
            stmt.query_map(params![tenant, from, to], read).and_then(|r| r.collect());
        rows.map_err(sql("cannot sum the runs' rollup"))
    }

    /// The oldest hour kept in memory.
    fn horizon(&self) -> i64 {
        self.newest.saturating_sub(RECENT)
    }

    /// Whether an accrual with this key is recorded.
    pub fn has(&self, key: &str) -> Result<bool, LedgerError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT 1 FROM accruals WHERE key = ?1")
            .map_err(sql("cannot read accruals"))?;
        stmt.exists(params![key]).map_err(sql("cannot read accruals"))
    }

    /// Totals over every accrual recorded (for checks; the API reads rollups).
    pub fn totals(&self) -> Result<(usize, Sums), LedgerError> {
        let mut stmt = self
            .conn
            .prepare("SELECT guaranteed, borrowed, idle, price_micros FROM accruals")
            .map_err(sql("cannot read accruals"))?;
        let mut rows = stmt.query([]).map_err(sql("cannot read accruals"))?;
        let (mut n, mut sums) = (0, Sums::default());
        while let Some(row) = rows.next().map_err(sql("cannot read accruals"))? {
            let v = |i: usize| row.get::<_, i64>(i).map(|v| v as u64).map_err(sql("cannot read an accrual"));
            let (g, b, i, p) = (v(0)?, v(1)?, v(2)?, v(3)?);
            let cost = |m: u64| cost_micros(m, p);
            sums.add(&Sums {
                guaranteed: g,
                borrowed: b,
                idle: i,
                guaranteed_cost: cost(g),
                borrowed_cost: cost(b),
                idle_cost: cost(i),
            });
            n += 1;
        }
        Ok((n, sums))
    }

    /// Appends notebook stops in one durable transaction; returns how many were new. A stop
    /// already recorded with the same figures is skipped (the scheduler resends what it could
    /// not confirm); one with other figures under its key refuses the whole batch.
    pub fn append_stops(&mut self, stops: &[NotebookStopRecord]) -> Result<usize, LedgerError> {
        let _span = tracing::debug_span!("ledger_write_stops", stops = stops.len()).entered();
        let costs = stops.iter().map(check_stop).collect::<Result<Vec<u64>, _>>()?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("cannot begin a write"))?;
        let mut new = 0;
        {
            let mut existing = tx
                .prepare_cached(
                    "SELECT tenant, namespace, notebook, flavor, idle_since, at, idle, price_micros, message \
                     FROM notebook_stops WHERE key = ?1",
                )
                .map_err(sql("cannot read notebook stops"))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO notebook_stops (key, tenant, namespace, notebook, flavor, idle_since, at, idle, price_micros, cost_micros, message) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(sql("cannot write notebook stops"))?;
            for (s, cost) in stops.iter().zip(costs) {
                let key = s.key();
                let found = existing
                    .query_row(params![key], stop_of)
                    .optional()
                    .map_err(sql("cannot read notebook stops"))?;
                match found {
                    Some(f) if &f == s => continue,
                    Some(_) => return Err(LedgerError::StopConflict { key }),
                    None => {}
                }
                // check_stop keeps idle and the price within i64.
                insert
                    .execute(params![
                        key,
                        s.tenant,
                        s.namespace,
                        s.notebook,
                        s.flavor,
                        s.idle_since,
                        s.at,
                        s.idle as i64,
                        s.price_micros as i64,
                        cost as i64,
                        s.message
                    ])
                    .map_err(sql("cannot write a notebook stop"))?;
                new += 1;
            }
        }
        tx.commit().map_err(sql("cannot commit the notebook stops"))?;
        Ok(new)
    }

    /// Notebook stops of `q.tenant` (every tenant when `None`) stopped in `[q.from, q.to)`, the
    /// newest first (then by namespace and notebook), at most `q.limit`, with the count and
    /// totals of all of them.
    pub fn stops(&self, q: &StopQuery) -> Result<Stops, LedgerError> {
        let filter = if q.tenant.is_some() {
            "tenant = ?1 AND at >= ?2 AND at < ?3"
        } else {
            "?1 IS NULL AND at >= ?2 AND at < ?3"
        };
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT tenant, namespace, notebook, flavor, idle_since, at, idle, price_micros, message \
                 FROM notebook_stops WHERE {filter} ORDER BY at DESC, namespace, notebook LIMIT ?4"
            ))
            .map_err(sql("cannot read notebook stops"))?;
        let list: Result<Vec<NotebookStopRecord>, rusqlite::Error> =
            stmt.query_map(params![q.tenant, q.from, q.to, limit], stop_of).and_then(|r| r.collect());
        let mut totals = self
            .conn
            .prepare_cached(&format!(
                "SELECT COUNT(*), COALESCE(SUM(idle), 0), COALESCE(SUM(cost_micros), 0) FROM notebook_stops WHERE {filter}"
            ))
            .map_err(sql("cannot sum notebook stops"))?;
        // SQLite's SUM fails with "integer overflow" rather than wrap; real figures are far below.
        let (count, idle, cost): (i64, i64, i64) = totals
            .query_row(params![q.tenant, q.from, q.to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql("cannot sum notebook stops"))?;
        Ok(Stops {
            stops: list.map_err(sql("cannot read notebook stops"))?,
            count: count.max(0) as u64,
            idle: idle.max(0) as u64,
            cost_micros: cost.max(0) as u64,
        })
    }

    /// Drops raw accruals that ended at or before `before` (their rollups stay); returns how
    /// many. From then on accruals ending that early are refused: their keys are gone, so a
    /// replay of one could not be recognised.
    pub fn retain(&mut self, before: i64) -> Result<usize, LedgerError> {
        let before = before.max(self.dropped_before);
        let tx = self.conn.transaction().map_err(sql("cannot apply retention"))?;
        tx.execute("UPDATE retention SET dropped_before = ?1", params![before])
            .map_err(sql("cannot apply retention"))?;
        let n = tx
            .execute("DELETE FROM accruals WHERE end <= ?1", params![before])
            .map_err(sql("cannot apply retention"))?;
        tx.commit().map_err(sql("cannot apply retention"))?;
        self.dropped_before = before;
        Ok(n)
    }
}

/// A `notebook_stops` row (its columns from `tenant` to `message`, without the cost) as the
/// record it was written from.
fn stop_of(row: &rusqlite::Row) -> rusqlite::Result<NotebookStopRecord> {
    Ok(NotebookStopRecord {
        tenant: row.get(0)?,
        namespace: row.get(1)?,
        notebook: row.get(2)?,
        flavor: row.get(3)?,
        idle_since: row.get(4)?,
        at: row.get(5)?,
        idle: row.get::<_, i64>(6)? as u64,
        price_micros: row.get::<_, i64>(7)? as u64,
        message: row.get(8)?,
    })
}

/// Adds a run's record to the runs' hourly rollup: `hours`, what it added to the tenant's hourly
/// rollup, so the two hold the same integer shares.
fn roll_up_run(tx: &rusqlite::Transaction, r: &Record, hours: &Parts) -> Result<(), LedgerError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO run_hourly (tenant, at, run, experiment, pipeline, flavor, guaranteed, borrowed, idle, guaranteed_cost, borrowed_cost, idle_cost) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (tenant, at, run, experiment, pipeline, flavor) DO UPDATE SET \
             guaranteed = guaranteed + excluded.guaranteed, borrowed = borrowed + excluded.borrowed, idle = idle + excluded.idle, \
             guaranteed_cost = guaranteed_cost + excluded.guaranteed_cost, borrowed_cost = borrowed_cost + excluded.borrowed_cost, \
             idle_cost = idle_cost + excluded.idle_cost",
        )
        .map_err(sql("cannot write the runs' rollup"))?;
    let name = |v: &Option<String>| v.clone().unwrap_or_default();
    for (at, p) in hours {
        let v = |x: u64| x as i64;
        stmt.execute(params![
            r.tenant,
            at,
            name(&r.run),
            name(&r.experiment),
            name(&r.pipeline),
            r.flavor,
            v(p.guaranteed),
            v(p.borrowed),
            v(p.idle),
            v(p.guaranteed_cost),
            v(p.borrowed_cost),
            v(p.idle_cost)
        ])
        .map_err(sql("cannot write the runs' rollup"))?;
    }
    Ok(())
}

/// Adds `r` to the `step` rollup, one row per bucket it overlaps; returns what it added.
fn roll_up(tx: &rusqlite::Transaction, step: Rollup, r: &Record) -> Result<Parts, LedgerError> {
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
        stmt.execute(params![
            r.tenant,
            r.flavor,
            at,
            v(p.guaranteed),
            v(p.borrowed),
            v(p.idle),
            v(p.guaranteed_cost),
            v(p.borrowed_cost),
            v(p.idle_cost)
        ])
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
