"""What people do through the API goes into the audit trail (``audit.record_action``): commands on orders
(chain ``api``) and subscription changes (chain ``subscriptions``), with the acting user and role, the
target, the outcome, and the request's time. The store (``KUAILV_AUDIT_STORE``) is opened at the first
action, never at import; a failed append is logged with its context and counted, and never turns an
accepted command into an error (the order's own events are chained from the log by ``kuailv audit run``,
with the same caller in their ``producer``)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from config.settings import Settings
from service import metrics
from service.auth import Principal

log = logging.getLogger(__name__)


class ApiAudit:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: Any = None
        self._lock = threading.Lock()

    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from audit.chain import Keys
                from audit.store import AuditStore

                self._store = AuditStore.from_url(self.settings.audit_store, Keys.parse(self.settings.audit_hmac_keys))
            return self._store

    def record(self, who: Principal, action: str, target: str | None, details: dict[str, Any],
               at_ms: int | None = None) -> None:
        from audit.actions import record_action

        at = at_ms if at_ms is not None else int(time.time() * 1000)
        try:
            record_action(self.store(), who.subject, who.role, action, target, details, at)
            metrics.AUDIT_ACTIONS.labels("recorded").inc()
        except Exception:
            metrics.AUDIT_ACTIONS.labels("failed").inc()
            log.exception("audit entry not recorded", extra={"action": action, "target": target,
                                                             "actor": who.subject, "role": who.role})

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
