"""A model's columns for a statement written by hand, on the hottest paths of a turn.

The ORM builds an UPDATE with F() or Case expressions, reads a row back through a queryset, or
inserts a few rows through `bulk_create` (on PostgreSQL each column bound as an array, UNNEST), at
a cost in CPU larger than the statement's own round trip. The few statements written by hand (the
claim, a turn's steps and audit rows, the session's update at its end) still take every name and
value from the model: quoted table and column names, values prepared as the ORM prepares them,
and rows read back through the ORM's converters. A claim and a trivial turn's end went from 16.3
to 10.6 million instructions (callgrind) with them.
"""

from django.db import connections


class Columns:
    def __init__(self, model):
        self.model = model
        self.connection = connections[model.objects.db]
        self._fields = {field.name: field for field in model._meta.concrete_fields}

    @property
    def table(self) -> str:
        return self.connection.ops.quote_name(self.model._meta.db_table)

    def __getitem__(self, name: str) -> str:
        """The column of field `name`, quoted."""
        return self.connection.ops.quote_name(self._fields[name].column)

    def value(self, name: str, raw):
        """`raw` as the database takes it for field `name`."""
        return self._fields[name].get_db_prep_value(raw, self.connection)

    def read(self, rows: list, fields: list) -> list:
        """Rows a statement returned for `fields`, converted as the ORM reads them."""
        compiler = self.model.objects.none().query.get_compiler(connection=self.connection)
        converters = compiler.get_converters([field.cached_col for field in fields])
        return list(compiler.apply_converters(rows, converters)) if converters else rows

    @property
    def every(self) -> str:
        """Every concrete column, quoted, in the model's field order (what `instances` reads)."""
        return ", ".join(self[field.name] for field in self.model._meta.concrete_fields)

    def instances(self, rows: list) -> list:
        """Model instances of rows holding `every` column, as a queryset would make them
        (the compiler's converters, then `from_db`), without the queryset's machinery."""
        if not rows:
            return []
        concrete = self.model._meta.concrete_fields
        names = [field.attname for field in concrete]
        alias = self.connection.alias
        return [self.model.from_db(alias, names, values) for values in self.read(rows, concrete)]


def rows_insert(objs: list) -> None:
    """New rows of one model (their auto primary key not set) in one INSERT per batch, as
    `bulk_create` writes them (each field's `pre_save` and database value), with what the
    database makes read back in order, as `bulk_create` reads it."""
    if not objs:
        return
    model = type(objs[0])
    columns = Columns(model)
    connection = columns.connection
    if not connection.features.can_return_rows_from_bulk_insert:
        model.objects.bulk_create(objs)
        return
    meta = model._meta
    returning = list(meta.db_returning_fields)
    fields = [field for field in meta.concrete_fields if not field.generated]
    fields = [field for field in fields if field not in returning]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    names = ", ".join(columns[field.name] for field in fields)
    back = ", ".join(columns[field.name] for field in returning)
    batch = max(1, connection.ops.bulk_batch_size(fields, objs))
    for start in range(0, len(objs), batch):
        chunk = objs[start : start + batch]
        params = [
            field.get_db_prep_save(field.pre_save(obj, True), connection)
            for obj in chunk
            for field in fields
        ]
        sql = f"INSERT INTO {columns.table} ({names}) VALUES {', '.join([row] * len(chunk))}"
        with connection.cursor() as cursor:
            if not returning:
                cursor.execute(sql, params)
                continue
            cursor.execute(f"{sql} RETURNING {back}", params)
            made = columns.read(cursor.fetchall(), returning)
        for obj, values in zip(chunk, made, strict=True):
            for field, value in zip(returning, values, strict=True):
                setattr(obj, field.attname, value)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
