//! The ledger's rules: idempotent appends, conflicting figures refused, invalid accruals refused
//! with the reason, rollups that add up exactly across hour and day boundaries, retention that
//! keeps the rollups, and migrations that refuse a newer schema.

use gantry_quota_api::ledger::{Ledger, LedgerError, Record, Rollup, Sums};

fn record(tenant: &str, start: i64, end: i64, guaranteed: u64) -> Record {
    Record {
        tenant: tenant.into(),
        flavor: "A100".into(),
        start,
        end,
        guaranteed,
        borrowed: 0,
        idle: 0,
        price_micros: 2_000_000,
        node: None,
        run: None,
        experiment: None,
        pipeline: None,
    }
}

const DAY: i64 = 86_400;
const T: i64 = 1_796_083_200; // a UTC midnight

#[test]
fn appends_are_idempotent_and_conflicts_are_refused() {
    let mut l = Ledger::in_memory().unwrap();
    let a = record("team-a", T, T + 3600, 3_600_000);
    assert_eq!(l.append(std::slice::from_ref(&a)).unwrap(), 1);
    assert_eq!(l.append(&[a.clone(), a.clone()]).unwrap(), 0, "the same accrual again changes nothing");
    assert_eq!(l.totals().unwrap().0, 1);
    let other = Record { guaranteed: 7, ..a.clone() };
    let err = l.append(&[record("team-b", T, T + 60, 60_000), other]).unwrap_err();
    assert!(matches!(err, LedgerError::Conflict { .. }));
    assert_eq!(err.to_string(), "ledger: accrual team-a/A100/1796083200/1796086800 is already recorded with other figures; two writers disagree about the same interval, fix the source before replaying");
    assert_eq!(l.totals().unwrap().0, 1, "a refused batch writes nothing");
    for (bad, why) in [
        (record("team-a", T, T, 0), "end must be after start"),
        (record("", T, T + 1, 0), "tenant and flavor must be named"),
        (record("team-a", T, T + 1, u64::MAX), "more use than a million units over the interval"),
    ] {
        assert_eq!(
            l.append(std::slice::from_ref(&bad)).unwrap_err().to_string(),
            format!("ledger: accrual {} is not valid: {why}", bad.key())
        );
    }
}

#[test]
fn rollups_split_across_hours_and_days_and_add_up() {
    let mut l = Ledger::in_memory().unwrap();
    // 2 GPUs from 23:30 to 01:15 the next day: 105 minutes.
    let r = Record {
        idle: 1_000_001,
        borrowed: 333,
        ..record("team-a", T + DAY - 1800, T + DAY + 4500, 2 * 1000 * 6300)
    };
    l.append(std::slice::from_ref(&r)).unwrap();
    let hours = l.buckets(Rollup::Hour, Some("team-a"), 0, i64::MAX).unwrap();
    assert_eq!(hours.iter().map(|b| b.at).collect::<Vec<_>>(), [T + DAY - 3600, T + DAY, T + DAY + 3600]);
    assert_eq!(
        hours.iter().map(|b| b.sums.guaranteed).collect::<Vec<_>>(),
        [3_600_000, 7_200_000, 1_800_000]
    );
    let days = l.buckets(Rollup::Day, None, 0, i64::MAX).unwrap();
    assert_eq!(
        days.iter().map(|b| (b.at, b.sums.guaranteed)).collect::<Vec<_>>(),
        [(T, 3_600_000), (T + DAY, 9_000_000)]
    );
    let total = |b: &[gantry_quota_api::ledger::Bucket]| {
        b.iter().fold(Sums::default(), |mut s, b| {
            s.add(&b.sums);
            s
        })
    };
    for b in [&hours[..], &days[..]] {
        let s = total(b);
        assert_eq!(
            (s.guaranteed, s.borrowed, s.idle),
            (r.guaranteed, r.borrowed, r.idle),
            "odd figures split without a unit lost"
        );
        assert_eq!(s.guaranteed_cost, r.cost(r.guaranteed));
        assert_eq!(s.guaranteed_cost, 7_000_000, "3.5 GPU-hours at 2.00");
        assert_eq!(s.idle_cost, r.cost(r.idle));
    }
    // Tenants and ranges filter.
    assert!(l.buckets(Rollup::Hour, Some("team-b"), 0, i64::MAX).unwrap().is_empty());
    assert_eq!(l.buckets(Rollup::Hour, None, T + DAY, T + DAY + 1).unwrap().len(), 1);
}

#[test]
fn retention_drops_raw_accruals_and_keeps_the_rollups() {
    let mut l = Ledger::in_memory().unwrap();
    l.append(&[
        record("team-a", T, T + 3600, 3_600_000),
        record("team-a", T + 10 * DAY, T + 10 * DAY + 60, 60_000),
    ])
    .unwrap();
    assert_eq!(l.retain(T + DAY).unwrap(), 1);
    assert_eq!(l.totals().unwrap().0, 1);
    assert_eq!(l.buckets(Rollup::Day, None, 0, i64::MAX).unwrap().len(), 2, "the rollups stay");
    // A replay of a dropped accrual could not be recognised: accruals that old are refused.
    let err = l.append(&[record("team-a", T, T + 3600, 3_600_000)]).unwrap_err().to_string();
    assert_eq!(err, format!("ledger: accrual team-a/A100/{T}/{} is not valid: it ends before {}, where retention dropped raw accruals, so it may be counted already", T + 3600, T + DAY));
    assert_eq!(
        l.buckets(Rollup::Day, None, 0, i64::MAX).unwrap()[0].sums.guaranteed,
        3_600_000,
        "nothing counted twice"
    );
}

