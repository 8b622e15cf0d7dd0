"""PyFlink jobs around the same pure ``projections/`` code the workers run.

Modules named ``*_logic.py`` hold the operators' work as plain functions (no
PyFlink import, testable anywhere); ``*_job.py`` wires them into a DataStream
job and picks connectors only in ``main()``.
"""
