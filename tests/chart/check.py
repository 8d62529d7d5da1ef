#!/usr/bin/env python3
"""Checks Gantry's Helm chart without a cluster (run by tests/tests/chart.rs).

1. Lint: the Helm library itself (helm-python-sdk: Helm's Go SDK behind a C ABI), strict, against
   Kubernetes 1.30 and 1.37, with every values file in charts/gantry/ci/.
2. Render each values file, write every object to OUT/<case>/objects.json (for the Rust side of
   the test) and NOTES.txt beside it.
3. Validate every rendered object, the CRDs and the examples against the Kubernetes schemas of 1.30
   and 1.37 in strict mode (kubernetes-validate, offline); Gantry's own objects against the CRDs'
   own schemas. Kinds of other projects (cert-manager, the Prometheus Operator, Kubeflow, KServe)
   have no schema here: only those named in THIRD_PARTY may skip it.
4. Assert the safety properties on the rendered output (see the checks below), and that every
   per-component option (priority class, pod labels and annotations, security contexts merged over
   the hardened defaults, log level, spread constraints, the dashboard's Ingress) lands where it
   should, from the chart's values.yaml with each values file over it.
5. Negative controls: each checker must reject a known-bad input, so a checker that accepts
   everything cannot pass this test.

Every failure is collected and printed; the exit status is 1 when there is any.
"""

import argparse
import copy
import glob
import json
import os
import re
import sys

import helm_python
import jsonschema
import kubernetes_validate
import yaml

KUBE_VERSIONS = ["1.30.0", "1.37.0"]
NAMESPACE = "gantry-system"
RELEASE = "gantry"
THIRD_PARTY = {
    "cert-manager.io/v1": {"Issuer", "Certificate", "ClusterIssuer"},
    "monitoring.coreos.com/v1": {"ServiceMonitor", "PodMonitor", "PrometheusRule"},
    "kubeflow.org/v1": {"PyTorchJob", "Notebook", "Profile"},
    "kubeflow.org/v2beta1": {"MPIJob"},
    "jobset.x-k8s.io/v1alpha2": {"JobSet"},
    "serving.kserve.io/v1beta1": {"InferenceService"},
}
PART_OF_LABELS = [
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
]

failures = []


def fail(case, message):
    failures.append(f"[{case}] {message}")


def check(case, condition, message):
    if not condition:
        fail(case, message)
    return condition


# --- rendering -------------------------------------------------------------------------------


