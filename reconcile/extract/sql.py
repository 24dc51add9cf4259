"""Any SQLAlchemy database: only the mapped columns, scope filters pushed down as bound parameters."""

from __future__ import annotations

import importlib
import json
import secrets
import sqlite3
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from urllib.parse import quote, quote_plus
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ..dictionary.model import Entity, Field, Lookup
from ..dictionary.values import parse_value
from ..errors import SourceError
from ..mapping.model import Filter
from . import tags as tagio
from .types import as_text

CHUNK_ROWS = 200_000

try:  # Arrow-native reads; without the drivers the database's own cursor reads everything
    import adbc_driver_sqlite.dbapi as _adbc_sqlite
except ImportError:  # pragma: no cover - a dependency
    _adbc_sqlite = None
try:
    import adbc_driver_postgresql.dbapi as _adbc_postgresql
except ImportError:  # pragma: no cover - a dependency
    _adbc_postgresql = None
try:
    import connectorx as _connectorx
except ImportError:  # pragma: no cover - a dependency
    _connectorx = None


_SECRET_PARAMS = ("password", "passwd", "pwd", "secret", "token", "key", "credential", "auth")


def redact(url: str) -> str:
    """The URL with its password, and any query parameter that could hold one, as ***."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    hidden = {k: "***" for k in parsed.query if any(s in k.lower() for s in _SECRET_PARAMS)}
    if hidden:
        parsed = parsed.update_query_dict(hidden)
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def connect(url: str) -> sa.Engine:
    """An engine for `url`; SQLite files are opened read-only and must exist."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SourceError(
            f"not a database URL: {redact(url)}",
            hint="Use a SQLAlchemy URL such as postgresql+psycopg://user@host/db.",
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_file():
            raise SourceError(
                f"SQLite database not found: {path}",
                hint="Check the url in reconcile.yaml (relative paths are relative to the project).",
            )
        return sa.create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        )
    try:
        return sa.create_engine(parsed)
    except (NoSuchModuleError, ImportError) as exc:
        raise SourceError(
            f"no driver for {parsed.drivername}: {exc}", hint="Install the database driver."
        ) from None


def load_driver(url: str) -> None:
    """Import the database driver `url` names, if it can be: a bad URL or a missing driver is
    reported by `connect` when it is used."""
    with suppress(Exception):  # connect() says what is wrong, with its hint
        make_url(url).get_dialect().import_dbapi()


def sql_table(name: str, *columns: str) -> sa.TableClause:
    """A table by name ('schema.table' allowed); identifiers are quoted by the dialect."""
    schema, _, table = name.rpartition(".")
    return sa.table(table, *[sa.column(c) for c in columns], schema=schema or None)


def read_table(
    url: str,
    entity: Entity,
    scalars: list[str],
    tag_fields: list[str],
    filters,
    rows: int | None = None,
):
    """Chunks of at most `rows` records (all at once for None), each as (raw frame named by
    field, long tags of the delimited and JSON tag fields, filters left for pandas)."""
    with _reading(url, entity.source.name) as conn:
        yield from _read(conn, entity, scalars, tag_fields, filters, url, rows)


def read_join_tags(url: str, entity: Entity, name: str, rows: int | None = None):
    """Chunks of a join-table tag field's (key, tag) rows, tags already through their lookup."""
    jt = entity.fields[name].storage.join_table
    with _reading(url, jt.table) as conn:
        codes = _codes(conn, jt.lookup) if jt.lookup is not None else None
        stmt = sa.select(sa.column(jt.key), sa.column(jt.value)).select_from(sql_table(jt.table))
        for pairs in fetch_batches(conn, stmt, ["key", "tag"], url, rows):
            if codes is not None:
                pairs["tag"] = _translate(codes, pairs["tag"])
            yield pairs


@contextmanager
def _reading(url: str, what: str):
    engine = connect(url)
    try:
        with engine.connect() as conn:
            yield conn
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:
        raise SourceError(
            f"reading {what} from {redact(url)} failed: {_reason(exc)}",
            hint="Check that the server is reachable and the dictionary's table and column names.",
        ) from None
    finally:
        engine.dispose()


