//! `kubectl gantry` (this binary installed, or linked, as `kubectl-gantry` on the PATH; also
//! `gantry kubectl`): what is queued and why, from a terminal, against a cluster.
//!
//! Everything is read from the API server with the user's own kubeconfig and RBAC, as kubectl
//! reads: the pods' `gantry.dev/admitted` condition (the queue controller's words, position and
//! estimated start) and the Tenant objects' status. One list call per command; nothing is
//! written. kubectl's conventions: `-n`/`-A`, `-o wide|json|yaml`, `--kubeconfig`, `--context`.

use clap::{Args, Subcommand, ValueEnum};
use gantry_api::crds::Tenant;
use gantry_api::keys::{
    ADMITTED_CONDITION, GANG_SIZE_ANNOTATION, GPU_IDLE_CHECKED_AT_ANNOTATION, HOLD_ANNOTATION, KIND_LABEL,
    PLACEMENT_ANNOTATION, SCHEDULING_GATE, TENANT_LABEL, WORKLOAD_ANNOTATION,
};
use gantry_api::node::IDLE_MAX_AGE_SECONDS;
use gantry_core::queue::explain::Place;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args)]
pub struct KubectlArgs {
    #[command(subcommand)]
    command: KubectlCommand,
    /// The namespace (default: the kubeconfig context's, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, global = true)]
    all_namespaces: bool,
    /// Output format (default: a table).
    #[arg(short = 'o', long, global = true, value_enum)]
    output: Option<Output>,
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Wide,
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum KubectlCommand {
    /// Workloads waiting in Gantry's queue: position in their tenant's queue, estimated start
    /// and why they wait. `--tenant T` lists one tenant's across its namespaces.
    Queue {
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
    },
    /// One pod as Gantry sees it: its tenant, kind, workload and gang, and what it waits for,
    /// in the words of its `gantry.dev/admitted` condition.
    Explain {
        /// The pod's name.
        pod: String,
    },
    /// Tenants: GPUs used, nominal and borrowed, in all and per GPU model, and workloads
    /// pending (the Tenant objects' status, kept by the queue controller).
    Tenants,
    /// Hold a waiting workload out of the queue (by workload name, as `queue` lists it, or by the
    /// name of one of its pods): its pods stay gated and it keeps its place for when it is
    /// released. A running workload is not stopped.
    Hold {
        /// The workload, or one of its pods.
        name: String,
        /// Why (shown to its users in the pods' condition).
        #[arg(long, value_name = "TEXT", default_value = "held with kubectl gantry hold")]
        reason: String,
    },
    /// Let a held workload queue again, at its old place.
    Release {
        /// The workload, or one of its pods.
        name: String,
    },
    /// Cost per tenant and GPU model over a period, from the quota API (the API server does
    /// not pass a user's token through its service proxy, so reach the quota API directly:
    /// `kubectl -n gantry-system port-forward svc/gantry-quota-api 8080:80`).
    Cost {
        /// Only this tenant (default: every tenant the token may see).
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
        /// The period, back from the quota API's present: `90m`, `24h`, `7d`.
        #[arg(long, value_name = "DURATION", default_value = "7d")]
        since: String,
        /// The quota API's address (default: $GANTRY_QUOTA_API, else http://127.0.0.1:8080).
        #[arg(long, value_name = "URL")]
        quota_api: Option<String>,
        /// A bearer token the quota API accepts (default: $GANTRY_TOKEN): yours, e.g. from
        /// `kubectl create token`, or the one `gantry simulate --serve` prints.
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
    },
}

/// One waiting workload, as `queue` lists it.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Queued {
    namespace: String,
    workload: String,
    tenant: String,
    kind: String,
    pods: usize,
    /// `Waiting`, `Refused`, or `Gated` (not yet seen by the queue controller).
    state: String,
    position: Option<usize>,
    queue_length: Option<usize>,
    estimated_start_in: Option<String>,
    reason: String,
    /// When the oldest of its pods was created (RFC 3339).
    created: String,
}

