#!/usr/bin/env python3
"""tests/chaos/chaos.py: profiled-api + profiled-worker under steady open-loop load
while the worker, the api, Kafka and PostgreSQL are killed or stopped and restarted;
then the data is checked from PostgreSQL. Run through tests/chaos/run (which brings
the stack and the binaries); `--help` lists the knobs.

Load: PUT /profiles/chaos-<run>-<n> with {"profile":{"seq":k}} at a fixed rate, the
recipients taken round robin, at most one PUT in flight per recipient (a recipient
still waiting is skipped and counted), so each recipient's writes are ordered and the
expected final state is known; GETs at a tenth of the rate. Each answer is recorded.

Checks (any failure: exit 1):
  lost       every PUT answered 200 was applied (its X-Command-Id is in applied_commands)
  final      every row equals its last 200, or a later write whose answer was ambiguous
             (503, timeout, connection error)
  regressed  no recipient's row ever went back to a lower seq (a test-only trigger logs
             every write of profiles, in commit order)
  doubled    no (recipient, command id) written twice (the same trigger)
  logs       every line of both binaries' logs is one JSON object
  targets    (short form) worker takeover under the same instance id <= 10 s (with a 12 s
             session timeout, so only static membership makes it), under another <= session
             timeout + 10 s; a worker fenced by a second
             process under its instance id exits 1; /readyz 200 with Kafka down and 503 with
             both down; lag during a PostgreSQL outage >= the PUTs acknowledged meanwhile
It prints availability per fault window and the recovery times.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

# ------------------------------------------------------------------ helpers

T0 = time.monotonic()


def now():
    return time.monotonic() - T0


def say(msg):
    print(f"chaos [{now():7.1f}s] {msg}", flush=True)


def psql(dsn, sql, timeout=60):
    out = subprocess.run(["psql", dsn, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\t"],
                         input=sql, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"psql: {out.stderr.strip()}")
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except Exception:
        return None, ""


# ------------------------------------------------------------------ processes


class Service:
    """One binary, restarted at will; its stderr appends to one log across incarnations."""

    def __init__(self, name, binary, env, log_path, ops_url):
        self.name, self.binary, self.env, self.log_path, self.ops_url = name, binary, env, log_path, ops_url
        self.proc = None
        self.exits = []
        # Exits 1 on FENCED_INSTANCE_ID with no second process under the id. librdkafka 2.0
        # raised it on a consumer offset commit built or retried with a member id reset by a
        # client-side session timeout (a broker restart longer than the session): the worker
        # no longer commits through the consumer (services/worker/kcopy.h). Counted apart,
        # and a failure of the run.
        self.spurious_fences = []
        self.liveness_restarts = []  # (time, reason)
        self.lock = threading.RLock()  # faults and the supervisor both restart processes

    def fenced_since_last_check(self):
        """True when this incarnation's log lines include FENCED_INSTANCE_ID."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(getattr(self, "_fence_scan_at", 0))
                grown = f.read()
                self._fence_scan_at = f.tell()
        except OSError:
            return False
        return b"FENCED_INSTANCE_ID" in grown

    def start(self, extra_env=None):
        env = dict(self.env, **(extra_env or {}))
        log = open(self.log_path, "ab")
        self._fence_scan_at = log.tell()  # fences count from this incarnation's first line
        self.proc = subprocess.Popen([self.binary], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self, timeout=45):
        if not self.proc:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "killed after SIGTERM timeout"
        self.proc = None
        return rc

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if http_get(self.ops_url + "/readyz", 1)[0] == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout}s; see {self.log_path}")

    def check_alive(self):
        """What Kubernetes would do: a process that exited on its own is restarted (and
        recorded: a finding unless expected); one whose /healthz says 503 is killed and
        restarted (a liveness restart, recorded with its reason)."""
        with self.lock:
            if self.proc and self.proc.poll() is not None:
                rc = self.proc.returncode
                if rc == 1 and self.fenced_since_last_check():
                    self.spurious_fences.append(now())
                    say(f"{self.name} exited 1, fenced by the broker (no second process); restarting it")
                else:
                    self.exits.append(rc)
                    say(f"{self.name} exited on its own with {rc}; restarting it")
                self.start()
                return
            if not self.proc:
                return
            status, body = http_get(self.ops_url + "/healthz", 2)
            if status == 503:
                say(f"{self.name} /healthz 503 ({body.strip()[:160]}); liveness restart")
                self.liveness_restarts.append((now(), body.strip()[:200]))
                self.kill()
                self.start()


# ------------------------------------------------------------------ load


