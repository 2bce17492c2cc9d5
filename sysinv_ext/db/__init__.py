"""The conductor's label database: models, plain API functions and alembic migrations.

The only package that imports SQLAlchemy. Production code reaches the schema only through
``migration.upgrade`` (never ``create_all``).
"""