pub fn run(args: KubectlArgs) -> Result<(), String> {
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    if let KubectlCommand::Cost { tenant, since, quota_api, token } = &args.command {
        let text = runtime.block_on(cost(
            tenant.as_deref(),
            since,
            quota_api.clone(),
            token.clone(),
            args.output,
        ))?;
        print!("{text}");
        return Ok(());
    }
    runtime.block_on(async {
        let (client, default_ns) = client(&args).await?;
        let ns = args.namespace.clone().unwrap_or(default_ns);
        let text = match &args.command {
            KubectlCommand::Queue { tenant } => {
                let (api, params) = match (tenant, args.all_namespaces) {
                    (Some(t), _) => (
                        Api::<Pod>::all(client),
                        ListParams::default().labels(&format!("{TENANT_LABEL}={t}")),
                    ),
                    (None, true) => (Api::<Pod>::all(client), ListParams::default()),
                    (None, false) => (Api::<Pod>::namespaced(client, &ns), ListParams::default()),
                };
                let pods = api.list(&params).await.map_err(|e| format!("cannot list pods: {e}"))?;
                // The server filters by the label too; kept here so that the list is right anyway.
                let mine = |p: &&Pod| {
                    tenant.as_ref().is_none_or(|t| meta(p, TENANT_LABEL, true) == Some(t.as_str()))
                };
                let pods: Vec<Pod> = pods.items.into_iter().filter(|p| mine(&p)).collect();
                let rows = queued(&pods);
                let scope = match (tenant, args.all_namespaces) {
                    (Some(t), _) => format!("tenant {t}"),
                    (None, true) => "any namespace".into(),
                    (None, false) => format!("namespace {ns}"),
                };
                render(
                    &rows,
                    args.output,
                    |wide| queue_table(&rows, wide, tenant.is_some() || args.all_namespaces),
                    &scope,
                )?
            }
            KubectlCommand::Explain { pod } => {
                // A list narrowed to the name (what the `view` role and the queue controller's
                // own role both allow), checked here as well.
                let params = ListParams::default().fields(&format!("metadata.name={pod}"));
                let list = Api::<Pod>::namespaced(client.clone(), &ns)
                    .list(&params)
                    .await
                    .map_err(|e| format!("cannot read pod {ns}/{pod}: {e}"))?;
                let found = list
                    .items
                    .into_iter()
                    .find(|p| p.metadata.name.as_deref() == Some(pod.as_str()))
                    .ok_or_else(|| format!("pod {pod} not found in namespace {ns}; give -n NAMESPACE"))?;
                let mut explained = explain(&found);
                if explained.kind.as_deref() == Some("notebook") {
                    explained.gpu_idle = Some(notebook_idle(&client, &explained, now_unix()).await);
                }
                render(&explained, args.output, |_| explain_text(&explained), "")?
            }
            KubectlCommand::Hold { name, reason } => mark(client, &ns, name, Some(reason)).await?,
            KubectlCommand::Release { name } => mark(client, &ns, name, None).await?,
            // Answered above, from the quota API: the API server is not asked.
            KubectlCommand::Cost { .. } => String::new(),
            KubectlCommand::Tenants => {
                let list = Api::<Tenant>::all(client)
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| format!("cannot list Tenants (are Gantry's CRDs installed?): {e}"))?;
                let rows: Vec<TenantRow> = list.items.iter().map(tenant_row).collect();
                render(&rows, args.output, |_| tenants_table(&rows), "the cluster")?
            }
        };
        print!("{text}");
        Ok(())
    })
}

