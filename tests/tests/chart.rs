//! The Helm chart, checked without a cluster: `tests/chart/check.py` lints it with the Helm
//! library, renders it with every values file in `charts/gantry/ci/`, validates every object
//! against the Kubernetes 1.30 and 1.37 schemas in strict mode (and Gantry's objects against its
//! CRDs) and asserts the safety properties. The tools come from PyPI into a virtual environment
//! under the target directory, pinned in `tests/chart/requirements.txt`, the first time.
//!
//! On the Rust side: the committed `deploy/` manifests are the defaults' rendering (regenerate
//! with `GANTRY_UPDATE_DEPLOY=1 cargo test -p gantry-tests --test chart`), the webhook's Secret
//! and webhook-configuration rules are exactly the ones its certificate code lists, and the
//! settings the chart writes are ones Gantry reads.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The virtual environment with the pinned tools, made once per target directory.
fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chart-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import helm_python, kubernetes_validate"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&python) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs (CPython 3.9 or newer is needed for the chart test)");
        assert!(made.success(), "python3 -m venv {} failed", venv.display());
        let requirements = repo().join("tests/chart/requirements.txt");
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements)
            .status()
            .expect("pip runs");
        assert!(pip.success(), "pip install -r {} failed: the chart test needs PyPI", requirements.display());
        assert!(ready(&python), "the chart tools do not import after installing them");
    }
    python
}

/// Runs the checks once and returns the directory of the rendered cases.
fn rendered() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chart-render");
        let _ = std::fs::remove_dir_all(&out);
        let run = Command::new(python())
            .arg(repo().join("tests/chart/check.py"))
            .arg("--chart")
            .arg(repo().join("charts/gantry"))
            .arg("--examples")
            .arg(repo().join("examples/kubernetes"))
            .arg("--out")
            .arg(&out)
            .output()
            .expect("the chart check runs");
        let text =
            format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        assert!(run.status.success(), "the chart check failed:\n{text}");
        eprintln!("{text}");
        out
    })
    .clone()
}

fn objects(case: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(rendered().join(case).join("objects.json")).expect("rendered objects");
    serde_json::from_str(&text).expect("JSON")
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_chart_lints_renders_and_validates_with_every_values_file() {
    let out = rendered();
    for case in ["default", "cert-manager", "ha", "no-node-agent", "all-options"] {
        assert!(!objects(case).is_empty(), "{case} rendered nothing into {}", out.display());
    }
}

/// Every file under `dir`, relative to it.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.push(rel.to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn the_committed_deploy_manifests_are_the_charts_defaults() {
    let rendered = rendered().join("default/templates");
    let deploy = repo().join("deploy");
    let update = std::env::var_os("GANTRY_UPDATE_DEPLOY").is_some();
    let want = files(&rendered);
    if update {
        for f in files(&deploy).into_iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
            std::fs::remove_file(deploy.join(f)).expect("remove a stale manifest");
        }
        for f in &want {
            let dest = deploy.join(f);
            std::fs::create_dir_all(dest.parent().expect("a parent")).expect("mkdir");
            std::fs::copy(rendered.join(f), dest).expect("copy");
        }
    }
    let have: Vec<PathBuf> =
        files(&deploy).into_iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")).collect();
    assert_eq!(have, want, "deploy/ lists other manifests than the chart renders; regenerate with GANTRY_UPDATE_DEPLOY=1 cargo test -p gantry-tests --test chart");
    for f in &want {
        let a = std::fs::read_to_string(rendered.join(f)).expect("rendered");
        let b = std::fs::read_to_string(deploy.join(f)).expect("committed");
        assert!(a == b, "deploy/{} differs from the chart's rendering; regenerate with GANTRY_UPDATE_DEPLOY=1 cargo test -p gantry-tests --test chart", f.display());
    }
}

#[test]
fn the_settings_the_chart_writes_are_ones_gantry_reads() {
    let ha = objects("ha");
    let cm = object(&ha, "ConfigMap", "gantry-settings");
    let text = cm["data"]["settings.yaml"].as_str().expect("settings.yaml");
    let settings = gantry_core::tenancy::file::parse_settings("settings.yaml", text);
    assert!(settings.is_ok(), "{text}: {:?}", settings.err());
    for name in ["gantry-scheduler", "gantry-webhook"] {
        let args =
            object(&ha, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["args"].clone();
        assert!(
            args.as_array().expect("args").iter().any(|a| a == "--settings"),
            "{name} is not given the settings: {args}"
        );
    }
}

#[test]
fn the_image_recipe_runs_gantry_as_the_user_the_chart_expects() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("the Dockerfile");
    let last_stage = dockerfile.rsplit("\nFROM ").next().expect("a stage");
    assert!(last_stage.contains("\nUSER 65532:65532\n"), "the image must run as uid 65532");
    assert!(
        last_stage.contains("ENTRYPOINT [\"/usr/local/bin/gantry\"]"),
        "the chart passes subcommands as args to the gantry entrypoint"
    );
    assert!(dockerfile.contains("cargo build --release --locked -p gantry"));
    // The image's binary is stripped (no debug information, no symbol table).
    assert!(dockerfile.contains("CARGO_PROFILE_RELEASE_STRIP=symbols"));
    assert!(dockerfile.contains("CARGO_PROFILE_RELEASE_DEBUG=false"));
    let values = std::fs::read_to_string(repo().join("charts/gantry/values.yaml")).expect("values");
    assert!(values.contains("repository: ghcr.io/gantry-dev/gantry\n"));
    for o in objects("default") {
        let Some(pod) = o.pointer("/spec/template/spec") else { continue };
        for c in pod["containers"].as_array().expect("containers") {
            let image = c["image"].as_str().expect("an image");
            if !image.starts_with("ghcr.io/gantry-dev/gantry:") {
                continue;
            }
            let user =
                c.pointer("/securityContext/runAsUser").or_else(|| pod.pointer("/securityContext/runAsUser"));
            let first = &c["args"][0];
            assert!(
                c.get("command").is_none() && first.as_str().is_some_and(|a| !a.starts_with('-')),
                "{}: a subcommand first, for the entrypoint",
                o["metadata"]["name"]
            );
            // The node agent alone runs as root (the kubelet's socket); the rest as the image's user.
            let want = if o["metadata"]["name"] == "gantry-node-agent" { 0 } else { 65532 };
            assert_eq!(user.and_then(Value::as_i64), Some(want), "{}", o["metadata"]["name"]);
        }
    }
}

