"""``KUAILV_WEBHOOK_STORE`` is parsed like the event store's URL (the same code), and the settings default
to a SQLite file per profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhooks.store_config import PostgresTarget, SqliteTarget, WebhookStoreConfigError, store_target


def test_sqlite_urls() -> None:
    assert store_target("sqlite:////var/lib/kuailv/webhooks.sqlite") == SqliteTarget(
        Path("/var/lib/kuailv/webhooks.sqlite"), 10.0)
    assert store_target("sqlite:///.stack/dev/webhooks.sqlite?lock_timeout=3") == SqliteTarget(
        Path(".stack/dev/webhooks.sqlite"), 3.0)
    assert store_target("memory://") == SqliteTarget(None)


def test_postgres_urls() -> None:
    target = store_target("postgresql://kuailv:s%40cret@db.internal:6543/orders?schema=hooks&lock_timeout=3"
                          "&connect_timeout=7")
    assert target == PostgresTarget("db.internal", 6543, "orders", "kuailv", "s@cret", "hooks", 7, 3.0)
    assert target.describe() == "postgresql://kuailv@db.internal:6543/orders?schema=hooks"  # no password
    assert store_target("postgres://kuailv@localhost/orders") == PostgresTarget("localhost", 5432, "orders", "kuailv",
                                                                                "", None, 5, 10.0)


@pytest.mark.parametrize("url", ["mysql://u@h/db", "webhooks.sqlite", "sqlite:///", "postgresql://u:pw@h/db?x=1"])
def test_unusable_urls_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(WebhookStoreConfigError, match="KUAILV_WEBHOOK_STORE") as caught:
        store_target(url)
    assert "pw" not in str(caught.value)


def test_settings_default_to_a_sqlite_file_per_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import load

    for name in ("KUAILV_WEBHOOK_STORE", "KUAILV_WEBHOOK_METRICS_PORT", "KUAILV_WEBHOOK_RETRY_WINDOW_S"):
        monkeypatch.delenv(name, raising=False)
    test = load("test")
    assert store_target(test.webhooks.store_url) == SqliteTarget(test.stack_dir / "webhooks.sqlite", 10.0)
    assert (test.webhooks.metrics_port, load("dev").webhooks.metrics_port) == (28010, 18010)
    monkeypatch.setenv("KUAILV_WEBHOOK_RETRY_WINDOW_S", "30")
    monkeypatch.setenv("KUAILV_WEBHOOK_STORE", "postgresql://kuailv@127.0.0.1:25432/hooks")
    changed = load("test").webhooks
    assert changed.retry_window_s == 30 and changed.store_url.startswith("postgresql://")