/// A client from the kubeconfig (flags first) or the in-cluster config, and its namespace.
async fn client(args: &KubectlArgs) -> Result<(kube::Client, String), String> {
    let options = kube::config::KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read the kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    };
    let config = match config {
        Ok(c) => c,
        Err(_) if args.kubeconfig.is_none() && args.context.is_none() => kube::Config::infer()
            .await
            .map_err(|e| format!("no kubeconfig found (set KUBECONFIG or --kubeconfig): {e}"))?,
        Err(e) => return Err(format!("cannot use the kubeconfig: {e}")),
    };
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config).map_err(|e| format!("cannot make a client: {e}"))?;
    Ok((client, namespace))
}

/// JSON or YAML of `value`, or the table `text(wide)`; an empty table says what was looked at.
fn render<T: Serialize>(
    value: &T,
    output: Option<Output>,
    text: impl FnOnce(bool) -> String,
    scope: &str,
) -> Result<String, String> {
    Ok(match output {
        Some(Output::Json) => serde_json::to_string_pretty(value).map_err(|e| e.to_string())? + "\n",
        Some(Output::Yaml) => serde_yaml_ng::to_string(value).map_err(|e| e.to_string())?,
        None | Some(Output::Wide) => {
            let t = text(output == Some(Output::Wide));
            if t.is_empty() {
                format!("No resources found in {scope}.\n")
            } else {
                t
            }
        }
    })
}

fn meta<'a>(pod: &'a Pod, key: &str, labels: bool) -> Option<&'a str> {
    let map = if labels { pod.metadata.labels.as_ref() } else { pod.metadata.annotations.as_ref() };
    map.and_then(|m| m.get(key)).map(String::as_str)
}

/// The pod's Gantry condition: (reason, message).
fn condition(pod: &Pod) -> Option<(&str, &str)> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == ADMITTED_CONDITION)?;
    Some((c.reason.as_deref().unwrap_or(""), c.message.as_deref().unwrap_or("")))
}

fn gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| g.iter().any(|g| g.name == SCHEDULING_GATE))
}