def load_values(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def render_text(chart, values):
    """Each template's rendered text for `values`, as `helm template` prints it."""
    ch = helm_python.Chart.load(chart)
    try:
        return ch.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    finally:
        ch.close()


def render(chart, values):
    """The chart's objects and NOTES.txt for `values`, as `helm install` would make them."""
    out = render_text(chart, values)
    objects, notes = [], ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("_template", path.split("/templates/", 1)[-1])
                objects.append(doc)
    return objects, notes


def strip(obj):
    return {k: v for k, v in obj.items() if k != "_template"}


def find(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(case, objects, kind, name):
    found = find(objects, kind, name)
    check(case, len(found) == 1, f"expected one {kind} {name}, found {len(found)}")
    return found[0] if found else {}


def workloads(objects):
    return [o for o in objects if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]


def args_of(container):
    """A container's arguments as a flag -> value map (flags without a value map to True)."""
    out, args, i = {}, [str(a) for a in container.get("args", [])], 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                out.setdefault(a, []).append(args[i + 1])
                i += 2
                continue
            out.setdefault(a, []).append(True)
        i += 1
    return out


# --- schema validation -----------------------------------------------------------------------


def validate_k8s(case, obj, crd_schemas):
    api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = obj.get("metadata", {}).get("name", "?")
    if kind in THIRD_PARTY.get(api, set()):
        check(case, isinstance(obj.get("spec"), dict), f"{kind} {name} has no spec")
        return
    if (api, kind) in crd_schemas:
        try:
            jsonschema.validate(obj.get("spec", {}), crd_schemas[(api, kind)]["properties"]["spec"])
        except jsonschema.ValidationError as e:
            fail(case, f"{kind} {name} does not match its CRD's schema: {e.message}")
        return
    for v in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(strip(obj), v, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            fail(case, f"{api} {kind} {name}: no Kubernetes {v} schema, and not a known third-party kind")
            return
        except kubernetes_validate.ValidationError as e:
            fail(case, f"{kind} {name} is not valid Kubernetes {v} (strict): {e.message} at {list(e.path)}")


def crd_schemas(crd_file):
    """(apiVersion, kind) -> openAPIV3Schema of every served version of the chart's CRDs."""
    out = {}
    with open(crd_file) as f:
        for crd in yaml.safe_load_all(f):
            if not crd:
                continue
            for v in crd["spec"]["versions"]:
                out[(f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])] = v["schema"]["openAPIV3Schema"]
    return out


# --- safety properties -----------------------------------------------------------------------


def check_labels(case, objects):
    for o in objects:
        labels = o["metadata"].get("labels", {})
        missing = [k for k in PART_OF_LABELS if k not in labels]
        check(case, not missing, f"{o['kind']} {o['metadata']['name']} lacks labels {missing}")


def check_webhooks(case, objects, values):
    service = one(case, objects, "Service", "gantry-webhook")
    deployment = one(case, objects, "Deployment", "gantry-webhook")
    ports = {p["port"] for p in service.get("spec", {}).get("ports", [])}
    excluded_needed = {"kube-system", NAMESPACE}
    configs = find(objects, "MutatingWebhookConfiguration") + find(objects, "ValidatingWebhookConfiguration")
    check(case, len(configs) == 2, f"expected a mutating and a validating configuration, found {len(configs)}")
    for cfg in configs:
        for wh in cfg["webhooks"]:
            where = f"{cfg['kind']} {cfg['metadata']['name']} webhook {wh['name']}"
            check(case, wh.get("sideEffects") == "None", f"{where}: sideEffects must be None")
            check(case, 1 <= wh.get("timeoutSeconds", 10) <= 5, f"{where}: timeoutSeconds {wh.get('timeoutSeconds')} is not short (1-5 s)")
            check(case, wh.get("admissionReviewVersions") == ["v1"], f"{where}: admissionReviewVersions must be [v1]")
            excluded = set()
            for e in wh.get("namespaceSelector", {}).get("matchExpressions", []):
                if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "NotIn":
                    excluded |= set(e["values"])
            check(case, excluded_needed <= excluded, f"{where}: must exclude {sorted(excluded_needed - excluded)}")
            svc = wh["clientConfig"].get("service", {})
            check(case, (svc.get("name"), svc.get("namespace")) == ("gantry-webhook", NAMESPACE), f"{where}: calls {svc}, not the webhook's Service")
            check(case, svc.get("port") in ports, f"{where}: port {svc.get('port')} is not a port of the Service")
            check(case, svc.get("path") in ("/mutate", "/validate"), f"{where}: path {svc.get('path')} is not served")
            check(case, "caBundle" not in wh["clientConfig"], f"{where}: caBundle must be left to the injector or the webhook (Helm would reset it)")
            if wh["name"].startswith("validate-update"):
                expr = " ".join(c["expression"] for c in wh.get("matchConditions", []))
                check(case, f"system:serviceaccount:{NAMESPACE}:gantry-scheduler" in expr, f"{where}: the queue controller is not kept off")
    c = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0]
    a = args_of(c)
    check(case, a.get("--queue-controller") == [f"system:serviceaccount:{NAMESPACE}:gantry-scheduler"], f"webhook --queue-controller is {a.get('--queue-controller')}")
    if values.get("certManager", {}).get("enabled"):
        cert = one(case, objects, "Certificate", "gantry-webhook")
        dns = cert.get("spec", {}).get("dnsNames", [])
        check(case, f"gantry-webhook.{NAMESPACE}.svc" in dns, f"the Certificate does not name the Service: {dns}")
        for cfg in configs:
            check(case, cfg["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from") == f"{NAMESPACE}/gantry-webhook", f"{cfg['kind']}: no CA injection")
        volume = next((v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"), {})
        check(case, volume.get("secret", {}).get("secretName") == cert.get("spec", {}).get("secretName"), "the webhook does not mount the Certificate's Secret")
        check(case, a.get("--tls-cert") == ["/run/gantry/tls/tls.crt"], "the webhook does not serve the mounted certificate")
    else:
        check(case, "--self-signed-tls" in a, "without cert-manager the webhook must make its own certificate")
        check(case, sorted(a.get("--ca-bundle-for", [])) == ["mutating:gantry-webhook", "validating:gantry-webhook"], f"--ca-bundle-for {a.get('--ca-bundle-for')}")
        check(case, a.get("--service") == ["gantry-webhook"], "--service must name the webhook's Service")
        check(case, not find(objects, "Certificate"), "no Certificate without cert-manager")


def check_scheduler_config(case, objects, values, notes):
    if not values.get("kubeScheduler", {}).get("enabled", True):
        return
    cm = one(case, objects, "ConfigMap", "gantry-kube-scheduler")
    config = yaml.safe_load(cm.get("data", {}).get("config.yaml", "{}"))
    check(case, config.get("apiVersion") == "kubescheduler.config.k8s.io/v1" and config.get("kind") == "KubeSchedulerConfiguration", "not a KubeSchedulerConfiguration v1")
    sched = one(case, objects, "Deployment", "gantry-scheduler")
    svc = one(case, objects, "Service", "gantry-scheduler")
    a = args_of(sched["spec"]["template"]["spec"]["containers"][0])
    port = svc["spec"]["ports"][0]["port"]
    prefix = a.get("--prefix", [""])[0]
    ext = config.get("extenders", [{}])[0]
    check(case, ext.get("urlPrefix") == f"http://gantry-scheduler.{NAMESPACE}.svc:{port}{prefix}", f"urlPrefix {ext.get('urlPrefix')} is not the extender's Service and prefix")
    check(case, (ext.get("filterVerb"), ext.get("prioritizeVerb"), ext.get("preemptVerb")) == ("filter", "prioritize", "preempt"), "extender verbs must be filter, prioritize, preempt")
    check(case, "bindVerb" not in ext, "the default binder binds; no bindVerb")
    check(case, ext.get("nodeCacheCapable") is True and ext.get("ignorable") is False, "nodeCacheCapable true, ignorable false")
    check(case, [r["name"] for r in ext.get("managedResources", [])] == ["nvidia.com/gpu"], "only nvidia.com/gpu pods go to the extender")
    name = values.get("kubeScheduler", {}).get("schedulerName", "gantry")
    check(case, [p["schedulerName"] for p in config.get("profiles", [])] == [name], "the profile's schedulerName")
    webhook = one(case, objects, "Deployment", "gantry-webhook")
    check(case, args_of(webhook["spec"]["template"]["spec"]["containers"][0]).get("--scheduler-name") == [name], "the webhook sets another scheduler name")
    lease = config.get("leaderElection", {})
    role = one(case, objects, "Role", "gantry-kube-scheduler-leader")
    check(case, lease.get("leaderElect") is True and role.get("rules", [{}])[0].get("resourceNames") == [lease.get("resourceName")], "kube-scheduler's Lease and its Role disagree")
    ks = one(case, objects, "Deployment", "gantry-kube-scheduler")
    pod = ks["spec"]["template"]["spec"]
    c = pod["containers"][0]
    conf_flag = next((x for x in c.get("command", []) if x.startswith("--config=")), "")
    mount = next((m for m in c.get("volumeMounts", []) if m["name"] == "config"), {})
    check(case, conf_flag == f"--config={mount.get('mountPath')}/config.yaml", "kube-scheduler --config is not the mounted ConfigMap")
    check(case, next((v for v in pod["volumes"] if v["name"] == "config"), {}).get("configMap", {}).get("name") == "gantry-kube-scheduler", "kube-scheduler mounts another ConfigMap")
    tag = c["image"].rsplit(":", 1)[1]
    pinned = values.get("kubeScheduler", {}).get("image", {}).get("tag")
    if pinned:
        check(case, tag == pinned, f"kube-scheduler runs {tag}, not the pinned {pinned}")
        cluster = re.search(r"Your cluster runs Kubernetes v(\d+)\.(\d+)\.", notes)
        pin = re.match(r"v?(\d+)\.(\d+)\.\d+$", pinned)
        if check(case, cluster is not None, "NOTES does not name the cluster's version") and pin:
            (cm, cn), (pm, pn) = map(int, cluster.groups()), map(int, pin.groups())
            skewed = pm != cm or not (cn - 1 <= pn <= cn)
            check(case, ("WARNING: kube-scheduler" in notes) == skewed, f"NOTES must warn exactly when {pinned} is outside the skew for v{cm}.{cn}")
    else:
        # Helm renders for the cluster's version; NOTES.txt says which one it was.
        check(case, f"Your cluster runs Kubernetes {tag};" in notes and f"runs kube-scheduler {tag}." in notes, f"kube-scheduler {tag} is not the cluster's version in NOTES: {notes[:300]!r}")


def check_rbac(case, objects, values):
    for o in objects:
        if o["kind"] not in ("ClusterRole", "Role"):
            continue
        name = f"{o['kind']} {o['metadata']['name']}"
        for r in o.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                check(case, "*" not in r.get(field, []), f"{name}: wildcard in {field}")
            if "secrets" in r.get("resources", []):
                check(case, o["kind"] == "Role" and o["metadata"]["name"] == "gantry-webhook-tls", f"{name} grants Secrets")
                if set(r["verbs"]) - {"create"}:
                    check(case, r.get("resourceNames") == ["gantry-webhook-tls"], f"{name}: Secret access beyond the webhook's own")
    for b in find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding"):
        check(case, b["roleRef"]["name"] != "cluster-admin", f"{b['metadata']['name']} binds cluster-admin")
    if values.get("certManager", {}).get("enabled"):
        check(case, not find(objects, "Role", "gantry-webhook-tls"), "with cert-manager the webhook needs no Secrets")
    if values.get("nodeAgent", {}).get("enabled", True):
        role = one(case, objects, "ClusterRole", "gantry-node-agent")
        rules = [(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["verbs"])) for r in role.get("rules", [])]
        # Idle time only (idlereports, of its own node): never the scheduler's accruals and view.
        allowed = {(("",), ("nodes",), ("get", "patch")), (("gantry.dev",), ("idlereports",), ("create",))}
        check(case, set(rules) <= allowed, f"the node agent may do more than read and patch Nodes and send idle time: {rules}")
        policy = one(case, objects, "ValidatingAdmissionPolicy", "gantry-node-agent-own-node")
        expr = policy.get("spec", {}).get("matchConditions", [{}])[0].get("expression", "")
        check(case, f"system:serviceaccount:{NAMESPACE}:gantry-node-agent" in expr, "the own-node policy does not name the node agent")
        check(case, bool(find(objects, "ValidatingAdmissionPolicyBinding", "gantry-node-agent-own-node")), "the own-node policy is not bound")


def check_pods(case, objects, values):
    accounts = {o["metadata"]["name"] for o in find(objects, "ServiceAccount")}
    pdbs = find(objects, "PodDisruptionBudget")
    policies = find(objects, "NetworkPolicy")
    for w in workloads(objects):
        name = f"{w['kind']} {w['metadata']['name']}"
        tpl = w["spec"]["template"]
        pod = tpl["spec"]
        labels = tpl["metadata"]["labels"]
        check(case, pod.get("serviceAccountName") in accounts, f"{name}: its ServiceAccount is not installed")
        check(case, pod.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: no RuntimeDefault seccomp profile")
        node_agent = w["metadata"]["name"] == "gantry-node-agent"
        for c in pod["containers"]:
            where = f"{name} container {c['name']}"
            sc = c.get("securityContext", {})
            check(case, sc.get("readOnlyRootFilesystem") is True, f"{where}: root filesystem not read-only")
            check(case, sc.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation allowed")
            check(case, sc.get("privileged") in (None, False), f"{where}: privileged")
            check(case, sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"), f"{where}: capabilities not all dropped")
            non_root = sc.get("runAsNonRoot", pod.get("securityContext", {}).get("runAsNonRoot"))
            if node_agent:
                # The one documented exception: the kubelet's root-only pod-resources socket.
                check(case, sc.get("runAsUser") == 0 and non_root is False, f"{where}: runs as root only as documented")
            else:
                check(case, non_root is True and pod["securityContext"].get("runAsUser", 0) != 0, f"{where}: may run as root")
            res = c.get("resources", {})
            check(case, {"cpu", "memory"} <= set(res.get("requests", {})) and "memory" in res.get("limits", {}), f"{where}: requests (cpu, memory) and a memory limit")
            check(case, "readinessProbe" in c and "livenessProbe" in c, f"{where}: probes")
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                check(case, port in ports, f"{where}: {probe} names port {port}, which the container lacks")
        replicas = w["spec"].get("replicas", 1)
        selected = lambda sel: all(labels.get(k) == v for k, v in sel.items())
        if w["kind"] == "Deployment" and replicas > 1:
            check(case, any(selected(p["spec"]["selector"]["matchLabels"]) for p in pdbs), f"{name}: {replicas} replicas and no PodDisruptionBudget")
            check(case, bool(pod.get("topologySpreadConstraints")), f"{name}: replicas not spread over nodes")
        if w["kind"] == "Deployment" and replicas == 1:
            check(case, not any(selected(p["spec"]["selector"]["matchLabels"]) for p in pdbs), f"{name}: a PDB on one replica blocks every drain")
        if values.get("networkPolicy", {}).get("enabled", True):
            check(case, any(selected(p["spec"]["podSelector"]["matchLabels"]) for p in policies), f"{name}: no NetworkPolicy")
        for v in pod.get("volumes", []):
            if "hostPath" in v:
                check(case, node_agent and v["hostPath"]["path"].endswith("pod-resources"), f"{name}: hostPath {v['hostPath']['path']}")
                mounts = [m for c in pod["containers"] for m in c.get("volumeMounts", []) if m["name"] == v["name"]]
                check(case, mounts and all(m.get("readOnly") is True for m in mounts), f"{name}: the pod-resources socket must be mounted read-only")
    for s in find(objects, "Service"):
        sel = s["spec"]["selector"]
        targets = [w for w in workloads(objects) if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        check(case, len(targets) == 1, f"Service {s['metadata']['name']} selects {len(targets)} workloads")
        for p in s["spec"]["ports"]:
            names = {cp["name"] for w in targets for c in w["spec"]["template"]["spec"]["containers"] for cp in c.get("ports", [])}
            check(case, p["targetPort"] in names, f"Service {s['metadata']['name']}: targetPort {p['targetPort']} is no container port")


def check_components(case, objects, values):
    agent = values.get("nodeAgent", {}).get("enabled", True)
    quota = values.get("quotaApi", {}).get("enabled", True)
    check(case, bool(find(objects, "DaemonSet", "gantry-node-agent")) == agent, "the node agent is installed exactly when enabled")
    check(case, bool(find(objects, "Deployment", "gantry-quota-api")) == quota, "the quota API is installed exactly when enabled")
    sched = one(case, objects, "Deployment", "gantry-scheduler")
    a = args_of(sched["spec"]["template"]["spec"]["containers"][0])
    url = f"http://gantry-quota-api.{NAMESPACE}.svc:80"
    check(case, a.get("--quota-api") == ([url] if quota else None), f"the scheduler's --quota-api is {a.get('--quota-api')}")
    writers = [sched] + find(objects, "DaemonSet", "gantry-node-agent")
    for w in writers if quota else []:
        # The token writers send is projected for Gantry's audience, where the binary reads it.
        pod = w["spec"]["template"]["spec"]
        vol = next((v for v in pod.get("volumes", []) if v["name"] == "quota-api-token"), {})
        src = (vol.get("projected", {}).get("sources") or [{}])[0].get("serviceAccountToken", {})
        check(case, src.get("audience") == "gantry-quota-api", f"{w['metadata']['name']}: no token for the quota API's audience")
        mount = next((m for m in pod["containers"][0].get("volumeMounts", []) if m["name"] == "quota-api-token"), {})
        check(case, f"{mount.get('mountPath')}/{src.get('path')}" == "/var/run/secrets/gantry/quota-api/token", f"{w['metadata']['name']}: the token is not where gantry reads it")
    if agent:
        ds = one(case, objects, "DaemonSet", "gantry-node-agent")
        pod = ds["spec"]["template"]["spec"]
        check(case, pod.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true", "the node agent must run on GPU nodes only")
        check(case, args_of(pod["containers"][0]).get("--quota-api") == ([url] if quota else None), "the node agent's --quota-api")
    if quota:
        dep = one(case, objects, "Deployment", "gantry-quota-api")
        check(case, dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate", "one ledger writer: 1 replica, Recreate")
        claim = dep["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
        existing = values.get("quotaApi", {}).get("persistence", {}).get("existingClaim")
        if not existing:
            pvc = one(case, objects, "PersistentVolumeClaim", claim)
            check(case, pvc.get("metadata", {}).get("annotations", {}).get("helm.sh/resource-policy") == "keep", "helm uninstall would delete the ledger")
        if values.get("networkPolicy", {}).get("enabled", True):
            np = one(case, objects, "NetworkPolicy", "gantry-quota-api")
            peers = [p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") for r in np.get("spec", {}).get("ingress", []) for p in r.get("from", [])]
            check(case, "scheduler" in peers and "node-agent" in peers, f"the quota API does not let the scheduler and node agents in: {peers}")
    monitors = values.get("metrics", {}).get("serviceMonitor", {}).get("enabled")
    check(case, bool(find(objects, "ServiceMonitor")) == bool(monitors), "ServiceMonitors exactly when enabled")
    rules = values.get("metrics", {}).get("prometheusRule", {}).get("enabled")
    check(case, bool(find(objects, "PrometheusRule")) == bool(rules), "alert rules exactly when enabled")
    dashboards = values.get("metrics", {}).get("grafanaDashboards", {}).get("enabled")
    cms = find(objects, "ConfigMap", "gantry-grafana-dashboards")
    check(case, bool(cms) == bool(dashboards), "Grafana dashboards exactly when enabled")
    for cm in cms:
        for key, text in cm["data"].items():
            try:
                check(case, bool(json.loads(text).get("panels")), f"dashboard {key} has no panels")
            except json.JSONDecodeError as e:
                fail(case, f"dashboard {key} is not JSON: {e}")
            check(case, cm["metadata"]["labels"].get("grafana_dashboard") == "1", "the dashboard sidecar label")


def pod_annotations(objects, name):
    found = [w for w in workloads(objects) if w["metadata"]["name"] == name]
    return found[0]["spec"]["template"]["metadata"].get("annotations", {}) if found else {}


def check_upgrades(selectors):
    """A workload's selector is immutable in Kubernetes: switching values files (an upgrade from the
    defaults to HA, to cert-manager...) must never change one, or `helm upgrade` fails."""
    for (kind, name), by_case in sorted(selectors.items()):
        distinct = {json.dumps(v, sort_keys=True) for v in by_case.values()}
        check("upgrades", len(distinct) == 1, f"{kind} {name} has different selectors across values files: {by_case}")


def check_rollouts(chart):
    """A change of configuration changes the pod template of exactly the pods that read it."""
    case = "checksums"
    a, _ = render(chart, {"settings": {"currency": "EUR"}})
    b, _ = render(chart, {"settings": {"currency": "USD"}, "kubeScheduler": {"httpTimeout": "2s"}})
    for name in ("gantry-scheduler", "gantry-webhook"):
        x, y = pod_annotations(a, name).get("checksum/settings"), pod_annotations(b, name).get("checksum/settings")
        check(case, x and y and x != y, f"{name} does not roll when the settings change")
    x, y = pod_annotations(a, "gantry-kube-scheduler").get("checksum/config"), pod_annotations(b, "gantry-kube-scheduler").get("checksum/config")
    check(case, x and y and x != y, "kube-scheduler does not roll when its configuration changes")
    for name in ("gantry-quota-api", "gantry-node-agent"):
        check(case, pod_annotations(a, name) == pod_annotations(b, name), f"{name} rolls for a change it does not read")


# --- per-component options -------------------------------------------------------------------

# values key -> the workload it configures, and whether it runs the `gantry` binary (RUST_LOG).
COMPONENTS = {
    "scheduler": ("Deployment", "gantry-scheduler", True),
    "kubeScheduler": ("Deployment", "gantry-kube-scheduler", False),
    "webhook": ("Deployment", "gantry-webhook", True),
    "quotaApi": ("Deployment", "gantry-quota-api", True),
    "nodeAgent": ("DaemonSet", "gantry-node-agent", True),
}
# The hardened defaults the chart's security contexts start from (_helpers.tpl).
POD_SC = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SC = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False, "capabilities": {"drop": ["ALL"]}}
NODE_AGENT_POD_SC = {"seccompProfile": {"type": "RuntimeDefault"}}
NODE_AGENT_CONTAINER_SC = {"runAsUser": 0, "runAsNonRoot": False, **CONTAINER_SC}


def deep_merge(base, over):
    """Helm's coalescing of a values file over the chart's values: maps merge, the rest replaces."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def merged_context(defaults, override):
    """What the chart promises for a securityContext: the override's keys over the defaults', one
    level down too; every default the override does not name stays."""
    out = copy.deepcopy(defaults)
    for k, v in (override or {}).items():
        out[k] = {**out[k], **v} if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def check_options(case, objects, values):
    """`values`: the chart's values.yaml with the case's values over it."""
    create = values["priorityClass"]["create"]
    classes = find(objects, "PriorityClass")
    check(case, len(classes) == (1 if create else 0), f"{len(classes)} PriorityClass objects, priorityClass.create is {create}")
    for pc in classes:
        check(case, pc["metadata"]["name"] == "gantry-critical" and pc.get("value") == values["priorityClass"]["value"] and pc.get("globalDefault") is False, f"the chart's PriorityClass: {pc}")
        check(case, pc["value"] <= 1000000000, "a PriorityClass of the chart's above 1000000000 is refused")
    own = set(PART_OF_LABELS)
    for key, (kind, name, gantry) in COMPONENTS.items():
        v = values[key]
        if not v.get("enabled", True):
            continue
        w = one(case, objects, kind, name)
        if not w:
            continue
        tpl = w["spec"]["template"]
        pod, labels, annotations = tpl["spec"], tpl["metadata"].get("labels", {}), tpl["metadata"].get("annotations", {})
        selector = w["spec"]["selector"]["matchLabels"]
        want = v.get("priorityClassName") or ("gantry-critical" if create else None)
        check(case, pod.get("priorityClassName") == want, f"{name}: priorityClassName {pod.get('priorityClassName')!r}, want {want!r}")
        check(case, all(labels.get(k) == x for k, x in selector.items()), f"{name}: the pod labels {labels} do not match the selector {selector}")
        for k, x in v.get("podLabels", {}).items():
            if k in own:
                check(case, labels.get(k) == w["metadata"]["labels"].get(k), f"{name}: podLabels overrode the chart's label {k}")
            else:
                check(case, labels.get(k) == x, f"{name}: podLabels {k}={x} not on the pods")
        for k, x in v.get("podAnnotations", {}).items():
            if not k.startswith("checksum/"):
                check(case, annotations.get(k) == x, f"{name}: podAnnotations {k}={x} not on the pods")
        node_agent = key == "nodeAgent"
        want_pod = merged_context(NODE_AGENT_POD_SC if node_agent else POD_SC, v.get("podSecurityContext"))
        check(case, pod.get("securityContext") == want_pod, f"{name}: pod securityContext {pod.get('securityContext')}, want the defaults with the override: {want_pod}")
        c = pod["containers"][0]
        want_c = merged_context(NODE_AGENT_CONTAINER_SC if node_agent else CONTAINER_SC, v.get("containerSecurityContext"))
        check(case, c.get("securityContext") == want_c, f"{name}: container securityContext {c.get('securityContext')}, want the defaults with the override: {want_c}")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        want_log = (values.get("logLevel") or None) if gantry else None
        check(case, env.get("RUST_LOG") == want_log, f"{name}: RUST_LOG {env.get('RUST_LOG')!r}, want {want_log!r} (logLevel)")
        spread = v.get("topologySpreadConstraints")
        if spread:
            want_spread = [{**t, "labelSelector": t.get("labelSelector", {"matchLabels": selector})} for t in spread]
            check(case, pod.get("topologySpreadConstraints") == want_spread, f"{name}: topologySpreadConstraints {pod.get('topologySpreadConstraints')}, want {want_spread}")
    q = values["quotaApi"]
    ing, ingresses = q["ingress"], find(objects, "Ingress")
    enabled = q["enabled"] and ing["enabled"]
    check(case, len(ingresses) == (1 if enabled else 0), f"{len(ingresses)} Ingresses; quotaApi.ingress.enabled is {ing['enabled']}, quotaApi.enabled {q['enabled']}")
    for i in ingresses:
        spec = i["spec"]
        rules = spec.get("rules", [])
        paths = [p for r in rules for p in r.get("http", {}).get("paths", [])]
        svc = one(case, objects, "Service", "gantry-quota-api")
        port = next((p["port"] for p in svc.get("spec", {}).get("ports", []) if p.get("targetPort") == "http"), None)
        check(case, len(paths) == 1 and paths[0]["backend"]["service"] == {"name": "gantry-quota-api", "port": {"number": port}}, f"the Ingress does not point at the quota API's Service port {port}: {paths}")
        check(case, paths and (paths[0]["path"], paths[0]["pathType"]) == (ing["path"], ing["pathType"]), f"the Ingress path {paths}")
        check(case, [r.get("host") for r in rules] == [ing["host"] or None], f"the Ingress hosts {[r.get('host') for r in rules]}, want {ing['host']!r}")
        check(case, spec.get("ingressClassName") == (ing["className"] or None), f"ingressClassName {spec.get('ingressClassName')}")
        check(case, i["metadata"].get("annotations", {}) == ing["annotations"], "the Ingress's annotations")
        want_tls = [{"secretName": t["secretName"], **({"hosts": t.get("hosts") or [ing["host"]]} if t.get("hosts") or ing["host"] else {})} for t in ing["tls"]]
        check(case, spec.get("tls", []) == want_tls, f"the Ingress's tls {spec.get('tls')}, want {want_tls}")


def check_notes(case, notes, values):
    check(case, "raw.githubusercontent.com" not in notes and "ghcr.io/gantry-dev/gantry:" not in notes, "NOTES points at a URL nothing publishes")
    placeholder = values["image"]["repository"] == "ghcr.io/gantry-dev/gantry"
    check(case, ("no registry\npublishes" in notes) == placeholder, "NOTES must say exactly when the image is the chart's placeholder")
    if values["quotaApi"]["enabled"]:
        # What kube_auth.rs asks in its SubjectAccessReviews: list tenants (admins), get a named
        # Tenant (its users); Tenants are cluster-scoped, so ClusterRoleBindings.
        check(case, "--clusterrole=gantry-quota-admin" in notes, "NOTES does not show the admins' binding")
        check(case, "--verb=get --resource=tenants.gantry.dev --resource-name=" in notes and "kubectl create clusterrolebinding gantry-quota-team-a" in notes, "NOTES does not show a tenant's users' role and binding")


def check_overrides(chart, defaults):
    """Values the ci/ files, being worked examples, do not set: labels that would move a selector,
    and security contexts that explicitly weaken a default."""
    case = "overrides"
    values = {
        "scheduler": {"podLabels": {"app.kubernetes.io/component": "evil", "app.kubernetes.io/instance": "other", "example.com/team": "a"}},
        "quotaApi": {
            "podLabels": {"app.kubernetes.io/name": "evil"},
            # Explicit changes, false included, are honoured; every other default stays.
            "containerSecurityContext": {"readOnlyRootFilesystem": False, "capabilities": {"add": ["NET_BIND_SERVICE"]}},
            "podSecurityContext": {"runAsUser": 1234},
            "ingress": {"enabled": True},
        },
        "nodeAgent": {"containerSecurityContext": {"privileged": False}},
    }
    objects, notes = render(chart, values)
    check_options(case, objects, deep_merge(defaults, values))
    for name, component in (("gantry-scheduler", "scheduler"), ("gantry-quota-api", "quota-api")):
        labels = pod_labels(objects, name)
        check(case, labels.get("app.kubernetes.io/component") == component and labels.get("app.kubernetes.io/name") == "gantry" and labels.get("app.kubernetes.io/instance") == RELEASE, f"{name}: podLabels moved a selector label: {labels}")
    q = one(case, objects, "Deployment", "gantry-quota-api")["spec"]["template"]["spec"]
    sc, psc = q["containers"][0].get("securityContext", {}), q.get("securityContext", {})
    check(case, sc.get("readOnlyRootFilesystem") is False and sc.get("allowPrivilegeEscalation") is False and sc.get("capabilities") == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, f"quota API container securityContext {sc}")
    check(case, psc.get("runAsUser") == 1234 and psc.get("runAsNonRoot") is True and psc.get("seccompProfile") == {"type": "RuntimeDefault"}, f"quota API pod securityContext {psc}")
    check(case, "WARNING: the Ingress has no TLS" in notes and "quotaApi.allowFrom is empty" in notes, "NOTES does not warn about an Ingress without TLS or kept out by the NetworkPolicy")
    objects, _ = render(chart, {"quotaApi": {"enabled": False, "ingress": {"enabled": True}}})
    check(case, not find(objects, "Ingress"), "an Ingress without the quota API")
    # The checker itself: the defaults' objects judged against other values must fail.
    default_objects, _ = render(chart, {})
    before = len(failures)
    check_options("control", default_objects, deep_merge(defaults, {"logLevel": "debug", "priorityClass": {"create": True}, "quotaApi": {"ingress": {"enabled": True}}, "webhook": {"podLabels": {"a": "b"}, "podSecurityContext": {"runAsUser": 1}}}))
    caught = failures[before:]
    del failures[before:]
    for what in ("PriorityClass objects", "RUST_LOG", "Ingresses", "podLabels a=b", "pod securityContext", "priorityClassName"):
        check("controls", any(what in f for f in caught), f"check_options does not notice a wrong {what}")


def pod_labels(objects, name):
    found = [w for w in workloads(objects) if w["metadata"]["name"] == name]
    return found[0]["spec"]["template"]["metadata"].get("labels", {}) if found else {}


# --- negative controls -----------------------------------------------------------------------


def negative_controls(chart, schemas):
    case = "controls"
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": 1, "selector": {}, "template": {}, "replicaz": 2}}
    try:
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)
        fail(case, "kubernetes-validate accepted a Deployment with an unknown field")
    except kubernetes_validate.ValidationError:
        pass
    lint = helm_python.lint(chart, {"scheduler": {"replicas": "two"}}, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    check(case, any("replicas" in e for e in lint["errors"]), f"the values schema accepted replicas: two ({lint['errors']})")
    lint = helm_python.lint(chart, {"priorityClass": {"create": True, "value": 2000000000}}, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    check(case, any("value" in e for e in lint["errors"]), f"the values schema accepted a PriorityClass value reserved to system classes ({lint['errors']})")
    lint = helm_python.lint(chart, {"webhook": {"podLabels": {"a": 1}}}, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    check(case, bool(lint["errors"]), "the values schema accepted a label value that is no string")
    lint = helm_python.lint(chart, {"webhooks": {}}, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    check(case, bool(lint["errors"]), "the values schema accepted an unknown top-level key")
    tenant = schemas.get(("gantry.dev/v1alpha1", "Tenant"))
    if check(case, tenant is not None, "no Tenant CRD"):
        try:
            jsonschema.validate({"namespaces": "team-a"}, tenant["properties"]["spec"])
            fail(case, "the Tenant schema accepted namespaces as a string")
        except jsonschema.ValidationError:
            pass


# --- main ------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chart", required=True)
    p.add_argument("--examples", required=True)
    p.add_argument("--out", required=True)
    opts = p.parse_args()
    chart = os.path.abspath(opts.chart)
    schemas = crd_schemas(os.path.join(chart, "crds", "gantry-crds.yaml"))

    with open(os.path.join(chart, "crds", "gantry-crds.yaml")) as f:
        for crd in yaml.safe_load_all(f):
            if crd:
                validate_k8s("crds", crd, {})

    cases = sorted(glob.glob(os.path.join(chart, "ci", "*-values.yaml")))
    check("cases", len(cases) >= 5, f"expected at least 5 values files in ci/, found {len(cases)}")
    defaults = load_values(os.path.join(chart, "values.yaml"))
    summary = []
    selectors = {}
    for path in cases:
        case = os.path.basename(path)[: -len("-values.yaml")]
        values = load_values(path)
        for kv in KUBE_VERSIONS:
            lint = helm_python.lint(chart, values, strict=True, namespace=NAMESPACE, kube_version=f"v{kv}")
            for m in lint["messages"]:
                if m["severity"] >= 2:
                    fail(case, f"helm lint (Kubernetes {kv}): {m['path']}: {m['error'].strip()}")
        objects, notes = render(chart, values)
        check(case, bool(objects), "the chart rendered nothing")
        for o in objects:
            validate_k8s(case, o, schemas)
        check_labels(case, objects)
        check_webhooks(case, objects, values)
        check_scheduler_config(case, objects, values, notes)
        check_rbac(case, objects, values)
        check_pods(case, objects, values)
        check_components(case, objects, values)
        check_options(case, objects, deep_merge(defaults, values))
        check_notes(case, notes, deep_merge(defaults, values))
        os.makedirs(os.path.join(opts.out, case), exist_ok=True)
        with open(os.path.join(opts.out, case, "objects.json"), "w") as f:
            json.dump(objects, f, indent=1, sort_keys=True)
        with open(os.path.join(opts.out, case, "NOTES.txt"), "w") as f:
            f.write(notes)
        # Each template's text, for the committed deploy/ manifests (the defaults' rendering).
        for tpl, text in render_text(chart, values).items():
            rel = tpl.split("/templates/", 1)[-1]
            if text.strip() and not rel.endswith("NOTES.txt"):
                dest = os.path.join(opts.out, case, "templates", rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "w") as f:
                    f.write(text.lstrip("\n"))
        for w in workloads(objects):
            selectors.setdefault((w["kind"], w["metadata"]["name"]), {})[case] = w["spec"]["selector"]
        kinds = sorted({o["kind"] for o in objects})
        summary.append(f"{case}: {len(objects)} objects ({', '.join(kinds)})")

    for path in sorted(glob.glob(os.path.join(opts.examples, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    validate_k8s(f"example {os.path.basename(path)}", doc, schemas)

    check_upgrades(selectors)
    check_rollouts(chart)
    check_overrides(chart, defaults)
    negative_controls(chart, schemas)

    print("\n".join(summary))
    if failures:
        print(f"\n{len(failures)} problem(s):", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        sys.exit(1)
    print(f"chart checked: {len(cases)} values files, Kubernetes {' and '.join(KUBE_VERSIONS)} (strict)")


if __name__ == "__main__":
    main()
