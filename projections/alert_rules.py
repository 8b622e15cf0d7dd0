"""The SLA and anomaly rules as data: validate a parsed rules file into a ``RuleSet``. Pure, no I/O.

The file (``config/alert_rules.v1.json``, read by ``config.alert_rules.load_rules_file``) is
``{"version": <int >= 1>, "rules": [<rule>, ...]}``. Every rule has ``id`` (lower-case words
joined by ``-``; it names the alert: ``<id>/<subject kind>/<subject id>``), ``kind`` (picks the
decision code, at most one rule per kind), ``severity`` (INFO, WARNING, CRITICAL), ``audience``
(roles from ``projections.alerts.ROLES``), ``message`` (an English template with ``{name}``
placeholders: the subject fields, the rule's scalar params, the kind's evidence keys and
``<time key>_utc`` for each epoch-ms evidence key) and exactly the params of its kind:

===================  =======================================================================
late-delivery        grace_min
stuck                limits_min: {CREATED|PAID|PICKING|PACKED|EXCEPTION_HANDLING: minutes}
stock-shortage       (none)
out-of-stock         (none)
weight-deviation     tolerance_pct: {Category: pct}, default_tolerance_pct, category_by_sku_prefix
cold-chain-breach    ranges_c: {Compartment: {"min": °C|null, "max": °C|null}}, min_duration_min,
                     max_gap_min
cold-chain-exposure  ranges_c, threshold_min, max_gap_min
gps-silent           silence_min
exception-reported   (none)
driver-nearby        (none)
arriving-soon        threshold_min
likely-late          open_risk, resolve_risk (probabilities, resolve_risk < open_risk <= 1)
low-stock            service_level (0.5 <= p < 1), lead_time_days, review_days, history_days,
                     min_history_days (whole days, <= history_days): models.replenishment.PolicyParams
===================  =======================================================================

Anything else (unknown kinds, fields, roles, severities, categories; duplicate ids) raises
``RulesError`` naming the rule and the field.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from projections.alerts import ROLES, SEVERITIES, SUBJECT_FIELDS, AlertChange
from projections.timefmt import iso

MINUTE_MS = 60_000
CATEGORIES = ("VEGETABLE", "FRUIT", "MEAT", "SEAFOOD", "DAIRY", "DRY_GOODS", "OTHER")  # OrderLine.category
COMPARTMENTS = ("CHILLED", "FROZEN", "AMBIENT")  # SensorReading.compartment
STUCK_STATES = ("CREATED", "PAID", "PICKING", "PACKED", "EXCEPTION_HANDLING")
_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the rule and the field."""


@dataclass(frozen=True, slots=True)
class TempRange:
    min_c: float | None
    max_c: float | None

    def contains(self, celsius: float) -> bool:
        return (self.min_c is None or celsius >= self.min_c) and (self.max_c is None or celsius <= self.max_c)

    @property
    def label(self) -> str:
        if self.min_c is None:
            return f"<= {_num(self.max_c)} °C"
        return f">= {_num(self.min_c)} °C" if self.max_c is None else f"{_num(self.min_c)}..{_num(self.max_c)} °C"


@dataclass(frozen=True, slots=True)
class NoParams:
    pass


@dataclass(frozen=True, slots=True)
class LateDelivery:
    grace_min: float


@dataclass(frozen=True, slots=True)
class Stuck:
    limits_min: Mapping[str, float]  # stuck state -> minutes; a state without a limit never gets stuck


@dataclass(frozen=True, slots=True)
class WeightDeviation:
    tolerance_pct: Mapping[str, float]
    default_tolerance_pct: float
    category_by_sku_prefix: Mapping[str, str]  # the order view's lines carry the SKU, not the category

    def category(self, line: Mapping[str, Any]) -> str | None:
        if line.get("category"):
            return str(line["category"])
        sku = str(line.get("sku") or "")
        matches = [p for p in self.category_by_sku_prefix if sku.startswith(p)]
        return self.category_by_sku_prefix[max(matches, key=len)] if matches else None

    def tolerance(self, category: str | None) -> float:
        return self.tolerance_pct.get(category or "", self.default_tolerance_pct)


