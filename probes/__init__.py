"""sitewatch.probes"""