/// The waiting workloads among `pods`: pods still gated, or refused, grouped by workload, in
/// tenant-queue order.
fn queued(pods: &[Pod]) -> Vec<Queued> {
    let mut by_workload: BTreeMap<(String, String), Queued> = BTreeMap::new();
    for pod in pods {
        let refused = condition(pod).is_some_and(|(reason, _)| reason == "Refused");
        if !gated(pod) && !refused {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let workload = meta(pod, WORKLOAD_ANNOTATION, false).map_or(name, str::to_string);
        let (state, message) = match condition(pod) {
            Some((reason, message)) => (reason.to_string(), message),
            None => ("Gated".to_string(), "not yet seen by Gantry's queue controller"),
        };
        let place = Place::parse(message);
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
        let row = by_workload.entry((ns.clone(), workload.clone())).or_insert_with(|| Queued {
            namespace: ns,
            workload,
            tenant: meta(pod, TENANT_LABEL, true).unwrap_or("").to_string(),
            kind: meta(pod, KIND_LABEL, true).unwrap_or("").to_string(),
            pods: 0,
            state,
            position: place.as_ref().map(|p| p.position),
            queue_length: place.as_ref().map(|p| p.queue_length),
            estimated_start_in: place.as_ref().and_then(|p| p.estimated_start_in.map(str::to_string)),
            reason: place.as_ref().map_or(message, |p| p.why).to_string(),
            created: created.clone(),
        });
        row.pods += 1;
        if !created.is_empty() && (row.created.is_empty() || created < row.created) {
            row.created = created;
        }
    }
    let mut rows: Vec<Queued> = by_workload.into_values().collect();
    rows.sort_by(|a, b| {
        (&a.tenant, a.position.unwrap_or(usize::MAX), &a.created, &a.namespace, &a.workload).cmp(&(
            &b.tenant,
            b.position.unwrap_or(usize::MAX),
            &b.created,
            &b.namespace,
            &b.workload,
        ))
    });
    rows
}

/// Aligned columns, kubectl style (two spaces apart, upper-case headers, the last left ragged).
fn table(rows: Vec<Vec<String>>) -> String {
    if rows.len() <= 1 {
        return String::new();
    }
    let columns = rows[0].len();
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn queue_table(rows: &[Queued], wide: bool, with_namespace: bool) -> String {
    let mut header = vec!["WORKLOAD", "TENANT", "POSITION", "ESTIMATED START", "STATE", "REASON"];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    if wide {
        header.extend(["KIND", "PODS", "CREATED"]);
    }
    let mut out = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for r in rows {
        let position = match (r.position, r.queue_length) {
            (Some(p), Some(l)) => format!("{p}/{l}"),
            _ => "-".into(),
        };
        let eta = r.estimated_start_in.as_ref().map_or("-".to_string(), |e| format!("in {e}"));
        let mut row =
            vec![r.workload.clone(), r.tenant.clone(), position, eta, r.state.clone(), r.reason.clone()];
        if with_namespace {
            row.insert(0, r.namespace.clone());
        }
        if wide {
            row.extend([r.kind.clone(), r.pods.to_string(), r.created.clone()]);
        }
        out.push(row);
    }
    table(out)
}

/// One pod as Gantry sees it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct Explained {
    pod: String,
    namespace: String,
    tenant: Option<String>,
    kind: Option<String>,
    workload: Option<String>,
    gang_size: Option<String>,
    state: String,
    message: String,
    placement: Option<String>,
    node: Option<String>,
    /// For a running notebook: the node agent's idle evidence and its tenant's rule.
    gpu_idle: Option<String>,
}

/// What Gantry knows of a running notebook's idle GPUs: the node agent's evidence on its Node
/// (`gantry.dev/gpu-idle-pods`) and its tenant's `idleNotebooks` rule, each said plainly when it
/// cannot be read (reading Nodes and Tenants may need permissions a user lacks).
async fn notebook_idle(client: &kube::Client, e: &Explained, now: i64) -> String {
    let Some(node) = &e.node else { return "not running yet".into() };
    let short = |err: kube::Error| match err {
        kube::Error::Api(s) => s.message,
        other => other.to_string(),
    };
    // A list narrowed to the name, as for the pod: what read-only roles allow more often.
    let by_name = ListParams::default().fields(&format!("metadata.name={node}"));
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone()).list(&by_name).await;
    let found =
        nodes.map(|l| l.items.into_iter().find(|n| n.metadata.name.as_deref() == Some(node.as_str())));
    let evidence = match found {
        Err(err) => format!("cannot read node {node} for the node agent's evidence: {}", short(err)),
        Ok(None) => format!("node {node} is gone"),
        Ok(Some(n)) => {
            let value = serde_json::to_value(&n).unwrap_or_default();
            match gantry_api::node::idle_pods(&value) {
                Err(err) => err.to_string(),
                Ok(idle) => idle_evidence(&idle, &format!("{}/{}", e.namespace, e.pod), node, now),
            }
        }
    };
    let rule = match &e.tenant {
        None => String::new(),
        Some(t) => match tenant_named(client, t).await {
            Ok(tenant) => match tenant.spec.idle_notebooks {
                Some(r) => format!(
                    "; tenant {t} stops notebooks idle for {} {}",
                    r.stop_after,
                    if r.when.as_deref() == Some("always") {
                        "always"
                    } else {
                        "when work waits for their GPUs"
                    }
                ),
                None => format!("; tenant {t} never stops idle notebooks"),
            },
            Err(_) => format!("; tenant {t}'s rule cannot be read"),
        },
    };
    format!("{evidence}{rule}")
}

