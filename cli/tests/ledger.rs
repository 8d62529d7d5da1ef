//! The ledger never loses a record: `gantry ledger import` is killed with SIGKILL at random
//! points of a write stream, many times; after each kill every acknowledged accrual is on disk
//! and none is there twice; after the last run the totals equal the stream's, and replaying the
//! whole stream once more changes nothing.

use gantry_quota_api::ledger::{Ledger, Record};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// A deterministic stream of accruals: 10 tenants, 2 flavors, intervals of 1 s to 3 h that cross
/// hour and day boundaries, some idle time, two prices.
fn stream(n: usize) -> Vec<Record> {
    let mut t = 1_796_000_000i64;
    (0..n)
        .map(|i| {
            let len = 1 + (i as i64 * 7919) % 10_800;
            let start = t;
            t += len / 3 + 1;
            let gpus = 1 + (i as u64 % 8);
            let used = gpus * 1000 * len as u64;
            Record {
                tenant: format!("team-{}", i % 10),
                flavor: if i % 3 == 0 { "H100".into() } else { "A100".into() },
                start,
                end: start + len,
                guaranteed: used * 3 / 4,
                borrowed: used / 4,
                idle: if i % 5 == 0 { used / 10 } else { 0 },
                price_micros: if i % 3 == 0 { 4_000_000 } else { 2_000_000 },
                node: None,
                run: None,
                experiment: None,
                pipeline: None,
            }
        })
        .collect()
}

/// A tiny deterministic generator for the kill points.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Runs the import over `lines`; kills it (SIGKILL) after `kill_after` acknowledgements, or lets
/// it finish when `None`. Returns the keys acknowledged.
fn run(db: &std::path::Path, lines: &str, kill_after: Option<usize>) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["ledger", "import", "--ledger", db.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = lines.to_string();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut acked = Vec::new();
    let out = BufReader::new(child.stdout.take().unwrap());
    for line in out.lines() {
        let Ok(line) = line else { break };
        if let Some(key) = line.strip_prefix("ok ") {
            acked.push(key.to_string());
        }
        if kill_after.is_some_and(|k| acked.len() >= k) {
            break;
        }
    }
    if kill_after.is_some() {
        child.kill().unwrap(); // SIGKILL
    }
    let status = child.wait().unwrap();
    let _ = feeder.join();
    if kill_after.is_none() {
        assert!(status.success(), "the import failed");
    }
    acked
}

#[test]
fn a_writer_killed_at_random_points_loses_nothing_and_counts_nothing_twice() {
    let records = stream(3000);
    let lines: String = records.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
    let dir = std::env::temp_dir().join(format!("gantry-ledger-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("ledger.db");
    let mut rng = Lcg(42);
    let mut acked: HashSet<String> = HashSet::new();
    for round in 0..15 {
        // Kill points anywhere in the stream, including before the first acknowledgement (the
        // first round may die during the schema migration).
        let kill_after = if round % 5 == 0 { 0 } else { 1 + rng.below(records.len() as u64 - 1) as usize };
        acked.extend(run(&db, &lines, Some(kill_after)));
        let ledger = Ledger::open(&db).expect("the ledger opens after a SIGKILL");
        for key in &acked {
            assert!(ledger.has(key).unwrap(), "round {round}: acknowledged {key} is missing");
        }
        let (n, _) = ledger.totals().unwrap();
        assert!(
            n >= acked.len() && n <= records.len(),
            "round {round}: {n} accruals for {} acknowledged",
            acked.len()
        );
    }
    assert!(acked.len() > 100, "the kills fell inside the stream: {} acknowledged", acked.len());

    // Run to the end: exactly the stream, once each, with the stream's totals.
    run(&db, &lines, None);
    let expect = |f: fn(&Record) -> u64| records.iter().map(f).sum::<u64>();
    let check = || {
        let ledger = Ledger::open(&db).unwrap();
        let (n, s) = ledger.totals().unwrap();
        assert_eq!(n, records.len());
        assert_eq!(
            (s.guaranteed, s.borrowed, s.idle),
            (expect(|r| r.guaranteed), expect(|r| r.borrowed), expect(|r| r.idle))
        );
        assert_eq!(s.guaranteed_cost, expect(|r| r.cost(r.guaranteed)));
        assert_eq!(s.borrowed_cost, expect(|r| r.cost(r.borrowed)));
        // The rollups add up to the same figures, hourly and daily.
        for step in [gantry_quota_api::ledger::Rollup::Hour, gantry_quota_api::ledger::Rollup::Day] {
            let buckets = ledger.buckets(step, None, 0, i64::MAX).unwrap();
            let sum = |f: fn(&gantry_quota_api::ledger::Sums) -> u64| {
                buckets.iter().map(|b| f(&b.sums)).sum::<u64>()
            };
            assert_eq!(
                (sum(|s| s.guaranteed), sum(|s| s.borrowed), sum(|s| s.idle)),
                (s.guaranteed, s.borrowed, s.idle),
                "{step:?}"
            );
            assert_eq!(
                (sum(|s| s.guaranteed_cost), sum(|s| s.idle_cost)),
                (s.guaranteed_cost, s.idle_cost),
                "{step:?}"
            );
        }
        s
    };
    let before = check();
    // Replaying the whole stream changes nothing.
    let again = run(&db, &lines, None);
    assert_eq!(again.len(), records.len(), "every replayed record is acknowledged");
    assert_eq!(check(), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn totals_are_hours_and_money_per_tenant_and_flavor() {
    // Two hours of 2 GPUs in quota and one borrowed hour of 1 GPU, half of it idle, at 3.50 per
    // GPU-hour; and a quarter hour of 4 cores at 0.04 per core-hour.
    let dir = std::env::temp_dir().join(format!("gantry-ledger-totals-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("ledger.db");
    let hour = 3_600_000u64;
    let record =
        |flavor: &str, start: i64, guaranteed: u64, borrowed: u64, idle: u64, price_micros: u64| Record {
            tenant: "team-a".into(),
            flavor: flavor.into(),
            start,
            end: start + 3600,
            guaranteed,
            borrowed,
            idle,
            price_micros,
            node: None,
            run: None,
            experiment: None,
            pipeline: None,
        };
    let records = [
        record("A100", 1_796_000_400, 2 * hour, 0, 0, 3_500_000),
        record("A100", 1_796_004_000, 2 * hour, hour, hour / 2, 3_500_000),
        record("cpu", 1_796_000_400, hour, 0, 0, 40_000),
    ];
    let lines: String = records.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
    assert_eq!(run(&db, &lines, None).len(), 3);
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["ledger", "totals", "--ledger", db.to_str().unwrap(), "--currency", "EUR"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(text.lines().next().unwrap().contains("COST (EUR)"), "{text}");
    assert_eq!(rows[1], ["team-a", "A100", "4.0", "1.0", "0.5", "17.50", "1.75"], "{text}");
    assert_eq!(rows[2], ["team-a", "cpu", "1.0", "0.0", "0.0", "0.04", "0.00"], "{text}");
    assert_eq!(rows[3], ["total", "5.0", "1.0", "0.5", "17.54", "1.75"], "{text}");
    assert!(rows[4].starts_with(&["3", "accruals"]), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
