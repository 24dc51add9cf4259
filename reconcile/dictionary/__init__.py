"""Versioned data dictionaries: what each CRM's entities, fields and codes mean."""

from .model import Code, Dictionary, Entity, Field, FieldType

__all__ = ["Code", "Dictionary", "Entity", "Field", "FieldType"]
