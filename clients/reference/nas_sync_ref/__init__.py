"""nas-sync's reference client: the offline-first loop an app runs, on the Python client
openapi-python-client generates (see sync.py and docs/clients.md)."""

from .store import Store
from .sync import ApiFailure, SignedOut, Sync, known_tables, schema_fingerprint

__all__ = ["ApiFailure", "SignedOut", "Store", "Sync", "known_tables", "schema_fingerprint"]
