#!/usr/bin/env python3
"""Checks of deploy/: the Kubernetes manifests against the built binaries, and
the container image's Dockerfile against what the binaries link.

    check_deploy.py --repo DIR --api BIN --worker BIN [--build-dir DIR] CHECK

CHECK is one of:
  render     `kubectl kustomize` renders the base, every overlay and component
  env        every PROFILED_* variable set by the manifests (env, envFrom
             ConfigMaps and Secrets, Secret and ConfigMap keys) and by the
             Dockerfile (ENV) is one that the binary's --help lists, and every
             value that can be read has the type and bounds --help states
  probes     probes are httpGet on /readyz (readiness) and /healthz (liveness)
             at the port the binary listens on (its *_PORT setting, or the
             default --help states), on a non-loopback address; Prometheus
             annotations and Service targetPorts point at that port too
  security   every container (Jobs included) runs non-root with a read-only
             root filesystem, no privilege escalation, all capabilities dropped
             and seccomp RuntimeDefault; no host namespaces; no service links
  lifecycle  replicas, HPA, PDBs, drain arithmetic (grace period > preStop +
             drain deadline), worker replicas <= partitions, resources, tags
  image-libs the runtime stage's packages cover every shared library `ldd`
             reports for the built binaries (dpkg -S), and list nothing unneeded
  image-packages every package the Dockerfile installs exists for bookworm
  image-files the Dockerfile copies what the build makes and the tree holds
  release-build  runs the builder stage's own build command (Release, its
             hardening flags) on this tree into --release-dir: the image's
             binaries, which image-libs then judges instead of --api/--worker
  makefile   `make -f Makefile.docker -n build push` prints the commands
  selftest   each manifest and image check fails on a deliberately broken copy

Exit 0: passed; 1: failed (each problem printed); 77: skipped, with a message
naming what is missing (kubectl for the manifest checks, a bookworm apt index).
"""

import argparse
import contextlib
import copy
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

SKIP = 77
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"}
PROBE_PATHS = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
SANITIZER_RE = re.compile(r"^lib(asan|ubsan|lsan|tsan|hwasan)\.so")
# Runtime-stage packages that are not shared libraries, and why they are there.
NON_LIBRARY_PACKAGES = {"ca-certificates": "CA bundle for TLS to Kafka and PostgreSQL"}


class Skip(Exception):
    pass


def run(cmd, timeout=60, check=False, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, **kwargs)


# ---------------------------------------------------------------- context


class Context:
    """What the checks look at; built once, copied and broken by selftest."""

    def __init__(self, args):
        self.repo = os.path.abspath(args.repo)
        self.build_dir = os.path.abspath(args.build_dir) if args.build_dir else None
        self.binaries = {"profiled-api": args.api, "profiled-worker": args.worker}
        if getattr(args, "import_bin", None):
            self.binaries["profiled-import"] = args.import_bin
        self.release_dir = os.path.abspath(args.release_dir) if getattr(args, "release_dir", None) else None
        self.k8s = os.path.join(self.repo, "deploy", "k8s")
        self.dockerfile_path = os.path.join(self.repo, "deploy", "docker", "Dockerfile")
        self._helps = None
        self._renders = None
        self._dockerfile = None

    # -- the binaries' --help
    @property
    def helps(self):
        if self._helps is None:
            self._helps = {name: parse_help(name, path) for name, path in self.binaries.items()}
        return self._helps

    # -- rendered kustomizations: {relative dir: [documents]}
    def kustomize_dirs(self):
        dirs = []
        for sub in ("base", "overlays", "components"):
            root = os.path.join(self.k8s, sub)
            if sub == "base":
                candidates = [root]
            else:
                candidates = sorted(os.path.join(root, d) for d in os.listdir(root)) if os.path.isdir(root) else []
            for d in candidates:
                if os.path.isfile(os.path.join(d, "kustomization.yaml")):
                    dirs.append(d)
        return dirs

    @property
    def renders(self):
        if self._renders is None:
            self._renders = {}
            tool = kustomize_command()
            if tool is None:
                raise Skip("neither kubectl >= 1.21 (built-in kustomize with components) nor kustomize is on "
                           "PATH: the manifests cannot be rendered; install kubectl >= 1.27 or kustomize >= 5")
            for d in self.kustomize_dirs():
                rel = os.path.relpath(d, self.k8s)
                if rel.startswith("components"):
                    continue  # a Component renders only inside an overlay
                proc = run(tool + [d])
                if proc.returncode != 0:
                    raise RuntimeError(f"{' '.join(tool)} {rel} failed:\n{proc.stderr.strip()}")
                self._renders[rel] = [doc for doc in load_yaml_all(proc.stdout) if doc]
        return self._renders

    @property
    def dockerfile(self):
        if self._dockerfile is None:
            with open(self.dockerfile_path, encoding="utf-8") as f:
                self._dockerfile = parse_dockerfile(f.read())
        return self._dockerfile


def load_yaml_all(text):
    try:
        import yaml
    except ImportError:
        raise RuntimeError("python3 cannot import yaml: install Debian's python3-yaml (or PyYAML for this python3)")
    return list(yaml.safe_load_all(text))


def kustomize_command():
    """kubectl's built-in kustomize when it is new enough for components (kubectl
    1.21 moved to kustomize v4; Debian's kubernetes-client 1.20 has v2), else a
    standalone kustomize, else None."""
    if shutil.which("kubectl"):
        proc = run(["kubectl", "version", "--client", "-o", "json"])
        try:
            minor = int(re.sub(r"\D.*", "", json.loads(proc.stdout)["clientVersion"]["minor"]))
        except (ValueError, KeyError, TypeError):
            minor = 0
        if minor >= 21 and run(["kubectl", "kustomize", "--help"]).returncode == 0:
            return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


# ---------------------------------------------------------------- --help

HELP_LINE = re.compile(r"^  (PROFILED_[A-Z0-9_]+) \((.*)\)\s*$")
BOUNDS = re.compile(r"^(.*?)(?:, )?(-?\d+)\.\.(-?\d+)$")


def parse_help(name, path):
    """{VAR: {"type", "default", "secret", "min", "max"}} from `BIN --help`
    (common/runtime/cfg.c cfg_print_help: "  PROFILED_X (type[, secret|, default D][, a..b])")."""
    if not path or not os.path.isfile(path):
        raise RuntimeError(f"{name}: no built binary at {path!r}")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    proc = run([path, "--help"], timeout=30, env=env)
    text = proc.stdout + proc.stderr
    variables = {}
    for line in text.splitlines():
        m = HELP_LINE.match(line)
        if not m:
            continue
        var, inner = m.group(1), m.group(2)
        entry = {"type": inner.split(",")[0].strip(), "default": None, "secret": False, "min": None, "max": None}
        rest = inner[len(entry["type"]):]
        b = BOUNDS.match(rest)
        if b:
            rest, entry["min"], entry["max"] = b.group(1), int(b.group(2)), int(b.group(3))
        rest = rest.strip()
        if rest.startswith(","):
            rest = rest[1:].strip()
        if rest == "secret":
            entry["secret"] = True
        elif rest.startswith("default "):
            entry["default"] = rest[len("default "):]
        variables[var] = entry
    if not variables:
        raise RuntimeError(f"{name} --help ({path}) lists no PROFILED_* variable (expected lines "
                           f"'  PROFILED_X (type, ...)'); is it still a stub? It printed:\n{text.strip()}")
    return variables