/// `ci/all-options-values.yaml` sets every per-component option; check.py compares each with the
/// values in detail. Here, from the objects alone: every pod has a priority class that exists (or
/// is a system or named class), the Gantry containers log with the filter set, the pod labels still
/// match the selectors, and the Ingress reaches the quota API's Service port.
#[test]
fn the_per_component_options_reach_every_pod() {
    let all = objects("all-options");
    let created = object(&all, "PriorityClass", "gantry-critical");
    assert_eq!(created["value"], 900_000_000);
    let mut workloads = 0;
    for o in all.iter().filter(|o| o["kind"] == "Deployment" || o["kind"] == "DaemonSet") {
        workloads += 1;
        let name = o["metadata"]["name"].as_str().expect("a name");
        let template = &o["spec"]["template"];
        let class = template["spec"]["priorityClassName"].as_str().unwrap_or_default();
        let want = match name {
            "gantry-webhook" => "platform-webhooks",
            "gantry-node-agent" => "system-node-critical",
            _ => "gantry-critical",
        };
        assert_eq!(class, want, "{name}");
        for (k, v) in o["spec"]["selector"]["matchLabels"].as_object().expect("a selector") {
            assert_eq!(&template["metadata"]["labels"][k], v, "{name}: {k}");
        }
        assert!(template["metadata"]["labels"]["example.com/team"].is_string(), "{name}: podLabels");
        assert!(
            template["metadata"]["annotations"]["example.com/owner"].is_string(),
            "{name}: podAnnotations"
        );
        let container = &template["spec"]["containers"][0];
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true, "{name}");
        let log = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "RUST_LOG")
            .map(|e| e["value"].clone());
        if name == "gantry-kube-scheduler" {
            assert_eq!(log, None, "kube-scheduler is no Gantry binary");
        } else {
            assert_eq!(log, Some(Value::from("info,gantry_scheduler=debug,kube=warn")), "{name}");
        }
    }
    assert_eq!(workloads, 5);
    let service = object(&all, "Service", "gantry-quota-api");
    let ingress = object(&all, "Ingress", "gantry-quota-api");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "gantry-quota-api");
    assert_eq!(backend["port"]["number"], service["spec"]["ports"][0]["port"]);
    assert!(objects("default").iter().all(|o| o["kind"] != "Ingress" && o["kind"] != "PriorityClass"));
}

/// Every `gantry_*` metric an alert rule or a Grafana dashboard queries is a string literal in
/// the services' sources (histograms by their base name): a name Gantry writes.
#[test]
fn the_alerts_and_dashboards_query_metrics_gantry_writes() {
    let mut sources = String::new();
    for dir in ["scheduler/src", "node-agent/src", "quota-api/src", "admission-webhook/src"] {
        for f in files(&repo().join(dir)) {
            sources.push_str(&std::fs::read_to_string(repo().join(dir).join(f)).expect("a source file"));
        }
    }
    let names = |expr: &str| -> Vec<String> {
        expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("gantry_"))
            .map(|w| w.strip_suffix("_bucket").unwrap_or(w).to_string())
            .collect()
    };
    let objects = objects("cert-manager");
    let rule = object(&objects, "PrometheusRule", "gantry-alerts");
    let mut queried = Vec::new();
    for r in rule["spec"]["groups"][0]["rules"].as_array().expect("rules") {
        queried.extend(
            names(r["expr"].as_str().expect("an expression"))
                .into_iter()
                .map(|n| ("the alerts".to_string(), n)),
        );
    }
    let dashboards = object(&objects, "ConfigMap", "gantry-grafana-dashboards");
    let data = dashboards["data"].as_object().expect("dashboards");
    assert!(data.len() >= 2, "the tenants and the GPU fleet dashboards");
    for (file, text) in data {
        let dashboard: Value = serde_json::from_str(text.as_str().expect("JSON text")).expect("a dashboard");
        let mut exprs: Vec<&str> = dashboard["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .filter_map(|t| t["expr"].as_str())
            .collect();
        exprs.extend(
            dashboard["templating"]["list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v["query"].as_str()),
        );
        queried.extend(exprs.into_iter().flat_map(names).map(|n| (file.clone(), n)));
    }
    assert!(queried.len() >= 20, "{queried:?}");
    for (what, name) in queried {
        assert!(
            sources.contains(&format!("\"{name}\"")),
            "{what} queries {name}, which no Gantry code writes"
        );
    }
}
