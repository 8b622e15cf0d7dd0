"""settings.eventstore_url -> eventsourcing settings (no database needed)."""

from __future__ import annotations

import pytest

from commands.eventstore_config import EventStoreConfigError, eventstore_env


def test_sqlite_absolute_and_relative_paths() -> None:
    assert eventstore_env("sqlite:////var/lib/kuailv/events.sqlite") == {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": "/var/lib/kuailv/events.sqlite",
        "SQLITE_LOCK_TIMEOUT": "10",
    }
    assert eventstore_env("sqlite:///.stack/dev/events.sqlite")["SQLITE_DBNAME"] == ".stack/dev/events.sqlite"
    assert eventstore_env("sqlite:///e.sqlite?lock_timeout=30")["SQLITE_LOCK_TIMEOUT"] == "30"


def test_settings_default_url_maps_to_its_file() -> None:
    from config.settings import load

    settings = load("test")
    env = eventstore_env(settings.eventstore_url)
    assert env["SQLITE_DBNAME"] == str(settings.stack_dir / "eventstore.sqlite")


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///:memory:", "sqlite:///x.sqlite?mode=memory",
                                 "sqlite:///x.sqlite?journal=off", "mysql://u@h/db", "events.sqlite"])
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(EventStoreConfigError):
        eventstore_env(url)


def test_postgres_url_maps_every_part() -> None:
    env = eventstore_env("postgresql://kuailv:s%40cr%2Ft@db.internal:6543/orders?schema=cmd&lock_timeout=3"
                         "&pool_size=12&connect_timeout=7")
    assert env == {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "orders",
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "kuailv",
        "POSTGRES_PASSWORD": "s@cr/t",
        "POSTGRES_SCHEMA": "cmd",
        "POSTGRES_LOCK_TIMEOUT": "3",
        "POSTGRES_POOL_SIZE": "12",
        "POSTGRES_CONNECT_TIMEOUT": "7",
    }


def test_postgres_defaults() -> None:
    env = eventstore_env("postgres://kuailv@localhost/orders")
    assert env["POSTGRES_PORT"] == "5432"
    assert env["POSTGRES_PASSWORD"] == ""
    assert env["POSTGRES_LOCK_TIMEOUT"] == "10"


@pytest.mark.parametrize("url", ["postgresql://kuailv:pw@host:5432/", "postgresql://host/orders",
                                 "postgresql://u:pw@host/orders?sslmode=require", "postgresql://u:pw@host:99999/db"])
def test_postgres_urls_missing_parts_are_refused_without_leaking_the_password(url: str) -> None:
    with pytest.raises(EventStoreConfigError) as info:
        eventstore_env(url)
    assert ":pw@" not in str(info.value)


def test_postgres_env_is_accepted_by_the_library_factory() -> None:
    pytest.importorskip("psycopg", reason="eventsourcing[postgres] not installed")
    from eventsourcing.postgres import PostgresFactory

    factory = PostgresFactory(eventstore_env("postgresql://kuailv:pw@127.0.0.1:1/orders?connect_timeout=1"))
    assert factory.datastore.pool.kwargs["dbname"] == "orders"  # built without connecting
    assert factory.datastore.lock_timeout == 10