DURATION_UNITS = {"": 1, "ms": 1, "s": 1000, "m": 60000, "h": 3600000}
SIZE_UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30, "k": 1024, "K": 1024, "M": 1 << 20,
              "G": 1 << 30}
BOOLS = {"true", "1", "yes", "on", "false", "0", "no", "off"}


def value_problem(var, spec, value):
    """None if `value` reads as common/runtime/cfg.c would read it for `spec`, else why not."""
    kind = spec["type"]
    if kind == "string":
        return None
    if kind == "boolean":
        return None if value.lower() in BOOLS else f"{var}={value!r}: not a boolean (true/false/1/0/yes/no/on/off)"
    units = {"integer": {"": 1}, "duration": DURATION_UNITS, "size": SIZE_UNITS}.get(kind)
    if units is None:
        return f"{var}: --help states an unknown type {kind!r}"
    m = re.fullmatch(r"([+-]?\d+)(\D*)", value)
    if not m or m.group(2) not in units:
        return f"{var}={value!r}: not a {kind} (units: {', '.join(u for u in units if u) or 'none'})"
    number = int(m.group(1)) * units[m.group(2)]
    if spec["min"] is not None and not spec["min"] <= number <= spec["max"]:
        return f"{var}={value!r}: outside {spec['min']}..{spec['max']} stated by --help"
    return None


# ---------------------------------------------------------------- manifests


