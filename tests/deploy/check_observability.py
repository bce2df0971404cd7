#!/usr/bin/env python3
"""Checks of profiled's dashboard and alert rules (deploy/k8s/components/).

    check_observability.py --repo DIR rules
    check_observability.py --repo DIR metrics --api-metrics FILE --worker-metrics FILE

rules    `promtool check rules` on the plain rules file; the PrometheusRule's groups
         are the same as the plain file's; every dashboard query is valid PromQL
         (promtool again, as recording rules); the dashboard has a panel for each
         thing it must show and the rules an alert for each condition they must catch.
metrics  every metric the dashboard and the rules name is one the binaries export
         (FILEs: their /metrics output, read from running services by
         observability_metrics_test.sh); each label a selector or a `by (...)` names
         is on that metric (or added by the scrape: namespace, pod, ...), and each
         literal label value a selector asks for (route="put_profile", or a regex
         such as status=~"5..") matches a series. New metrics in the binaries are fine;
         a metric or label the queries use and the binaries lost is a failure.
--selftest (either check) also breaks a copy on purpose and expects a failure.

Exit 0 passed, 1 failed, 77 skipped (promtool missing), naming what is missing.
"""

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
# Labels that Prometheus (the scrape and the operator's relabelling) adds.
SCRAPE_LABELS = {"namespace", "pod", "job", "instance", "container", "endpoint", "service", "le"}
# Grafana's variables, replaced by something valid to parse and match.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$namespace": ".*", "${namespace}": ".*"}
METRIC_RE = re.compile(r"\b(profiled_[a-zA-Z0-9_:]+)\s*(\{[^}]*\})?")
MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
BY_RE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# What the dashboard must show (a panel whose title has the words) and the rules
# must catch (an alert whose expression names the metric): the list.
DASHBOARD_MUST = ["PUT rate", "PUT latency", "Produce errors", "Apply rate", "Batch size", "Lag per partition",
                  "Dead letters", "Fenced", "apply failures", "Held requests", "Read-your-writes holds"]
ALERTS_MUST = {
    "api error ratio": r'profiled_api_requests_total\{[^}]*status=~"5',
    "p99 latency": r"histogram_quantile\(0\.99,.*profiled_api_request_duration_seconds_bucket",
    "worker lag above a bound": r"profiled_worker_lag\)?\s*>",
    "worker lag growing": r"deriv\(.*profiled_worker_lag",
    "dead letters": r"profiled_worker_commands_dead_lettered_total",
    "fenced batches": r"profiled_worker_fenced_total",
    "apply failures": r"profiled_worker_apply_failures_total",
    "readiness flapping": r"changes\(profiled_api_ready",
    "writes answered pending": r"profiled_api_pending_answers_total",
}


class Skip(Exception):
    pass


def load_yaml(path):
    import yaml
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


class Files:
    def __init__(self, repo):
        comps = os.path.join(repo, "deploy", "k8s", "components")
        self.rules_path = os.path.join(comps, "prometheus-rules", "profiled.rules.yml")
        self.rule_path = os.path.join(comps, "prometheus-rules", "prometheusrule.yaml")
        self.dashboard_path = os.path.join(comps, "grafana-dashboard", "profiled.json")
        self.rules = load_yaml(self.rules_path)[0]
        self.prometheus_rule = load_yaml(self.rule_path)[0]
        with open(self.dashboard_path, encoding="utf-8") as f:
            self.dashboard = json.load(f)


def dashboard_exprs(dashboard):
    """[(panel title, expr)] with Grafana's variables replaced."""
    out = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels") or [])

    for p in panels(dashboard.get("panels") or []):
        for t in p.get("targets") or []:
            if t.get("expr"):
                out.append((p.get("title", "?"), t["expr"]))
    for v in (dashboard.get("templating") or {}).get("list") or []:
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.match(r"label_values\((.*),\s*\w+\)$", q or "")
        if m:
            out.append((f"variable {v['name']}", m.group(1)))
    for i, (title, expr) in enumerate(out):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        out[i] = (title, expr)
    return out


