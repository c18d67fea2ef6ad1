"""Trust: station signing keys (`keys`), signed items and their chain (`signing`).

A bottom-layer package beside the driver API (docs/architecture.md, "Layers"): it depends only on `gateway.model`
and `cryptography`, so the station and the central service both import it and neither imports the other.
"""