@dataclass(frozen=True, slots=True)
class ColdChainBreach:
    ranges_c: Mapping[str, TempRange]  # a compartment without a range never breaches
    min_duration_min: float
    max_gap_min: float  # readings further apart than this do not make one continuous breach


@dataclass(frozen=True, slots=True)
class ColdChainExposure:
    ranges_c: Mapping[str, TempRange]
    threshold_min: float
    max_gap_min: float  # the most one interval between readings adds to the exposure


@dataclass(frozen=True, slots=True)
class GpsSilent:
    silence_min: float


@dataclass(frozen=True, slots=True)
class ArrivingSoon:
    threshold_min: float


@dataclass(frozen=True, slots=True)
class LikelyLate:
    """The delay-risk model's notice: opens when an order's predicted probability of arriving after its window
    reaches ``open_risk``, resolves when it falls below ``resolve_risk`` (hysteresis) or the van reaches the door."""

    open_risk: float
    resolve_risk: float


@dataclass(frozen=True, slots=True)
class LowStock:
    """The stock projection's rule (``projections.stock``): a warehouse x SKU whose on-hand stock falls below its
    reorder point (lead-time demand + safety stock at ``service_level``, ``models.replenishment``) opens an alert;
    stock back at or above it resolves it. The same params make the replenishment suggestions."""

    service_level: float
    lead_time_days: float
    review_days: float
    history_days: float
    min_history_days: float


Params = (NoParams | LateDelivery | Stuck | WeightDeviation | ColdChainBreach | ColdChainExposure | GpsSilent
          | ArrivingSoon | LikelyLate | LowStock)


def minutes_ms(minutes: float) -> int:
    return round(minutes * MINUTE_MS)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    kind: str
    severity: str
    audience: tuple[str, ...]
    message: str
    params: Params

    def render(self, values: Mapping[str, str | None]) -> str:
        """The message; a placeholder without a value renders as ``?``."""
        return self.message.format_map(defaultdict(lambda: "?", {k: v for k, v in values.items() if v is not None}))


@dataclass(frozen=True, slots=True)
class RuleSet:
    version: int
    rules: Mapping[str, Rule]  # by id, in file order

    def by_kind(self, kind: str) -> Rule | None:
        return next((rule for rule in self.rules.values() if rule.kind == kind), None)

    def change(self, rule: Rule, *, opening: bool, at: int, subject_kind: str, subject_id: str,
               subject: Mapping[str, str | None], evidence: Mapping[str, str],
               location: tuple[float, float] | None = None) -> AlertChange:
        """An ``AlertChange`` of ``rule``; an open's message is rendered from subject, params and evidence (a
        resolve's is empty: ``projections.alerts.apply_change`` keeps the open's message)."""
        message = ""
        if opening:
            values: dict[str, str | None] = {**subject, **_param_values(rule.params), **evidence}
            values.update({f"{key}_utc": iso(int(evidence[key])) for key in TIME_KEYS if evidence.get(key)})
            message = rule.render(values)
        return AlertChange(rule.id, self.version, opening, at, subject_kind, subject_id, rule.severity, message,
                           dict(subject), dict(evidence), location, rule.audience)


def _num(value: float | None) -> str:
    return "?" if value is None else format(round(value, 3), "g")


def _param_values(params: Params) -> dict[str, str]:
    values = {f.name: getattr(params, f.name) for f in fields(params)}
    return {name: _num(value) for name, value in values.items() if isinstance(value, int | float)}


