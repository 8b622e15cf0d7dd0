"""Decryption at the edge: an order view leaves the API with its sealed personal data opened, then cut to
what the caller's role may see (``policy.redact``: warehouse staff never get contact data). Projections,
Redis and the topics only ever hold the ciphertext (``privacy/``; docs/privacy.md). A value whose
subject was erased comes out as ``null``."""

from __future__ import annotations

import threading
from typing import Any

from config.settings import Settings
from service.policy import Caller, redact

_STORES: dict[str, Any] = {}  # one cached key store per process and URL: an erasure's invalidate reaches every reader
_LOCK = threading.Lock()


def process_keystore(settings: Settings) -> Any:
    """The configured key store behind its TTL cache, shared by this process's readers, made at first use."""
    with _LOCK:
        store = _STORES.get(settings.keystore_url)
        if store is None:
            from privacy.keystore import keystore_from_settings

            store = _STORES[settings.keystore_url] = keystore_from_settings(settings)
        return store


class Revealer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def keys(self) -> Any:
        return process_keystore(self.settings)

    def opened(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The view with its sealed values opened (None where erased); for every role, before ``redact``."""
        from privacy.fields import reveal_view

        return reveal_view(doc, self.keys())

    def present(self, who: Caller, doc: dict[str, Any]) -> dict[str, Any]:
        return redact(who, self.opened(doc))
