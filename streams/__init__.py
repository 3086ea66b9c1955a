"""sitewatch.streams"""
