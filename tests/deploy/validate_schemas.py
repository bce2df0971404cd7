#!/usr/bin/env python3
"""Validates every rendered overlay of deploy/k8s against Kubernetes' OpenAPI schemas,
offline, strictly (unknown fields are errors), for each Kubernetes version in
KUBERNETES_VERSIONS; custom resources against their CRDs' schemas.

    validate_schemas.py --repo DIR [--cache DIR] [--selftest]

- Built-in kinds: kubernetes-validate (PyPI, pinned below), whose bundled schemas
  come from each release's OpenAPI spec; installed on first run into a venv under
  <repo>/.cache/deploy-schemas/venv.
- Custom resources (Strimzi KafkaTopic, prometheus-operator PrometheusRule,
  ServiceMonitor, PodMonitor): the CRD schemas compiled into the
  @kubernetes-models npm packages (pinned below; types, enums, patterns, required
  fields), installed into <repo>/.cache/deploy-schemas/npm and run by node
  (crd_validate.mjs). CRD schemas allow unknown fields (the API server prunes
  them), which would silently drop a misspelt field, so KNOWN_FIELDS adds a
  structural check: the fields our manifests may use at each level, taken from the
  same packages' types.
- Every overlay must render with kubectl kustomize; every component must be used by
  an overlay (so that it is validated).
--selftest breaks a copy of the rendered objects in ways each layer must catch.

Exit 0 passed, 1 failed, 77 skipped (no kubectl, node or package registry), naming
what is missing.
"""

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys

SKIP = 77
KUBERNETES_VERSIONS = ("1.27.0", "1.30.0")
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
NPM_PACKAGES = ("@kubernetes-models/strimzi-kafka-operator@1.0.1", "@kubernetes-models/prometheus-operator@6.0.0")
CRD_GROUPS = ("kafka.strimzi.io/", "monitoring.coreos.com/")

# Structural check of custom resources: allowed fields per path ("*" = any key
# below, "[]" = each item of a list). From the packages' .d.ts of the CRDs.
KNOWN_FIELDS = {
    "KafkaTopic": {
        "": {"apiVersion", "kind", "metadata", "spec"},
        "spec": {"topicName", "partitions", "replicas", "config"},
        "spec.config": "*",
    },
    "PrometheusRule": {
        "": {"apiVersion", "kind", "metadata", "spec"},
        "spec": {"groups"},
        "spec.groups[]": {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset", "labels"},
        "spec.groups[].rules[]": {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"},
        "spec.groups[].rules[].labels": "*",
        "spec.groups[].rules[].annotations": "*",
    },
    "ServiceMonitor": {
        "": {"apiVersion", "kind", "metadata", "spec"},
        "spec": {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels",
                 "sampleLimit"},
        "spec.selector": {"matchLabels", "matchExpressions"},
        "spec.selector.matchLabels": "*",
        "spec.endpoints[]": {"port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
                             "relabelings", "metricRelabelings"},
    },
    "PodMonitor": {
        "": {"apiVersion", "kind", "metadata", "spec"},
        "spec": {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels",
                 "sampleLimit"},
        "spec.selector": {"matchLabels", "matchExpressions"},
        "spec.selector.matchLabels": "*",
        "spec.podMetricsEndpoints[]": {"port", "portNumber", "targetPort", "path", "scheme", "interval",
                                       "scrapeTimeout", "honorLabels", "relabelings", "metricRelabelings"},
    },
}


class Skip(Exception):
    pass


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kwargs.pop("timeout", 300), **kwargs)


# ---------------------------------------------------------------- tools


def ensure_venv(cache):
    """The venv's python, with kubernetes-validate installed (once)."""
    venv = os.path.join(cache, "venv")
    python = os.path.join(venv, "bin", "python")
    stamp = os.path.join(venv, ".installed")
    if os.path.isfile(stamp) and open(stamp).read().strip() == KUBERNETES_VALIDATE:
        return python
    proc = run([sys.executable, "-m", "venv", "--clear", venv])
    if proc.returncode != 0:
        raise Skip(f"cannot make a venv ({sys.executable} -m venv): {proc.stderr.strip()} "
                   "(Debian package python3-venv)")
    proc = run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", KUBERNETES_VALIDATE])
    if proc.returncode != 0:
        raise Skip(f"pip install {KUBERNETES_VALIDATE} failed (is PyPI reachable?): {proc.stderr.strip()[-500:]}")
    with open(stamp, "w") as f:
        f.write(KUBERNETES_VALIDATE + "\n")
    return python


def ensure_npm(cache):
    node = shutil.which("node")
    npm = shutil.which("npm")
    if not node or not npm:
        raise Skip("node and npm are needed for the CRD schemas (Debian packages nodejs, npm)")
    folder = os.path.join(cache, "npm")
    stamp = os.path.join(folder, ".installed")
    wanted = " ".join(NPM_PACKAGES)
    if os.path.isfile(stamp) and open(stamp).read().strip() == wanted:
        return node, folder
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "package.json"), "w") as f:
        f.write('{"private": true}\n')
    proc = run([npm, "install", "--no-audit", "--no-fund", "--save-exact", *NPM_PACKAGES], cwd=folder)
    if proc.returncode != 0:
        raise Skip(f"npm install {wanted} failed (is the npm registry reachable?): {proc.stderr.strip()[-500:]}")
    with open(stamp, "w") as f:
        f.write(wanted + "\n")
    return node, folder


