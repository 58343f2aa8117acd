"""Full-text search over messages (subject, text, sender name and address).

* SQLite: an external-content FTS5 table ``<prefix>message_fts`` over ``<prefix>message``
  (rowid = message id), kept in sync by triggers, tokenizer ``unicode61 remove_diacritics 2``
  (so "lauft" finds "läuft"). User input is turned into quoted FTS5 phrases, so no syntax
  (``"``, ``-``, ``:``, ``*``, ``NEAR(``...) ever reaches the FTS5 parser unquoted.
* PostgreSQL: a GIN expression index on ``to_tsvector('simple', ...)`` of the same columns,
  queried with ``websearch_to_tsquery('simple', :q)``, which never raises on user syntax.
  Both sides go through ``shared_inbox_fold(text)``, an IMMUTABLE SQL function that removes
  diacritics with the ``unaccent`` extension (so "jose" finds "José", as on SQLite). The
  extension is created if the database user may (it is a trusted extension since
  PostgreSQL 13: the database owner may); otherwise the function returns its argument and
  search matches accents exactly, as before.
* Anything else: ``LIKE`` on the same columns, every term escaped.

The FTS objects are not mapped in the models (they are dialect specific). Fresh installs
get them from :func:`ensure_search_objects` (called by ``schema.init_db``), upgrades from
migration ``si0005``. Both use the functions below, so they create the same objects.
"""
from __future__ import annotations

import re

import sqlalchemy as sa

from ..extension import get_state

#: a search term is a run of letters/digits; everything else only separates terms.
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 16
MAX_QUERY_LENGTH = 500

SEARCH_COLUMNS = ("subject", "body_text", "from_name", "from_email")


def fts_table(prefix: str) -> str:
    return f"{prefix}message_fts"


def pg_index_name(prefix: str) -> str:
    return f"ix_{prefix}message_fts"


FOLD_FUNCTION = "shared_inbox_fold"


def pg_document(prefix: str | None = None) -> str:
    """The indexed expression (the query must repeat it verbatim for the index to be used)."""
    return (f"to_tsvector('simple', {FOLD_FUNCTION}(coalesce(subject, '') || ' ' || "
            "coalesce(body_text, '') || ' ' || coalesce(from_name, '') || ' ' || "
            "coalesce(from_email, '')))")


def pg_query() -> str:
    """The tsquery of the ``:pg_q`` parameter, folded like the documents."""
    return f"websearch_to_tsquery('simple', {FOLD_FUNCTION}(:pg_q))"


def _create_fold_function(connection) -> bool:
    """(Re)create ``shared_inbox_fold``; True when it removes diacritics."""
    try:
        with connection.begin_nested():  # a refused CREATE EXTENSION must not end the migration
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS unaccent")
    except sa.exc.DBAPIError:
        schema = None
    else:
        schema = connection.exec_driver_sql(
            "SELECT extnamespace::regnamespace::text FROM pg_extension "
            "WHERE extname = 'unaccent'").scalar()
    if schema is None:
        body = "SELECT $1"
    else:
        body = f"SELECT {schema}.unaccent('{schema}.unaccent'::regdictionary, $1)"
    connection.exec_driver_sql(
        f"CREATE OR REPLACE FUNCTION {FOLD_FUNCTION}(text) RETURNS text LANGUAGE sql "
        f"IMMUTABLE PARALLEL SAFE STRICT AS $fold$ {body} $fold$")
    return schema is not None


# ------------------------------------------------------------------------------ DDL

def _sqlite_ddl(prefix: str) -> list[str]:
    msg = f"{prefix}message"
    fts = fts_table(prefix)
    cols = ", ".join(SEARCH_COLUMNS)
    new = ", ".join(f"new.{c}" for c in SEARCH_COLUMNS)
    old = ", ".join(f"old.{c}" for c in SEARCH_COLUMNS)
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5({cols}, content='{msg}', "
        f"content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_ai AFTER INSERT ON {msg} BEGIN "
        f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.id, {new}); END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_ad AFTER DELETE ON {msg} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.id, {old}); END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_au AFTER UPDATE OF {cols} ON {msg} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.id, {old}); "
        f"INSERT INTO {fts}(rowid, {cols}) VALUES (new.id, {new}); END",
    ]