/// What the node agent's evidence on `node` says of `pod` at `now`, and whether Gantry uses it.
fn idle_evidence(idle: &gantry_api::node::IdleOnNode, pod: &str, node: &str, now: i64) -> String {
    use gantry_core::queue::explain::duration;
    let at = |t: i64| jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |t| t.to_string());
    match (idle.pods.get(pod), idle.checked_at) {
        (Some(&since), _) if idle.current(now) => {
            format!("idle for {} (no kernel on its GPUs since {})", duration((now - since).max(0)), at(since))
        }
        (_, None) if !idle.pods.is_empty() => format!(
            "the node agent on {node} names idle pods without {GPU_IDLE_CHECKED_AT_ANNOTATION}, so Gantry does \
             not use its evidence; upgrade the node agent"
        ),
        (_, Some(checked)) if checked > now + IDLE_MAX_AGE_SECONDS => format!(
            "unknown: the node agent on {node} confirmed its idle evidence at {}, {} ahead of this clock, so \
             Gantry does not use it; check the clock of node {node}",
            at(checked),
            duration(checked - now)
        ),
        (_, Some(checked)) if !idle.current(now) => format!(
            "unknown: the node agent on {node} last confirmed its idle evidence {} ago, more than the {} \
             Gantry accepts; is Gantry's node agent running on {node}?",
            duration((now - checked).max(0)),
            duration(IDLE_MAX_AGE_SECONDS)
        ),
        _ => "in use (the node agent saw a kernel run on its GPUs at its last pass)".into(),
    }
}

/// A Tenant by name: `get` (what a tenant's users are given on their own Tenant), else a list
/// narrowed to the name (what read-only roles and Gantry's own accounts have).
async fn tenant_named(client: &kube::Client, name: &str) -> Result<Tenant, kube::Error> {
    let api = Api::<Tenant>::all(client.clone());
    match api.get(name).await {
        Ok(t) => Ok(t),
        Err(first) => {
            let params = ListParams::default().fields(&format!("metadata.name={name}"));
            let found =
                api.list(&params).await?.items.into_iter().find(|t| t.metadata.name.as_deref() == Some(name));
            found.ok_or(first)
        }
    }
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn explain(pod: &Pod) -> Explained {
    let (state, message) = match (condition(pod), gated(pod)) {
        (Some((reason, message)), _) => (reason.to_string(), message.to_string()),
        (None, true) => ("Gated".into(), "not yet seen by Gantry's queue controller".into()),
        (None, false) => (
            "Not managed".into(),
            "Gantry does not queue this pod (it asks for no GPU, or its namespace belongs to no tenant)"
                .into(),
        ),
    };
    let owned = |s: Option<&str>| s.map(str::to_string);
    Explained {
        pod: pod.metadata.name.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        tenant: owned(meta(pod, TENANT_LABEL, true)),
        kind: owned(meta(pod, KIND_LABEL, true)),
        workload: owned(meta(pod, WORKLOAD_ANNOTATION, false)),
        gang_size: owned(meta(pod, GANG_SIZE_ANNOTATION, false)),
        state,
        message,
        placement: owned(meta(pod, PLACEMENT_ANNOTATION, false)),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        gpu_idle: None,
    }
}

fn explain_text(e: &Explained) -> String {
    let mut lines = vec![("Pod", format!("{}/{}", e.namespace, e.pod))];
    let mut some = |label: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            lines.push((label, v.clone()));
        }
    };
    some("Tenant", &e.tenant);
    some("Kind", &e.kind);
    some("Workload", &e.workload);
    some("Gang size", &e.gang_size);
    lines.push(("State", e.state.clone()));
    lines.push(("Message", e.message.clone()));
    if let Some(p) = Place::parse(&e.message) {
        lines.push(("Position", format!("{} of {}", p.position, p.queue_length)));
        if let Some(eta) = p.estimated_start_in {
            lines.push(("Estimated start", format!("in {eta}")));
        }
    }
    let mut tail = |label: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            lines.push((label, v.clone()));
        }
    };
    tail("Placement", &e.placement);
    tail("Node", &e.node);
    tail("GPUs", &e.gpu_idle);
    lines.iter().map(|(k, v)| format!("{:<16}{v}\n", format!("{k}:"))).collect()
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct TenantRow {
    name: String,
    cohort: Option<String>,
    namespaces: Vec<String>,
    gpus_used: Option<String>,
    gpus_nominal: Option<String>,
    gpus_borrowed: Option<String>,
    pending_workloads: i64,
    models: Vec<gantry_api::crds::ModelStatus>,
    /// Namespaces this tenant and another both claim (they belong to neither).
    conflicts: Vec<gantry_api::crds::NamespaceConflict>,
}

