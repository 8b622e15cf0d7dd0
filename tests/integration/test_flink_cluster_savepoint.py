"""The order-state Flink job on the real local standalone cluster (test profile): submit it with
``flink run -d``, stop it with a savepoint half way through the log, resume it from the savepoint,
and check that the compacted output topic ends up with exactly what the pure fold says, with no
record lost and none emitted twice by the stop/resume.

Everything is real: Kafka of the test stack (``stack`` fixture), the cluster of
``infra.flink_cluster`` (started here if it is not running, and then stopped here), the job
submitted through ``python -m infra.flink_cluster flink -- run -d -py jobs/order_state_job.py``.
Takes ~30 s on a running cluster (+7 s to start it), most of it in the three CLI calls
(``flink run`` x2, ``flink stop``: a client JVM each, plus the Python client building the job
graph) and in the Python workers' start-up.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from projections.order_state import fold, fold_all
from projections.order_view import public_view
from projections.timefmt import jsonable
from schemas.codec import AvroCodec
from simulator.events import MINUTE, T0, order_story
from tests.integration.kafka_helpers import SyncProducer, all_records, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / "jobs" / "order_state_job.py"
PROFILE = "test"
ORDERS = 20
ENDINGS = ("signed", "redispatched", "refused", "cancelled", "out_of_stock")
TERMINAL = {"FINISHED", "CANCELED", "FAILED"}

Event = tuple[str, dict[str, Any]]
Emission = tuple[int, int, bytes]  # (version, rejected_events, OrderState bytes) of one projection record


# ----------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def flink_cluster() -> Iterator[Any]:
    from infra import flink_cluster as fc
    from infra import flink_env

    problems = flink_env.check()
    if problems:
        pytest.fail("Flink is not set up (" + "; ".join(problems) + "): run scripts/setup_flink.sh")
    started_here = not fc.is_healthy(PROFILE)
    cluster = fc.ensure_started(PROFILE)
    try:
        yield cluster
    finally:
        if started_here and not os.environ.get("KUAILV_KEEP_TEST_STACK"):
            fc.stop(PROFILE)


def flink_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``bin/flink <args>`` against the test cluster, through the project's own wrapper."""
    cmd = [sys.executable, "-m", "infra.flink_cluster", "flink", "--profile", PROFILE, "--", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def cli_output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(proc.args)}\n(exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}"


def rest(cluster: Any, path: str) -> Any:
    from infra import flink_cluster as fc

    return fc.rest_get(cluster, path, timeout=5.0)


def job_state(cluster: Any, job_id: str) -> tuple[str | None, list[str]]:
    """The job's state and its vertices' states (REST ``/jobs/<id>``)."""
    body = rest(cluster, f"/jobs/{job_id}") or {}
    return body.get("state"), [v.get("status") for v in body.get("vertices", [])]


def wait_running(cluster: Any, job_id: str, timeout: float = 45.0) -> None:
    """RUNNING with every task RUNNING (a stop-with-savepoint needs all tasks up)."""

    def running() -> bool:
        state, vertices = job_state(cluster, job_id)
        if state in TERMINAL:
            raise AssertionError(f"job {job_id} is {state} before it ran")
        return state == "RUNNING" and bool(vertices) and all(v == "RUNNING" for v in vertices)

    wait_for(running, timeout, f"job {job_id} and all its tasks RUNNING", interval=0.3)


def wait_state(cluster: Any, job_id: str, wanted: str, timeout: float = 30.0) -> None:
    wait_for(lambda: job_state(cluster, job_id)[0] == wanted, timeout, f"job {job_id} {wanted}", interval=0.3)


def submit(job_args: list[str], savepoint: str | None = None) -> tuple[str, str]:
    """``flink run -d [-s savepoint] -py jobs/order_state_job.py <job args>``: the job id and CLI output."""
    resume = ["-s", savepoint] if savepoint else []
    proc = flink_cli("run", "-d", *resume, "-py", str(JOB), *job_args, timeout=120)
    out = cli_output(proc)
    found = re.search(r"JobID ([0-9a-f]{32})", proc.stdout)
    assert proc.returncode == 0 and found, f"flink run failed:\n{out}"
    return found.group(1), out


