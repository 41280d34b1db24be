"""What operators see: logs, metrics, health, alerts, systemd."""