def _reason(exc: BaseException) -> str:
    """The driver's own one-line message, without SQLAlchemy's SQL echo and links."""
    while isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def _read(conn, entity: Entity, scalars, tag_fields, filters: list[Filter], path, rows):
    table = sql_table(entity.source.name)
    wanted = list(dict.fromkeys([entity.primary_key, *scalars]))
    columns = {n: _column(entity, n) for n in wanted}
    inline = []
    for name in tag_fields:
        col = tagio.column_of(entity.fields[name].storage, name)
        if col is not None:
            columns[name] = col
            inline.append(name)
    pushed, late = [], []
    for flt in filters:
        (pushed if pushable(entity.fields[flt.field], conn.dialect.name) else late).append(flt)
    stmt = sa.select(*[sa.column(c).label(n) for n, c in columns.items()]).select_from(table)
    for flt in pushed:
        stmt = stmt.where(
            _condition(sa.column(_column(entity, flt.field)), entity.fields[flt.field], flt)
        )
    lookups = {
        n: _codes(conn, entity.fields[n].lookup)
        for n in wanted
        if entity.fields[n].lookup is not None
    }
    for frame in fetch_batches(conn, stmt, list(columns), path, rows):
        for name, codes in lookups.items():
            frame[name] = _translate(codes, frame[name])
        long = {}
        for name in inline:
            storage = entity.fields[name].storage
            if storage.chosen() == "delimited":
                long[name] = tagio.split_delimited(
                    frame[name], storage.delimited.separator, storage.delimited.wrap
                )
            else:
                long[name] = tagio.split_json(frame[name])
        yield frame, long, late


def fetch_frame(conn, stmt, names: list[str], source: str | None = None) -> pd.DataFrame:
    """The rows of `stmt` as one DataFrame (see fetch_batches)."""
    return next(fetch_batches(conn, stmt, names, source))


def fetch_batches(conn, stmt, names: list[str], source: str | None = None, rows: int | None = None):
    """The rows of `stmt` as DataFrames of at most `rows` rows (one, maybe empty, for None), read
    the fastest way the driver allows.

    SQLAlchemy compiles the statement (quoted identifiers, bound parameters); its per-row Result
    objects are skipped. SQLite files and PostgreSQL (given the `source` URL) are read by ADBC
    straight into Arrow; where ADBC cannot (SQLite lets one column hold numbers and text), and
    for every other driver, rows are fetched on the driver's own server-side cursor and turned
    into Arrow column by column.
    Integers with nulls stay exact (Int64), decimals stay Decimal until the dictionary types them.
    """
    # render_postcompile: IN lists become one bound parameter per value
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params(escape_names=False)
    args = tuple(params[k] for k in compiled.positiontup) if compiled.positional else params
    done = 0
    tables = _adbc_batches(stmt, source, rows) or _connectorx_batches(stmt, source, rows)
    if tables is not None:
        try:
            for table in tables:
                done += table.num_rows
                yield _to_pandas(table.rename_columns(names))
            return
        except BaseException as exc:
            if not isinstance(exc, Exception) and not _panicked(exc):
                raise
            # SQLite's ADBC driver types columns by their first rows and stops at a mixed one:
            # the cursor re-reads the same file in the same order, skipping what was given.
            # Elsewhere the order is not certain, so only a failure before any rows is retried.
            if done and make_url(source).get_backend_name() != "sqlite":
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                secret = make_url(source).password
                if secret:  # a driver's message may quote its connection string
                    for shown in (str(secret), quote_plus(str(secret)), quote(str(secret))):
                        reason = reason.replace(shown, "***")
                raise SourceError(
                    f"reading from {redact(source)} failed: {reason}",
                    hint="Check that the server is reachable and the query's tables and views.",
                ) from None
    chunk = rows or CHUNK_ROWS
    given = 0
    cursor = _cursor(conn.connection.driver_connection, stream=rows is not None)
    try:
        cursor.execute(str(compiled), args)
        skip = done
        while skip and (seen := cursor.fetchmany(min(skip, chunk))):
            skip -= len(seen)
        parts = []
        while batch := cursor.fetchmany(chunk):
            table = pa.table(
                {n: _arrow_column(c) for n, c in zip(names, zip(*batch, strict=True), strict=True)}
            )
            if rows is None:
                parts.append(table)
                continue
            given += 1
            yield _to_pandas(table)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError(str(compiled), args, exc) from exc
    finally:
        cursor.close()
    if rows is None:
        yield _to_pandas(pa.concat_tables(parts)) if parts else _empty(names)
    elif not given and not done:
        yield _empty(names)


