"""sitewatch.migrations"""