def kustomize():
    if shutil.which("kubectl") and run(["kubectl", "kustomize", "--help"]).returncode == 0:
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    raise Skip("neither kubectl (>= 1.21, built-in kustomize with components) nor kustomize is on PATH")


# ---------------------------------------------------------------- rendering


def load_yaml_all(text):
    import yaml
    return [d for d in yaml.safe_load_all(text) if d]


def render_overlays(k8s):
    """{overlay: [objects]} for every overlays/*, and problems (unused components)."""
    tool = kustomize()
    renders, problems = {}, []
    overlays_dir = os.path.join(k8s, "overlays")
    used = set()
    for name in sorted(os.listdir(overlays_dir)):
        d = os.path.join(overlays_dir, name)
        kfile = os.path.join(d, "kustomization.yaml")
        if not os.path.isfile(kfile):
            continue
        proc = run(tool + [d])
        if proc.returncode != 0:
            problems.append(f"overlays/{name}: {' '.join(tool)} failed: {proc.stderr.strip()}")
            continue
        renders[f"overlays/{name}"] = load_yaml_all(proc.stdout)
        with open(kfile) as f:
            k = load_yaml_all(f.read())[0]
        used.update(os.path.normpath(os.path.join(d, c)) for c in k.get("components") or [])
    comps = os.path.join(k8s, "components")
    for name in sorted(os.listdir(comps)) if os.path.isdir(comps) else []:
        if os.path.normpath(os.path.join(comps, name)) not in used:
            problems.append(f"components/{name}: no overlay uses it, so it is never rendered nor validated")
    return renders, problems


# ---------------------------------------------------------------- validation


def structural_problems(doc):
    rules = KNOWN_FIELDS.get(doc.get("kind"))
    if rules is None:
        return []
    problems = []

    def walk(value, path):
        allowed = rules.get(path)
        if allowed == "*" or allowed is None:
            return
        if not isinstance(value, dict):
            return
        for key, sub in value.items():
            if key not in allowed:
                problems.append(f"unknown field {(path + '.' if path else '') + key} "
                                f"(known here: {', '.join(sorted(allowed))})")
                continue
            child = (path + "." if path else "") + key
            if key == "metadata" and path == "":
                continue
            if isinstance(sub, list):
                for item in sub:
                    walk(item, child + "[]")
            else:
                walk(sub, child)

    walk(doc, "")
    return problems


def validate_builtin(python, docs, versions):
    """[(index, version, message)] from kubernetes-validate, run in its venv."""
    code = r"""
import json, sys
import kubernetes_validate as kv
from kubernetes_validate.utils import SchemaNotFoundError
docs, versions = json.load(sys.stdin)
out = []
for i, doc in enumerate(docs):
    for v in versions:
        try:
            kv.validate(doc, v, strict=True)
        except SchemaNotFoundError as e:
            out.append([i, v, "no schema: " + e.message])
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.absolute_path)
            out.append([i, v, (path + ": " if path else "") + e.message.splitlines()[0][:300]])
print(json.dumps(out))
"""
    proc = run([python, "-c", code], input=json.dumps([docs, list(versions)]))
    if proc.returncode != 0:
        raise RuntimeError(f"kubernetes-validate failed: {proc.stderr.strip()[-1000:]}")
    return json.loads(proc.stdout)


def validate_crds(node, npm_dir, docs):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crd_validate.mjs")
    proc = run([node, script, npm_dir], input=json.dumps(docs))
    if proc.returncode != 0:
        raise RuntimeError(f"crd_validate.mjs failed: {proc.stderr.strip()[-1000:]}")
    return json.loads(proc.stdout)


def where(doc):
    md = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{md.get('name')}"


