"""App config for monitoring: the audit trail, its live stream and the admin console."""

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"