def pod_spec(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec") or {}


def workloads(docs):
    for doc in docs:
        if doc.get("kind") in WORKLOAD_KINDS:
            yield doc, pod_spec(doc)


def all_containers(spec):
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            yield c


def where(doc, container=None):
    s = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    return f"{s} container {container.get('name')}" if container else s


def find(docs, kind, name, namespace=None):
    for doc in docs:
        md = doc.get("metadata") or {}
        if doc.get("kind") == kind and md.get("name") == name and (namespace is None or md.get("namespace") == namespace):
            return doc
    return None


def binary_of(container):
    cmd = container.get("command") or []
    return os.path.basename(cmd[0]) if cmd else None


def secret_keys(secret):
    return set((secret.get("data") or {}).keys()) | set((secret.get("stringData") or {}).keys())


def secret_value(secret, key):
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    return None  # base64 data: not read back here


def effective_env(docs, doc, container, errors):
    """{VAR: (value or None when unreadable, source)} as the kubelet would set it:
    envFrom in order (later wins), then env (wins over envFrom)."""
    ns = (doc.get("metadata") or {}).get("namespace")
    out = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            name = src["configMapRef"].get("name")
            cm = find(docs, "ConfigMap", name, ns)
            if cm is None:
                if not src["configMapRef"].get("optional"):
                    errors.append(f"{where(doc, container)}: envFrom ConfigMap {name} is not in the manifests")
                continue
            for k, v in (cm.get("data") or {}).items():
                out[prefix + k] = (str(v), f"ConfigMap {name}")
        elif "secretRef" in src:
            name = src["secretRef"].get("name")
            sec = find(docs, "Secret", name, ns)
            if sec is None:
                errors.append(f"{where(doc, container)}: envFrom Secret {name} is not in the manifests, "
                              "so the variables it sets cannot be checked; use env[].valueFrom.secretKeyRef")
                continue
            for k in secret_keys(sec):
                out[prefix + k] = (secret_value(sec, k), f"Secret {name}")
    for e in container.get("env") or []:
        if "value" in e:
            out[e["name"]] = (str(e["value"]), "env")
        elif "valueFrom" in e:
            vf = e["valueFrom"]
            value, source = None, "env valueFrom"
            if "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                cm = find(docs, "ConfigMap", ref.get("name"), ns)
                value = None if cm is None else (cm.get("data") or {}).get(ref.get("key"))
                source = f"ConfigMap {ref.get('name')} key {ref.get('key')}"
            elif "secretKeyRef" in vf:
                source = f"Secret {vf['secretKeyRef'].get('name')} key {vf['secretKeyRef'].get('key')}"
            out[e["name"]] = (value, source)
        else:
            out[e["name"]] = ("", "env")
    return out


def check_render(ctx):
    problems = []
    for rel, docs in ctx.renders.items():
        kinds = sorted({d.get("kind") for d in docs})
        print(f"  {rel}: {len(docs)} objects ({', '.join(kinds)})")
        if not docs:
            problems.append(f"{rel}: rendered no object")
    for d in ctx.kustomize_dirs():
        rel = os.path.relpath(d, ctx.k8s)
        if rel.startswith("components") and not any(
                component_used(ctx, o, rel) for o in ctx.kustomize_dirs() if "overlays" in o):
            problems.append(f"{rel}: no overlay includes this component, so nothing renders it")
    return problems


def component_used(ctx, overlay_dir, component_rel):
    with open(os.path.join(overlay_dir, "kustomization.yaml"), encoding="utf-8") as f:
        k = load_yaml_all(f.read())[0] or {}
    target = os.path.join(ctx.k8s, component_rel)
    return any(os.path.normpath(os.path.join(overlay_dir, c)) == target for c in k.get("components") or [])


def check_env(ctx):
    problems = []
    helps = ctx.helps
    union = {}
    for h in helps.values():
        union.update(h)
    for rel, docs in ctx.renders.items():
        for doc, spec in workloads(docs):
            for c in all_containers(spec):
                binary = binary_of(c)
                if binary not in helps:
                    problems.append(f"{rel}: {where(doc, c)}: command {c.get('command')!r} runs none of "
                                    f"{sorted(helps)}; set command: explicitly to one of them")
                    continue
                env = effective_env(docs, doc, c, problems)
                for var, (value, source) in sorted(env.items()):
                    if not var.startswith("PROFILED_"):
                        continue
                    spec_ = helps[binary].get(var)
                    if spec_ is None:
                        problems.append(f"{rel}: {where(doc, c)}: {var} (from {source}) is not listed by "
                                        f"{binary} --help")
                    elif spec_["secret"] and not source.startswith("Secret "):
                        problems.append(f"{rel}: {where(doc, c)}: {var} is secret (--help) but comes from "
                                        f"{source}; take it from a Secret")
                    elif value is not None:
                        p = value_problem(var, spec_, value)
                        if p:
                            problems.append(f"{rel}: {where(doc, c)}: {p} (from {source})")
        problems += secret_references(rel, docs)
        # Keys of ConfigMaps and Secrets, whoever consumes them: a misspelt key is
        # silently ignored by every binary.
        for doc in docs:
            if doc.get("kind") == "ConfigMap":
                keys = (doc.get("data") or {}).keys()
            elif doc.get("kind") == "Secret":
                keys = secret_keys(doc)
            else:
                continue
            for k in keys:
                if k.startswith("PROFILED_") and k not in union:
                    problems.append(f"{rel}: {where(doc)}: key {k} is listed by no binary's --help")
                elif k.startswith("PROFILED_") and union[k]["secret"] and doc.get("kind") == "ConfigMap":
                    problems.append(f"{rel}: {where(doc)}: {k} is secret (--help) but sits in a ConfigMap")
    for var, value in ctx.dockerfile["env"].items():
        if var.startswith("PROFILED_"):
            if var not in union:
                problems.append(f"Dockerfile: ENV {var} is listed by no binary's --help")
            else:
                p = value_problem(var, union[var], value)
                if p:
                    problems.append(f"Dockerfile: ENV {p}")
    return problems


def secret_references(rel, docs):
    """Where a render carries the Secret (the example overlays), every key that a
    container or volume takes from it without `optional: true` must be there."""
    problems = []
    for doc, spec in workloads(docs):
        ns = (doc.get("metadata") or {}).get("namespace")
        wanted = []
        for c in all_containers(spec):
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    wanted.append((ref.get("name"), ref.get("key"), f"{where(doc, c)} env {e['name']}"))
        for v in spec.get("volumes") or []:
            sec = v.get("secret")
            if sec and not sec.get("optional"):
                for item in sec.get("items") or []:
                    wanted.append((sec.get("secretName"), item.get("key"), f"{where(doc)} volume {v['name']}"))
        for name, key, user in wanted:
            secret = find(docs, "Secret", name, ns)
            if secret is not None and key not in secret_keys(secret):
                problems.append(f"{rel}: {user} needs key {key} of Secret {name}, which lacks it")
    return problems


def listen_vars(help_vars):
    """(port var, addr var) of the binary's HTTP listener: its one *_PORT setting."""
    ports = sorted(v for v in help_vars if v.endswith("_PORT"))
    if len(ports) != 1:
        return None, None
    port = ports[0]
    addr = port[: -len("_PORT")] + "_ADDR"
    return port, addr if addr in help_vars else None


def container_port(container, port):
    """The numeric port a probe or targetPort names (a number or a port name)."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p.get("containerPort"))
    return None


def check_probes(ctx):
    problems = []
    helps = ctx.helps
    for rel, docs in ctx.renders.items():
        for doc, spec in workloads(docs):
            serving = doc.get("kind") != "Job" and doc.get("kind") != "CronJob"
            for c in all_containers(spec):
                binary = binary_of(c)
                if binary not in helps:
                    problems.append(f"{rel}: {where(doc, c)}: runs no known binary (command {c.get('command')!r})")
                    continue
                port_var, addr_var = listen_vars(helps[binary])
                if port_var is None:
                    problems.append(f"{binary} --help lists no single *_PORT setting; cannot tell its listen port")
                    continue
                env = effective_env(docs, doc, c, [])
                listen = env.get(port_var, (helps[binary][port_var]["default"], "default"))[0]
                listen = int(listen) if listen and str(listen).isdigit() else None
                if not serving:
                    for probe in PROBE_PATHS:
                        if c.get(probe):
                            problems.append(f"{rel}: {where(doc, c)}: a run-to-completion container has a {probe}")
                    continue
                if addr_var:
                    addr = env.get(addr_var, (helps[binary][addr_var]["default"], "default"))[0] or ""
                    if addr.startswith("127.") or addr in ("localhost", "::1", "[::1]", ""):
                        problems.append(f"{rel}: {where(doc, c)}: {addr_var}={addr!r} listens on loopback; "
                                        "probes and scrapes come from outside the pod (set 0.0.0.0)")
                declared = [int(p.get("containerPort")) for p in c.get("ports") or []]
                if listen not in declared:
                    problems.append(f"{rel}: {where(doc, c)}: {binary} listens on {port_var}={listen} but the "
                                    f"container declares ports {declared}")
                for probe in ("readinessProbe", "livenessProbe"):
                    if not c.get(probe):
                        problems.append(f"{rel}: {where(doc, c)}: no {probe}")
                for probe, expected in PROBE_PATHS.items():
                    p = c.get(probe)
                    if not p:
                        continue
                    http = p.get("httpGet")
                    if not http:
                        problems.append(f"{rel}: {where(doc, c)}: {probe} is not httpGet; {binary} serves "
                                        f"{expected} over HTTP")
                        continue
                    if http.get("path") != expected:
                        problems.append(f"{rel}: {where(doc, c)}: {probe} path {http.get('path')!r}; "
                                        f"expected {expected} ({binary} serves /healthz and /readyz)")
                    got = container_port(c, http.get("port"))
                    if got != listen:
                        problems.append(f"{rel}: {where(doc, c)}: {probe} port {http.get('port')!r} -> {got}, "
                                        f"but {binary} listens on {port_var}={listen}")
                ann = ((doc.get("spec") or {}).get("template") or {}).get("metadata", {}).get("annotations") or {}
                if ann.get("prometheus.io/scrape") == "true":
                    if str(ann.get("prometheus.io/port")) != str(listen):
                        problems.append(f"{rel}: {where(doc)}: prometheus.io/port {ann.get('prometheus.io/port')!r}"
                                        f" but {binary} serves /metrics on {listen}")
                    if ann.get("prometheus.io/path", "/metrics") != "/metrics":
                        problems.append(f"{rel}: {where(doc)}: prometheus.io/path {ann.get('prometheus.io/path')!r}"
                                        "; the binaries serve /metrics")
                else:
                    problems.append(f"{rel}: {where(doc)}: no prometheus.io/scrape: \"true\" annotation")
        problems += check_services(rel, docs)
    return problems


def check_services(rel, docs):
    problems = []
    for svc in (d for d in docs if d.get("kind") == "Service"):
        selector = (svc.get("spec") or {}).get("selector") or {}
        ns = svc.get("metadata", {}).get("namespace")
        pods = [(doc, spec) for doc, spec in workloads(docs)
                if doc.get("metadata", {}).get("namespace") == ns and selector and
                all(((doc.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels", {}).get(k) == v
                    for k, v in selector.items())]
        if not pods:
            problems.append(f"{rel}: {where(svc)}: its selector {selector} matches no workload")
            continue
        for port in svc["spec"].get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for doc, spec in pods:
                if not any(container_port(c, target) in [p.get("containerPort") for p in c.get("ports") or []]
                           for c in spec.get("containers") or []):
                    problems.append(f"{rel}: {where(svc)}: targetPort {target!r} is no container port of {where(doc)}")
    return problems


def check_security(ctx):
    problems = []
    uid = ctx.dockerfile["user_uid"]
    for rel, docs in ctx.renders.items():
        for doc, spec in workloads(docs):
            psc = spec.get("securityContext") or {}
            for key in ("hostNetwork", "hostPID", "hostIPC"):
                if spec.get(key):
                    problems.append(f"{rel}: {where(doc)}: {key} is set")
            if spec.get("automountServiceAccountToken") is not False:
                problems.append(f"{rel}: {where(doc)}: automountServiceAccountToken is not false "
                                "(profiled never calls the Kubernetes API)")
            if spec.get("enableServiceLinks") is not False:
                problems.append(f"{rel}: {where(doc)}: enableServiceLinks is not false: a Service named "
                                "profiled-* injects PROFILED_*_PORT=tcp://... variables into the pod")
            containers = list(all_containers(spec))
            if not containers:
                problems.append(f"{rel}: {where(doc)}: no container")
            for c in containers:
                csc = c.get("securityContext") or {}

                def eff(key):
                    return csc[key] if key in csc else psc.get(key)

                w = f"{rel}: {where(doc, c)}"
                if eff("runAsNonRoot") is not True:
                    problems.append(f"{w}: runAsNonRoot is not true")
                run_as = eff("runAsUser")
                if not isinstance(run_as, int) or run_as == 0:
                    problems.append(f"{w}: runAsUser {run_as!r} is not a non-zero uid")
                elif uid is not None and run_as != uid:
                    problems.append(f"{w}: runAsUser {run_as} differs from the image's USER {uid}")
                if csc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{w}: readOnlyRootFilesystem is not true")
                if csc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{w}: allowPrivilegeEscalation is not false")
                if csc.get("privileged"):
                    problems.append(f"{w}: privileged")
                caps = csc.get("capabilities") or {}
                if "ALL" not in (caps.get("drop") or []):
                    problems.append(f"{w}: capabilities.drop lacks ALL")
                if caps.get("add"):
                    problems.append(f"{w}: capabilities.add {caps['add']}")
                seccomp = (eff("seccompProfile") or {}).get("type")
                if seccomp != "RuntimeDefault":
                    problems.append(f"{w}: seccompProfile type {seccomp!r}, not RuntimeDefault")
    return problems


def seconds(value):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(value or ""))
    if not m:
        return None
    return int(m.group(1)) * {None: 1, "ms": 1, "s": 1000, "m": 60000, "h": 3600000}[m.group(2)] / 1000.0


def prestop_seconds(container):
    pre = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre:
        return float(pre["sleep"].get("seconds", 0))
    cmd = (pre.get("exec") or {}).get("command") or []
    if len(cmd) == 2 and os.path.basename(cmd[0]) == "sleep":
        return float(cmd[1])
    return 0.0 if not pre else None


def check_lifecycle(ctx):
    problems = []
    helps = ctx.helps
    for rel, docs in ctx.renders.items():
        by_binary = {}
        for doc, spec in workloads(docs):
            for c in spec.get("containers") or []:
                if not (c.get("resources") or {}).get("requests") or not (c["resources"].get("limits") or {}).get(
                        "memory"):
                    problems.append(f"{rel}: {where(doc, c)}: needs resources.requests and a memory limit")
                image = c.get("image", "")
                tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None
                if rel.startswith("overlays") and (tag is None or tag == "latest") and "@" not in image:
                    problems.append(f"{rel}: {where(doc, c)}: image {image!r} is not pinned to a tag")
                if doc.get("kind") == "Deployment":
                    by_binary.setdefault(binary_of(c), []).append((doc, spec, c))
        api = by_binary.get("profiled-api", [])
        worker = by_binary.get("profiled-worker", [])
        if len(api) != 1 or len(worker) != 1:
            problems.append(f"{rel}: expected one Deployment running profiled-api and one running profiled-worker, "
                            f"found {len(api)} and {len(worker)}")
            continue
        for (doc, spec, c), binary in ((api[0], "profiled-api"), (worker[0], "profiled-worker")):
            env = effective_env(docs, doc, c, [])
            helps_b = helps[binary]
            drain = None
            if "PROFILED_SHUTDOWN_DEADLINE" in helps_b:
                drain = seconds(env.get("PROFILED_SHUTDOWN_DEADLINE",
                                        (helps_b["PROFILED_SHUTDOWN_DEADLINE"]["default"], ""))[0])
            if drain is None:
                problems.append(f"{rel}: {where(doc)}: cannot read {binary}'s PROFILED_SHUTDOWN_DEADLINE")
                continue
            grace = spec.get("terminationGracePeriodSeconds", 30)
            pre = prestop_seconds(c)
            if pre is None:
                problems.append(f"{rel}: {where(doc, c)}: preStop is not a plain sleep; cannot bound it")
                continue
            extra = 0.0
            if binary == "profiled-worker" and "PROFILED_BATCH_MAX_WAIT" in helps_b:
                extra = seconds(env.get("PROFILED_BATCH_MAX_WAIT",
                                        (helps_b["PROFILED_BATCH_MAX_WAIT"]["default"], ""))[0]) or 0.0
            if not grace > pre + drain + extra:
                problems.append(f"{rel}: {where(doc)}: terminationGracePeriodSeconds {grace} is not more than "
                                f"preStop {pre:g}s + drain deadline {drain:g}s" +
                                (f" + batch wait {extra:g}s" if extra else "") + ": SIGKILL would cut the drain")
            if binary == "profiled-api":
                if pre < 1:
                    problems.append(f"{rel}: {where(doc, c)}: no preStop sleep: the pod would stop listening while "
                                    "endpoints still route to it")
                request = env.get("PROFILED_REQUEST_DEADLINE", (None, ""))[0]
                if request is None and "PROFILED_REQUEST_DEADLINE" in helps_b:
                    request = helps_b["PROFILED_REQUEST_DEADLINE"]["default"]
                if request is not None and seconds(request) is not None and drain < seconds(request):
                    problems.append(f"{rel}: {where(doc)}: drain deadline {drain:g}s is shorter than the request "
                                    f"deadline {seconds(request):g}s: a slow in-flight request would be cut")
        # api: replicas, rollout, spread, HPA, PDB
        doc, spec, c = api[0]
        if (doc["spec"].get("replicas") or 1) < 2:
            problems.append(f"{rel}: {where(doc)}: fewer than 2 replicas")
        ru = (doc["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        if str(ru.get("maxUnavailable", "25%")) not in ("0", "0%"):
            problems.append(f"{rel}: {where(doc)}: rollingUpdate.maxUnavailable is not 0")
        if not spec.get("topologySpreadConstraints"):
            problems.append(f"{rel}: {where(doc)}: no topologySpreadConstraints")
        hpas = [d for d in docs if d.get("kind") == "HorizontalPodAutoscaler" and
                (d["spec"].get("scaleTargetRef") or {}).get("name") == doc["metadata"]["name"]]
        if len(hpas) != 1:
            problems.append(f"{rel}: {where(doc)}: expected one HorizontalPodAutoscaler, found {len(hpas)}")
        else:
            h = hpas[0]
            if not h["apiVersion"].startswith("autoscaling/v2") or (h["spec"].get("minReplicas") or 1) < 2:
                problems.append(f"{rel}: {where(h)}: needs autoscaling/v2 and minReplicas >= 2")
            if not any(m.get("type") == "Resource" and m["resource"].get("name") == "cpu"
                       for m in h["spec"].get("metrics") or []):
                problems.append(f"{rel}: {where(h)}: does not scale on CPU")
            if not (c.get("resources") or {}).get("requests", {}).get("cpu"):
                problems.append(f"{rel}: {where(doc, c)}: CPU-based HPA needs a CPU request")
        # worker: replicas <= partitions of the command topic, when the topic is here
        wdoc = worker[0][0]
        topic = effective_env(docs, wdoc, worker[0][2], []).get("PROFILED_KAFKA_TOPIC", (None, ""))[0]
        if topic is None and "PROFILED_KAFKA_TOPIC" in helps["profiled-worker"]:
            topic = helps["profiled-worker"]["PROFILED_KAFKA_TOPIC"]["default"]
        for kt in (d for d in docs if d.get("kind") == "KafkaTopic"):
            name = kt["spec"].get("topicName") or kt["metadata"]["name"]
            if name == topic and (wdoc["spec"].get("replicas") or 1) > kt["spec"].get("partitions", 1):
                problems.append(f"{rel}: {where(wdoc)}: {wdoc['spec'].get('replicas')} replicas but topic {name} "
                                f"has {kt['spec'].get('partitions')} partitions: the surplus would sit idle")
        topics = {(kt["spec"].get("topicName") or kt["metadata"]["name"]) for kt in docs if kt.get("kind") == "KafkaTopic"}
        if topics:
            env = effective_env(docs, wdoc, worker[0][2], [])
            for var in ("PROFILED_KAFKA_TOPIC", "PROFILED_KAFKA_DLQ_TOPIC"):
                value = env.get(var, (None, ""))[0]
                if value is None and var in helps["profiled-worker"]:
                    value = helps["profiled-worker"][var]["default"]
                if value and value not in topics:
                    problems.append(f"{rel}: {var}={value} but the KafkaTopics are {sorted(topics)}")
        # PDBs select exactly the api and worker pods
        for d, _, _ in (api[0], worker[0]):
            labels = d["spec"]["template"]["metadata"].get("labels") or {}
            pdbs = [p for p in docs if p.get("kind") == "PodDisruptionBudget" and
                    all(labels.get(k) == v for k, v in ((p["spec"].get("selector") or {}).get("matchLabels") or {}).items())]
            if len(pdbs) != 1:
                problems.append(f"{rel}: {where(d)}: expected one PodDisruptionBudget selecting it, found {len(pdbs)}")
        jobs = [d for d, s in workloads(docs) if d.get("kind") == "Job" and
                any(c.get("command", [])[1:2] == ["migrate"] and binary_of(c) == "profiled-worker"
                    for c in s.get("containers") or [])]
        if len(jobs) != 1:
            problems.append(f"{rel}: expected one Job running `profiled-worker migrate`, found {len(jobs)}")
    return problems


# ---------------------------------------------------------------- Dockerfile


def parse_dockerfile(text):
    """Stages with their apt-get install lists, ENV, USER and COPY lines."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    args, stages, env, user_uid = {}, [], {}, None
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG":
            name, _, default = rest.partition("=")
            if default:
                args.setdefault(name.strip(), default.strip().strip('"'))
        elif word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            parent = next((s for s in stages if s["name"] == image), None)
            image = parent["image"] if parent else image  # FROM an earlier stage
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append({"name": name, "image": image, "packages": [], "copies": [], "run": []})
        elif word == "RUN":
            stages[-1]["run"].append(rest)
            stages[-1]["packages"] += apt_packages(rest)
        elif word == "COPY":
            stages[-1]["copies"].append(shlex.split(rest))
        elif word == "ENV" and stages and stages[-1]["name"] == "runtime":
            for token in shlex.split(rest):
                k, _, v = token.partition("=")
                env[k] = v
        elif word == "USER" and stages and stages[-1]["name"] == "runtime":
            uid = rest.split(":")[0].strip()
            user_uid = int(uid) if uid.isdigit() else None
    return {"args": args, "stages": {s["name"]: s for s in stages}, "env": env, "user_uid": user_uid}


def apt_packages(command):
    packages = []
    tokens = shlex.split(command)
    for i, tok in enumerate(tokens):
        if tok == "install" and i > 0 and tokens[i - 1] in ("apt-get", "apt"):
            for t in tokens[i + 1:]:
                if t in ("&&", "||", ";", "|") or t.endswith(";"):
                    break
                if not t.startswith("-"):
                    packages.append(t)
    return packages


def dpkg_owners(paths):
    """{path: Debian package owning it}, trying the /usr-merged twin of a path
    that dpkg knows under the other spelling. One dpkg -S call per round."""
    def twins(p):
        out = [p, os.path.realpath(p)]
        for q in list(out):
            if q.startswith("/usr/lib/"):
                out.append(q[len("/usr"):])
            elif q.startswith(("/lib/", "/lib64/")):
                out.append("/usr" + q)
        return list(dict.fromkeys(out))

    owners = {}
    for round_ in range(4):
        ask = {}
        for p in paths:
            if p not in owners:
                alts = twins(p)
                if round_ < len(alts):
                    ask[alts[round_]] = p
        if not ask:
            break
        proc = run(["dpkg", "-S"] + sorted(ask))
        for line in proc.stdout.splitlines():
            pkgs, _, path = line.partition(": ")
            if path in ask:
                owners[ask[path]] = pkgs.split(",")[0].split(":")[0].strip()
    return owners


_NEEDED = {}


def needed(path):
    if path in _NEEDED:
        return _NEEDED[path]
    proc = run(["readelf", "-d", "-W", path])
    if proc.returncode != 0:
        raise RuntimeError(f"readelf -d {path}: {proc.stderr.strip()}")
    _NEEDED[path] = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", proc.stdout)
    return _NEEDED[path]


def ldd(path):
    proc = run(["ldd", path])
    if proc.returncode != 0:
        raise RuntimeError(f"ldd {path}: {proc.stderr.strip() or proc.stdout.strip()}")
    libs = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        m = re.match(r"(\S+) => (\S+) \(", line)
        if m:
            if m.group(2) == "not":
                raise RuntimeError(f"ldd {path}: {line}")
            libs[m.group(1)] = m.group(2)
            continue
        m = re.match(r"(/\S+) \(", line)
        if m:
            libs[os.path.basename(m.group(1))] = m.group(1)
    return libs


_CLOSURES = {}


def dependency_closure(roots):
    """Packages apt installs for `roots`: Depends and Pre-Depends, recursively,
    the first of each set of alternatives (what apt picks when nothing is installed)."""
    if not roots:
        return set()
    key = frozenset(roots)
    if key not in _CLOSURES:
        _CLOSURES[key] = _dependency_closure(roots)
    return _CLOSURES[key]


def _dependency_closure(roots):
    proc = run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances"] + sorted(roots), timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"apt-cache depends failed: {proc.stderr.strip()}")
    graph, node, in_alternatives = {}, None, False
    for line in proc.stdout.splitlines():
        if not line.startswith(" "):
            node = line.strip()
            graph.setdefault(node, [])
            in_alternatives = False
            continue
        m = re.match(r"\s*(\|)?(PreDepends|Depends): (\S+)", line)
        if not m or node is None:
            continue
        if not in_alternatives:
            graph[node].append(m.group(3).strip("<>"))
        in_alternatives = bool(m.group(1))
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo += graph.get(p, [])
    return seen


def essential_packages():
    proc = run(["dpkg-query", "-W", "-f=${Essential} ${Package}\\n"])
    return {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("yes ")}


def dynamic_symbols(path, defined):
    flag = "--defined-only" if defined else "--undefined-only"
    proc = run(["nm", "-D", flag, path])
    if proc.returncode != 0:
        raise RuntimeError(f"nm -D {path}: {proc.stderr.strip()}")
    return {line.split()[-1].split("@")[0] for line in proc.stdout.splitlines() if line.strip()}


_LIBRARY_PACKAGES = {}


def library_packages(binaries):
    key = tuple(sorted(binaries.items()))
    if key not in _LIBRARY_PACKAGES:
        _LIBRARY_PACKAGES[key] = _library_packages(binaries)
    owners, direct, notes = _LIBRARY_PACKAGES[key]
    return copy.deepcopy(owners), set(direct), list(notes)


def _library_packages(binaries):
    """{package: set of sonames} for the libraries the image's binaries load.

    The binaries under test may be a Debug build, which differs from the image's
    Release build in two ways, both handled here:
    - it links the sanitizer runtimes: those, and what only they load, are left
      out (noted);
    - Debian's gcc links with --as-needed except under -fsanitize, so a Release
      binary keeps only the libraries it takes a symbol from: a NEEDED library
      that defines none of the binary's imported symbols is left out (noted).
    `direct` = sonames the Release binaries would name themselves."""
    owners, direct, notes, paths = {}, set(), [], {}
    for name, path in binaries.items():
        resolved = ldd(path)
        imported = dynamic_symbols(path, defined=False)
        todo = []
        for so in needed(path):
            if SANITIZER_RE.match(so):
                notes.append(f"{name}: {so} is a sanitizer runtime of this Debug build; the image builds Release")
            elif so not in resolved:
                raise RuntimeError(f"ldd {path} does not resolve {so}")
            elif imported & dynamic_symbols(resolved[so], defined=True):
                todo.append(so)
                direct.add(so)
            else:
                notes.append(f"{name}: links {so} but takes no symbol from it; a Release link (--as-needed) drops it")
        seen = set()
        while todo:
            so = todo.pop()
            if so in seen:
                continue
            seen.add(so)
            if so not in resolved:
                raise RuntimeError(f"ldd {path} does not resolve {so}")
            lib_path = resolved[so]
            paths[lib_path] = paths.get(lib_path, set()) | {so}
            todo += needed(lib_path)
        rest = sorted(so for so in set(resolved) - seen
                      if so != "linux-vdso.so.1" and not so.startswith("ld-linux") and not SANITIZER_RE.match(so))
        if rest:
            notes.append(f"{name}: ldd also lists {len(rest)} libraries that only those left out load: "
                         + ", ".join(rest))
    by_path = dpkg_owners(list(paths))
    for lib_path, sonames in paths.items():
        if lib_path not in by_path:
            raise RuntimeError(f"dpkg -S: no package owns {lib_path} ({', '.join(sorted(sonames))})")
        owners.setdefault(by_path[lib_path], set()).update(sonames)
    return owners, direct, notes


RELEASE_PREFIX = "/src/build/release/"


def release_binaries(ctx):
    """{name: path} of the binaries the runtime stage copies, inside --release-dir
    (built by release-build), or None when there is no such build."""
    if not ctx.release_dir:
        return None
    out = {}
    for args in ctx.dockerfile["stages"].get("runtime", {}).get("copies", []):
        srcs = [a for a in args if a.startswith(RELEASE_PREFIX)]
        for src in srcs:
            out[os.path.basename(src)] = os.path.join(ctx.release_dir, src[len(RELEASE_PREFIX):])
    missing = [p for p in out.values() if not os.path.isfile(p)]
    if missing:
        raise RuntimeError(f"no Release build at {', '.join(missing)}: deploy_release_build failed or did not run")
    return out


def check_release_build(ctx):
    """Runs the builder stage's `cmake` RUN line on this tree, with the stage's
    ARG defaults, into --release-dir instead of build/release."""
    if not ctx.release_dir:
        return ["release-build needs --release-dir"]
    builder = ctx.dockerfile["stages"].get("builder")
    runs = [r for r in (builder or {}).get("run", []) if "cmake" in r and "build/release" in r]
    if len(runs) != 1:
        return [f"Dockerfile: expected one RUN with cmake ... build/release in the builder stage, found {len(runs)}"]
    command = runs[0].replace("build/release", shlex.quote(ctx.release_dir))
    env = dict(os.environ, **ctx.dockerfile["args"])
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    env["ASAN_OPTIONS"] = "detect_leaks=0"
    print(f"  $ {command}")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=ctx.repo, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    tail = "\n".join(proc.stdout.splitlines()[-40:])
    if proc.returncode != 0:
        return [f"the image's build command failed (exit {proc.returncode}); the image would not build:\n{tail}"]
    for name, path in release_binaries(ctx).items():
        print(f"  built {name}: {path}")
    return []


def check_image_libs(ctx):
    problems = []
    stage = ctx.dockerfile["stages"].get("runtime")
    if stage is None:
        return ["Dockerfile: no stage named runtime"]
    listed = set(stage["packages"])
    if not listed:
        return ["Dockerfile: the runtime stage installs no package"]
    binaries = release_binaries(ctx)
    if binaries:
        print(f"  judging the Release build the image ships: {', '.join(binaries.values())}")
    else:
        binaries = ctx.binaries
        print("  no --release-dir: judging the binaries under test")
    owners, direct, notes = library_packages(binaries)
    for n in sorted(set(notes)):
        print(f"  note: {n}")
    essential = essential_packages()
    base = dependency_closure(essential)
    installed = dependency_closure(listed)
    for pkg, sonames in sorted(owners.items()):
        libs = ", ".join(sorted(sonames))
        is_direct = bool(sonames & direct)
        if pkg in listed:
            how = "listed"
        elif pkg in installed and not is_direct:
            how = "dependency of a listed package"
        elif pkg in base:
            how = "in bookworm-slim's essential set (Essential: yes packages and their dependencies)"
        elif pkg in installed:
            problems.append(f"runtime stage: {pkg} ({libs}) is linked by the binaries themselves but only comes "
                            "as another package's dependency; list it")
            continue
        else:
            problems.append(f"runtime stage: nothing installs {pkg}, which provides {libs}")
            continue
        print(f"  {pkg:28} {libs}: {how}")
    for pkg in sorted(listed - set(owners)):
        if pkg in NON_LIBRARY_PACKAGES:
            print(f"  {pkg:28} listed: {NON_LIBRARY_PACKAGES[pkg]}")
        else:
            problems.append(f"runtime stage: {pkg} provides no library the binaries load; drop it "
                            "(or say why in NON_LIBRARY_PACKAGES)")
    return problems


def apt_policies(packages):
    """{package: its `apt-cache policy` block}; a package apt does not know has none."""
    if not packages:
        return {}
    proc = run(["apt-cache", "policy"] + list(packages), timeout=120)
    blocks, current = {}, None
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\S+):$", line)
        if m:
            current = m.group(1)
            blocks[current] = ""
        elif current:
            blocks[current] += line + "\n"
    return blocks


