"""The versioned rules file: the shipped one loads, and every mistake is named by rule and field."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from config.alert_rules import DEFAULT_RULES_PATH, load_rules_file
from projections.alert_rules import (
    CATEGORIES,
    COMPARTMENTS,
    KINDS,
    ColdChainBreach,
    LateDelivery,
    RulesError,
    Stuck,
    TempRange,
    WeightDeviation,
    load_rules,
)
from projections.alerts import ROLES

ROOT = Path(__file__).resolve().parents[3]
RAW: dict[str, Any] = json.loads(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))


def _symbols(schema: str, name: str) -> list[str]:
    found: list[list[str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "enum" and node.get("name") == name:
                found.append(node["symbols"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads((ROOT / "schemas/avro" / schema).read_text(encoding="utf-8")))
    return found[0]


def test_the_shipped_rules_file_loads() -> None:
    rules = load_rules_file()
    assert rules.version == 1
    assert sorted(rule.kind for rule in rules.rules.values()) == sorted(KINDS)
    assert set(rules.rules) == {"late-delivery", "stuck", "stock-shortage", "out-of-stock", "weight-deviation",
                                "cold-chain-breach", "cold-chain-exposure", "gps-silent", "exception-reported",
                                "driver-nearby", "arriving-soon", "likely-late", "low-stock"}
    late = rules.rules["late-delivery"]
    assert late.params == LateDelivery(grace_min=30) and late.severity == "CRITICAL"
    stuck = rules.rules["stuck"].params
    assert isinstance(stuck, Stuck) and set(stuck.limits_min) >= {"CREATED", "PAID", "PACKED", "EXCEPTION_HANDLING"}
    weight = rules.rules["weight-deviation"].params
    assert isinstance(weight, WeightDeviation) and weight.tolerance("MEAT") == 3
    assert weight.category({"sku": "MEAT-PORK-BELLY"}) == "MEAT" and weight.category({"sku": "X-1"}) is None
    assert weight.tolerance(None) == weight.default_tolerance_pct
    breach = rules.rules["cold-chain-breach"].params
    assert isinstance(breach, ColdChainBreach) and breach.min_duration_min == 10
    assert breach.ranges_c["CHILLED"] == TempRange(0, 4) and breach.ranges_c["FROZEN"] == TempRange(None, -18)
    assert "AMBIENT" not in breach.ranges_c
    exc = rules.rules["exception-reported"]
    assert {"CUSTOMER", "CUSTOMER_SERVICE"} <= set(exc.audience)
    assert all(set(rule.audience) <= set(ROLES) for rule in rules.rules.values())


def test_the_vocabularies_match_the_avro_schemas() -> None:
    assert list(CATEGORIES) == _symbols("events/order_created.v2.avsc", "Category")
    assert list(COMPARTMENTS) == _symbols("telemetry/sensor_reading.avsc", "Compartment")
    weight = load_rules_file().rules["weight-deviation"].params
    assert isinstance(weight, WeightDeviation) and set(weight.tolerance_pct) == set(CATEGORIES)


def test_rule_sets_are_immutable() -> None:
    rules = load_rules_file()
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        rules.rules["x"] = rules.rules["stuck"]  # type: ignore[index]
    stuck = rules.rules["stuck"].params
    assert isinstance(stuck, Stuck)
    with pytest.raises(TypeError):
        stuck.limits_min["PAID"] = 1  # type: ignore[index]


def test_temperature_ranges() -> None:
    chilled, frozen = TempRange(0, 4), TempRange(None, -18)
    assert chilled.contains(0) and chilled.contains(4) and not chilled.contains(4.01) and not chilled.contains(-0.5)
    assert frozen.contains(-25) and frozen.contains(-18) and not frozen.contains(-17.9)
    assert (chilled.label, frozen.label, TempRange(2, None).label) == ("0..4 °C", "<= -18 °C", ">= 2 °C")


def _rule(raw: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(rule for rule in raw["rules"] if rule["id"] == rule_id)


def _set(rule_id: str, field: str, value: Any):  # type: ignore[no-untyped-def]
    def change(raw: dict[str, Any]) -> None:
        _rule(raw, rule_id)[field] = value
    return change


def _limits(raw: dict[str, Any]) -> None:
    _rule(raw, "stuck")["limits_min"]["PAID"] = -5


def _drop(rule_id: str, field: str):  # type: ignore[no-untyped-def]
    def change(raw: dict[str, Any]) -> None:
        del _rule(raw, rule_id)[field]
    return change


SHIPPED_RULES = len(json.loads(DEFAULT_RULES_PATH.read_text("utf-8"))["rules"])  # the next index


def _duplicate(raw: dict[str, Any]) -> None:
    raw["rules"].append(copy.deepcopy(raw["rules"][0]))


def _second_kind(raw: dict[str, Any]) -> None:
    raw["rules"].append({**copy.deepcopy(_rule(raw, "gps-silent")), "id": "gps-silent-long"})


BAD = [
    (_limits, "rule 'stuck': limits_min.PAID must be a positive number, got -5"),
    (_set("stuck", "limits_min", {"DELIVERING": 5}), "rule 'stuck': limits_min.DELIVERING is not one of"),
    (_set("stuck", "limits_min", {}), "rule 'stuck': limits_min is empty"),
    (_set("late-delivery", "grace_min", True), "rule 'late-delivery': grace_min must be a positive number, got True"),
    (_set("late-delivery", "grace_min", "30"), "rule 'late-delivery': grace_min must be a positive number, got '30'"),
    (_set("late-delivery", "grace", 30), "rule 'late-delivery': unknown field 'grace'"),
    (_drop("late-delivery", "grace_min"), "rule 'late-delivery': grace_min is required for kind late-delivery"),
    (_set("gps-silent", "kind", "gps-lost"), "rule 'gps-silent': kind must be one of"),
    (_set("gps-silent", "severity", "FATAL"), "rule 'gps-silent': severity must be one of INFO, WARNING, CRITICAL"),
    (_set("gps-silent", "audience", ["OPERATOR", "PILOT"]), "rule 'gps-silent': audience must be a non-empty list"),
    (_set("gps-silent", "audience", []), "rule 'gps-silent': audience"),
    (_set("gps-silent", "audience", ["DRIVER", "DRIVER"]), "rule 'gps-silent': audience"),
    (_set("gps-silent", "message", ""), "rule 'gps-silent': message must be a non-empty string"),
    (_set("gps-silent", "message", "Driver {driver} silent"), "rule 'gps-silent': message placeholder {driver}"),
    (_set("gps-silent", "message", "Silent {silence_min:.1f}"), "rule 'gps-silent': message placeholder"),
    (_set("gps-silent", "message", "Silent {silence_min"), "rule 'gps-silent': message is not a valid template"),
    (_set("gps-silent", "id", "GPS Silent"), "rules[7]: id must be lower-case words joined by '-'"),
    (_set("weight-deviation", "tolerance_pct", {"FISH": 3}), "rule 'weight-deviation': tolerance_pct.FISH is not"),
    (_set("weight-deviation", "category_by_sku_prefix", {"SEA-": "FISH"}),
     "rule 'weight-deviation': category_by_sku_prefix.SEA- must be one of"),
    (_set("cold-chain-breach", "ranges_c", {"CHILLED": {"min": 4, "max": 0}}),
     "rule 'cold-chain-breach': ranges_c.CHILLED.min 4 is above max 0"),
    (_set("cold-chain-breach", "ranges_c", {"CHILLED": {}}), "rule 'cold-chain-breach': ranges_c.CHILLED needs"),
    (_set("cold-chain-breach", "ranges_c", {"CHILLED": {"low": 0}}),
     "rule 'cold-chain-breach': ranges_c.CHILLED: unknown field 'low'"),
    (_set("cold-chain-breach", "ranges_c", {"CHILLED": {"max": float("nan")}}),
     "rule 'cold-chain-breach': ranges_c.CHILLED.max must be a number, got nan"),
    (_set("cold-chain-exposure", "max_gap_min", 0), "rule 'cold-chain-exposure': max_gap_min must be a positive"),
    (_duplicate, f"rule 'late-delivery': duplicate id (rules[{SHIPPED_RULES}])"),
    (_second_kind, "rule 'gps-silent-long': kind gps-silent is already used by rule 'gps-silent'"),
    (lambda raw: raw.update(version=0), "rules file: version must be an integer >= 1, got 0"),
    (lambda raw: raw.update(version=True), "rules file: version must be an integer >= 1, got True"),
    (lambda raw: raw.update(rules={}), "rules file: rules must be a list"),
    (lambda raw: raw.update(owner="ops"), "rules file: unknown field 'owner'"),
    (lambda raw: raw["rules"].append("late-delivery"), f"rules[{SHIPPED_RULES}] must be an object"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD, ids=[m for _, m in BAD])
def test_validation_errors_name_the_rule_and_the_field(mutate: Any, message: str) -> None:
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(RulesError) as caught:
        load_rules(raw)
    assert message in str(caught.value)


def test_kinds_and_params_are_optional_as_a_whole() -> None:
    rules = load_rules({"version": 3, "rules": [_rule(RAW, "stuck")]})
    assert rules.version == 3 and list(rules.rules) == ["stuck"]
    assert rules.by_kind("late-delivery") is None and rules.by_kind("stuck") is rules.rules["stuck"]
    assert load_rules({"version": 1, "rules": []}).rules == {}


def test_rendering_fills_placeholders_and_marks_missing_values() -> None:
    rule = load_rules_file().rules["gps-silent"]
    text = rule.render({"driver_id": "DRV-001", "order_count": "2", "silence_min": "10"})
    assert text.startswith("Driver DRV-001 has sent no GPS position for 10 min (last at ?)")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(RulesError, match=r"nope\.json: cannot read the rules file"):
        load_rules_file(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(RulesError, match=r"broken\.json: not valid JSON"):
        load_rules_file(broken)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 2, "rules": [{**_rule(RAW, "stuck"), "severity": "LOW"}]}), encoding="utf-8")
    with pytest.raises(RulesError, match=r"bad\.json: rule 'stuck': severity must be one of"):
        load_rules_file(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({**RAW, "version": 2}), encoding="utf-8")
    assert load_rules_file(good).version == 2
