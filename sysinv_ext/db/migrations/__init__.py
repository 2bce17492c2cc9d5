"""Alembic migration scripts of the label database (a package so that env.py is installed)."""
