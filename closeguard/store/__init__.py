"""Durable tables on SQLAlchemy Core: SQLite by default, PostgreSQL to scale out.

Owns the schema and access for the audit log, approvals and, later, the workflow inbox,
runs and effect journal. Depends on SQLAlchemy only.
"""