def _cursor(raw, stream: bool):
    """The driver's own cursor; for a streamed read one that fetches from the server as it goes,
    where the driver has one (the default MySQL cursors hold the whole result in memory)."""
    driver = type(raw).__module__.split(".")[0]
    if stream and driver in ("pymysql", "MySQLdb"):
        return raw.cursor(importlib.import_module(f"{driver}.cursors").SSCursor)
    if stream and driver in ("psycopg", "psycopg2"):
        return raw.cursor(name=f"reconcile_{secrets.token_hex(4)}")
    return raw.cursor()


def _empty(names: list[str]) -> pd.DataFrame:
    return pd.DataFrame({n: pd.Series(dtype=object) for n in names})


def _adbc_batches(stmt, source: str | None, rows: int | None):
    """The result as Arrow tables of at most `rows` rows through an ADBC driver, or None where
    there is none for `source`."""
    if source is None:
        return None
    try:
        parsed = make_url(source)
        backend = parsed.get_backend_name()
        if (
            backend == "sqlite"
            and _adbc_sqlite is not None
            and parsed.database not in (None, "", ":memory:")
        ):
            compiled = stmt.compile(
                dialect=sqlite_dialect.dialect(), compile_kwargs={"render_postcompile": True}
            )
            params = compiled.construct_params(escape_names=False)
            args = tuple(params[k] for k in compiled.positiontup)
            adbc = _adbc_sqlite.connect(f"file:{parsed.database}?mode=ro")
            # the driver's own batch size: it types a column by the first batch and, past it,
            # stops at a value of another type (the cursor then reads on); a larger first batch
            # would have it convert mixed values itself, and floats become 7-digit text
            batch = {}
        elif backend == "postgresql" and _adbc_postgresql is not None:
            # libpq takes $1 placeholders; the psycopg dialect adds the casts that type them
            dollar = postgresql.psycopg.dialect(paramstyle="numeric_dollar")
            compiled = stmt.compile(dialect=dollar, compile_kwargs={"render_postcompile": True})
            params = compiled.construct_params(escape_names=False)
            args = tuple(params[k] for k in compiled.positiontup)
            libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            adbc = _adbc_postgresql.connect(libpq)
            batch = {} if rows else {"adbc.postgresql.batch_size_hint_bytes": str(_WHOLE)}
        else:
            return None
    except Exception:  # whatever ADBC cannot do, the database's own cursor does
        return None
    cursor = adbc.cursor()
    try:
        cursor.adbc_statement.set_options(**batch)
        cursor.execute(str(compiled), args)
        reader = cursor.fetch_record_batch()
    except Exception:
        cursor.close()
        adbc.close()
        return None
    return _rebatch(reader, rows, adbc, cursor)  # the reader lives as long as its cursor