def check_image_packages(ctx):
    codename = ""
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release", encoding="utf-8") as f:
            m = re.search(r"^VERSION_CODENAME=(\S+)", f.read(), re.M)
            codename = m.group(1) if m else ""
    if codename != "bookworm":
        raise Skip(f"this machine is Debian {codename or '?'}, not bookworm: its apt index cannot say what "
                   "bookworm has")
    lists = "/var/lib/apt/lists"
    if not any("Packages" in f for f in (os.listdir(lists) if os.path.isdir(lists) else [])):
        raise RuntimeError(f"apt has no package lists in {lists}: run apt-get update (as root) first")
    problems = []
    for name, stage in ctx.dockerfile["stages"].items():
        if "bookworm" not in stage["image"]:
            problems.append(f"Dockerfile stage {name}: FROM {stage['image']} is not a bookworm image")
        policies = apt_policies(stage["packages"])
        for pkg in stage["packages"]:
            text = policies.get(pkg, "")
            cand = re.search(r"Candidate: (\S+)", text)
            from_bookworm = re.search(r"\s\S+\s+bookworm(-updates|-security)?/main ", text)
            if not cand or cand.group(1) == "(none)":
                problems.append(f"stage {name}: {pkg}: apt-cache policy shows no candidate")
            elif not from_bookworm:
                problems.append(f"stage {name}: {pkg}: candidate {cand.group(1)} is not from a bookworm suite")
            else:
                print(f"  {name:8} {pkg:26} {cand.group(1)}")
    if not any(s["packages"] for s in ctx.dockerfile["stages"].values()):
        problems.append("Dockerfile installs no package at all: parse error?")
    return problems


