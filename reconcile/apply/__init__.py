"""Reviewed corrections applied back to the new CRM: planned, shown, executed with compare-and-set."""