def validate_all(tools, renders, quiet=False):
    python, node, npm_dir = tools
    problems, counted = [], 0
    for overlay, docs in renders.items():
        custom = [d for d in docs if str(d.get("apiVersion", "")).startswith(CRD_GROUPS)]
        builtin = [d for d in docs if d not in custom]
        for i, version, message in validate_builtin(python, builtin, KUBERNETES_VERSIONS):
            problems.append(f"{overlay}: {where(builtin[i])} (Kubernetes {version[:-2]}): {message}")
        for doc, message in zip(custom, validate_crds(node, npm_dir, custom) if custom else []):
            if message:
                problems.append(f"{overlay}: {where(doc)} (CRD schema): {message}")
            problems.extend(f"{overlay}: {where(doc)} (structure): {p}" for p in structural_problems(doc))
        counted += len(docs)
        if not quiet:
            print(f"  {overlay}: {len(builtin)} built-in objects x Kubernetes {', '.join(v[:-2] for v in KUBERNETES_VERSIONS)}, "
              f"{len(custom)} custom resources ({', '.join(sorted({d['kind'] for d in custom})) or 'none'})")
    return problems


def find_doc(renders, kind):
    for overlay, docs in renders.items():
        for d in docs:
            if d.get("kind") == kind:
                return overlay, d
    return None, None


def selftest(tools, renders):
    """Each mutation must be reported; returns the problems of the self-test."""
    def container(doc):
        return doc["spec"]["template"]["spec"]["containers"][0]

    cases = [
        ("unknown field in a Deployment's container", "Deployment",
         lambda d: container(d).update({"imagePullPolicyy": "Always"}), "imagePullPolicyy"),
        ("wrong type in a Deployment (replicas as a string)", "Deployment",
         lambda d: d["spec"].update({"replicas": "three"}), "replicas"),
        ("unknown field in a NetworkPolicy", "NetworkPolicy",
         lambda d: d["spec"].update({"ingres": []}), "ingres"),
        ("KafkaTopic partitions as a string", "KafkaTopic",
         lambda d: d["spec"].update({"partitions": "six"}), "partitions"),
        ("KafkaTopic misspelt spec field", "KafkaTopic",
         lambda d: d["spec"].update({"replica": 3}), "replica"),
        ("PrometheusRule 'for' as a number", "PrometheusRule",
         lambda d: d["spec"]["groups"][0]["rules"][0].update({"for": 5}), "for"),
        ("PrometheusRule misspelt rule field", "PrometheusRule",
         lambda d: d["spec"]["groups"][0]["rules"][0].update({"annotation": {}}), "annotation"),
        ("PodMonitor bad interval", "PodMonitor",
         lambda d: d["spec"]["podMetricsEndpoints"][0].update({"interval": "thirty"}), "interval"),
        ("PodMonitor misspelt endpoint field", "PodMonitor",
         lambda d: d["spec"]["podMetricsEndpoints"][0].update({"paht": "/metrics"}), "paht"),
    ]
    # All broken copies in one validation run (each renamed, so that what is
    # reported can be told apart): the validators start once, not once per case.
    problems, broken_by_overlay, named = [], {}, []
    for i, (what, kind, mutate, expect) in enumerate(cases):
        overlay, doc = find_doc(renders, kind)
        if doc is None:
            problems.append(f"selftest: no {kind} rendered, cannot test '{what}'")
            continue
        broken = copy.deepcopy(doc)
        broken["metadata"]["name"] = f"selftest-{i}"
        mutate(broken)
        broken_by_overlay.setdefault(overlay, []).append(broken)
        named.append((i, what, kind, expect))
    found = validate_all(tools, broken_by_overlay, quiet=True)
    for i, what, kind, expect in named:
        mine = [p for p in found if f"{kind}/selftest-{i} (" in p]
        if not any(expect in p for p in mine):
            problems.append(f"selftest: '{what}' was not reported (got: {mine or 'nothing'})")
        else:
            print(f"  selftest: {what}: caught")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--cache", help="default: <repo>/.cache/deploy-schemas")
    parser.add_argument("--selftest", action="store_true")
    args = parser.parse_args()
    repo = os.path.abspath(args.repo)
    cache = os.path.abspath(args.cache or os.path.join(repo, ".cache", "deploy-schemas"))
    try:
        import yaml  # noqa: F401
    except ImportError:
        print("FAILED: python3 cannot import yaml (Debian package python3-yaml)")
        return 1
    try:
        tools = (ensure_venv(cache), *ensure_npm(cache))
        renders, problems = render_overlays(os.path.join(repo, "deploy", "k8s"))
        problems += validate_all(tools, renders)
        if args.selftest and not problems:
            problems += selftest(tools, renders)
    except Skip as e:
        print(f"SKIPPED deploy schemas: {e}")
        return SKIP
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        print(f"FAILED deploy schemas: {e}")
        return 1
    for p in problems:
        print(f"FAIL: {p}")
    print(f"deploy schemas{' selftest' if args.selftest else ''}: "
          f"{'FAILED, ' + str(len(problems)) + ' problem(s)' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
