"""alembic's environment: online on the connection the store hands in (its transaction
and lock), offline (``--sql``) against a URL's dialect."""

from alembic import context
from sqlalchemy import create_engine

cfg = context.config
connection = cfg.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=cfg.get_main_option("sqlalchemy.url"), literal_binds=True,
                      dialect_opts={"paramstyle": "named"})  # a % stays a %
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
else:  # the alembic command line, with sqlalchemy.url set
    with create_engine(str(cfg.get_main_option("sqlalchemy.url"))).begin() as conn:
        context.configure(connection=conn)
        with context.begin_transaction():
            context.run_migrations()
