"""The worker runtime: librdkafka batch consumption, a pure step per batch, ordered batch sinks.

See ``docs/hot-path.md`` for why the worker does not consume through Faust's stream.
"""

import gc


def tune_gc(gen0: int = 20_000) -> None:
    """Fewer cyclic-GC passes for a process that allocates many short-lived, acyclic dicts.

    A worker's fold states and encodings are trees, not cycles: the default threshold (700)
    made the collector rescan the cache's large, long-lived heap ~every batch (measured:
    about a quarter of the order agent's CPU). ``gc.freeze`` moves what start-up allocated
    out of the collector's way; cycles are still collected, only less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, 50, 100)