def check_image_files(ctx):
    problems = []
    stages = ctx.dockerfile["stages"]
    builder_dir = "/src"
    for name, stage in stages.items():
        for args in stage["copies"]:
            flags = [a for a in args if a.startswith("--")]
            paths = [a for a in args if not a.startswith("--")]
            sources, dest = paths[:-1], paths[-1]
            from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            for src in sources:
                if from_stage is None:
                    if src != "." and not os.path.exists(os.path.join(ctx.repo, src)):
                        problems.append(f"stage {name}: COPY {src}: not in the tree")
                    continue
                if not src.startswith(builder_dir + "/"):
                    problems.append(f"stage {name}: COPY --from={from_stage} {src}: outside {builder_dir}")
                    continue
                rel = src[len(builder_dir) + 1:]
                if rel.startswith("build/release/"):
                    built = rel[len("build/release/"):]
                    targets = {os.path.relpath(p, ctx.build_dir): n for n, p in ctx.binaries.items()} \
                        if ctx.build_dir else {}
                    if built not in targets:
                        problems.append(f"stage {name}: COPY {src}: the build puts no binary there "
                                        f"(targets: {sorted(targets)})")
                    elif os.path.basename(dest.rstrip("/")) != targets[built]:
                        problems.append(f"stage {name}: {src} is installed as {dest}, not as {targets[built]}")
                    else:
                        print(f"  {targets[built]}: {src} -> {dest}")
                else:
                    local = os.path.join(ctx.repo, rel)
                    if not os.path.exists(local):
                        problems.append(f"stage {name}: COPY {src}: {rel} is not in the tree")
                    elif rel.rstrip("/").endswith("migrations"):
                        sql = sorted(f for f in os.listdir(local) if f.endswith(".sql"))
                        if not sql:
                            problems.append(f"stage {name}: {rel} holds no .sql file")
                        else:
                            print(f"  migrations: {', '.join(sql)} -> {dest}")
                            if dest.rstrip("/") != ctx.dockerfile["env"].get("PROFILED_MIGRATIONS_DIR", "").rstrip("/"):
                                problems.append(f"stage {name}: migrations go to {dest} but PROFILED_MIGRATIONS_DIR is "
                                                f"{ctx.dockerfile['env'].get('PROFILED_MIGRATIONS_DIR')!r}")
    if ctx.dockerfile["user_uid"] in (None, 0):
        problems.append("runtime stage: USER is not a numeric non-zero uid (runAsNonRoot cannot verify a name)")
    if "runtime" not in stages or list(stages)[-1] != "runtime":
        problems.append("Dockerfile: the last stage (the default build target) must be runtime")
    elif "slim" not in stages["runtime"]["image"]:
        problems.append(f"runtime stage: FROM {stages['runtime']['image']}: expected debian:bookworm-slim")
    return problems


