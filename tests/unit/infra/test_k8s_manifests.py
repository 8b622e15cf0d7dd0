"""The Kubernetes files (infra/k8s/) agree with the code: commands and agents exist, every KUAILV_* name is
read by config/, KEDA triggers name the groups and topics the worker derives, replica and parallelism caps
fit the partitions of schemas/topics.py, and the Flink autoscaler keys are the operator's."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import build_parser
from schemas.topics import ALL_TOPICS, FLEET
from streams.worker import AGENTS

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "infra" / "k8s"
PARTITIONS = {t.name: t.partitions for t in ALL_TOPICS}
# Verified against the Flink Kubernetes Operator's AutoScalerOptions and its 1.11.0 release notes
# (utilization.target/min/max); a key outside this list is a typo or needs checking first.
def flink_projections() -> tuple[str, ...]:
    """jobs/timed_projection_job.py's PROJECTIONS, read without importing pyflink (only in .venv-flink)."""
    tree = ast.parse((ROOT / "jobs" / "timed_projection_job.py").read_text())
    (value,) = [n.value for n in tree.body if isinstance(n, ast.Assign)
                and any(getattr(t, "id", None) == "PROJECTIONS" for t in n.targets)]
    return ast.literal_eval(value)


AUTOSCALER_KEYS = {
    "enabled", "scaling.enabled", "metrics.window", "stabilization.interval", "utilization.target",
    "utilization.min", "utilization.max", "target.utilization", "target.utilization.boundary",
    "scale-up.grace-period", "scale-down.max-factor", "scale-up.max-factor", "catch-up.duration", "restart.time",
    "restart.time-tracking.enabled", "restart.time-tracking.limit", "vertex.min-parallelism",
    "vertex.max-parallelism", "backlog-processing.lag-threshold", "memory.tuning.enabled",
}


@functools.cache
def docs() -> list[tuple[Path, dict[str, Any]]]:
    """Every YAML document under infra/k8s (parsed once; tests only read them)."""
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path, doc))
    return out


def of_kind(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in docs() if d.get("kind") == kind]


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in of_kind("Deployment")}


def container(dep: dict[str, Any]) -> dict[str, Any]:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def agents_of(dep: dict[str, Any]) -> list[str]:
    args = container(dep)["args"]
    assert args[0] == "worker", args
    return args[args.index("--agents") + 1].split(",")


