"""Versioned field mappings: how the old system's records become the new system's."""

from .model import EntityMap, FieldMap, Mapping

__all__ = ["EntityMap", "FieldMap", "Mapping"]
