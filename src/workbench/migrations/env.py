"""Alembic's environment for the event store, run by :mod:`workbench.migrate` only.

``workbench.migrate`` builds the :class:`alembic.config.Config` in code (no alembic.ini)
and hands over a connection already inside its transaction, under the lock that keeps
replicas from migrating at once, as ``config.attributes["connection"]``; Alembic then
runs every step in that transaction (SQLite and PostgreSQL both have transactional DDL).
``render_as_batch`` on SQLite, whose ALTER TABLE cannot change a column: a revision
generated against it renders ``op.batch_alter_table`` (copy and swap) instead.
"""

from __future__ import annotations

from alembic import context

from workbench.errors import ConfigError
from workbench.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise ConfigError("the event store's migrations run through workbench.migrate (or "
                      "`workbench db upgrade`), which passes them a connection; "
                      "offline SQL and the alembic command line are not supported")

context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
