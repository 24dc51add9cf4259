"""reconcile: make the meaning of CRM data explicit and check it across a migration."""

__version__ = "0.1.0"
