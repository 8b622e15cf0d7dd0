"""``kuailv audit run``: the order log -> the audit chains, one entry per record.

An agent of the worker's batch loop (``streams.runtime.batch_loop``) in its own consumer group
``<KUAILV_CONSUMER_GROUP>-audit``, on every partition of ``kuailv.order-events.v1``: ``process`` turns each
record into a draft (``audit.order_events``: undecodable records too, with the reason); ``write``
appends the batch to the chains ``order-events/<partition>`` in ONE store transaction; only then does
the loop commit the offsets. A crash before the commit re-reads the batch and appends nothing twice:
each entry's ref is its source position, and a chain never takes a ref twice (``audit.store``).

The audit worker never skips a record: a write that fails for any reason is retried with backoff
(logged with the batch's positions) until it succeeds or the worker is stopped, and then the batch is
left uncommitted for the next start. It produces nothing to Kafka: dead letters are the projection
worker's job; here an undecodable record is an entry like any other.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

from audit.chain import Draft, Position
from audit.order_events import draft_of, undecodable_draft
from audit.store import AuditStore
from config.settings import Settings
from projections.keyed_batch import Counts
from schemas.dead_letters import SourceRecord
from schemas.topics import ORDER_EVENTS
from streams.runtime.batch_loop import Partition, Staged
from streams.runtime.signals import stop_on_signals
from streams.sinks.errors import SinkError

log = logging.getLogger(__name__)


class AuditWriteFailed(SinkError):
    """A batch could not be appended; retried (never parked: the trail must not skip a record)."""


class AuditAgent:
    name = "audit"
    topics = (ORDER_EVENTS.name,)
    group_suffix = "-audit"

    def __init__(self, codec: Any, store: AuditStore, renames: dict[str, str] | None = None) -> None:
        self.codec = codec
        self.store = store
        self.renames = renames or {}  # contract name -> topic actually consumed (recorded in the entries)

    def process(self, records: list[SourceRecord]) -> Staged:
        drafts = [draft_of(self.codec, rec, self.renames.get(rec.topic, rec.topic)) for rec in records]
        return Staged(records, [], drafts, Counts(records=len(records)))

    def write(self, staged: Staged) -> None:
        drafts: list[Draft] = staged.payload
        if not drafts:
            return
        try:
            done = self.store.append(drafts)
        except SinkError:
            raise
        except Exception as exc:
            raise AuditWriteFailed(f"audit batch {staged.span} ({len(drafts)} records) not appended to "
                                   f"{self.store.describe}: {type(exc).__name__}: {exc}") from exc
        staged.counts.applied = len(done.entries)
        staged.counts.duplicates = done.skipped
        log.debug("batch %s: %d entries appended, %d already chained", staged.span, len(done.entries), done.skipped)

    def park(self, records: list[SourceRecord], reason: str) -> Staged:
        """Our code failed on the batch: chain every record as undecodable, with the reason."""
        drafts = [undecodable_draft(rec, Position(self.renames.get(rec.topic, rec.topic), rec.partition, rec.offset),
                                    "PROCESSING_ERROR", reason) for rec in records]
        return Staged(records, [], drafts, Counts(records=len(records)))

    def forget(self, partitions: Sequence[Partition] | None) -> None:
        """Nothing is cached: each chain's head is read in the append's transaction."""

    def close(self) -> None:
        pass


def run_audit(settings: Settings, loglevel: str = "info", stop: threading.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM (or ``stop``); 0 on a clean stop."""
    from audit.chain import Keys
    from streams.worker import make_codec, make_loop

    logging.basicConfig(level=getattr(logging, loglevel.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    stop = stop or stop_on_signals(log, "finishing the batch in hand")
    keys = Keys.parse(settings.audit_hmac_keys)
    store = AuditStore.from_url(settings.audit_store, keys)
    agent = AuditAgent(make_codec(settings), store, settings.topic_renames)
    loop = make_loop(agent, settings)
    group = settings.consumer_group + AuditAgent.group_suffix
    print(f"kuailv audit: group {group} on {settings.kafka_bootstrap}, store {store.describe}, "
          f"{'HMAC key ' + repr(keys.current) if keys.keyed else 'plain SHA-256 (no KUAILV_AUDIT_HMAC_KEYS)'}",
          file=sys.stderr, flush=True)
    try:
        totals = loop.run(stop)
    except Exception:
        log.exception("audit worker stopped")
        return 1
    finally:
        store.close()
    log.info("audit worker stopped: %d records, %d entries appended, %d already chained", totals.records,
             totals.applied, totals.duplicates)
    return 0
