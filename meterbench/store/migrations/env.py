"""Alembic environment of the store: runs on the connection meterbench.store hands it (never a URL of its own)."""

from alembic import context

from meterbench.store._schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
