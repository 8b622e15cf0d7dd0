"""Avro schemas, the schema catalog and the Confluent wire-format codec.

Pure: the only files read are this package's own ``avro/*.avsc``; no sockets,
no clock. The Confluent Schema Registry adapter lives in ``streams``.
"""