def _connectorx_batches(stmt, source: str | None, rows: int | None):
    """The result as Arrow tables of at most `rows` rows through connectorx (MySQL, MariaDB), or
    None where it cannot read it.

    connectorx reads the MySQL protocol straight into Arrow, at about twice the speed of the
    Python drivers' rows, but it takes no parameters: only a statement without any (columns,
    value-free filters, true/false) is read this way, and the cursor binds every other.
    """
    if _connectorx is None or source is None:
        return None
    try:
        parsed = make_url(source)
        if parsed.get_backend_name() not in ("mysql", "mariadb") or not parsed.host:
            return None  # a unix socket, or not MySQL
        options = dict(parsed.query)
        if set(options) - {"charset"} or options.get("charset", "utf8mb4") not in _UTF8:
            return None  # TLS and other options are the Python driver's to honour
        compiled = stmt.compile(
            dialect=mysql_dialect.dialect(), compile_kwargs={"render_postcompile": True}
        )
        if compiled.construct_params(escape_names=False):
            return None
        url = parsed.set(drivername="mysql", query={}).render_as_string(hide_password=False)
        # the columns' types first, from no rows: some values of other types make it panic
        probe = f"SELECT * FROM ({compiled}) AS reconcile_probe LIMIT 0"
        schema = _connectorx.read_sql(url, probe, return_type="arrow").schema
        if not all(_exact(f.type) or _as_text(f.type) for f in schema):
            return None
        sql = str(compiled)
        if any(_as_text(f.type) for f in schema):  # the server writes them as text, exactly
            q = mysql_dialect.dialect().identifier_preparer.quote
            columns = [
                f"CAST({q(f.name)} AS CHAR) AS {q(f.name)}" if _as_text(f.type) else q(f.name)
                for f in schema
            ]
            sql = f"SELECT {', '.join(columns)} FROM ({sql}) AS reconcile_read"
        # a whole read in one batch, as one chunk a column: joining chunks of text afterwards
        # costs half as much again as the fetch. Its builders reserve room for a batch up front,
        # which stays virtual memory until rows fill it.
        batch = rows or _CX_WHOLE
        reader = _connectorx.read_sql(url, sql, return_type="arrow_stream", batch_size=batch)
    except Exception:  # a server it refuses, a statement it cannot type: the cursor
        return None
    except BaseException as exc:
        if not _panicked(exc):
            raise
        return None
    return _rebatch(reader, rows, reader)


def _exact(t: pa.DataType) -> bool:
    """Does connectorx read a column of this Arrow type as the Python drivers do? Text, integers
    and doubles it does. Decimals come at scale 10 ('1001.0000000000') and zero dates or decimals
    past 28 digits make it panic, so DECIMAL and DATE are read as the server's text of them
    (_as_text); DATETIME and TIMESTAMP (zero dates), FLOAT (float32), BIGINT UNSIGNED (uint64:
    float with NULLs) and TIME (past 24 h it panics) send the statement to the driver's cursor."""
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_signed_integer(t)
        or t in (pa.uint8(), pa.uint16(), pa.uint32(), pa.float64(), pa.bool_())
    )


def _as_text(t: pa.DataType) -> bool:
    """DECIMAL and DATE: text from the server (CAST AS CHAR), typed by the dictionary as the
    driver's values are (its dates reach the dictionary as text too). Not DATETIME: the driver's
    datetimes skip the dictionary's text format, the server's text would not."""
    return pa.types.is_decimal(t) or pa.types.is_date(t)


def _panicked(exc: BaseException) -> bool:
    """A panic in a Rust extension (connectorx), which Python raises as a BaseException."""
    return type(exc).__name__ == "PanicException"


_UTF8 = ("utf8mb4", "utf8", "utf8mb3")
_WHOLE = 1 << 31  # bytes: PostgreSQL's batches, for reading everything, as one
_CX_WHOLE = 1 << 24  # rows: connectorx's batches, for reading everything, as one


def _rebatch(reader: pa.RecordBatchReader, rows: int | None, *resources):
    """The reader's batches gathered into tables of at most `rows` rows (all of them for None);
    `resources` are closed at the end."""
    with ExitStack() as stack:
        for r in resources:
            stack.enter_context(r)
        held, count, given = [], 0, False
        for batch in reader:
            while batch.num_rows:
                take = batch if rows is None else batch.slice(0, rows - count)
                held.append(take)
                count += take.num_rows
                batch = batch.slice(take.num_rows)
                if rows is not None and count == rows:
                    yield pa.Table.from_batches(held, schema=reader.schema)
                    held, count, given = [], 0, True
        if held or not given:  # an empty result is one empty table
            yield pa.Table.from_batches(held, schema=reader.schema)


def _arrow_column(values: tuple) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # mixed, or past 64 bits: text
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


