"""Run the order-state Flink job on a collection (no Kafka), in .venv-flink.

    .venv-flink/bin/python tests/flink/collection_runner.py IN.pickle OUT.pickle [process|thread]

IN: a pickled list of SourceRecord; OUT: the pickled list of (topic, key, value)
the job emitted, in emission order per key. Used by tests running in the main
venv (which has no PyFlink) to run the real job in an embedded mini-cluster.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pyflink.common import Configuration, Row
from pyflink.datastream import StreamExecutionEnvironment

from infra import flink_env
from infra.flink_kafka import raw_record_type
from jobs.order_state_job import build
from jobs.order_state_logic import as_bytes


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "thread"
    records = pickle.loads(Path(src).read_bytes())
    conf = Configuration()
    for key, value in flink_env.python_settings(mode).items():
        conf.set_string(key, value)
    conf.set_string("restart-strategy.type", "none")
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.add_jars(*flink_env.jar_urls())
    env.set_parallelism(2)
    rows = [Row(r.topic, r.partition, r.offset, r.timestamp_ms or 0, r.key, r.value) for r in records]
    raw = env.from_collection(rows, type_info=raw_record_type())
    with build(raw).execute_and_collect() as results:
        out = [(row[0], as_bytes(row[1]), as_bytes(row[2])) for row in results]
    Path(dst).write_bytes(pickle.dumps(out))


if __name__ == "__main__":
    main()