fn tenant_row(t: &Tenant) -> TenantRow {
    let status = t.status.clone().unwrap_or_default();
    TenantRow {
        name: t.metadata.name.clone().unwrap_or_default(),
        cohort: t.spec.cohort.clone(),
        // The namespaces in force (lists and selectors resolved) as the scheduler wrote them;
        // when it wrote none (not yet, or a scheduler before selectors), those listed.
        namespaces: if status.namespaces.is_empty() && status.conflicts.is_empty() {
            t.spec.namespaces.clone()
        } else {
            status.namespaces
        },
        gpus_used: status.gpus_used,
        gpus_nominal: status.gpus_nominal,
        gpus_borrowed: status.gpus_borrowed,
        pending_workloads: status.pending_workloads,
        models: status.models,
        conflicts: status.conflicts,
    }
}

fn tenants_table(rows: &[TenantRow]) -> String {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out =
        vec![["NAME", "COHORT", "GPUS USED", "NOMINAL", "BORROWED", "PENDING", "BY MODEL", "NAMESPACES"]
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()];
    for r in rows {
        out.push(vec![
            r.name.clone(),
            dash(&r.cohort),
            dash(&r.gpus_used),
            dash(&r.gpus_nominal),
            dash(&r.gpus_borrowed),
            r.pending_workloads.to_string(),
            by_model(&r.models),
            namespaces_cell(&r.namespaces, &r.conflicts),
        ]);
    }
    table(out)
}

/// The cost lines of the quota API's `/api/v1/cost` over the last `since`, as a table.
async fn cost(
    tenant: Option<&str>,
    since: &str,
    url: Option<String>,
    token: Option<String>,
    output: Option<Output>,
) -> Result<String, String> {
    let seconds = duration_seconds(since)?;
    let url = url
        .or_else(|| std::env::var("GANTRY_QUOTA_API").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let token = token.or_else(|| std::env::var("GANTRY_TOKEN").ok()).ok_or(
        "give the quota API a token: --token TOKEN or $GANTRY_TOKEN (e.g. from `kubectl create token`)",
    )?;
    let caller = gantry_serve::client::BearerClient::with_token(&url, &token);
    let json = |bytes: &[u8], what: &str| -> Result<serde_json::Value, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("{url}{what} did not answer JSON: {e}"))
    };
    // The period ends at the API's present: the view's time (a simulation's clock runs its own).
    let at = json(&caller.get("/api/v1/tenants").await.map_err(|e| e.to_string())?, "/api/v1/tenants")?["at"]
        .as_i64()
        .ok_or_else(|| format!("{url}/api/v1/tenants has no `at`"))?;
    let mut path = format!("/api/v1/cost?from={}&to={at}", at - seconds);
    if let Some(t) = tenant {
        path.push_str(&format!("&tenant={t}"));
    }
    let body = json(&caller.get(&path).await.map_err(|e| e.to_string())?, &path)?;
    if output.is_some_and(|o| o != Output::Wide) {
        return render(&body, output, |_| String::new(), "");
    }
    let currency = body["currency"].as_str().unwrap_or("");
    let number = |v: &serde_json::Value, key: &str| v[key].as_f64().unwrap_or(0.0);
    let mut rows = vec![["TENANT", "MODEL", "GPU-HOURS", "BORROWED", "IDLE", &format!("COST ({currency})")]
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()];
    let mut total = 0.0;
    for line in body["lines"].as_array().into_iter().flatten() {
        let hours = number(line, "guaranteedHours") + number(line, "borrowedHours");
        total += number(line, "totalCost");
        rows.push(vec![
            line["tenant"].as_str().unwrap_or("").to_string(),
            line["flavor"].as_str().unwrap_or("").to_string(),
            format!("{hours:.1}"),
            format!("{:.1}", number(line, "borrowedHours")),
            format!("{:.1}", number(line, "idleHours")),
            format!("{:.2}", number(line, "totalCost")),
        ]);
    }
    if rows.len() == 1 {
        return Ok(format!("No cost recorded in the last {since}.\n"));
    }
    rows.push(vec![
        "total".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        format!("{total:.2}"),
    ]);
    Ok(table(rows))
}