_EXACT = {
    pa.int8(): pd.Int64Dtype(),
    pa.int16(): pd.Int64Dtype(),
    pa.int32(): pd.Int64Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.Int64Dtype(),
    pa.uint16(): pd.Int64Dtype(),
    pa.uint32(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas with integers (nulls included) kept exact, everything else as pandas does.

    Extension columns (PostgreSQL numeric and json arrive as opaque text) are read as their text.
    """
    for i, column in enumerate(table.columns):
        if isinstance(column.type, pa.BaseExtensionType):
            plain = pa.chunked_array(
                [c.storage for c in column.chunks], type=column.type.storage_type
            )
            table = table.set_column(i, table.field(i).name, plain)
    for i, column in enumerate(table.columns):
        is_text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        if is_text and column.num_chunks > 1:
            # text in one piece, as pandas holds it: Arrow's take on a column of several chunks
            # joins them again on every call, and the diff takes rows many times
            whole = column.cast(pa.large_string()).combine_chunks()
            table = table.set_column(i, table.field(i).name, whole)
    return table.to_pandas(types_mapper=_EXACT.get, split_blocks=True, self_destruct=True)


def _column(entity: Entity, name: str) -> str:
    return entity.fields[name].column or name


def _codes(conn, lookup: Lookup) -> pd.Series:
    """A lookup table as code by id text, read on the open connection: a few rows are not
    worth a second (Arrow) connection."""
    stmt = sa.select(sa.column(lookup.key), sa.column(lookup.code)).select_from(
        sql_table(lookup.table)
    )
    table = fetch_frame(conn, stmt, ["key", "code"])
    return pd.Series(as_text(table["code"]).to_numpy(), index=as_text(table["key"]).to_numpy())


def _translate(codes: pd.Series, ids: pd.Series) -> pd.Series:
    """Ids into codes; an id the lookup lacks stays as '#id'."""
    index, distinct = pd.factorize(ids, use_na_sentinel=False)
    text = as_text(pd.Series(distinct))
    out = text.map(codes).astype("string")
    out = out.mask(text.notna() & out.isna(), "#" + text)
    return pd.Series(out.array.take(index), index=ids.index)


def pushable(fdef: Field, dialect: str) -> bool:
    """Can a filter on this field run in the database? Dates kept as text (SQLite, or a column
    with a stated format) do not compare correctly there, so they are filtered after reading."""
    if fdef.lookup is not None or fdef.kind.name == "tags":
        return False
    if fdef.kind.name in ("date", "datetime"):
        return dialect != "sqlite" and fdef.format is None
    return True


def _condition(col, fdef: Field, flt: Filter):
    def bind(v):
        value = parse_value(fdef, v)
        if isinstance(value, bool):  # SQL's own constants, so that the statement needs no value
            return sa.true() if value else sa.false()
        if fdef.kind.name == "decimal":
            return str(value)
        if fdef.kind.name == "datetime" and value.tzinfo is not None:
            # the column holds local times of the field's stated timezone
            return value.astimezone(ZoneInfo(fdef.timezone)).replace(tzinfo=None)
        return value

    match flt.op:
        case "eq":
            return col == bind(flt.value)
        case "ne":
            return col.is_distinct_from(bind(flt.value))
        case "in":
            return col.in_([bind(v) for v in flt.value])
        case "not_in":
            return sa.or_(col.not_in([bind(v) for v in flt.value]), col.is_(None))
        case "is_null":
            return col.is_(None)
        case "not_null":
            return col.is_not(None)
        case "lt":
            return col < bind(flt.value)
        case "le":
            return col <= bind(flt.value)
        case "gt":
            return col > bind(flt.value)
        case "ge":
            return col >= bind(flt.value)
    raise ValueError(flt.op)


def label_translations(conn, lookup: Lookup) -> dict[str, dict[str, str]]:
    """code -> {lang: label} from a lookup table's label column (JSON or text)."""
    if lookup.label is None:
        return {}
    rows = conn.execute(
        sa.select(sa.column(lookup.code), sa.column(lookup.label)).select_from(
            sql_table(lookup.table)
        )
    )
    out = {}
    for code, label in rows:
        if lookup.label_format == "json" and label:
            out[str(code)] = json.loads(label)
        elif label:
            out[str(code)] = {"*": str(label)}
    return out
