"""sitewatch.api"""
