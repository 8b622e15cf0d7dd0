"""The audit trail: every state change in tamper-evident hash chains (docs/audit.md).

``chain`` (pure: entry format, hash, append, verify), ``canonical`` (the hashed encoding),
``order_events`` (order-log records -> entries), ``actions`` (``record_action`` for the API, subscription
changes and erasures), ``store`` (SQLite/PostgreSQL, ``KUAILV_AUDIT_STORE``), ``worker`` (``kuailv audit
run``). The commands are ``cli/audit.py`` (``kuailv audit ...``). Importing this package opens nothing.
"""

from audit.actions import record_action

__all__ = ["record_action"]
