"""Audit entries for what people do: API actions, subscription changes, erasures.

``record_action(store, actor_user, actor_role, action, target, details, at_ms)`` appends one entry. The
action is a dotted name, ``<area>.<verb>``; its area picks the chain:

==================  =================  ==============================================
action              chain              e.g.
==================  =================  ==============================================
``subscription.*``  ``subscriptions``  ``subscription.create``, ``subscription.pause``
``erasure.*``       ``erasures``       ``erasure.customer``
anything else       ``api``            ``order.cancel``, ``order.deliver``
==================  =================  ==============================================

Separate chains keep the busy API chain from delaying erasures and let each be anchored on its own.
``target`` is what the action is about (an order id, a subscription id, a customer id); it is the
entry's subject, so ``kuailv audit show --order <id>`` lists an order's API actions with its events.
``at_ms`` is passed in (the request's time), never read here. ``ref`` (e.g. the request id) makes the
call idempotent: a retried request with the same ref appends nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from audit.canonical import NotCanonical, canonical_json
from audit.chain import Actor, Draft, Entry

ACTION_CHAINS = {"subscription": "subscriptions", "erasure": "erasures"}
DEFAULT_CHAIN = "api"


class Appender(Protocol):
    def append(self, drafts: list[Draft]) -> Any:
        """``audit.store.AuditStore.append``: returns something with ``.entries``."""


def chain_of_action(action: str) -> str:
    return ACTION_CHAINS.get(action.partition(".")[0], DEFAULT_CHAIN)


def action_draft(actor_user: str, actor_role: str, action: str, target: str | None, details: dict[str, Any],
                 at_ms: int, ref: str | None = None) -> Draft:
    """The draft of one action (pure); errors name the action and the actor."""
    what = f"audit action {action!r} by {actor_user!r}"
    if not (actor_user and actor_role and action):
        raise ValueError(f"{what}: actor_user, actor_role and action must be non-empty")
    if type(at_ms) is not int:
        raise TypeError(f"{what}: at_ms must be an int (epoch ms), got {type(at_ms).__name__}")
    try:
        payload = canonical_json({"action": action, "target": target, "details": details})
    except NotCanonical as exc:
        raise ValueError(f"{what}: details cannot be recorded: {exc}") from exc
    return Draft(chain_of_action(action), action, payload, target, at_ms, Actor(actor_user, actor_role), None, ref)


def record_action(store: Appender, actor_user: str, actor_role: str, action: str, target: str | None,
                  details: dict[str, Any], at_ms: int, *, ref: str | None = None) -> Entry | None:
    """Append one action to its chain; the entry, or None when ``ref`` was recorded before."""
    appended = store.append([action_draft(actor_user, actor_role, action, target, details, at_ms, ref)])
    return appended.entries[0] if appended.entries else None
