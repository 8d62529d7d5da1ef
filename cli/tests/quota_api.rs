//! `gantry quota-api` as it runs beside the scheduler: the scheduler's token writes accruals,
//! a reader's token reads the cost, the process stops cleanly on SIGTERM, and the ledger file
//! keeps every accrual across the restart.

mod common;
use common::*;
use std::io::{Read, Write};

fn request(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out[9..12].parse().unwrap(), out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn serves_a_ledger_file_that_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("gantry-quota-api-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = dir.join("tokens.yaml");
    std::fs::write(&tokens, "tokens:\n  - {token: admin-token-1, user: alice, admin: true}\n  - {token: scheduler-token-1, user: scheduler, writer: true}\n").unwrap();
    let ledger = dir.join("ledger.db");
    let args = ["--ledger", ledger.to_str().unwrap(), "--tokens", tokens.to_str().unwrap()];
    // 2026-11-01, in the past for the retention below.
    let line = r#"{"tenant": "team-a", "flavor": "A100", "start": 1793491200, "end": 1793494800, "guaranteed": 7200000, "borrowed": 0, "priceMicros": 2000000}"#;
    let cost = "/api/v1/cost.csv?from=1793491200&to=1793498400";

    let mut server = start("quota-api", &args);
    let (status, body) = request(&server.addr, "POST", "/internal/v1/accruals", "scheduler-token-1", line);
    assert_eq!((status, body.as_str()), (200, r#"{"new":1,"read":1}"#));
    assert_eq!(request(&server.addr, "POST", "/internal/v1/accruals", "admin-token-1", line).0, 403);
    let (_, csv) = request(&server.addr, "GET", cost, "admin-token-1", "");
    assert!(csv.contains("team-a,A100,2.000,0.000,0.000,4.00,0.00,0.00,4.00,"), "{csv}");
    assert!(server.terminate().is_some_and(|s| s.success()), "a clean exit on SIGTERM");

    // Restarted with retention: the raw accrual goes, its cost stays, and a replay of it is
    // refused rather than counted again.
    let retained = [&args[..], &["--keep-days", "1"]].concat();
    let server = start("quota-api", &retained);
    let (_, again) = request(&server.addr, "GET", cost, "admin-token-1", "");
    assert_eq!(again, csv, "the ledger file kept the accrual's cost");
    let (status, body) = request(&server.addr, "POST", "/internal/v1/accruals", "scheduler-token-1", line);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("retention dropped raw accruals"), "{body}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_tokens_it_needs_a_cluster_and_says_so() {
    let ledger = std::env::temp_dir().join(format!("gantry-quota-api-nocluster-{}.db", std::process::id()));
    let err = fails_without_cluster(&[
        "quota-api",
        "--ledger",
        ledger.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(err.contains("cannot reach the Kubernetes API server") && err.contains("--tokens FILE"), "{err}");
    let _ = std::fs::remove_file(&ledger);
}

/// `deploy/quota-api/quota-api.yaml`: its arguments are accepted, the ledger lives on the
/// persistent volume, one pod at a time writes it, and the account may only review tokens.
#[test]
fn the_deployment_keeps_the_ledger_on_its_volume() {
    let args = deployment_args("deploy/quota-api/quota-api.yaml");
    assert_accepted(&args);
    assert!(!args.contains(&"--tokens".to_string()), "in a cluster tokens are reviewed by the API server");
    let ledger = args.iter().position(|a| a == "--ledger").map(|i| args[i + 1].clone()).unwrap();
    let text = std::fs::read_to_string(repo("deploy/quota-api/quota-api.yaml")).unwrap();
    assert!(
        text.contains("- {name: ledger, mountPath: /var/lib/gantry}")
            && ledger.starts_with("/var/lib/gantry/"),
        "{ledger}"
    );
    assert!(text.contains("persistentVolumeClaim: {claimName: gantry-ledger}"));
    assert!(
        text.contains("replicas: 1\n  strategy: {type: Recreate}"),
        "SQLite has one writer: never two pods"
    );
    assert!(text.contains("name: system:auth-delegator"));
    // The account is bound to nothing else: the only binding names the auth delegator.
    assert_eq!(text.matches("kind: ClusterRoleBinding").count(), 1);
    assert_eq!(text.matches("kind: RoleBinding").count(), 0);
}

/// The scheduler's deploy example sends its reports to the quota API's Service.
#[test]
fn the_scheduler_reports_to_the_quota_api_service() {
    let args = deployment_args("deploy/scheduler/deployment.yaml");
    let url = args
        .iter()
        .position(|a| a == "--quota-api")
        .map(|i| args[i + 1].clone())
        .expect("--quota-api in the scheduler's args");
    let text = std::fs::read_to_string(repo("deploy/quota-api/quota-api.yaml")).unwrap();
    let service = text.split("\n---\n").find(|d| d.contains("kind: Service\n")).expect("a Service");
    assert!(
        service.contains("name: gantry-quota-api\n  namespace: gantry-system")
            && service.contains("port: 80,"),
        "{service}"
    );
    assert_eq!(url, "http://gantry-quota-api.gantry-system.svc:80");
}