def agent_groups() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Agent name -> (group suffix, topics), as streams.worker.make_loop derives them."""
    from streams.alert_agent import AlertAgent
    from streams.fleet_agent import FleetAgent
    from streams.geofence_agent import GeofenceAgent
    from streams.order_agent import OrderStateAgent
    from streams.stock_agent import StockAgent
    from streams.telemetry_agent import TelemetryAgent

    classes = {"orders": OrderStateAgent, "telemetry": TelemetryAgent, "geofences": GeofenceAgent,
               "alerts": AlertAgent, "fleet": FleetAgent, "stock": StockAgent}
    return {n: (getattr(c, "group_suffix", ""), tuple(c.topics)) for n, c in classes.items()}


def base_group() -> str:
    (cm,) = [d for _, d in of_kind("ConfigMap") if d["metadata"]["name"] == "kuailv-env"]
    return cm["data"]["KUAILV_CONSUMER_GROUP"]


def test_every_file_parses_and_names_its_kind() -> None:
    found = docs()
    assert len(found) >= 15
    for path, doc in found:
        assert doc.get("apiVersion") and doc.get("kind"), path
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], path


def test_kustomization_lists_existing_files() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (K8S / res).is_file(), res
    assert "secrets.example.yaml" not in kust["resources"]
    assert "hpa-external-lag.example.yaml" not in kust["resources"]


def test_commands_parse_and_agents_exist() -> None:
    parser = build_parser()
    for name, dep in deployments().items():
        args = container(dep)["args"]
        parser.parse_args(args)  # exits (SystemExit) on an unknown command or option
        if args[0] == "worker":
            assert set(agents_of(dep)) <= set(AGENTS), name


def test_every_kuailv_variable_is_read_by_config() -> None:
    known = set()
    for src in ("config/settings.py", "config/kafka_client.py"):
        known |= set(re.findall(r'"(KUAILV_[A-Z0-9_]+)"', (ROOT / src).read_text()))
    used = set()
    for _, doc in docs():
        if doc["kind"] == "ConfigMap":
            used |= set(doc["data"])
        if doc["kind"] == "Secret":
            used |= set(doc["stringData"])
        if doc["kind"] == "Deployment":
            used |= {e["name"] for e in container(doc).get("env", [])}
    used = {u for u in used if u.startswith("KUAILV_")}
    assert used and used <= known, sorted(used - known)


def test_keda_triggers_match_the_worker_groups_and_partitions() -> None:
    groups, base, deps = agent_groups(), base_group(), deployments()
    scaled = of_kind("ScaledObject")
    assert len(scaled) >= 4
    for path, so in scaled:
        spec = so["spec"]
        dep = deps[spec["scaleTargetRef"]["name"]]
        agents = agents_of(dep)
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], path
        for trig in spec["triggers"]:
            assert trig["type"] == "kafka"
            meta = trig["metadata"]
            matching = [a for a in agents if meta["topic"] in groups[a][1]
                        and meta["consumerGroup"] == base + groups[a][0]]
            assert matching, f"{path}: {meta['consumerGroup']}/{meta['topic']} is read by none of {agents}"
            assert spec["maxReplicaCount"] <= PARTITIONS[meta["topic"]], f"{path}: more pods than partitions"
            assert int(meta["lagThreshold"]) > 0
            assert meta["allowIdleConsumers"] == "false"


def test_the_fleet_agent_is_one_active_plus_standby_never_autoscaled() -> None:
    assert FLEET.partitions == 1
    fleet = [n for n, d in deployments().items() if container(d)["args"][0] == "worker" and "fleet" in agents_of(d)]
    assert fleet == ["kuailv-worker-fleet"]
    assert deployments()["kuailv-worker-fleet"]["spec"]["replicas"] == 2
    targets = {so["spec"]["scaleTargetRef"]["name"] for _, so in of_kind("ScaledObject")}
    targets |= {h["spec"]["scaleTargetRef"]["name"] for _, h in of_kind("HorizontalPodAutoscaler")}
    assert "kuailv-worker-fleet" not in targets


def test_worker_memory_limits_stay_within_the_rss_target() -> None:
    for name, dep in deployments().items():
        limit = container(dep)["resources"]["limits"]["memory"]
        mib = int(limit[:-2]) * (1024 if limit.endswith("Gi") else 1)
        assert mib <= 1024, name
        grace = dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        if container(dep)["args"][0] == "worker":
            assert grace > 30, f"{name}: the worker's shutdown grace for a failing sink is 30 s"


def test_external_lag_hpa_uses_the_exported_metric_and_real_groups() -> None:
    metrics = (ROOT / "service" / "metrics.py").read_text()
    groups, base, deps = agent_groups(), base_group(), deployments()
    hpas = [(p, h) for p, h in of_kind("HorizontalPodAutoscaler") if p.name.startswith("hpa-external")]
    assert hpas
    for path, hpa in hpas:
        dep = deps[hpa["spec"]["scaleTargetRef"]["name"]]
        (m,) = hpa["spec"]["metrics"]
        assert f'"{m["external"]["metric"]["name"]}"' in metrics
        group = m["external"]["metric"]["selector"]["matchLabels"]["group"]
        (agent,) = agents_of(dep)
        assert group == base + groups[agent][0], path
        assert hpa["spec"]["maxReplicas"] <= min(PARTITIONS[t] for t in groups[agent][1]), path


@pytest.mark.parametrize("name", ["kuailv-order-state", "kuailv-geofences", "kuailv-alerts"])
def test_flink_autoscaler_keys_and_parallelism(name: str) -> None:
    (fd,) = [d for _, d in of_kind("FlinkDeployment") if d["metadata"]["name"] == name]
    conf, job = fd["spec"]["flinkConfiguration"], fd["spec"]["job"]
    keys = {k.removeprefix("job.autoscaler.") for k in conf if k.startswith("job.autoscaler.")}
    assert keys <= AUTOSCALER_KEYS, sorted(keys - AUTOSCALER_KEYS)
    assert conf["job.autoscaler.enabled"] == "true"
    args = job["args"]
    if "--projection" in args:
        projection = args[args.index("--projection") + 1]
        assert projection in flink_projections()
        topics = agent_groups()[projection][1]
    else:
        topics = ("kuailv.order-events.v1",)
    most = min(PARTITIONS[t] for t in topics)
    max_par = int(conf["pipeline.max-parallelism"])
    assert max_par <= most, f"{name}: max parallelism above the partitions of {topics}"
    assert int(conf["job.autoscaler.vertex.max-parallelism"]) <= max_par
    assert int(conf["job.autoscaler.vertex.min-parallelism"]) <= job["parallelism"] <= max_par