def create_search_objects(connection, prefix: str, *, rebuild: bool = True) -> None:
    """Create the dialect's FTS objects on ``connection`` (idempotent)."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        exists = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE name = ?", (fts_table(prefix),)).first()
        for statement in _sqlite_ddl(prefix):
            connection.exec_driver_sql(statement)
        if rebuild and not exists:
            fts = fts_table(prefix)
            connection.exec_driver_sql(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")
    elif dialect == "postgresql":
        _create_fold_function(connection)
        connection.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS {pg_index_name(prefix)} ON {prefix}message "
            f"USING gin (({pg_document()}))")


def refold_search_index(connection, prefix: str) -> None:
    """PostgreSQL: rebuild the search index on the folded document (migration si0015);
    nothing to do on SQLite, whose FTS5 tokenizer folds diacritics already."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {pg_index_name(prefix)}")
        create_search_objects(connection, prefix)


def drop_search_objects(connection, prefix: str) -> None:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        fts = fts_table(prefix)
        for suffix in ("ai", "ad", "au"):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {fts}")
    elif dialect == "postgresql":
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {pg_index_name(prefix)}")


def ensure_search_objects(connection=None) -> None:
    """Create the FTS objects for the current app if missing (``init_db`` calls this)."""
    state = get_state()
    if connection is None:
        with state.db.engine.begin() as conn:
            create_search_objects(conn, state.models.prefix)
    else:
        create_search_objects(connection, state.models.prefix)


def is_search_object(name: str, prefix: str = "inbox_") -> bool:
    """Names of the unmapped FTS objects (for schema comparisons that must skip them)."""
    return name.startswith(fts_table(prefix)) or name == pg_index_name(prefix)


# ---------------------------------------------------------------------------- queries

def terms(query: str) -> list[list[str]]:
    """User input as phrases: each whitespace-separated chunk becomes its word tokens.

    ``ada@example.org`` -> ``[["ada", "example", "org"]]``; punctuation never survives.
    """
    phrases = []
    for chunk in (query or "")[:MAX_QUERY_LENGTH].split():
        words = _WORD.findall(chunk)
        if words:
            phrases.append(words)
        if len(phrases) >= MAX_TERMS:
            break
    return phrases


def fts5_query(query: str) -> str | None:
    """A safe FTS5 MATCH string: every phrase double-quoted, all phrases required."""
    phrases = terms(query)
    if not phrases:
        return None
    return " ".join('"' + " ".join(w.replace('"', '""') for w in words) + '"'
                    for words in phrases)


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def matching_ticket_ids(query: str, m, dialect: str):
    """A SELECT of ``ticket_id`` for messages matching ``query``; None for an empty query.

    Meant for ``Ticket.id.in_(...)`` so it combines with folders, filters and visibility.
    """
    msg = m.Message.__table__
    prefix = m.prefix
    if not terms(query):
        return None
    if dialect == "sqlite":
        fts = fts_table(prefix)
        hits = sa.select(sa.column("rowid")).select_from(sa.table(fts)).where(
            sa.text(f"{fts} MATCH :fts_q").bindparams(fts_q=fts5_query(query)))
        return sa.select(msg.c.ticket_id).where(msg.c.id.in_(hits))
    if dialect == "postgresql":
        condition = sa.text(
            f"{pg_document()} @@ {pg_query()}"
        ).bindparams(pg_q=query[:MAX_QUERY_LENGTH])
        return sa.select(msg.c.ticket_id).where(condition)
    conditions = []
    for words in terms(query):
        pattern = "%" + _escape_like(" ".join(words)) + "%"
        conditions.append(sa.or_(*(
            sa.func.lower(msg.c[c]).like(pattern.lower(), escape="\\") for c in SEARCH_COLUMNS)))
    return sa.select(msg.c.ticket_id).where(*conditions)