class Load:
    def __init__(self, base_url, key, run, recipients, rate, timeout):
        self.base_url, self.key, self.run = base_url, key, run
        self.host, self.port = base_url.replace("http://", "").split(":")
        self.port = int(self.port)
        self.n, self.rate, self.timeout = recipients, rate, timeout
        self.lock = threading.Lock()
        self.in_flight = [False] * recipients
        self.seq = [0] * recipients
        self.results = []  # (t_sent, t_answered, kind, recipient, seq, status, command_id)
        self.ack_headers = {}  # command id of a 200 -> (partition, offset, visibility): to explain a loss
        self.skipped = 0
        self.puts = 0
        self.acked = 0
        self.stopping = False
        self.tasks = []
        self.cv = threading.Condition(self.lock)
        self.local = threading.local()

    def rid(self, i):
        return f"chaos-{self.run}-{i}"

    def conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.local.conn = c
        return c

    def request(self, method, path, body=None, headers=None):
        """(status, X-Command-Id, body); status None when no answer came (ambiguous)."""
        for attempt in range(2):
            c = self.conn()
            reused = c.sock is not None
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    self.local.conn = None
                cid = r.getheader("X-Command-Id")
                if r.status == 200 and cid and method == "PUT":
                    with self.lock:
                        self.ack_headers[cid] = (r.getheader("X-Kafka-Partition"), r.getheader("X-Kafka-Offset"),
                                                 r.getheader("X-Profiled-Visibility"))
                return r.status, cid, data
            except socket.timeout as e:
                c.close()
                self.local.conn = None
                return None, None, str(e).encode()
            except (OSError, http.client.HTTPException) as e:
                c.close()
                self.local.conn = None
                # A kept-alive connection that the server closed (the api was killed):
                # once more on a fresh one. Safe for PUTs too: the same Idempotency-Key
                # gives the same command id, applied once.
                if attempt == 0 and reused:
                    continue
                return None, None, str(e).encode()
        return None, None, b""

    def do_put(self, i, seq):
        t = now()
        body = json.dumps({"profile": {"seq": seq, "run": self.run}})
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json",
                   "Idempotency-Key": f"{self.run}-{i}-{seq}"}
        status, cid, _ = self.request("PUT", f"/profiles/{self.rid(i)}", body, headers)
        with self.lock:
            self.results.append((t, now(), "put", i, seq, status, cid))
            self.in_flight[i] = False
            self.puts += 1
            self.acked += status == 200

    def do_get(self, i):
        t = now()
        status, _, _ = self.request("GET", f"/profiles/{self.rid(i)}", None,
                                    {"Authorization": f"Bearer {self.key}"})
        with self.lock:
            self.results.append((t, now(), "get", i, 0, status, None))

    def worker_thread(self):
        while True:
            with self.cv:
                while not self.tasks and not self.stopping:
                    self.cv.wait()
                if not self.tasks:
                    return
                task = self.tasks.pop(0)
            task()

    def scheduler(self):
        period = 1.0 / self.rate
        nxt = time.monotonic()
        cursor = 0
        count = 0
        while not self.stopping:
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with self.cv:
                i = cursor
                cursor = (cursor + 1) % self.n
                count += 1
                if self.in_flight[i]:
                    self.skipped += 1
                else:
                    self.in_flight[i] = True
                    self.seq[i] += 1
                    s = self.seq[i]
                    self.tasks.append(lambda i=i, s=s: self.do_put(i, s))
                if count % 10 == 0:
                    g = random.randrange(self.n)
                    self.tasks.append(lambda g=g: self.do_get(g))
                self.cv.notify()

    def start(self, threads):
        self.threads = [threading.Thread(target=self.worker_thread, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()
        self.sched = threading.Thread(target=self.scheduler, daemon=True)
        self.sched.start()

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        self.sched.join()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)


# ------------------------------------------------------------------ bulk load (soak)


def import_command_id(job, file_name, line):
    """profiled-import's command id (proto/README.md 6.1): SHA-256 shaped as UUID v8."""
    d = bytearray(hashlib.sha256(b"profiled-import\0" + job.encode() + b"\0" + file_name.encode() + b"\0" +
                                 str(line).encode()).digest()[:16])
    d[6] = 0x80 | (d[6] & 0x0F)
    d[8] = 0x80 | (d[8] & 0x3F)
    return d.hex()


class Bulk:
    """Commands produced directly to Kafka, next to the PUTs: profiled-import jobs of
    `size` lines at `rate` lines/s on average, over their own recipients
    (chaosbulk-<run>-<n>, seq rising per recipient across jobs), one job at a time, each
    run again under the same job id until it exits 0 (every line acknowledged by Kafka
    with acks=all; a re-run re-sends the same command ids, which the worker skips). So
    every line is known acknowledged, its command id is known (derived from job, file and
    line), and each recipient's final row is its last line: checked like the PUTs."""

    def __init__(self, binary, env, directory, run, recipients, rate, size):
        self.binary, self.env, self.dir, self.run = binary, env, directory, run
        self.n, self.rate, self.size = recipients, rate, size
        self.seq = [0] * recipients
        self.jobs = []  # (job, file name, lines)
        self.acked = 0
        self.reruns = 0
        self.stopping = threading.Event()
        self.cursor = 0
        self.error = None

    def rid(self, i):
        return f"chaosbulk-{self.run}-{i}"

    def one_job(self):
        job = f"chaos-{self.run}-bulk-{len(self.jobs)}"
        name = os.path.join(self.dir, f"{job}.ndjson")
        with open(name, "w") as f:
            for _ in range(self.size):
                i = self.cursor
                self.cursor = (self.cursor + 1) % self.n
                self.seq[i] += 1
                f.write(json.dumps({"recipient_id": self.rid(i), "profile": {"seq": self.seq[i], "run": self.run}})
                        + "\n")
        attempt = 0
        while True:
            out = subprocess.run([self.binary, "--job", job, "--checkpoint", name + ".checkpoint",
                                  "--progress-interval", "0", "--stall-timeout", "600"] +
                                 (["--resume"] if attempt else []) + [name],
                                 env=self.env, capture_output=True, timeout=900)
            if out.returncode == 0:
                break
            attempt += 1
            self.reruns += 1
            say(f"bulk: {job} exited {out.returncode}; running it again ({out.stderr.decode()[-200:].strip()})")
            if attempt > 20:
                raise RuntimeError(f"bulk import {job} kept failing")
        self.jobs.append((job, name, self.size))
        self.acked += self.size
        os.unlink(name + ".checkpoint") if os.path.exists(name + ".checkpoint") else None

    def loop(self):
        t0 = time.monotonic()
        while not self.stopping.is_set():
            due = (time.monotonic() - t0) * self.rate
            if self.acked + self.size <= due:
                try:
                    self.one_job()
                except Exception as e:
                    # Its lines may be partly applied: the checks could not tell. Stop here.
                    self.error = f"bulk load stopped: {e}"
                    say(self.error)
                    return
            else:
                self.stopping.wait(0.2)

    def start(self):
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join()

    def command_ids(self):
        return [import_command_id(job, name, line) for job, name, lines in self.jobs
                for line in range(1, lines + 1)]

    def last_seq(self):
        return {self.rid(i): self.seq[i] for i in range(self.n) if self.seq[i] > 0} if self.jobs else {}


# ------------------------------------------------------------------ the run


class Chaos:
    def __init__(self, a):
        self.a = a
        self.windows = []  # (name, t_fault, t_back, recovery_seconds or None, notes)
        self.failures = []
        self.counts = {"worker_kills": 0, "worker_kills_new_id": 0, "api_kills": 0, "kafka_restarts": 0,
                       "postgres_restarts": 0, "both_down": 0}
        self.instance = 1

    def fail(self, msg):
        say("FAIL: " + msg)
        self.failures.append(msg)

    def stack(self, verb, service):
        """stack start/stop; a start that misses its deadline (a JVM on a loaded machine)
        is tried again, twice, and counted: the run goes on."""
        t = now()
        for attempt in range(3):
            out = subprocess.run([self.a.stack, verb, service], capture_output=True, text=True, timeout=400)
            if out.returncode == 0:
                return now() - t
            say(f"stack {verb} {service} failed (attempt {attempt + 1}): {out.stderr.strip()[-300:]}")
            self.counts["stack_retries"] = self.counts.get("stack_retries", 0) + 1
        raise RuntimeError(f"stack {verb} {service}: {out.stderr.strip()[-500:]}")

    def setup(self):
        a = self.a
        self.run = f"{int(time.time())}-{os.getpid()}"
        self.schema = f"chaos_{self.run.replace('-', '_')}"
        self.topic = f"chaos.{self.run}.commands"
        base_dsn = a.pg_dsn
        psql(base_dsn, f"CREATE SCHEMA {self.schema};")
        self.dsn = f"{base_dsn} options='-csearch_path={self.schema}'"
        common = dict(os.environ, PROFILED_PG_DSN=self.dsn, PROFILED_KAFKA_BROKERS=a.brokers,
                      PROFILED_KAFKA_TOPIC=self.topic, ASAN_OPTIONS="detect_leaks=0",
                      PROFILED_LOG_LEVEL="info")
        common.pop("PROFILED_KAFKA_PROPERTIES", None)
        # The schema first, then the test-only write log, then the worker.
        subprocess.run([a.worker_bin, "migrate"], env=common, check=True, capture_output=True, timeout=120)
        psql(self.dsn, f"""
            CREATE TABLE {self.schema}.chaos_writes (
                id bigserial PRIMARY KEY, recipient_id text NOT NULL, command_id bytea NOT NULL,
                seq bigint, at timestamptz NOT NULL DEFAULT clock_timestamp());
            CREATE FUNCTION {self.schema}.chaos_log() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO {self.schema}.chaos_writes (recipient_id, command_id, seq)
                VALUES (NEW.recipient_id, NEW.command_id, (NEW.profile->>'seq')::bigint);
                RETURN NULL;
            END $$;
            CREATE TRIGGER chaos_log AFTER INSERT OR UPDATE ON {self.schema}.profiles
                FOR EACH ROW EXECUTE FUNCTION {self.schema}.chaos_log();""")
        self.worker_port = free_port()
        worker_env = dict(common, PROFILED_KAFKA_DLQ_TOPIC=f"chaos.{self.run}.dlq",
                          PROFILED_WORKER_GROUP=f"chaos-{self.run}", PROFILED_CREATE_TOPICS="true",
                          PROFILED_TOPIC_PARTITIONS=str(a.partitions), PROFILED_OPS_ADDR="127.0.0.1",
                          PROFILED_OPS_PORT=str(self.worker_port),
                          PROFILED_WORKER_SESSION_TIMEOUT=f"{a.session_timeout}s",
                          PROFILED_RETRY_MAX_BACKOFF="1s")
        self.worker = Service("worker", a.worker_bin, worker_env, os.path.join(a.dir, "worker.log"),
                              f"http://127.0.0.1:{self.worker_port}")
        self.api_port = free_port()
        self.key = f"chaos-key-{random.getrandbits(64):016x}"
        api_env = dict(common, PROFILED_API_KEYS=self.key, PROFILED_API_KEYS_FILE="",
                       PROFILED_HTTP_ADDR="127.0.0.1", PROFILED_HTTP_PORT=str(self.api_port),
                       PROFILED_REQUEST_DEADLINE="3s", PROFILED_SHUTDOWN_DEADLINE="5s")
        self.api = Service("api", a.api_bin, api_env, os.path.join(a.dir, "api.log"),
                           f"http://127.0.0.1:{self.api_port}")
        self.worker.start({"PROFILED_WORKER_INSTANCE_ID": f"chaos-{self.instance}"})
        self.worker.wait_ready(90)
        self.api.start()
        self.api.wait_ready(60)
        self.load = Load(f"http://127.0.0.1:{self.api_port}", self.key, self.run, a.recipients, a.rate, 8)
        self.bulk = None
        if a.bulk_rate > 0:
            self.bulk = Bulk(a.import_bin, common, a.dir, self.run, a.bulk_recipients, a.bulk_rate, a.bulk_size)
        say(f"run {self.run}: schema {self.schema}, topic {self.topic}, {a.recipients} recipients, "
            f"{a.rate} PUT/s; logs in {a.dir}")

    # ---- measurements during faults

    def first_answer(self, kind, since, status=200, limit=60.0):
        """Seconds from `since` until a request of `kind` sent after `since` got `status`."""
        deadline = now() + limit
        while now() < deadline:
            with self.load.lock:
                hits = [r[1] for r in self.recent(since) if r[2] == kind and r[0] >= since and r[5] == status]
            if hits:
                return min(hits) - since
            time.sleep(0.05)
        return None

    def recent(self, since):
        """Results answered at or after `since` (the list is in answer order): hold the lock."""
        out = []
        for r in reversed(self.load.results):
            if r[1] < since:
                break
            out.append(r)
        return out

    def worker_lag(self, every_partition=False, max_end_age=None, with_age=False):
        """The worker's summed lag; None while unknown. With every_partition, also None
        until every partition of the topic reports one: mid-rebalance the worker
        exports only the partitions it holds, and their 0 says nothing of the rest.
        With max_end_age, also None while an end offset is that old or older.
        With with_age, (lag, age in seconds of the oldest end offset behind it)."""
        status, text = http_get(self.worker.ops_url + "/metrics", 2)
        if status != 200:
            return (None, None) if with_age else None
        total, known, end_age = 0.0, 0, 0.0
        for line in text.splitlines():
            if line.startswith("profiled_worker_lag{"):
                v = line.rsplit(" ", 1)[1]
                if v != "NaN":
                    total += float(v)
                    known += 1
            elif line.startswith("profiled_worker_end_offset_age_seconds{"):
                v = line.rsplit(" ", 1)[1]
                end_age = max(end_age, float("inf") if v == "NaN" else float(v))
        if not known or (every_partition and known < self.a.partitions):
            return (None, None) if with_age else None
        if max_end_age is not None and end_age >= max_end_age:
            return None  # an end offset read before the last command was produced
        return (total, end_age) if with_age else total

    # ---- faults

    def max_write_id(self):
        return int(psql(self.dsn, f"SELECT COALESCE(max(id), 0) FROM {self.schema}.chaos_writes")[0][0])

    def wait_applying(self, since, mark, limit):
        """Seconds from `since` until a write past `mark` (a chaos_writes id) is committed."""
        deadline = now() + limit
        while now() < deadline:
            try:
                if self.max_write_id() > mark:
                    return now() - since
            except Exception:
                pass
            time.sleep(0.1)
        return None

    def kill_worker(self, new_id):
        t = now()
        self.worker.lock.acquire()
        self.worker.kill()
        time.sleep(0.05)  # a COMMIT already sent still lands; the mark is taken after it
        mark = self.max_write_id()
        if new_id:
            self.instance += 1
        self.worker.start({"PROFILED_WORKER_INSTANCE_ID": f"chaos-{self.instance}"})
        self.worker.lock.release()
        # Same id: the static member takes its partitions back within 10 s (issue 13),
        # before the session (12 s here) expires; another id waits for the session timeout.
        limit = min(10.0, self.a.session_timeout) if not new_id else self.a.session_timeout + 10.0
        took = self.wait_applying(t, mark, 60)
        name = "worker SIGKILL (new id)" if new_id else "worker SIGKILL"
        self.windows.append((name, t, now(), took, "applying again"))
        self.counts["worker_kills_new_id" if new_id else "worker_kills"] += 1
        if took is None or (self.a.strict and took > limit):
            self.fail(f"{name}: applying again after {took} s (limit {limit} s)")

    def kill_api(self):
        t = now()
        with self.api.lock:
            self.api.kill()
            time.sleep(1.0)
            self.api.start()
        took = self.first_answer("put", t + 1.0)
        self.windows.append(("api SIGKILL (1 s down)", t, now(), took, "first 200 after restart"))
        self.counts["api_kills"] += 1
        if took is None:
            self.fail("api: no 200 after its restart")

    def restart_kafka(self, down):
        t = now()
        self.stack("stop", "kafka")
        time.sleep(min(2.0, down))
        if self.a.strict:
            status, _ = http_get(self.api.ops_url + "/readyz")
            if status != 200:
                self.fail(f"/readyz {status} with Kafka down (expected 200: GETs still answer)")
            gets = self.probe_gets()
            if gets != 200:
                self.fail(f"GET answered {gets} with Kafka down (expected 200)")
            t_put = now()
            status, _, _ = self.load.request("PUT", f"/profiles/{self.load.rid(0)}-probe",
                                             json.dumps({"profile": {"probe": True}}),
                                             {"Authorization": f"Bearer {self.key}"})
            took_put = now() - t_put
            # Prompt: refused at once, not at the 3 s request deadline. 2 s leaves a loaded
            # ASan box slack (1 s was a guess of its speed) and still tells the two apart.
            if status != 503 or took_put > 2.0:
                self.fail(f"PUT with Kafka down: {status} in {took_put:.2f}s (expected a prompt 503)")
        time.sleep(max(0.0, down - 2.0))
        back = self.start_and_time("kafka")
        took = self.first_answer("put", back)
        self.windows.append((f"Kafka stopped {down:.0f} s", t, now(), took, "first 200 after broker back"))
        self.counts["kafka_restarts"] += 1
        if took is None:
            self.fail("Kafka: no 200 after its restart")

    def restart_postgres(self, down):
        t = now()
        lag0 = self.worker_lag()
        self.stack("stop", "postgres")
        t_stopped = now()
        time.sleep(down)
        t_lag = now()
        lag1, end_age = self.worker_lag(with_age=True)
        # The end offsets are refreshed every second: commands acknowledged more than
        # 1.5 s before the sample must all be in it. On a loaded box a refresh can come
        # later than that; the sample's own end-offset age says when the offsets behind
        # it were read, and only what was acknowledged before then can be asked of it.
        behind = 1.5 if end_age is None or end_age == float("inf") else max(1.5, end_age + 0.5)
        with self.load.lock:
            acked0 = 0
            acked1 = sum(1 for r in self.recent(t_stopped)
                         if r[2] == "put" and r[5] == 200 and r[1] <= t_lag - behind)
        back = self.start_and_time("postgres")
        took = self.first_answer("get", back)
        note = f"first GET 200 after PostgreSQL back; lag {lag0}->{lag1}, PUTs acked meanwhile {acked1 - acked0}"
        self.windows.append((f"PostgreSQL stopped {down:.0f} s", t, now(), took, note))
        self.counts["postgres_restarts"] += 1
        if took is None:
            self.fail("PostgreSQL: no GET 200 after its restart")
        # The lag counts every acknowledged command not applied: at least those acked
        # while PostgreSQL was down (the cached watermarks read ~0 here, issue 13).
        # A partition assigned while PostgreSQL is down counts from Kafka's committed offsets
        # (the copy, kcopy.h), so this holds then too.
        if self.a.strict and (lag1 is None or lag1 < acked1 - acked0):
            self.fail(f"lag {lag1} during the PostgreSQL outage, below the {acked1 - acked0} PUTs acked meanwhile")

    def fence(self):
        """A second live process under the same instance id: the broker fences the first,
        which must exit non-zero (applying nothing more); the second carries on."""
        t = now()
        old = self.worker
        old.lock.acquire()
        new = Service("worker", old.binary, old.env, old.log_path, old.ops_url)
        new_port = free_port()
        new.env = dict(old.env, PROFILED_OPS_PORT=str(new_port))
        new.ops_url = f"http://127.0.0.1:{new_port}"
        new.start({"PROFILED_WORKER_INSTANCE_ID": f"chaos-{self.instance}"})
        rc = None
        try:
            rc = old.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            if shutil.which("gdb"):  # where it hangs, for the report
                with open(os.path.join(self.a.dir, "fenced-worker-stacks.txt"), "w") as f:
                    subprocess.run(["gdb", "-p", str(old.proc.pid), "-batch", "-ex", "thread apply all bt"],
                                   stdout=f, stderr=subprocess.STDOUT, timeout=60)
            old.kill()
        old.proc = None
        took = now() - t
        new.lock = old.lock
        self.worker = new
        old.lock.release()
        self.windows.append(("worker fenced (same id twice)", t, now(), took, f"old process exited {rc}"))
        self.counts["fenced"] = self.counts.get("fenced", 0) + 1
        if rc != 1:
            self.fail(f"a worker fenced by a second process under its instance id exited {rc} (expected 1)")

    def both_down(self, down):
        t = now()
        self.stack("stop", "kafka")
        self.stack("stop", "postgres")
        deadline = now() + 10
        status = None
        while now() < deadline:
            status, _ = http_get(self.api.ops_url + "/readyz")
            if status == 503:
                break
            time.sleep(0.2)
        if status != 503:
            self.fail(f"/readyz {status} with Kafka and PostgreSQL down (expected 503)")
        time.sleep(max(0.0, down - (now() - t)))
        self.start_and_time("postgres")
        back = self.start_and_time("kafka")
        took = self.first_answer("put", back)
        self.windows.append((f"Kafka+PostgreSQL stopped {down:.0f} s", t, now(), took,
                             f"/readyz {status} while both down; first 200 after Kafka back"))
        self.counts["both_down"] += 1

    def start_and_time(self, service):
        """Starts a stack service; returns the moment (our clock) its port accepted again."""
        port = self.a.kafka_port if service == "kafka" else self.a.pg_port
        seen = []

        def watch():
            while not seen and not done:
                if port_open(port):
                    seen.append(now())
                time.sleep(0.05)
        done = False
        w = threading.Thread(target=watch, daemon=True)
        w.start()
        self.stack("start", service)
        done = True
        w.join()
        return seen[0] if seen else now()

    def probe_gets(self):
        status, _, _ = self.load.request("GET", f"/profiles/{self.load.rid(1)}", None,
                                         {"Authorization": f"Bearer {self.key}"})
        return status

    # ---- the schedule

    def schedule(self):
        a = self.a
        if not a.long:
            # Short form: each fault once (twice for the worker), ~2.5 minutes.
            plan = [("worker", False), ("api", None), ("kafka", 6), ("worker", False), ("postgres", 6),
                    ("worker", True), ("fence", None), ("both", 5)]
            if a.plan:
                args = {"worker": False, "worker-new-id": True, "api": None, "kafka": 6, "postgres": 6,
                        "fence": None, "both": 5}
                plan = [(k.replace("-new-id", ""), args[k]) for k in a.plan.split(",")]
            for kind, arg in plan:
                time.sleep(a.gap)
                self.fault(kind, arg)
            return
        # Soak: a worker kill every step; the others in rotation, until the targets are met.
        step = 0
        while True:
            c = self.counts
            if (self.commands() >= a.commands and c["worker_kills"] + c["worker_kills_new_id"] >= 100
                    and c["kafka_restarts"] >= 10 and c["postgres_restarts"] >= 10 and c["api_kills"] >= 5):
                return
            if a.max_minutes and now() > a.max_minutes * 60:
                say("soak: --max-minutes reached; stopping before the targets")
                return
            time.sleep(a.gap)
            self.fault("worker", step % 10 == 9)
            step += 1
            if step % 5 == 0:
                time.sleep(a.gap)
                rot = (step // 5) % 5
                if rot in (0, 3) and c["kafka_restarts"] < 10 + step // 50:
                    self.fault("kafka", 5)
                elif rot in (1, 4) and c["postgres_restarts"] < 10 + step // 50:
                    self.fault("postgres", 5)
                elif rot == 2:
                    self.fault("api", None)
            if step % 10 == 0:
                self.progress()

    def supervise(self):
        while not self.supervisor_stop.wait(1.0):
            for svc in (self.api, self.worker):
                try:
                    svc.check_alive()
                except Exception as e:
                    say(f"supervisor: {svc.name}: {e}")

    def fault(self, kind, arg):
        say(f"fault: {kind} {arg if arg is not None else ''}")
        if kind == "worker":
            self.kill_worker(arg)
        elif kind == "api":
            self.kill_api()
        elif kind == "kafka":
            self.restart_kafka(arg)
        elif kind == "postgres":
            self.restart_postgres(arg)
        elif kind == "both":
            self.both_down(arg)
        elif kind == "fence":
            self.fence()

    def commands(self):
        return self.load.puts + (self.bulk.acked if self.bulk else 0)

    def progress(self):
        bulk = f", {self.bulk.acked} bulk commands acked" if self.bulk else ""
        say(f"progress: {self.load.puts} PUTs ({self.load.acked} answered 200){bulk}, counts {self.counts}")

    # ---- verification

    def drain(self):
        """Waits until the lag is 0 twice in a row, on every partition, from end offsets
        read after the load stopped (bounded)."""
        start = now()
        deadline = start + 180
        zeros = 0
        while now() < deadline:
            lag = self.worker_lag(every_partition=True, max_end_age=now() - start)
            zeros = zeros + 1 if lag == 0 else 0
            if zeros >= 2:
                return True
            time.sleep(1)
        return False

    def acked(self):
        with self.load.lock:
            return [r for r in self.load.results if r[2] == "put" and r[5] == 200]

    def missing_acked(self, ids=None, explain=False):
        if ids is None:
            ids = sorted({r[6].replace("-", "") for r in self.acked() if r[6]})
        if not ids:
            return 0
        rows = psql(self.dsn, "CREATE TEMP TABLE acked (id bytea);\nCOPY acked FROM STDIN;\n" +
                    "".join(f"\\\\x{i}\n" for i in ids) + "\\.\n" +
                    f"SELECT encode(id, 'hex') FROM acked a WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {self.schema}.applied_commands c WHERE c.command_id = a.id);", timeout=600)
        missing = [r[0] for r in rows if r and r[0]]
        if explain:
            for hex_id in missing[:5]:
                self.explain_lost(hex_id)
        return len(missing)

    def explain_lost(self, hex_id):
        """Says what is known of a PUT answered 200 but never applied: when it was answered, the
        partition and offset Kafka acknowledged, and what the topic holds there now."""
        answers = [r for r in self.acked() if r[6] and r[6].replace("-", "") == hex_id]
        with self.load.lock:
            headers = next((v for k, v in self.load.ack_headers.items() if k.replace("-", "") == hex_id), None)
        say(f"lost command {hex_id}: answered at {[round(r[1], 1) for r in answers]} s "
            f"(sent {[round(r[0], 1) for r in answers]} s), partition/offset/visibility {headers}")
        if not headers or headers[0] is None or headers[1] is None:
            return
        try:
            out = subprocess.run(["kcat", "-C", "-b", self.a.brokers, "-t", self.topic, "-p", headers[0],
                                  "-o", headers[1], "-c", "1", "-e", "-f", "offset %o key %k, %S bytes\n"],
                                 capture_output=True, text=True, timeout=30)
            say(f"  the topic at {headers[0]}/{headers[1]}: {out.stdout.strip() or out.stderr.strip()[:300]}")
        except (OSError, subprocess.SubprocessError) as e:
            say(f"  kcat: {e}")

    def verify(self):
        results = list(self.load.results)
        puts = [r for r in results if r[2] == "put"]
        acked = [r for r in puts if r[5] == 200]
        no_id = [r for r in acked if not r[6]]
        if no_id:
            self.fail(f"{len(no_id)} PUTs answered 200 without X-Command-Id")
        lost = self.missing_acked(explain=True)
        # Final state: the last 200 or a later ambiguous write.
        last200 = {}
        ambiguous = {}
        for r in puts:
            i, seq, status = r[3], r[4], r[5]
            if status == 200:
                last200[i] = max(last200.get(i, 0), seq)
            elif status is None or status >= 500:
                ambiguous.setdefault(i, set()).add(seq)
        rows = psql(self.dsn, f"SELECT recipient_id, (profile->>'seq')::bigint FROM {self.schema}.profiles "
                              f"WHERE recipient_id LIKE 'chaos-{self.run}-%'")
        final = {int(r[0].rsplit("-", 1)[1]): int(r[1]) for r in rows
                 if r[1] != "" and r[0].rsplit("-", 1)[1].isdigit()}
        wrong = []
        for i in range(self.a.recipients):
            want = last200.get(i, 0)
            got = final.get(i)
            ok = (got == want and want > 0) or (got is None and want == 0) or \
                 (got is not None and got > want and got in ambiguous.get(i, set()))
            if not ok:
                wrong.append((i, want, got))
        bulk_lost, bulk_wrong = 0, []
        if self.bulk:
            if self.bulk.error:
                self.fail(self.bulk.error)
            bulk_lost = self.missing_acked(self.bulk.command_ids())
            want = self.bulk.last_seq()
            rows = psql(self.dsn, f"SELECT recipient_id, (profile->>'seq')::bigint FROM {self.schema}.profiles "
                                  f"WHERE recipient_id LIKE 'chaosbulk-{self.run}-%'", timeout=300)
            got = {r[0]: int(r[1]) for r in rows if r[1] != ""}
            bulk_wrong = [(k, v, got.get(k)) for k, v in want.items() if got.get(k) != v]
            say(f"bulk: {self.bulk.acked} commands in {len(self.bulk.jobs)} profiled-import jobs "
                f"({self.bulk.reruns} re-runs), lost {bulk_lost}, wrong final rows {len(bulk_wrong)}")
            if bulk_lost:
                self.fail(f"{bulk_lost} bulk commands acknowledged by Kafka were never applied")
            if bulk_wrong:
                self.fail(f"{len(bulk_wrong)} bulk rows differ from their last line (first: {bulk_wrong[:3]})")
        regressed = psql(self.dsn, f"""
            SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY recipient_id ORDER BY id) AS prev
                                  FROM {self.schema}.chaos_writes) w WHERE seq <= prev""")[0][0]
        doubled = psql(self.dsn, f"""
            SELECT count(*) FROM (SELECT 1 FROM {self.schema}.chaos_writes
                                  GROUP BY recipient_id, command_id HAVING count(*) > 1) d""")[0][0]
        writes = psql(self.dsn, f"SELECT count(*) FROM {self.schema}.chaos_writes")[0][0]
        bad_lines = 0
        for svc in (self.worker, self.api):
            with open(svc.log_path, "rb") as f:
                for line in f:
                    try:
                        if not isinstance(json.loads(line), dict):
                            raise ValueError
                    except ValueError:
                        bad_lines += 1
                        if bad_lines <= 5:
                            say(f"not JSON in {os.path.basename(svc.log_path)}: {line[:200]!r}")
        say(f"commands: {len(puts)} PUTs ({len(acked)} answered 200, "
            f"{sum(1 for r in puts if r[5] == 503)} 503, {sum(1 for r in puts if r[5] is None)} no answer, "
            f"{self.load.skipped} slots skipped: recipient busy), "
            f"{sum(1 for r in results if r[2] == 'get')} GETs; {writes} row writes")
        say(f"faults: {self.counts}; unexpected exits: worker {self.worker.exits}, api {self.api.exits}; "
            f"liveness restarts: api {len(self.api.liveness_restarts)}, worker {len(self.worker.liveness_restarts)}")
        for t, why in self.api.liveness_restarts[:5]:
            say(f"  api liveness restart at {t:.1f}s: {why}")
        say(f"lost {lost}, wrong final rows {len(wrong)}, regressed {regressed}, doubled {doubled}, "
            f"non-JSON log lines {bad_lines}")
        if lost:
            self.fail(f"{lost} PUTs answered 200 were never applied")
        if wrong:
            self.fail(f"{len(wrong)} rows differ from their last 200 (first: {wrong[:3]})")
        if int(regressed):
            self.fail(f"{regressed} writes regressed a row")
        if int(doubled):
            self.fail(f"{doubled} (recipient, command) pairs written twice")
        if bad_lines:
            self.fail(f"{bad_lines} log lines are not JSON objects")
        say(f"worker exits fenced with no second process under its instance id (spurious fences): "
            f"{len(self.worker.spurious_fences)}")
        if self.worker.spurious_fences:
            self.fail(f"{len(self.worker.spurious_fences)} spurious fences (FENCED_INSTANCE_ID, no second process)")
        if self.worker.exits or self.api.exits:
            self.fail("a binary exited on its own during the run")
        self.report(results)

    def report(self, results):
        print("\nfault window                         availability (PUT 200 / GET 200)   recovery", flush=True)
        for name, t0, t1, took, note in self.windows:
            w = [r for r in results if t0 <= r[0] <= t1]
            p = [r for r in w if r[2] == "put"]
            g = [r for r in w if r[2] == "get"]
            pa = f"{100.0 * sum(1 for r in p if r[5] == 200) / len(p):5.1f}%" if p else "   - "
            ga = f"{100.0 * sum(1 for r in g if r[5] in (200, 404)) / len(g):5.1f}%" if g else "   - "
            rec = f"{took:6.2f} s" if took is not None else "  none"
            print(f"  {name:<34} {pa} / {ga} ({t1 - t0:5.1f} s)     {rec}  {note}", flush=True)
        by = {}
        for name, _, _, took, _ in self.windows:
            if took is not None:
                by.setdefault(name.split(" (")[0].split(" stopped")[0], []).append(took)
        for name, v in sorted(by.items()):
            v.sort()
            print(f"  recovery {name}: n={len(v)} median {v[len(v) // 2]:.2f} s, max {v[-1]:.2f} s", flush=True)
        p = [r for r in results if r[2] == "put"]
        print(f"  whole run: PUT 200 {100.0 * sum(1 for r in p if r[5] == 200) / max(1, len(p)):.1f}%", flush=True)

    def cleanup(self):
        self.api.stop()
        self.worker.stop()
        if not self.failures and not self.a.keep:
            try:
                psql(self.a.pg_dsn, f"DROP SCHEMA {self.schema} CASCADE;")
            except Exception as e:
                say(f"could not drop {self.schema}: {e}")
            # Topics left behind slow every later broker start (each log is loaded).
            deleter = os.environ.get("CHAOS_DELETE_TOPICS_BIN")
            if deleter:
                subprocess.run([deleter, self.a.brokers, self.topic, f"chaos.{self.run}.dlq"], timeout=60)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--long", action="store_true", help="the soak: until --commands and the fault counts")
    p.add_argument("--api-bin", required=True)
    p.add_argument("--worker-bin", required=True)
    p.add_argument("--stack", required=True)
    p.add_argument("--dir", required=True, help="logs")
    p.add_argument("--recipients", type=int, default=None, help="200 (short), 1000 (--long)")
    p.add_argument("--rate", type=float, default=None, help="PUT slots per second: 100 (short), 200 (--long)")
    p.add_argument("--threads", type=int, default=48)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--session-timeout", type=int, default=12,
                   help="seconds; above the 10 s same-id bound, so that a worker resuming only "
                   "after a session expiry (no static membership) fails the run")
    p.add_argument("--gap", type=float, default=None, help="seconds of steady load between faults (6; 3 --long)")
    p.add_argument("--plan", help="short form: these faults in order, e.g. worker,fence "
                   "(worker, worker-new-id, api, kafka, postgres, fence, both)")
    p.add_argument("--commands", type=int, default=1_000_000,
                   help="--long: until this many commands (PUTs sent + bulk lines acknowledged)")
    p.add_argument("--import-bin", help="profiled-import, for --bulk-rate")
    p.add_argument("--bulk-rate", type=float, default=None,
                   help="commands/s produced directly to Kafka by profiled-import jobs next to the PUTs "
                   "(0 (short), 500 (--long))")
    p.add_argument("--bulk-size", type=int, default=5000, help="lines of one bulk import job")
    p.add_argument("--bulk-recipients", type=int, default=5000)
    p.add_argument("--max-minutes", type=float, default=0)
    p.add_argument("--keep", action="store_true", help="keep the schema after a pass")
    p.add_argument("--no-strict", dest="strict", action="store_false",
                   help="soak: record the recovery targets instead of failing on them")
    a = p.parse_args()
    if a.gap is None:
        a.gap = 3.0 if a.long else 6.0
    if a.recipients is None:
        a.recipients = 1000 if a.long else 200
    if a.rate is None:
        a.rate = 200.0 if a.long else 100.0
    if a.bulk_rate is None:
        a.bulk_rate = 500.0 if a.long and a.import_bin else 0.0
    a.pg_dsn = os.environ["PROFILED_PG_DSN"]
    a.brokers = os.environ["PROFILED_KAFKA_BROKERS"]
    a.kafka_port = int(a.brokers.rsplit(":", 1)[1])
    a.pg_port = int(os.environ["PROFILED_PG_PORT"])
    os.makedirs(a.dir, exist_ok=True)
    c = Chaos(a)
    c.setup()
    try:
        c.load.start(a.threads)
        if c.bulk:
            c.bulk.start()
        c.supervisor_stop = threading.Event()
        supervisor = threading.Thread(target=c.supervise, daemon=True)
        supervisor.start()
        c.schedule()
        time.sleep(a.gap)
        c.supervisor_stop.set()
        supervisor.join()
        c.load.stop()
        if c.bulk:
            c.bulk.stop()
        say("load stopped; waiting for the worker to apply every acknowledged PUT")
        if not c.drain():
            say("not drained within 120 s")
        c.verify()
    finally:
        c.cleanup()
    if c.failures:
        print(f"\nchaos: FAILED ({len(c.failures)}):\n  " + "\n  ".join(c.failures), flush=True)
        return 1
    print("\nchaos: passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
