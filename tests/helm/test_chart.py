#!/usr/bin/env python3
"""Render tests of helm/agentq, without helm.

Renders the chart with tests/helm/render (text/template + sprig + Helm's
built-ins, values checked against values.schema.json), for the default
values and each case of tests/helm/cases/, parses every document as YAML and
checks the objects against the real binaries:

  * the worker's config file and environment hold only options the worker
    knows (`--help`, `--print-config`), no secret is in the ConfigMap, and
    `agentq-worker --config <rendered file> --print-config` accepts it;
  * the init Job's flags are accepted by `agentq init --print-config`, the
    simulator's by `agentq-sim --print-config`;
  * probes at /healthz and /readyz on the metrics port, the security
    context, terminationGracePeriodSeconds > shutdown_grace > llm_timeout,
    the hook annotations, the switches' objects;
  * the dashboard and alert rules use only the metric families of the
    contract (`agentq-worker --print-metrics`, or tests/helm/metrics.txt
    until the worker has that flag);
  * wrong values are refused (schema or template) with a useful message.

  usage: test_chart.py --render BIN --bin BUILD_DIR
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(ROOT, "helm", "agentq")
CASES = os.path.join(HERE, "cases")
sys.path.insert(0, HERE)
import gen_schema  # noqa: E402  (the same --help parser and type probe)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"  FAIL {what}")
    return cond


class Binaries:
    def __init__(self, bin_dir):
        self.worker = os.path.join(bin_dir, "cmd", "agentq-worker", "agentq-worker")
        self.cli = os.path.join(bin_dir, "cmd", "agentq", "agentq")
        self.sim = os.path.join(bin_dir, "cmd", "agentq-sim", "agentq-sim")
        w = gen_schema.parse_help(self.worker)
        self.worker_env = {o["env"]: o["name"] for o in w if o["env"]}
        self.worker_defaults = {o["name"]: o["default"] for o in w}
        rc, out, _ = gen_schema.run(self.worker, "--print-config")
        self.worker_names = {line.split(" = ")[0] for line in out.splitlines() if " = " in line}
        self.secrets = {o["name"] for o in w if gen_schema.probe_type(self.worker, o["name"]) == "secret"}
        self.init_names = {o["name"] for o in parse_help_args(self.cli, "init")}

    def print_config(self, binary, *args):
        return gen_schema.run(binary, *args, "--print-config")


def parse_help_args(binary, sub):
    rc, out, err = gen_schema.run(binary, sub, "--help")
    opts = []
    lines = (out + err).splitlines()
    for i, line in enumerate(lines[:-1]):
        m = gen_schema.OPT_RE.match(line)
        if m and gen_schema.ENV_RE.match(lines[i + 1]):
            opts.append({"name": m.group(1)})
    return opts


def render(render_bin, files, notes=False):
    args = [render_bin, "-chart", CHART, "-name", "agentq", "-namespace", "agentq"]
    for f in files:
        args += ["-f", f]
    if notes:
        args.append("-notes")
    p = subprocess.run(args, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def render_values(render_bin, values_text, notes=False):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(values_text)
    try:
        return render(render_bin, [f.name], notes)
    finally:
        os.unlink(f.name)


def objects(text):
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    by = {}
    for d in docs:
        check(isinstance(d, dict) and "apiVersion" in d and "kind" in d and d.get("metadata", {}).get("name"),
              f"document without apiVersion/kind/name: {str(d)[:80]}")
        key = (d["kind"], d["metadata"]["name"])
        check(key not in by, f"two {key}")
        by[key] = d
        labels = d["metadata"].get("labels", {})
        check(labels.get("app.kubernetes.io/managed-by") == "Helm", f"{key}: no managed-by label")
    return by


def kinds(objs):
    return sorted({k for k, _ in objs})


def one(objs, kind, name):
    o = objs.get((kind, name))
    check(o is not None, f"missing {kind} {name}")
    return o or {}


def duration_ms(text):
    m = re.fullmatch(r"(\d+)ms", text)
    return int(m.group(1)) if m else None


def pod_security(what, pod_spec):
    psc = pod_spec.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{what}: pod runAsNonRoot")
    check(psc.get("runAsUser", 0) != 0, f"{what}: pod runAsUser is not root")
    for c in pod_spec.get("containers", []):
        sc = c.get("securityContext", {})
        check(sc.get("readOnlyRootFilesystem") is True, f"{what}/{c['name']}: readOnlyRootFilesystem")
        check(sc.get("allowPrivilegeEscalation") is False, f"{what}/{c['name']}: allowPrivilegeEscalation false")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{what}/{c['name']}: capabilities drop ALL")
        check(not sc.get("privileged"), f"{what}/{c['name']}: not privileged")
    check(pod_spec.get("automountServiceAccountToken") is False, f"{what}: no API token mounted")


def check_worker(b, objs, case_values):
    dep = one(objs, "Deployment", "agentq")
    pod = dep.get("spec", {}).get("template", {}).get("spec", {})
    cs = pod.get("containers", [{}])
    c = cs[0]
    pod_security("worker", pod)

    # The config file: only the worker's options, no secrets, and the real
    # worker accepts it.
    cm = one(objs, "ConfigMap", "agentq")
    conf = cm.get("data", {}).get("agentq.conf", "")
    keys = [line.split("=", 1)[0].strip() for line in conf.splitlines()
            if line.strip() and not line.startswith("#")]
    for k in keys:
        check(k in b.worker_names, f"config file option {k!r} is not one the worker knows (--print-config)")
        check(k not in b.secrets, f"secret option {k!r} in the ConfigMap")
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(conf)
    try:
        rc, out, err = b.print_config(b.worker, "--config", f.name)
    finally:
        os.unlink(f.name)
    check(rc == 0, f"agentq-worker refuses the rendered config file: {err.strip()}")
    eff = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)
    check(c.get("args") == ["--config", "/etc/agentq/agentq.conf"], "worker reads /etc/agentq/agentq.conf")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    check(mounts.get("/etc/agentq/agentq.conf", {}).get("subPath") == "agentq.conf", "config file mounted")

    # Environment: every variable is one of the worker's.
    for e in c.get("env", []):
        opt = b.worker_env.get(e["name"])
        check(opt is not None, f"env {e['name']} is not a variable the worker reads (--help)")
        check(opt is None or opt in b.worker_names, f"env {e['name']}: option {opt} not in --print-config")
        if opt in b.secrets:
            check("secretKeyRef" in e.get("valueFrom", {}), f"env {e['name']} (secret) not from a Secret")

    # Probes on the worker's metrics port, at its real endpoints.
    port_default = b.worker_defaults.get("metrics_port") or "9090"
    want_port = int(case_values.get("config", {}).get("metrics_port", port_default))
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("metrics") == want_port, f"metrics containerPort {ports.get('metrics')} != {want_port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        hg = c.get(probe, {}).get("httpGet", {})
        check(hg.get("path") == path, f"{probe} path {hg.get('path')} != {path}")
        check(hg.get("port") in ("metrics", want_port), f"{probe} port {hg.get('port')} is not the metrics port")
    svc = one(objs, "Service", "agentq-metrics")
    sp = svc.get("spec", {}).get("ports", [{}])[0]
    check(sp.get("port") == want_port and sp.get("targetPort") == "metrics", "metrics Service port")

    # Drain: the pod outlives shutdown_grace, which outlives a long call.
    grace = duration_ms(eff.get("shutdown_grace", ""))
    llm = duration_ms(eff.get("llm_timeout", ""))
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    check(grace is not None and tgps * 1000 > grace,
          f"terminationGracePeriodSeconds {tgps} s not longer than shutdown_grace {grace} ms")
    check(grace is not None and llm is not None and grace > llm,
          f"shutdown_grace {grace} ms not longer than llm_timeout {llm} ms")
    return dep, pod, c, eff


def check_init(b, objs, secret_name):
    job = one(objs, "Job", "agentq-init")
    ann = job.get("metadata", {}).get("annotations", {})
    check(ann.get("helm.sh/hook") == "pre-install,pre-upgrade", "init Job hook pre-install,pre-upgrade")
    check("before-hook-creation" in ann.get("helm.sh/hook-delete-policy", ""), "init Job delete policy")
    pod = job.get("spec", {}).get("template", {}).get("spec", {})
    pod_security("init", pod)
    check(pod.get("restartPolicy") == "Never", "init Job restartPolicy Never")
    c = pod.get("containers", [{}])[0]
    check(c.get("command") == ["agentq", "init"], "init Job runs agentq init")
    rc, out, err = b.print_config(b.cli, "init", *c.get("args", []))
    check(rc == 0, f"agentq init refuses the Job's flags {c.get('args')}: {err.strip()}")
    eff = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)
    for e in c.get("env", []):
        check(e["name"] in b.worker_env, f"init env {e['name']} unknown")
        ref = e.get("valueFrom", {}).get("secretKeyRef", {})
        check(ref.get("name") == secret_name, f"init env {e['name']} from Secret {ref.get('name')} != {secret_name}")
    return job, eff


def check_helpers_init_list(b):
    # The chart's list of `agentq init` options must be the CLI's.
    text = open(os.path.join(CHART, "templates", "_helpers.tpl")).read()
    m = re.search(r'define "agentq.initOptions" -}}\n(.*?)\n\{\{- end', text, re.S)
    listed = set(m.group(1).split()) if m else set()
    want = b.init_names - b.secrets
    check(listed == want, "agentq.initOptions in _helpers.tpl differs from `agentq init --help`: "
          f"missing {sorted(want - listed)}, extra {sorted(listed - want)}")


def metric_contract(b):
    rc, out, _ = gen_schema.run(b.worker, "--print-metrics")
    source = "agentq-worker --print-metrics"
    if rc != 0 or not out.strip():
        source = "tests/helm/metrics.txt"
        out = open(os.path.join(HERE, "metrics.txt")).read()
    fams = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            fams[parts[0]] = parts[1]
    print(f"  metric families: {len(fams)} from {source}")
    return fams


def used_metrics(text):
    return set(re.findall(r"\bagentq_[a-z0-9_]+", text))


def check_metric_names(fams, what, text):
    for name in sorted(used_metrics(text)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        ok = name in fams or (base in fams and fams[base] == "histogram")
        check(ok, f"{what}: {name} is not a metric family of the contract")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--render", required=True)
    ap.add_argument("--bin", required=True, help="build directory with cmd/*/ binaries")
    a = ap.parse_args()
    b = Binaries(a.bin)
    covered = []

    print("== chart helpers")
    check_helpers_init_list(b)

    def case(name, values_file=None):
        files = [os.path.join(CASES, values_file)] if values_file else []
        values = yaml.safe_load(open(files[0])) if files else {}
        rc, out, err = render(a.render, files)
        print(f"== {name}: {'ok' if rc == 0 else 'render failed'}")
        if not check(rc == 0, f"{name}: render failed: {err.strip()}"):
            return None, values
        objs = objects(out)
        print("  " + ", ".join(f"{k}/{n}" for k, n in sorted(objs)))
        covered.append(name)
        return objs, values

    # Default values.
    objs, v = case("default values")
    if objs:
        dep, pod, c, eff = check_worker(b, objs, v)
        check(kinds(objs) == ["ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Secret",
                              "Service", "ServiceAccount"], f"default kinds {kinds(objs)}")
        check(dep["spec"].get("replicas") == 3, "default: 3 replicas")
        check(eff.get("replicas") == "3", "default: streams R3 (replicas = 3)")
        aff = pod.get("affinity", {}).get("podAntiAffinity", {})
        check("preferredDuringSchedulingIgnoredDuringExecution" in aff, "default: soft pod anti-affinity")
        check(len(pod.get("topologySpreadConstraints", [])) == 2, "default: topology spread over zones and nodes")
        check(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "rolling update keeps capacity")
        env = {e["name"]: e for e in c["env"]}
        check(env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "agentq", "key": "anthropic-api-key"},
              "API key from the chart's Secret")
        job, ieff = check_init(b, objs, "agentq")
        check(ieff.get("replicas") == "3" and ieff.get("nats_url") == "nats://nats:4222",
              "init Job gets replicas and nats_url from config")
        pdb = one(objs, "PodDisruptionBudget", "agentq")
        check(pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"], "PDB selects the workers")
        rc, notes, err = render(a.render, [], notes=True)
        check(rc == 0 and "agentq submit" in notes and "agentq stats" in notes and "WARNING: no API key" in notes,
              f"NOTES.txt tells how to submit and watch: {err.strip()}")

    objs, v = case("hpa", "hpa.yaml")
    if objs:
        dep, *_ = check_worker(b, objs, v)
        hpa = one(objs, "HorizontalPodAutoscaler", "agentq")
        check(hpa.get("spec", {}).get("scaleTargetRef", {}).get("name") == "agentq", "HPA targets the workers")
        check(hpa.get("spec", {}).get("metrics", [{}])[0].get("resource", {}).get("name") == "cpu", "HPA on CPU")
        check("replicas" not in dep["spec"], "HPA: the Deployment leaves replicas to it")
        check(("ScaledObject", "agentq") not in objs, "HPA: no ScaledObject")

    objs, v = case("keda", "keda.yaml")
    if objs:
        dep, *_ = check_worker(b, objs, v)
        so = one(objs, "ScaledObject", "agentq")
        trig = so.get("spec", {}).get("triggers", [{}])[0]
        md = trig.get("metadata", {})
        check(trig.get("type") == "nats-jetstream", "KEDA trigger nats-jetstream")
        check(md.get("stream") == b.worker_defaults["task_stream"] and md.get("consumer") == b.worker_defaults["consumer"],
              f"KEDA trigger on the worker's stream and consumer: {md}")
        check(md.get("lagThreshold") == "500" and md.get("natsServerMonitoringEndpoint"), "KEDA lag threshold, endpoint")
        check(all(isinstance(x, str) for x in md.values()), "KEDA metadata values are strings")
        check(so["spec"]["scaleTargetRef"]["name"] == "agentq", "ScaledObject targets the workers")
        check("replicas" not in dep["spec"] and ("HorizontalPodAutoscaler", "agentq") not in objs,
              "KEDA: no replicas, no chart HPA")

    objs, v = case("existing secret", "existing-secret.yaml")
    if objs:
        dep, pod, c, eff = check_worker(b, objs, v)
        check(not any(k == "Secret" for k, _ in objs), "existing secret: the chart creates no Secret")
        env = {e["name"]: e for e in c["env"]}
        check(env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "agentq-keys", "key": "ANTHROPIC_API_KEY"},
              "API key from the existing Secret under its key")
        check(env["AGENTQ_NATS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "agentq-keys", "NATS token from it")
        check_init(b, objs, "agentq-keys")

    objs, v = case("chart secret + big numbers", "chart-secret.yaml")
    if objs:
        dep, pod, c, eff = check_worker(b, objs, v)
        conf = objs[("ConfigMap", "agentq")]["data"]["agentq.conf"]
        check("stream_max_msgs = 10000000" in conf, "whole numbers stay integers (not 1e+07)")
        check(eff.get("results_ttl") == "86400000ms" and eff.get("llm_timeout") == "300000ms", "durations pass through")
        sec = one(objs, "Secret", "agentq")
        check(set(sec.get("data", {})) == {"anthropic-api-key", "nats-password"}, f"Secret keys {sec.get('data')}")
        check("sk-ant" not in conf and "not-a-real-password" not in conf, "no secret in the ConfigMap")
        hs = one(objs, "Secret", "agentq-init")
        ann = hs.get("metadata", {}).get("annotations", {})
        check(ann.get("helm.sh/hook") == "pre-install,pre-upgrade" and int(ann.get("helm.sh/hook-weight", "0")) < 0,
              "init Secret is a hook created before the Job")
        check(set(hs.get("data", {})) == {"nats-password"}, "init Secret holds only the NATS secrets")
        check_init(b, objs, "agentq-init")

    objs, v = case("tls + credentials file", "tls.yaml")
    if objs:
        dep, pod, c, eff = check_worker(b, objs, v)
        vols = {x["name"]: x for x in pod.get("volumes", [])}
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        for vol, secret, opt, key in (("nats-creds", "agentq-nats-creds", "nats_creds", "worker.creds"),
                                      ("nats-ca", "nats-ca", "nats_tls_ca", "ca.crt"),
                                      ("nats-client", "agentq-nats-client", "nats_tls_cert", "tls.crt"),
                                      ("nats-client", "agentq-nats-client", "nats_tls_key", "tls.key")):
            check(vols.get(vol, {}).get("secret", {}).get("secretName") == secret, f"volume {vol} from {secret}")
            m = mounts.get(vol, {})
            check(m.get("readOnly") is True, f"{vol} mounted read-only")
            check(eff.get(opt) == f"{m.get('mountPath')}/{key}", f"{opt} = {eff.get(opt)} points at the mounted {key}")
        check(eff.get("nats_url", "").startswith("tls://"), "tls:// URLs")
        aff = pod.get("affinity", {}).get("podAntiAffinity", {})
        check("requiredDuringSchedulingIgnoredDuringExecution" in aff, "podAntiAffinity=hard: required anti-affinity")
        job, ieff = check_init(b, objs, "agentq")
        jpod = job["spec"]["template"]["spec"]
        check(ieff.get("nats_tls_ca") == eff.get("nats_tls_ca") and ieff.get("nats_creds") == eff.get("nats_creds"),
              "init Job uses the same TLS CA and credentials")
        check({x["name"] for x in jpod.get("volumes", [])} == {"nats-creds", "nats-ca", "nats-client"},
              "init Job mounts the NATS secrets")

    objs, v = case("simulator", "simulator.yaml")
    if objs:
        dep, pod, c, eff = check_worker(b, objs, v)
        check(eff.get("base_url") == "http://agentq-sim:8090", f"workers call the simulator: {eff.get('base_url')}")
        check(pod.get("terminationGracePeriodSeconds") == 700, "explicit terminationGracePeriodSeconds kept")
        sim = one(objs, "Deployment", "agentq-sim")
        spod = sim.get("spec", {}).get("template", {}).get("spec", {})
        pod_security("simulator", spod)
        sc = spod.get("containers", [{}])[0]
        rc, out, err = b.print_config(b.sim, *sc.get("args", []))
        check(rc == 0, f"agentq-sim refuses its flags {sc.get('args')}: {err.strip()}")
        check("listen = 0.0.0.0:8090" in out, "simulator listens on all interfaces")
        check(sc.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "simulator probe /healthz")
        svc = one(objs, "Service", "agentq-sim")
        check(svc["spec"]["selector"] == sim["spec"]["selector"]["matchLabels"], "simulator Service selects it")
        check(svc["spec"]["selector"] != dep["spec"]["selector"]["matchLabels"], "simulator and workers apart")
        rc, notes, err = render(a.render, [os.path.join(CASES, "simulator.yaml")], notes=True)
        check(rc == 0 and "agentq-sim:8090" in notes, "NOTES mention the simulator")

    fams = metric_contract(b)
    objs, v = case("monitoring", "monitoring.yaml")
    if objs:
        check_worker(b, objs, v)
        sm = one(objs, "ServiceMonitor", "agentq")
        svc = one(objs, "Service", "agentq-metrics")
        check(sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"], "ServiceMonitor scrapes the metrics port")
        check(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(), "ServiceMonitor selects the Service")
        check(sm["metadata"]["labels"].get("release") == "kube-prometheus-stack", "ServiceMonitor extra labels")
        pr = one(objs, "PrometheusRule", "agentq")
        alerts = {r["alert"] for g in pr["spec"]["groups"] for r in g["rules"]}
        for want in ("AgentqDeadLettersGrowing", "AgentqRateLimited", "AgentqBacklogNotDraining", "AgentqBudgetNearlySpent"):
            check(want in alerts, f"alert {want} in the PrometheusRule")
        check_metric_names(fams, "PrometheusRule", json.dumps(pr["spec"]))
        dash = one(objs, "ConfigMap", "agentq-dashboard")
        check(dash["metadata"]["labels"].get("grafana_dashboard") == "1", "dashboard has the sidecar label")
        board = json.loads(dash["data"]["agentq.json"])
        exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", []))
        check_metric_names(fams, "dashboard", exprs)
        for want in ("agentq_queue_pending", "histogram_quantile(0.99", 'code="429"', 'result="hit"',
                     "agentq_dlq_messages", "agentq_llm_in_flight", "agentq_tasks_total",
                     "agentq_tokens_total", "agentq_cost_usd_total"):
            check(want in exprs, f"dashboard shows {want}")

    # The rule file works standalone too: the same metric names.
    check_metric_names(fams, "files/alerts.yaml", open(os.path.join(CHART, "files", "alerts.yaml")).read())

    # Wrong values: refused before anything is rendered, with a message.
    print("== wrong values")
    bad = [
        ("unknown top-level key", "workers:\n  replicaCount: 2\n", "Additional property workers"),
        ("unknown worker option", "config:\n  concurency: 10\n", "Additional property concurency"),
        ("secret in config", "config:\n  api_key: sk-ant-x\n", "Additional property api_key"),
        ("wrong option type", "config:\n  replicas: three\n", "config.replicas"),
        ("option out of range", "config:\n  replicas: 7\n", "config.replicas"),
        ("bad duration", "config:\n  ack_wait: 30 seconds\n", "config.ack_wait"),
        ("wrong value type", "worker:\n  replicaCount: \"3\"\n", "worker.replicaCount"),
        ("bad enum", "worker:\n  podAntiAffinity: sometimes\n", "worker.podAntiAffinity"),
        ("bad simulator option", "simulator:\n  config:\n    fault_429: 2\n", "simulator.config.fault_429"),
        ("hpa and keda", "autoscaling:\n  hpa:\n    enabled: true\n  keda:\n    enabled: true\n", "choose one"),
        ("grace too short", "worker:\n  terminationGracePeriodSeconds: 60\n", "must be longer than config.shutdown_grace"),
        ("two sources of nats_creds", "config:\n  nats_creds: /x\nnats:\n  credsSecret:\n    name: c\n", "set one or the other"),
    ]
    for name, text, want in bad:
        rc, out, err = render_values(a.render, text)
        ok = check(rc != 0 and want in err, f"{name}: want refusal with {want!r}, got rc={rc} {err.strip()[:300]}")
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {err.strip().splitlines()[-1][:120] if err.strip() else ''}")
        check("sk-ant-x" not in err, f"{name}: the error echoes a secret")

    print("\ncovered: " + ", ".join(covered))
    if failures:
        print(f"\n{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