def check_makefile(ctx):
    problems = []
    mk = os.path.join(ctx.repo, "Makefile.docker")
    if not shutil.which("make"):
        raise Skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY", "TAG", "PLATFORM")}
    proc = run(["make", "-s", "-C", ctx.repo, "-f", mk, "-n", "build", "push"], env=env)
    print(proc.stdout)
    if proc.returncode != 0:
        problems.append(f"make -n build push failed: {proc.stderr.strip()}")
    for want in ("docker build", "--platform linux/amd64", "--target runtime", "docker push"):
        if want not in proc.stdout:
            problems.append(f"make -n build push: no {want!r} in what it prints")
    proc = run(["make", "-s", "-C", ctx.repo, "-f", mk, "-n", "build", "push", "REGISTRY=registry.example.com/team",
                "TAG=1.2.3", "PLATFORM=linux/arm64"], env=env)
    for want in ("--platform linux/arm64", "--tag registry.example.com/team/profiled:1.2.3",
                 "docker push registry.example.com/team/profiled:1.2.3"):
        if want not in proc.stdout:
            problems.append(f"make -n build push REGISTRY=... TAG=... PLATFORM=...: no {want!r} in:\n{proc.stdout}")
    proc = run(["make", "-s", "-C", ctx.repo, "-f", mk, "print-image", "REGISTRY=r.example/x", "TAG=t"], env=env)
    if proc.stdout.strip() != "r.example/x/profiled:t":
        problems.append(f"print-image printed {proc.stdout.strip()!r}, expected r.example/x/profiled:t")
    described = run(["git", "-C", ctx.repo, "describe", "--tags", "--always", "--dirty"]).stdout.strip()
    proc = run(["make", "-s", "-C", ctx.repo, "-f", mk, "print-image"], env=env)
    if described and proc.stdout.strip() != f"profiled:{described}":
        problems.append(f"print-image without REGISTRY/TAG printed {proc.stdout.strip()!r}, "
                        f"expected profiled:{described} (git describe)")
    # Without REGISTRY, push must refuse (its guard runs before any docker command).
    proc = run(["make", "-s", "-C", ctx.repo, "-f", mk, "push", "DOCKER=false-docker-must-not-run"], env=env)
    if proc.returncode == 0 or "REGISTRY" not in proc.stderr:
        problems.append(f"make push without REGISTRY did not refuse naming REGISTRY: {proc.stderr.strip()}")
    with open(mk, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^REGISTRY\s*\?=(.*)$", text, re.M)
    if not m or m.group(1).strip():
        problems.append("Makefile.docker: REGISTRY must default to empty (no registry hard-coded)")
    return problems


# ---------------------------------------------------------------- selftest


def mutate_container(ctx_renders, kind, binary, fn):
    for docs in ctx_renders.values():
        for doc, spec in workloads(docs):
            if doc.get("kind") == kind:
                for c in spec.get("containers") or []:
                    if binary_of(c) == binary:
                        fn(doc, spec, c)


def selftest(ctx):
    """Breaks one thing at a time and expects the matching check to say so."""
    problems = []
    baseline = {}
    for name, fn in MANIFEST_CHECKS.items():
        baseline[name] = fn(ctx)
        if baseline[name]:
            problems.append(f"baseline {name} fails, so its mutations prove nothing:\n    " +
                            "\n    ".join(baseline[name]))
    if problems:
        return problems

    def cm_set(doc, spec, c, key, value):
        c.setdefault("env", []).append({"name": key, "value": value})

    cases = [
        ("env", "unknown variable", lambda r: mutate_container(
            r, "Deployment", "profiled-api", lambda d, s, c: cm_set(d, s, c, "PROFILED_NO_SUCH_SETTING", "1")),
         "PROFILED_NO_SUCH_SETTING"),
        ("env", "worker-only variable on the api", lambda r: mutate_container(
            r, "Deployment", "profiled-api", lambda d, s, c: cm_set(d, s, c, "PROFILED_OPS_PORT", "9091")),
         "PROFILED_OPS_PORT"),
        ("env", "ConfigMap key typo", lambda r: [d["data"].update({"PROFILED_KAFKA_BROKER": "x:9092"})
                                                 for docs in r.values() for d in docs
                                                 if d.get("kind") == "ConfigMap" and d.get("data")],
         "PROFILED_KAFKA_BROKER"),
        ("env", "secret in a ConfigMap", lambda r: [d["data"].update({"PROFILED_PG_DSN": "host=x password=y"})
                                                    for docs in r.values() for d in docs
                                                    if d.get("kind") == "ConfigMap" and d.get("data")],
         "is secret"),
        ("env", "Secret without the DSN", lambda r: [d["stringData"].pop("PROFILED_PG_DSN")
                                                     for docs in r.values() for d in docs
                                                     if d.get("kind") == "Secret" and d.get("stringData")],
         "needs key PROFILED_PG_DSN"),
        ("env", "port not an integer", lambda r: mutate_container(
            r, "Deployment", "profiled-api", lambda d, s, c: cm_set(d, s, c, "PROFILED_HTTP_PORT", "http")),
         "PROFILED_HTTP_PORT"),
        ("probes", "readiness path", lambda r: mutate_container(
            r, "Deployment", "profiled-api",
            lambda d, s, c: c["readinessProbe"]["httpGet"].update({"path": "/ready"})), "readinessProbe path"),
        ("probes", "liveness on the wrong port", lambda r: mutate_container(
            r, "Deployment", "profiled-worker",
            lambda d, s, c: c["livenessProbe"]["httpGet"].update({"port": 8080})), "livenessProbe port"),
        ("probes", "listener moved", lambda r: mutate_container(
            r, "Deployment", "profiled-api", lambda d, s, c: cm_set(d, s, c, "PROFILED_HTTP_PORT", "8081")),
         "listens on"),
        ("probes", "loopback listener", lambda r: mutate_container(
            r, "Deployment", "profiled-worker", lambda d, s, c: cm_set(d, s, c, "PROFILED_OPS_ADDR", "127.0.0.1")),
         "loopback"),
        ("probes", "scrape port", lambda r: mutate_container(
            r, "Deployment", "profiled-api",
            lambda d, s, c: d["spec"]["template"]["metadata"]["annotations"].update({"prometheus.io/port": "9091"})),
         "prometheus.io/port"),
        ("security", "writable root on the Job", lambda r: mutate_container(
            r, "Job", "profiled-worker", lambda d, s, c: c["securityContext"].pop("readOnlyRootFilesystem")),
         "readOnlyRootFilesystem"),
        ("security", "root user", lambda r: mutate_container(
            r, "Deployment", "profiled-worker", lambda d, s, c: c["securityContext"].update({"runAsUser": 0})),
         "runAsUser"),
        ("security", "capabilities kept", lambda r: mutate_container(
            r, "Deployment", "profiled-api", lambda d, s, c: c["securityContext"].pop("capabilities")),
         "capabilities"),
        ("security", "seccomp unconfined", lambda r: mutate_container(
            r, "Deployment", "profiled-api",
            lambda d, s, c: c["securityContext"].update({"seccompProfile": {"type": "Unconfined"}})), "seccomp"),
        ("security", "privilege escalation", lambda r: mutate_container(
            r, "Job", "profiled-worker",
            lambda d, s, c: c["securityContext"].update({"allowPrivilegeEscalation": True})),
         "allowPrivilegeEscalation"),
        ("lifecycle", "grace shorter than the drain", lambda r: mutate_container(
            r, "Deployment", "profiled-api", lambda d, s, c: s.update({"terminationGracePeriodSeconds": 10})),
         "terminationGracePeriodSeconds"),
        ("lifecycle", "no preStop", lambda r: mutate_container(
            r, "Deployment", "profiled-api", lambda d, s, c: c.pop("lifecycle")), "preStop"),
        ("lifecycle", "single api replica", lambda r: mutate_container(
            r, "Deployment", "profiled-api", lambda d, s, c: d["spec"].update({"replicas": 1})), "replicas"),
        ("lifecycle", "drain shorter than a request", lambda r: mutate_container(
            r, "Deployment", "profiled-api",
            lambda d, s, c: cm_set(d, s, c, "PROFILED_SHUTDOWN_DEADLINE", "2s")), "request deadline"),
    ]
    if any(d.get("kind") == "KafkaTopic" for docs in ctx.renders.values() for d in docs):
        cases.append(("lifecycle", "more workers than partitions", lambda r: mutate_container(
            r, "Deployment", "profiled-worker", lambda d, s, c: d["spec"].update({"replicas": 7})), "partitions"))
    pristine = ctx._renders
    for check, label, mutation, expect in cases:
        ctx._renders = copy.deepcopy(pristine)
        mutation(ctx._renders)
        with contextlib.redirect_stdout(io.StringIO()):
            found = MANIFEST_CHECKS[check](ctx)
        if not any(expect in p for p in found):
            problems.append(f"{check} did not catch '{label}' (expected a problem mentioning {expect!r}; "
                            f"got {found})")
        else:
            print(f"  {check:10} catches {label}")
    ctx._renders = pristine

    # Image checks: a broken copy of the parsed Dockerfile.
    pristine_df = ctx._dockerfile if ctx._dockerfile is not None else ctx.dockerfile
    image_cases = [
        ("image-libs", "librdkafka1 dropped", lambda df: df["stages"]["runtime"]["packages"].remove("librdkafka1"),
         "librdkafka1"),
        ("image-libs", "unneeded package", lambda df: df["stages"]["runtime"]["packages"].append("libxml2"),
         "libxml2"),
        ("image-packages", "package not in bookworm",
         lambda df: df["stages"]["runtime"]["packages"].append("libevent-2.1-6"), "libevent-2.1-6"),
        ("env", "unknown ENV in the image", lambda df: df["env"].update({"PROFILED_HTTP_ADRESS": "0.0.0.0"}),
         "PROFILED_HTTP_ADRESS"),
        ("image-files", "binary copied from the wrong build path",
         lambda df: df["stages"]["runtime"]["copies"][0].__setitem__(-2, "/src/build/release/profiled-api"),
         "the build puts no binary there"),
        ("image-files", "root user", lambda df: df.update({"user_uid": 0}), "USER"),
    ]
    for check in sorted({case[0] for case in image_cases}):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                found = ALL_CHECKS[check](ctx)
        except Skip:
            continue
        if found:
            problems.append(f"baseline {check} fails, so its mutations prove nothing:\n    " + "\n    ".join(found))
    if problems:
        return problems
    for check, label, mutation, expect in image_cases:
        ctx._dockerfile = copy.deepcopy(pristine_df)
        mutation(ctx._dockerfile)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                found = ALL_CHECKS[check](ctx)
        except Skip as e:
            print(f"  {check:10} skipped: {e}")
            continue
        if not any(expect in p for p in found):
            problems.append(f"{check} did not catch '{label}' (expected {expect!r}; got {found})")
        else:
            print(f"  {check:10} catches {label}")
    ctx._dockerfile = pristine_df
    return problems


MANIFEST_CHECKS = {"env": check_env, "probes": check_probes, "security": check_security,
                   "lifecycle": check_lifecycle}
ALL_CHECKS = dict(MANIFEST_CHECKS, **{
    "render": check_render, "image-libs": check_image_libs, "image-packages": check_image_packages,
    "image-files": check_image_files, "makefile": check_makefile, "selftest": selftest,
    "release-build": check_release_build})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--api", required=True, help="path of the built profiled-api")
    parser.add_argument("--worker", required=True, help="path of the built profiled-worker")
    parser.add_argument("--import", dest="import_bin", help="path of the built profiled-import")
    parser.add_argument("--build-dir", help="the CMake build folder holding those binaries")
    parser.add_argument("--release-dir", help="folder of the image's Release build (release-build makes it)")
    parser.add_argument("check", choices=sorted(ALL_CHECKS))
    args = parser.parse_args()
    ctx = Context(args)
    try:
        problems = ALL_CHECKS[args.check](ctx)
    except Skip as e:
        print(f"SKIPPED deploy {args.check}: {e}")
        return SKIP
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        print(f"FAILED deploy {args.check}: {e}")
        return 1
    for p in problems:
        print(f"FAIL: {p}")
    print(f"deploy {args.check}: {'FAILED, ' + str(len(problems)) + ' problem(s)' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
