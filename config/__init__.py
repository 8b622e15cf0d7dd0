"""Runtime configuration read from the environment (see ``settings.py``)."""