#: Above this many matching messages (SQLite), a search walks the list's tickets in order
#: and probes each one instead of collecting every matching ticket first.
FREQUENT_HITS = 1000
#: The same on PostgreSQL (estimated by the planner), where collecting the hits through
#: the GIN index stays cheap for longer and walking the list costs a to_tsvector per
#: message probed.
PG_FREQUENT_HITS = 10000


def ticket_search_condition(query: str, m, dialect: str, session):
    """A WHERE clause on ``m.Ticket`` for tickets with a message matching ``query``, or
    None for an empty query. Costs one statement on SQLite and PostgreSQL, none elsewhere.

    SQLite: first ``count(*)`` of at most :data:`FREQUENT_HITS` FTS hits (cheap: it stops
    there). A rare query gets ``Ticket.id IN (tickets of the matching messages)``, cost
    proportional to the hits. A frequent one (a word in most messages) would collect,
    look up and sort up to every ticket that way, so it gets an ``EXISTS`` probe instead:
    the list walks its index in sort order and stops after a page, each ticket probing
    its messages (``ticket_id`` index) against the FTS hits, materialised once per query.
    Both give the same rows; only the plan differs. PostgreSQL: the same choice on the
    planner's estimate of matching messages (:data:`PG_FREQUENT_HITS`): the hits
    materialised first, or the IN semi-join walking the list.
    """
    if not terms(query):
        return None
    if dialect == "sqlite":
        fts = fts_table(m.prefix)
        match = fts5_query(query)
        hits = session.execute(sa.text(
            f"SELECT count(*) FROM (SELECT rowid FROM {fts} WHERE {fts} MATCH :fts_q "
            f"LIMIT :cap)").bindparams(fts_q=match, cap=FREQUENT_HITS)).scalar()
        if hits >= FREQUENT_HITS:
            msg = m.Message.__table__
            rowids = sa.select(sa.column("rowid")).select_from(sa.table(fts)).where(
                sa.text(f"{fts} MATCH :fts_q").bindparams(fts_q=match))
            return sa.exists().where(msg.c.ticket_id == m.Ticket.id, msg.c.id.in_(rowids))
    if dialect == "postgresql":
        # The same choice, made on the planner's own estimate (EXPLAIN: planning only, no
        # row is read; counting would cost a to_tsvector per row the count visits). Left to
        # itself with a rare query, the planner may walk the folder in order recomputing
        # to_tsvector for each ticket's messages (seconds on 100k tickets): a rare query's
        # hits are MATERIALIZED first (GIN index, cost proportional to the hits). A frequent
        # one keeps the walk, which finds a page of matches after a few tickets.
        matching = matching_ticket_ids(query, m, dialect)
        if _pg_estimated_hits(session, m, query) < PG_FREQUENT_HITS:
            found = matching.cte("si_search_hits")
            if (session.get_bind().dialect.server_version_info or (0,)) >= (12,):
                found = found.prefix_with("MATERIALIZED")  # before 12 every CTE is
            return m.Ticket.id.in_(sa.select(found.c.ticket_id))
        return m.Ticket.id.in_(matching)
    return m.Ticket.id.in_(matching_ticket_ids(query, m, dialect))


def _pg_estimated_hits(session, m, query: str) -> float:
    """The planner's estimate of the messages matching ``query`` (EXPLAIN, nothing run)."""
    plan = session.execute(sa.text(
        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {m.prefix}message "
        f"WHERE {pg_document()} @@ {pg_query()}"
    ).bindparams(pg_q=query[:MAX_QUERY_LENGTH])).scalar()
    if isinstance(plan, (str, bytes)):
        import json

        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])