def stop_with_savepoint(job_id: str, directory: Path) -> tuple[str, str]:
    proc = flink_cli("stop", "--savepointPath", str(directory), job_id, timeout=90)
    out = cli_output(proc)
    found = re.search(r"Savepoint completed\. Path: (\S+)", proc.stdout)
    assert proc.returncode == 0 and found, f"flink stop --savepointPath failed:\n{out}"
    return found.group(1), out


def diagnostics(cluster: Any, job_ids: list[str], cli_logs: list[str]) -> str:
    """Job exceptions from the REST API, the CLI outputs and the tails of Flink's logs."""
    parts = []
    for job_id in job_ids:
        parts.append(f"--- job {job_id}: state {job_state(cluster, job_id)}")
        exceptions = rest(cluster, f"/jobs/{job_id}/exceptions?maxExceptions=5") or {}
        history = exceptions.get("exceptionHistory", {}).get("entries", [])
        for entry in history[:3]:
            parts.append(f"exception at {entry.get('timestamp')} in {entry.get('taskName')}:\n"
                         + "\n".join(str(entry.get("stacktrace", "")).splitlines()[:40]))
        if not history and exceptions.get("root-exception"):
            parts.append("\n".join(str(exceptions["root-exception"]).splitlines()[:40]))
    parts.extend(cli_logs[-4:])
    logs = sorted(cluster.log_dir.glob("flink-*.log"), key=lambda p: p.stat().st_mtime)[-3:]
    for path in logs:
        lines = path.read_text(errors="replace").splitlines()[-40:]
        parts.append(f"--- last lines of {path}:\n" + "\n".join(lines))
    return "\n".join(parts)


# ----------------------------------------------------------------------------- topics