# Evidence keys each kind produces (the per-line ``line.<no>`` keys are not placeholders).
EVIDENCE_KEYS: dict[str, tuple[str, ...]] = {
    "late-delivery": ("status", "window_start", "window_end", "due_at", "resolved_status"),
    "stuck": ("state", "entered_at", "limit_min", "due_at", "resolved_status"),
    "stock-shortage": ("lines", "short_count", "checked_at", "resolved_status"),
    "out-of-stock": ("lines", "checked_at", "resolved_status"),
    "weight-deviation": ("lines", "max_deviation_pct", "resolved_status"),
    "exception-reported": ("reason_code", "description", "reported_at", "dispatch_count", "resolved_status"),
    "cold-chain-breach": ("device_id", "unit_id", "compartment", "range", "first_breach_at", "last_breach_at",
                          "minutes", "max_c", "min_c", "readings", "orders", "order_count", "recovered_at",
                          "recovered_c"),
    "cold-chain-exposure": ("device_id", "unit_id", "compartment", "range", "trip_start", "trip_end",
                            "exposure_min", "first_breach_at", "last_breach_at", "max_c", "min_c", "orders",
                            "order_count"),
    "gps-silent": ("last_ping_at", "due_at", "silent_min", "orders", "order_count", "cleared_at", "cleared_by"),
    "driver-nearby": ("fence_id", "entered_at", "dispatch_count", "enter_m", "left_at"),
    "arriving-soon": ("eta", "estimated_at", "distance_m", "dispatch_count", "cleared_at"),
    "likely-late": ("late_risk", "eta", "window_end", "estimated_at", "estimator", "dispatch_count", "cleared_at",
                    "cleared_by"),
    "low-stock": ("sku", "unit", "on_hand", "reorder_point", "safety_stock", "forecast_daily", "checked_at",
                  "cleared_at", "cleared_by", "cleared_on_hand"),
}
TIME_KEYS = ("eta", "estimated_at", "left_at", "window_start", "window_end", "due_at", "entered_at", "checked_at",
             "reported_at", "first_breach_at", "last_breach_at", "recovered_at", "trip_start", "trip_end",
             "last_ping_at", "cleared_at")

Parser = Callable[[str, Any], Any]


def _number(where: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) == float("inf"):
        raise RulesError(f"{where} must be a {'positive ' if positive else ''}number, got {value!r}")
    if positive and value <= 0:
        raise RulesError(f"{where} must be a positive number, got {value!r}")
    return value


def _mapping(where: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RulesError(f"{where} must be an object, got {value!r}")
    return value


def _keyed(keys: tuple[str, ...], parse: Parser) -> Parser:
    def parser(where: str, value: Any) -> Mapping[str, Any]:
        raw = _mapping(where, value)
        bad = [key for key in raw if key not in keys]
        if not raw or bad:
            raise RulesError(f"{where}.{bad[0]} is not one of {', '.join(keys)}" if bad else f"{where} is empty")
        return MappingProxyType({key: parse(f"{where}.{key}", raw[key]) for key in raw})
    return parser


def _range(where: str, value: Any) -> TempRange:
    raw = _mapping(where, value)
    _no_unknown(where, raw, ("min", "max"))
    low, high = (None if raw.get(k) is None else _number(f"{where}.{k}", raw[k], positive=False)
                 for k in ("min", "max"))
    if low is None and high is None:
        raise RulesError(f"{where} needs a min or a max")
    if low is not None and high is not None and low > high:
        raise RulesError(f"{where}.min {low!r} is above max {high!r}")
    return TempRange(low, high)


def _prefixes(where: str, value: Any) -> Mapping[str, str]:
    raw = _mapping(where, value)
    for key, category in raw.items():
        if not key or category not in CATEGORIES:
            raise RulesError(f"{where}.{key} must be one of {', '.join(CATEGORIES)}, got {category!r}")
    return MappingProxyType(dict(raw))


_SPECS: dict[str, tuple[type, dict[str, Parser]]] = {
    "late-delivery": (LateDelivery, {"grace_min": _number}),
    "stuck": (Stuck, {"limits_min": _keyed(STUCK_STATES, _number)}),
    "stock-shortage": (NoParams, {}),
    "out-of-stock": (NoParams, {}),
    "weight-deviation": (WeightDeviation, {"tolerance_pct": _keyed(CATEGORIES, _number),
                                           "default_tolerance_pct": _number, "category_by_sku_prefix": _prefixes}),
    "cold-chain-breach": (ColdChainBreach, {"ranges_c": _keyed(COMPARTMENTS, _range), "min_duration_min": _number,
                                            "max_gap_min": _number}),
    "cold-chain-exposure": (ColdChainExposure, {"ranges_c": _keyed(COMPARTMENTS, _range), "threshold_min": _number,
                                                "max_gap_min": _number}),
    "gps-silent": (GpsSilent, {"silence_min": _number}),
    "exception-reported": (NoParams, {}),
    "driver-nearby": (NoParams, {}),
    "arriving-soon": (ArrivingSoon, {"threshold_min": _number}),
    "likely-late": (LikelyLate, {"open_risk": _number, "resolve_risk": _number}),
    "low-stock": (LowStock, {"service_level": _number, "lead_time_days": _number, "review_days": _number,
                             "history_days": _number, "min_history_days": _number}),
}
KINDS = tuple(_SPECS)
_COMMON = ("id", "kind", "severity", "audience", "message")


def _no_unknown(where: str, raw: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise RulesError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(known)})")


