#!/usr/bin/env python3
"""The configuration both binaries share (common/runtime/cfg_shared.h), checked on
the built binaries: every shared PROFILED_* variable has the same type, default,
bounds and help text in `profiled-api --help` and `profiled-worker --help`; and
both stop at start, naming the key, when PROFILED_KAFKA_PROPERTIES tries to set
a durability property; and a retired variable that is set (evhttp's
PROFILED_HTTP_READ_TIMEOUT) is named in exactly one JSON warning at start, with
the variables that replaced it.

    shared_config_test.py <profiled-api> <profiled-worker>
"""
import json
import os
import re
import subprocess
import sys

SHARED = [
    "PROFILED_KAFKA_BROKERS", "PROFILED_KAFKA_TOPIC", "PROFILED_KAFKA_PROPERTIES", "PROFILED_PG_DSN",
    "PROFILED_LOG_LEVEL", "PROFILED_SHUTDOWN_DEADLINE", "PROFILED_MAX_BODY_BYTES", "PROFILED_MAX_DEPTH",
    "PROFILED_MAX_KEY_BYTES", "PROFILED_MAX_STRING_BYTES", "PROFILED_MAX_KEYS",
]
GUARDED = ["enable.idempotence=false", "acks=1", "request.required.acks=0", "partitioner=random",
           "enable.auto.commit=true", "enable.auto.offset.store=true", "isolation.level=read_uncommitted",
           "auto.offset.reset=latest"]
RETIRED = {"api": {"PROFILED_HTTP_READ_TIMEOUT": ["PROFILED_HTTP_HEADER_TIMEOUT", "PROFILED_HTTP_BODY_TIMEOUT",
                                                  "PROFILED_HTTP_IDLE_TIMEOUT"]}}


def help_blocks(binary):
    """{name: (the "(type, default, bounds)" line, help text)} from --help."""
    out = subprocess.run([binary, "--help"], check=True, capture_output=True, text=True).stdout
    blocks = {}
    for m in re.finditer(r"^  (PROFILED_\w+) (\(.*\))\n      (.*)$", out, re.M):
        blocks[m.group(1)] = (m.group(2), m.group(3))
    return blocks


def main():
    api, worker = sys.argv[1], sys.argv[2]
    problems = []
    a, w = help_blocks(api), help_blocks(worker)
    for name in SHARED:
        if name not in a or name not in w:
            problems.append(f"{name}: missing from --help of {'api' if name not in a else 'worker'}")
        elif a[name] != w[name]:
            problems.append(f"{name} differs:\n  api:    {a[name]}\n  worker: {w[name]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROFILED_")}
    env.update(PROFILED_API_KEYS="k", PROFILED_KAFKA_BROKERS="127.0.0.1:1", PROFILED_OPS_PORT="-1",
               PROFILED_PG_DSN="host=127.0.0.1 port=1 connect_timeout=1")
    for prop in GUARDED:
        key = prop.split("=")[0]
        for name, binary in (("api", api), ("worker", worker)):
            run_env = dict(env, PROFILED_KAFKA_PROPERTIES=f"linger.ms=5,{prop}")
            try:
                proc = subprocess.run([binary], env=run_env, capture_output=True, text=True, timeout=20)
            except subprocess.TimeoutExpired:
                problems.append(f"{name} with PROFILED_KAFKA_PROPERTIES={prop}: still running after 20 s")
                continue
            if proc.returncode == 0 or f"PROFILED_KAFKA_PROPERTIES: {key} is set by profiled" not in proc.stderr:
                problems.append(f"{name} with PROFILED_KAFKA_PROPERTIES={prop}: exit {proc.returncode}, "
                                f"stderr {proc.stderr.strip()[-300:]!r}")
    binaries = {"api": api, "worker": worker}
    for name, retired in RETIRED.items():
        for var, replacements in retired.items():
            # A durability key stops the binary right after its configuration is read.
            for value in (None, "30s"):
                run_env = dict(env, PROFILED_KAFKA_PROPERTIES="acks=1")
                if value is not None:
                    run_env[var] = value
                proc = subprocess.run([binaries[name]], env=run_env, capture_output=True, text=True, timeout=20)
                lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
                try:
                    objs = [json.loads(ln) for ln in lines]
                except ValueError:
                    problems.append(f"{name} with {var}={value}: a stderr line is not JSON: {proc.stderr[-300:]!r}")
                    continue
                warned = [o for o in objs if o.get("variable") == var]
                if value is None:
                    if warned:
                        problems.append(f"{name} without {var}: warned anyway: {warned}")
                    continue
                if len(warned) != 1 or warned[0].get("level") != "warn" or \
                        not all(r in warned[0].get("message", "") for r in replacements):
                    problems.append(f"{name} with {var}={value}: expected one warning naming {replacements}, "
                                    f"got {warned or proc.stderr[-300:]!r}")
                if var in subprocess.run([binaries[name], "--help"], capture_output=True, text=True).stdout \
                        .split("\nRetired")[0]:
                    problems.append(f"{name} --help lists {var} among the settings")
    for p in problems:
        print("FAIL:", p)
    print(f"{len(SHARED)} shared variables, {len(GUARDED)} guarded properties x 2 binaries: "
          f"{sum(len(r) for r in RETIRED.values())} retired: "
          f"{'ok' if not problems else str(len(problems)) + ' problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
