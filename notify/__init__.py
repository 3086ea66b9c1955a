"""Webhook notifications for downs and recoveries (SPEC.md "Notifications")."""
