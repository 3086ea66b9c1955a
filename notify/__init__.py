"""Webhook notifications for downs and recoveries (docs/lifecycle.md, Notifications)."""