def rule_exprs(groups):
    return [(r.get("alert") or r.get("record"), r["expr"]) for g in groups for r in g.get("rules") or []]


def promtool(path):
    proc = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True, timeout=60)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def check_rules(files):
    if not shutil.which("promtool"):
        raise Skip("promtool not found (Debian package prometheus; deploy/local/deps installs it)")
    problems = []
    rc, out = promtool(files.rules_path)
    print(f"  promtool check rules {os.path.basename(files.rules_path)}: {out.splitlines()[-1] if out else rc}")
    if rc != 0:
        problems.append(f"promtool check rules {files.rules_path}:\n{out}")
    if files.prometheus_rule.get("spec", {}).get("groups") != files.rules.get("groups"):
        problems.append(f"{files.rule_path}: spec.groups differ from the groups of {files.rules_path}")
    # The dashboard's queries as recording rules, so that promtool parses them.
    exprs = dashboard_exprs(files.dashboard)
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, (_, e) in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(rules, f)
    try:
        rc, out = promtool(f.name)
    finally:
        os.unlink(f.name)
    print(f"  dashboard: {len(exprs)} queries parse as PromQL: {'yes' if rc == 0 else 'NO'}")
    if rc != 0:
        problems.append(f"dashboard {files.dashboard_path}: invalid PromQL:\n{out}")
    titles = [p.get("title", "") for p in files.dashboard.get("panels") or []]
    for want in DASHBOARD_MUST:
        if not any(want.lower() in t.lower() for t in titles):
            problems.append(f"dashboard: no panel titled with '{want}'")
    alerts = [r for g in files.rules.get("groups") or [] for r in g.get("rules") or [] if r.get("alert")]
    for what, pattern in ALERTS_MUST.items():
        if not any(re.search(pattern, re.sub(r"\s+", " ", r["expr"])) for r in alerts):
            problems.append(f"rules: no alert for {what} (an expression matching {pattern})")
    for r in alerts:
        for key in ("summary", "description"):
            if not (r.get("annotations") or {}).get(key):
                problems.append(f"rules: alert {r['alert']} has no {key} annotation")
        if (r.get("labels") or {}).get("severity") not in ("warning", "critical"):
            problems.append(f"rules: alert {r['alert']} has no severity label warning|critical")
    return problems


# ---------------------------------------------------------------- metrics


def parse_exposition(text):
    """{series name: [label dicts]} from Prometheus' text format."""
    series = {}
    line_re = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = line_re.match(line)
        if not m:
            continue
        labels = dict((k, v) for k, _, v in MATCHER_RE.findall(m.group(3) or ""))
        series.setdefault(m.group(1), []).append(labels)
    return series


def check_metrics_against(files, series):
    problems = []
    exprs = [("dashboard: " + t, e) for t, e in dashboard_exprs(files.dashboard)]
    exprs += [("rule " + n, e) for n, e in rule_exprs(files.rules.get("groups") or [])]
    named = set()
    for where, expr in exprs:
        labels_here = set(SCRAPE_LABELS)
        for name, selector in METRIC_RE.findall(expr):
            named.add(name)
            if name not in series:
                problems.append(f"{where}: metric {name} is not exported by the binaries")
                continue
            have = series[name]
            labels_here.update(k for s in have for k in s)
            for label, op, value in MATCHER_RE.findall(selector or ""):
                if label in SCRAPE_LABELS:
                    continue
                values = {s[label] for s in have if label in s}
                if not values:
                    problems.append(f"{where}: {name} has no label {label}")
                elif op == "=" and value not in values:
                    problems.append(f"{where}: {name}{{{label}=\"{value}\"}} matches no series "
                                    f"(values: {', '.join(sorted(values))})")
                elif op == "=~" and not any(re.fullmatch(value, v) for v in values):
                    problems.append(f"{where}: {name}{{{label}=~\"{value}\"}} matches no series "
                                    f"(values: {', '.join(sorted(values))})")
        for group in BY_RE.findall(expr):
            for label in (x.strip() for x in group.split(",")):
                if label and label not in labels_here:
                    problems.append(f"{where}: groups by label '{label}', which none of its metrics has")
    print(f"  {len(named)} metrics named by the dashboard and the rules, all checked against "
          f"{len(series)} series names exported")
    return problems


