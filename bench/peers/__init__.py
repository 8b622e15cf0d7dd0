"""Applications a user could write with other libraries, for side-by-side benchmarks.

They run in ``.venv-peers`` (quixstreams pins an older confluent-kafka than ours; Faust is not
a dependency of the project any more) with the project installed ``--no-deps`` so they fold
with the very same pure code (``projections.order_state.fold``). ``bench.kafka_peers`` runs them.
"""
