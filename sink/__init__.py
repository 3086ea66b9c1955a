"""sitewatch.sink"""