#[test]
fn the_schema_is_versioned_and_a_newer_one_is_refused() {
    let dir = std::env::temp_dir().join(format!("gantry-ledger-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.db");
    let _ = std::fs::remove_file(&path);
    {
        let mut l = Ledger::open(&path).unwrap();
        assert_eq!(l.version().unwrap(), 5);
        l.append(&[record("team-a", T, T + 60, 60_000)]).unwrap();
    }
    // Opening again runs no migration and keeps the data; the daily sums read from memory equal
    // the daily rollup on disk.
    {
        let mut l = Ledger::open(&path).unwrap();
        assert_eq!(l.totals().unwrap().0, 1);
        l.append(&[
            record("team-a", T + DAY - 60, T + DAY + 60, 120_000),
            record("team-b", T, T + 7200, 7_200_000),
        ])
        .unwrap();
        let from_disk = |l: &Ledger, step: Rollup, from: i64| {
            let mut m: std::collections::BTreeMap<(String, String), Sums> = Default::default();
            for b in l.buckets(step, None, from, i64::MAX).unwrap() {
                m.entry((b.tenant, b.flavor)).or_default().add(&b.sums);
            }
            m.into_iter().map(|((t, f), s)| (t, f, s)).collect::<Vec<_>>()
        };
        // Days, and the recent hours (within gantry_quota_api::ledger::RECENT of the newest).
        for (step, from) in [(Rollup::Day, 0), (Rollup::Hour, T)] {
            assert_eq!(l.sums(step, None, from, i64::MAX).unwrap(), from_disk(&l, step, from), "{step:?}");
        }
        // One process writes a ledger at a time (ledger.rs: the lock file): close it to reopen.
        drop(l);
        for (step, from) in [(Rollup::Day, 0), (Rollup::Hour, T)] {
            let again = Ledger::open(&path).unwrap();
            assert_eq!(
                again.sums(step, None, from, i64::MAX).unwrap(),
                from_disk(&again, step, from),
                "{step:?} after reopening"
            );
        }
        let again = Ledger::open(&path).unwrap();
        assert_eq!(
            again.sums(Rollup::Day, Some("team-a"), T, T + DAY).unwrap()[0].2.guaranteed,
            60_000 + 60_000,
            "the day's share of each record"
        );
    }
    // A file from a newer Gantry.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Ledger::open(&path).err().unwrap().to_string();
    assert_eq!(err, "ledger: the file has schema version 99, newer than this Gantry knows (5); run the newer Gantry, or restore a backup");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_database_error_keeps_sqlites_own_error_as_its_source() {
    use std::error::Error as _;
    let dir = std::env::temp_dir().join(format!("gantry-ledger-source-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Not a database: SQLite refuses it once it reads the file.
    let path = dir.join("not-a-ledger.db");
    std::fs::write(&path, vec![0x42u8; 4096]).unwrap();
    let err = Ledger::open(&path).err().expect("not a database");
    assert!(err.to_string().starts_with(&format!("ledger: cannot open {}", path.display())), "{err}");
    let source = err.source().expect("the rusqlite error is kept as the source");
    assert!(source.downcast_ref::<rusqlite::Error>().is_some(), "{source:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The typed refusals read as the strings they replaced, word for word (the API answers with
/// them, and writers' logs are searched for them).
#[test]
fn typed_refusals_keep_their_messages() {
    use gantry_api::quota::{IdleLine, IdleReport, NotebookStopRecord};
    use gantry_api::view::View;
    use gantry_quota_api::idle::{records, IdleError};
    use gantry_quota_api::ledger::check_stop;

    let max = i64::MAX as u64;
    let mut l = Ledger::in_memory().unwrap();
    let r = Record { price_micros: max, ..record("team-a", T, T + 3600, 2 * 3_600_000) };
    let err = l.append(std::slice::from_ref(&r)).unwrap_err();
    assert!(matches!(err, LedgerError::CostTooLarge { kind: "guaranteed", .. }));
    assert_eq!(
        err.to_string(),
        format!("ledger: accrual {} is not valid: its guaranteed cost (7200000 milli-unit-seconds at priceMicros {max}) does not fit a 64-bit signed integer; check the price", r.key())
    );

    let stop = NotebookStopRecord {
        tenant: "team-a".into(),
        namespace: "team-a".into(),
        notebook: "nb-1".into(),
        flavor: "A100".into(),
        idle_since: T,
        at: T + 7200,
        idle: 7_200_000,
        price_micros: max,
        message: String::new(),
    };
    let err = check_stop(&stop).unwrap_err();
    assert!(matches!(err, LedgerError::StopCostTooLarge { .. }));
    assert_eq!(
        err.to_string(),
        format!("ledger: notebook stop team-a/nb-1/{} is not valid: its cost (7200000 milli-GPU-seconds at priceMicros {max}) does not fit a 64-bit signed integer; check the price", T + 7200)
    );

    let view = View {
        at: T,
        currency: "EUR".into(),
        flavors: vec![],
        tenants: vec![],
        queue: vec![],
        running: vec![],
    };
    let line = IdleLine { start: T, end: T, namespace: "team-a".into(), model: "A100".into(), idle: 1 };
    let err = records(&view, &IdleReport { node: String::new(), lines: vec![line.clone()] }).unwrap_err();
    assert_eq!(err, IdleError::NoNode);
    assert_eq!(err.to_string(), "the report names no node; send the node agent's node name");
    let err = records(&view, &IdleReport { node: "gpu-1".into(), lines: vec![line] }).unwrap_err();
    assert_eq!(err.to_string(), format!("line team-a/A100 [{T}, {T}): end must be after start"));
}
