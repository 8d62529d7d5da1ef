//! Running `gantry` services as a user would: start one on a free port, call it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A running `gantry` service, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    /// Sends SIGTERM (as the kubelet does) and waits up to 10 s for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().ok()?;
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `gantry <command> --listen 127.0.0.1:0 <args>` and waits for its start line (which
/// names the address).
pub fn start(command: &str, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([command, "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gantry binary runs");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let line = lines.next().expect("a start line").expect("text");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

/// One HTTP/1.1 request; the status code and body.
pub fn call(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("the server listens");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).expect("sent");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("a reply");
    let status = out[9..12].parse().expect("a status code");
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The first container's `args:` block list in a deploy manifest, as `gantry` would get it.
pub fn deployment_args(manifest: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo(manifest)).expect("the manifest");
    let mut lines = text.lines().skip_while(|l| l.trim_start() != "args:");
    let indent = |l: &str| l.len() - l.trim_start().len();
    let head = lines.next().expect("an args: block list (the chart's rendering)");
    lines
        .take_while(|l| indent(l) > indent(head) && l.trim_start().starts_with("- "))
        .map(|l| l.trim_start()[2..].trim().trim_matches('"').to_string())
        .collect()
}

/// `gantry <args> --help` succeeds: the arguments are ones `gantry` accepts.
pub fn assert_accepted(args: &[String]) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_gantry")).args(args).arg("--help").output().expect("gantry runs");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `gantry <args>` where no cluster can be reached; its stderr (it must fail).
pub fn fails_without_cluster(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", "/nonexistent")
        .output()
        .expect("gantry runs");
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `gantry simulate --tenants venus.yaml ... --serve` run to the end of its virtual clock: the
/// quota API and dashboard over the run, its address and the token it printed; killed when
/// dropped.
pub struct Served {
    child: Child,
    pub addr: String,
    pub token: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// The Venus tenants with `args` (e.g. `--workloads 600 --days 2 --load 3`), as fast as the
    /// simulation runs (`--speed 0`); returns once the run has ended and the service goes on.
    pub fn start(args: &[&str]) -> Served {
        let tenants = repo("examples/tenants/venus.yaml");
        let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["simulate", "--tenants", tenants.to_str().unwrap()])
            .args(args)
            .args(["--serve", "127.0.0.1:0", "--speed", "0"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut addr, mut token) = (String::new(), String::new());
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.split("dashboard at http://").nth(1) {
                addr = rest.split('/').next().unwrap().trim().to_string();
            }
            if let Some(rest) = line.split("(Authorization: Bearer ").nth(1) {
                token = rest.split(')').next().unwrap().trim().to_string();
            }
            if line.contains(": done in ") {
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        assert!(!addr.is_empty() && !token.is_empty(), "the address and token lines");
        Served { child, addr, token }
    }

    /// GET `path` of the quota API with the token; the JSON body.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.token
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}