def check_metrics(files, api_file, worker_file):
    text = ""
    for path in (api_file, worker_file):
        with open(path, encoding="utf-8") as f:
            text += f.read() + "\n"
    series = parse_exposition(text)
    if not series:
        return [f"no series read from {api_file} and {worker_file}"]
    return check_metrics_against(files, series)


def selftest(check, files):
    """Breaks a copy of the files once per case; each must be reported."""
    def rename_in_dashboard(f):
        f.dashboard["panels"][1]["targets"][0]["expr"] = f.dashboard["panels"][1]["targets"][0]["expr"].replace(
            "profiled_api_requests_total", "profiled_api_request_total")

    def bad_label_value(f):
        f.rules["groups"][0]["rules"][1]["expr"] = f.rules["groups"][0]["rules"][1]["expr"].replace(
            'route="put_profile"', 'route="put"')

    def bad_group_label(f):
        f.dashboard["panels"][1]["targets"][0]["expr"] = f.dashboard["panels"][1]["targets"][0]["expr"].replace(
            "by (status)", "by (code)")

    def bad_promql(f):
        f.dashboard["panels"][1]["targets"][0]["expr"] += " +"

    def rules_drift(f):
        f.prometheus_rule["spec"]["groups"][0]["rules"][0]["for"] = "1m"

    def bad_rule(f):
        f.rules["groups"][0]["rules"][0]["expr"] = "sum(rate(profiled_api_requests_total[5m]) >"

    cases = {
        "metrics": [("metric renamed in the dashboard", rename_in_dashboard, "profiled_api_request_total"),
                    ("label value that no series has", bad_label_value, 'route="put"'),
                    ("grouping by a label no metric has", bad_group_label, "'code'")],
        "rules": [("invalid PromQL in the dashboard", bad_promql, "invalid PromQL"),
                  ("PrometheusRule differs from the plain rules", rules_drift, "differ"),
                  ("invalid rule expression", bad_rule, "promtool check rules")],
    }[check[0]]
    problems = []
    for what, mutate, expect in cases:
        broken = copy.deepcopy(files)
        mutate(broken)
        if check[0] == "rules":
            # promtool reads files: write the broken ones to a temporary folder.
            with tempfile.TemporaryDirectory() as d:
                broken.rules_path = os.path.join(d, "profiled.rules.yml")
                with open(broken.rules_path, "w") as f:
                    json.dump(broken.rules, f)
                found = check_rules(broken)
        else:
            found = check[1](broken)
        if not any(expect in p for p in found):
            problems.append(f"selftest: '{what}' was not reported (got: {found or 'nothing'})")
        else:
            print(f"  selftest: {what}: caught")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--api-metrics")
    parser.add_argument("--worker-metrics")
    parser.add_argument("--selftest", action="store_true")
    parser.add_argument("check", choices=("rules", "metrics"))
    args = parser.parse_args()
    try:
        files = Files(os.path.abspath(args.repo))
        if args.check == "rules":
            problems = check_rules(files)
            if args.selftest and not problems:
                problems += selftest(("rules", None), files)
        else:
            if not args.api_metrics or not args.worker_metrics:
                parser.error("metrics needs --api-metrics and --worker-metrics")
            problems = check_metrics(files, args.api_metrics, args.worker_metrics)
            if args.selftest and not problems:
                series = parse_exposition(open(args.api_metrics).read() + "\n" + open(args.worker_metrics).read())
                problems += selftest(("metrics", lambda f: check_metrics_against(f, series)), files)
    except Skip as e:
        print(f"SKIPPED observability {args.check}: {e}")
        return SKIP
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
        print(f"FAILED observability {args.check}: {e}")
        return 1
    for p in problems:
        print(f"FAIL: {p}")
    print(f"observability {args.check}: {'FAILED, ' + str(len(problems)) + ' problem(s)' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
