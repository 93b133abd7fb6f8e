"""Rendering: what the user sees (tables, JSON envelope). Pure functions of values."""
