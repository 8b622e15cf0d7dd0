"""Personal data: sealed field values (AES-256-GCM), per-data-subject keys, which fields are personal.

The write path (``commands.order_service``) seals; projections only ever copy sealed values; the
edge (API, CLI) opens them for the roles allowed to see them. docs/privacy.md.
"""
