"""sitewatch: a streaming site-health monitor.

Roles live in their own subpackages (installed from the repository's top-level folders):
`sitewatch.streams` (wire records, topics, the pure lifecycle, the Faust worker),
`sitewatch.probes`, `sitewatch.sink`, `sitewatch.api`, `sitewatch.migrations`.
"""

__version__ = "0.1.0"
