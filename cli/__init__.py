"""The ``kuailv`` command line."""
