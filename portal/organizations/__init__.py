"""Organisations: the tenants every owned row belongs to."""
