"""Persistence: models, engine, migrations, read-only queries."""
