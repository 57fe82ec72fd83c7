"""A model's columns for a statement written by hand, on the hottest paths of a turn.

The ORM builds an UPDATE with F() or Case expressions, or reads a row back through a queryset,
at a cost in CPU larger than the statement's own round trip. The few statements written by hand
(the claim, the session's update at the end of a turn) still take every name and value from the
model: quoted table and column names, and values prepared as the ORM prepares them.
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
