"""Alembic environment for shared_inbox's own migrations.

Run through ``shared_inbox.schema`` (``flask inbox upgrade``), which passes the host's
connection and our schema options (table prefix, the host's user table and its key type)
in ``config.attributes``. Only tables with our prefix are ever considered.
"""
from alembic import context

config = context.config
options = config.attributes["shared_inbox"]
prefix = options["prefix"]


def include_name(name, type_, parent_names):
    if type_ == "table":
        return name.startswith(prefix)
    return True


context.configure(
    connection=config.attributes["connection"],
    target_metadata=config.attributes.get("target_metadata"),
    version_table=prefix + "alembic_version",
    include_name=include_name,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