def create_topics(bootstrap: str, specs: dict[str, tuple[int, dict[str, str]]]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    from infra.services import quiet_client_config

    admin = AdminClient(quiet_client_config(bootstrap))
    new = [NewTopic(name, num_partitions=n, replication_factor=1, config=config)
           for name, (n, config) in specs.items()]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result(timeout=30)

    def leaders() -> bool:
        topics = admin.list_topics(timeout=10).topics
        return all(name in topics and len(topics[name].partitions) == n
                   and all(p.leader >= 0 for p in topics[name].partitions.values())
                   for name, (n, _) in specs.items())

    wait_for(leaders, 30, f"leaders for {sorted(specs)}", interval=0.2)


def delete_topics(bootstrap: str, names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    from infra.services import quiet_client_config

    admin = AdminClient(quiet_client_config(bootstrap))
    for future in admin.delete_topics(names, operation_timeout=30).values():
        try:
            future.result(timeout=30)
        except Exception as exc:  # cleanup: report, don't mask the test's own outcome
            print(f"could not delete topic: {exc}")


# ----------------------------------------------------------------------------- the log and its model


def build_parts(seed: int = 7) -> tuple[list[Event], list[Event]]:
    """Two parts of a log of ORDERS orders. Every order's story is perturbed (adjacent events
    swapped: the later version arrives first and is buffered by the fold) and cut in two; part 1
    has the first piece of every story, part 2 the rest. Both parts carry re-delivered duplicates
    (part 2 also re-delivers events of part 1, which only a restored fold state recognises).
    Orders are interleaved at random; each order's own sequence is what the job sees, since all
    of an order's records share a partition (key = order id) and a keyed operator instance."""
    rng = random.Random(seed)
    first: dict[str, list[Event]] = {}
    rest_: dict[str, list[Event]] = {}
    for i in range(ORDERS):
        oid = f"KLSP{i:04d}"
        story = order_story(oid, T0 + i * MINUTE, ending=ENDINGS[i % len(ENDINGS)])
        j = 0
        while j < len(story) - 1:
            if rng.random() < 0.3:
                story[j], story[j + 1] = story[j + 1], story[j]
                j += 1
            j += 1
        cut = rng.randrange(1, len(story))
        first[oid], rest_[oid] = story[:cut], story[cut:]
    # one cut that matters: part 1 of this order is a lone v2, buffered (no view, no output) and
    # carried across the savepoint in the fold state; v1 arrives after the resume
    first["KLSP0000"], rest_["KLSP0000"] = [story_event("KLSP0000", 2)], [story_event("KLSP0000", 1),
                                                                          *order_story_tail("KLSP0000", 2)]
    for events in first.values():
        for _ in range(rng.randrange(0, 3)):
            events.insert(rng.randrange(len(events) + 1), rng.choice(events))
    for oid, events in rest_.items():
        pool = first[oid] + events
        for _ in range(rng.randrange(1, 4)):
            events.insert(rng.randrange(len(events) + 1), rng.choice(pool))
    return interleave(rng, first), interleave(rng, rest_)


def story_event(oid: str, version: int) -> Event:
    i = int(oid[4:])
    return order_story(oid, T0 + i * MINUTE, ending=ENDINGS[i % len(ENDINGS)])[version - 1]


def order_story_tail(oid: str, after: int) -> list[Event]:
    i = int(oid[4:])
    return order_story(oid, T0 + i * MINUTE, ending=ENDINGS[i % len(ENDINGS)])[after:]


def interleave(rng: random.Random, per_order: dict[str, list[Event]]) -> list[Event]:
    queues = {oid: list(events) for oid, events in per_order.items() if events}
    out: list[Event] = []
    while queues:
        oid = rng.choice(sorted(queues))
        out.append(queues[oid].pop(0))
        if not queues[oid]:
            del queues[oid]
    return out


def expected_emissions(codec: AvroCodec, log: list[Event]) -> dict[str, list[Emission]]:
    """What a per-record job would emit per order for ``log`` (in order): a projection only when the
    visible view changed (the batched job emits a subsequence, see ``assert_coalesced``). A duplicate
    changes nothing; an event that arrives before its predecessor is buffered, which changes the fold
    state but not the view, so nothing is emitted either. Every emission is a new (version, rejected)."""
    states: dict[str, Any] = {}
    out: dict[str, list[Emission]] = defaultdict(list)
    for event_type, event in log:
        oid = event["order_id"]
        before = states.get(oid)
        result = fold(before, event_type, event)
        states[oid] = result.state
        view = result.state["view"]
        if view is not None and view is not (before or {}).get("view"):
            out[oid].append((view["version"], view["rejected_events"], codec.encode("OrderState", view)))
    return dict(out)


def actual_emissions(codec: AvroCodec, bootstrap: str, topic: str) -> dict[str, list[Emission]]:
    """The output topic per order, in offset order (an order's records share one partition)."""
    out: dict[str, list[Emission]] = defaultdict(list)
    for rec in all_records(bootstrap, topic):
        assert rec.key is not None and rec.value is not None, f"tombstone or keyless record at {rec.position}"
        view = codec.decode(rec.value).value
        assert view["order_id"] == rec.key.decode(), f"key {rec.key!r} is not the order id at {rec.position}"
        out[view["order_id"]].append((view["version"], view["rejected_events"], rec.value))
    return dict(out)


def last_pairs(emissions: dict[str, list[Emission]]) -> dict[str, tuple[int, int]]:
    return {oid: (seq[-1][0], seq[-1][1]) for oid, seq in emissions.items() if seq}


def assert_coalesced(got: dict[str, list[Emission]], want: dict[str, list[Emission]], what: str) -> None:
    """The job folds a partition's records in batches and publishes an order once per batch, with
    its view at the end of the batch. So per order the output is a subsequence of the per-record
    emissions: strictly increasing (version, rejected), each with exactly the fold's bytes for it,
    and ending with the last one. A repeat (a re-emission by the stop/resume) breaks "strictly"."""
    assert sorted(got) == sorted(want), f"{what}: orders differ"
    for oid, seq in want.items():
        by_pair = {(v, r): b for v, r, b in seq}
        pairs = [(v, r) for v, r, _ in got[oid]]
        assert pairs == sorted(set(pairs)), f"{what}: {oid} emitted {pairs}: not strictly increasing"
        for v, r, b in got[oid]:
            assert by_pair.get((v, r)) == b, f"{what}: {oid} v{v}/{r} is not the fold's projection"
        assert pairs[-1] == (seq[-1][0], seq[-1][1]), f"{what}: {oid} ends at {pairs[-1]}"


def summary(emissions: dict[str, list[Emission]]) -> dict[str, list[tuple[int, int]]]:
    return {oid: [(v, r) for v, r, _ in seq] for oid, seq in sorted(emissions.items())}


def repeats(emissions: dict[str, list[Emission]]) -> Counter[tuple[str, int, int]]:
    counts = Counter((oid, v, r) for oid, seq in emissions.items() for v, r, _ in seq)
    return Counter({k: n - 1 for k, n in counts.items() if n > 1})


# ----------------------------------------------------------------------------- the test


def test_stop_with_savepoint_and_resume_on_the_local_cluster(stack: Settings, flink_cluster: Any) -> None:
    t_start = time.monotonic()
    bootstrap = stack.kafka_bootstrap
    cluster = flink_cluster
    codec = AvroCodec()
    run_id = uuid.uuid4().hex[:10]
    input_topic = f"kuailv.order-events.it-flink-sp-{run_id}"
    output_topic = f"kuailv.order-state.it-flink-sp-{run_id}"
    dead_topic = f"kuailv.dead-letters.it-flink-sp-{run_id}"
    savepoint_dir = cluster.savepoint_dir / f"it-{run_id}"
    job_args = ["--profile", PROFILE, "--input-topic", input_topic, "--output-topic", output_topic,
                "--dead-letter-topic", dead_topic, "--group", f"it-flink-sp-{run_id}", "--checkpoint-ms", "2000",
                "--no-restart"]
    part1, part2 = build_parts()
    whole = part1 + part2
    timings: dict[str, float] = {}
    job_ids: list[str] = []
    cli_logs: list[str] = []

    def mark(what: str) -> None:
        timings[what] = time.monotonic() - t_start

    create_topics(bootstrap, {input_topic: (6, {}), output_topic: (6, {"cleanup.policy": "compact"}),
                              dead_topic: (3, {})})
    mark("topics")
    try:
        # --- web UI
        with urllib.request.urlopen(cluster.rest_url + "/", timeout=5) as resp:
            assert resp.status == 200, f"web UI GET / answered {resp.status}"
            assert b"<html" in resp.read(4096).lower(), "web UI GET / is not the dashboard's HTML"

        # --- part 1 on the first job
        job1, out = submit(job_args)
        job_ids.append(job1)
        cli_logs.append(out)
        mark("submitted job 1")
        wait_running(cluster, job1)
        mark("job 1 running")
        producer = SyncProducer(bootstrap)
        for event_type, event in part1:
            producer.send(input_topic, event["order_id"].encode(), codec.encode(event_type, event))
        producer.flush()
        want1 = expected_emissions(codec, part1)
        n_want1 = sum(len(s) for s in want1.values())
        wait_for(lambda: last_pairs(actual_emissions(codec, bootstrap, output_topic)) == last_pairs(want1),
                 40, "every order's part-1 projection", interval=0.5)
        mark("part 1 projected")

        savepoint, out = stop_with_savepoint(job1, savepoint_dir)
        cli_logs.append(out)
        wait_state(cluster, job1, "FINISHED")  # stop (without --drain) finishes the job after the savepoint
        mark("stopped with savepoint")
        got1 = actual_emissions(codec, bootstrap, output_topic)
        assert_coalesced(got1, want1, "after part 1")

        # --- part 2 (the rest of every story + re-deliveries), then resume from the savepoint
        for event_type, event in part2:
            producer.send(input_topic, event["order_id"].encode(), codec.encode(event_type, event))
        producer.flush()
        job2, out = submit(job_args, savepoint=savepoint)
        job_ids.append(job2)
        cli_logs.append(out)
        mark("submitted job 2 from the savepoint")
        wait_running(cluster, job2)
        mark("job 2 running")

        want = expected_emissions(codec, whole)
        n_want = sum(len(s) for s in want.values())
        wait_for(lambda: last_pairs(actual_emissions(codec, bootstrap, output_topic)) == last_pairs(want),
                 40, "every order's final projection", interval=0.5)
        # A spurious re-emission by the resumed job would come first (replayed records precede new
        # ones), so it is already in by now; one more checkpoint interval + bundle flush to be sure.
        time.sleep(3)
        mark("whole log projected")
        got = actual_emissions(codec, bootstrap, output_topic)

        # Nothing lost: the latest projection per order is the fold of the whole log.
        states, rejections = fold_all(whole)
        assert not rejections, rejections
        assert len(states) == ORDERS and all(s["view"] is not None for s in states.values())
        latest = {oid: codec.decode(seq[-1][2]).value for oid, seq in got.items()}
        assert sorted(latest) == sorted(states), "orders missing from the output topic"
        for oid, state in states.items():
            assert latest[oid] == codec.decode(codec.encode("OrderState", state["view"])).value, oid
            assert public_view(jsonable(latest[oid])) == public_view(state["view"]), oid

        # Exactly-once-looking output. The job's sink is at-least-once, so a restore from a
        # *checkpoint* after a failure would replay the records since that checkpoint and
        # re-emit their projections. `flink stop` is different: it takes a synchronous savepoint
        # (the sources stop emitting at the barrier, every operator snapshots, the at-least-once
        # Kafka sink flushes its producer before acknowledging) and then ends the job without
        # processing anything after the barrier. The savepoint's source offsets and fold state
        # therefore describe exactly the records whose projections are already on the topic, and
        # the resumed job starts right after them: it re-emits nothing. The job publishes only
        # when the view changes, so no (order, version, rejected) record may appear twice at all.
        assert not repeats(want), "the model itself should have no repeats"
        assert not repeats(got), f"repeated (order, version, rejected) records: {dict(repeats(got))}"
        assert_coalesced(got, want, "whole log")
        assert all_records(bootstrap, dead_topic) == [], "dead letters for a log with no bad record"

        # --- cancel the resumed job
        proc = flink_cli("cancel", job2)
        cli_logs.append(cli_output(proc))
        assert proc.returncode == 0, f"flink cancel failed:\n{cli_logs[-1]}"
        wait_state(cluster, job2, "CANCELED")
        mark("canceled")
        print("timings (s since start): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
        print(f"part 1: {len(part1)} records -> {sum(map(len, got1.values()))} projections (per record: "
              f"{n_want1}); whole: {len(whole)} records -> {sum(map(len, got.values()))} (per record: {n_want}), "
              f"no repeats; savepoint {savepoint}")
    except BaseException:
        print(f"timings (s since start): {timings}")
        print(diagnostics(cluster, job_ids, cli_logs))
        raise
    finally:
        for job_id in job_ids:  # leave no job of ours running on a cluster we may not own
            if job_state(cluster, job_id)[0] not in TERMINAL | {None}:
                cancel = urllib.request.Request(f"{cluster.rest_url}/jobs/{job_id}?mode=cancel", method="PATCH")
                try:
                    urllib.request.urlopen(cancel, timeout=10).close()
                except (OSError, urllib.error.URLError) as exc:
                    print(f"could not cancel job {job_id}: {exc}")
        delete_topics(bootstrap, [input_topic, output_topic, dead_topic])
        shutil.rmtree(savepoint_dir, ignore_errors=True)
        for job_id in job_ids:  # retained checkpoints of our jobs (RETAIN_ON_CANCELLATION)
            shutil.rmtree(cluster.checkpoint_dir / job_id, ignore_errors=True)