/// `90s`, `90m`, `24h`, `7d` in seconds.
fn duration_seconds(text: &str) -> Result<i64, String> {
    let bad =
        || format!("--since {text:?} is not a duration; write a whole number with s, m, h or d, e.g. 7d");
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(unit).filter(|s| *s > 0).ok_or_else(bad)
}

/// `carol,dan`, then each contested namespace: `alice!(alice,vision)` (nobody's until fixed);
/// `-` when none.
fn namespaces_cell(namespaces: &[String], conflicts: &[gantry_api::crds::NamespaceConflict]) -> String {
    let contested = conflicts.iter().map(|c| format!("{}!({})", c.namespace, c.tenants.join(",")));
    let all: Vec<String> = namespaces.iter().cloned().chain(contested).collect();
    if all.is_empty() {
        "-".into()
    } else {
        all.join(",")
    }
}

/// `A100 12/8+4,H100 0/4`: used / nominal (+ borrowed) per model; `-` when none is reported.
fn by_model(models: &[gantry_api::crds::ModelStatus]) -> String {
    if models.is_empty() {
        return "-".into();
    }
    let one = |m: &gantry_api::crds::ModelStatus| {
        let borrowed = if m.borrowed == "0" { String::new() } else { format!("+{}", m.borrowed) };
        format!("{} {}/{}{borrowed}", m.name, m.used, m.nominal)
    };
    models.iter().map(one).collect::<Vec<_>>().join(",")
}

/// Sets (`Some(reason)`) or removes the hold mark on the waiting pods of workload `name` (or of
/// the workload of pod `name`): one list call, then one merge patch per pod.
async fn mark(client: kube::Client, ns: &str, name: &str, reason: Option<&str>) -> Result<String, String> {
    let api = Api::<Pod>::namespaced(client, ns);
    let pods =
        api.list(&ListParams::default()).await.map_err(|e| format!("cannot list pods in {ns}: {e}"))?;
    let workload_of = |p: &Pod| {
        meta(p, WORKLOAD_ANNOTATION, false)
            .map_or_else(|| p.metadata.name.clone().unwrap_or_default(), str::to_string)
    };
    let workload = pods
        .items
        .iter()
        .find(|p| workload_of(p) == name || p.metadata.name.as_deref() == Some(name))
        .map(workload_of)
        .ok_or_else(|| {
            format!("no workload or pod {name} in namespace {ns} (`kubectl gantry queue -n {ns}` lists them)")
        })?;
    let waiting: Vec<&Pod> = pods.items.iter().filter(|p| workload_of(p) == workload && gated(p)).collect();
    if waiting.is_empty() {
        return Err(format!("workload {workload} is not waiting (none of its pods is gated): a hold only keeps waiting work from starting"));
    }
    let patch = serde_json::json!({"metadata": {"annotations": {HOLD_ANNOTATION: reason}}});
    for pod in &waiting {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        api.patch(pod_name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
            .await
            .map_err(|e| format!("cannot mark pod {ns}/{pod_name}: {e}"))?;
    }
    let done = if reason.is_some() { "held" } else { "released" };
    Ok(format!("workload {workload} {done} ({} pods)\n", waiting.len()))
}