def _rule(index: int, raw: Any) -> Rule:
    raw = _mapping(f"rules[{index}]", raw)
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID.fullmatch(rid):
        raise RulesError(f"rules[{index}]: id must be lower-case words joined by '-', got {rid!r}")
    where = f"rule {rid!r}"
    kind = raw.get("kind")
    if kind not in _SPECS:
        raise RulesError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    cls, spec = _SPECS[kind]
    _no_unknown(where, raw, _COMMON + tuple(spec))
    if raw.get("severity") not in SEVERITIES:
        raise RulesError(f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {raw.get('severity')!r}")
    audience = raw.get("audience")
    ok = isinstance(audience, list) and audience and len(set(audience)) == len(audience)
    if not ok or any(role not in ROLES for role in audience):
        raise RulesError(f"{where}: audience must be a non-empty list of distinct roles from {', '.join(ROLES)}, "
                         f"got {audience!r}")
    missing = [name for name in spec if name not in raw]
    if missing:
        raise RulesError(f"{where}: {missing[0]} is required for kind {kind}")
    params = cls(**{name: parse(f"{where}: {name}", raw[name]) for name, parse in spec.items()})
    message = raw.get("message")
    if not isinstance(message, str) or not message.strip():
        raise RulesError(f"{where}: message must be a non-empty string, got {message!r}")
    _check_template(where, message, kind, params)
    if isinstance(params, LikelyLate) and not 0 < params.resolve_risk < params.open_risk <= 1:
        raise RulesError(f"{where}: needs 0 < resolve_risk < open_risk <= 1, got resolve_risk {params.resolve_risk} "
                         f"and open_risk {params.open_risk}")
    if isinstance(params, LowStock) and not (0.5 <= params.service_level < 1 and params.history_days % 1 == 0
                                             and params.min_history_days % 1 == 0
                                             and params.min_history_days <= params.history_days):
        raise RulesError(f"{where}: needs 0.5 <= service_level < 1 and whole days min_history_days <= history_days, "
                         f"got {params.service_level}, {params.min_history_days}, {params.history_days}")
    return Rule(rid, kind, raw["severity"], tuple(audience), message, params)


def _check_template(where: str, message: str, kind: str, params: Params) -> None:
    keys = EVIDENCE_KEYS.get(kind, ())
    allowed = {*SUBJECT_FIELDS, *keys, *_param_values(params), *(f"{k}_utc" for k in TIME_KEYS if k in keys)}
    try:
        parsed = list(string.Formatter().parse(message))
    except ValueError as exc:
        raise RulesError(f"{where}: message is not a valid template: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            raise RulesError(f"{where}: message placeholder {{{name}}} is not one of {', '.join(sorted(allowed))}"
                             " (plain {name} only)")


def load_rules(raw: Mapping[str, Any]) -> RuleSet:
    """Validate a parsed rules file; raises ``RulesError``."""
    raw = _mapping("rules file", raw)
    _no_unknown("rules file", raw, ("version", "rules"))
    version = raw.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RulesError(f"rules file: version must be an integer >= 1, got {version!r}")
    if not isinstance(raw.get("rules"), list):
        raise RulesError(f"rules file: rules must be a list, got {raw.get('rules')!r}")
    rules: dict[str, Rule] = {}
    kinds: dict[str, str] = {}
    for index, item in enumerate(raw["rules"]):
        rule = _rule(index, item)
        if rule.id in rules:
            raise RulesError(f"rule {rule.id!r}: duplicate id (rules[{index}])")
        if rule.kind in kinds:
            raise RulesError(f"rule {rule.id!r}: kind {rule.kind} is already used by rule {kinds[rule.kind]!r}")
        rules[rule.id] = rule
        kinds[rule.kind] = rule.id
    return RuleSet(version, MappingProxyType(rules))
