"""Serializers for answers: fields built once per class, not once per answer.

DRF deep-copies and binds a serializer's declared fields for each instance it makes, which was a
tenth of the CPU of a small request such as `GET /auth/me`. An answer's serializer only reads
objects, so its fields can be built and bound once (per class) and shared; the field classes
still say how each value is written (dates as ISO 8601 with `Z`, UUIDs as strings), and the
declared fields still make the OpenAPI schema.
"""

import threading

from rest_framework import serializers
from rest_framework.fields import SkipField, get_attribute

_lock = threading.Lock()


class AnswerSerializer(serializers.Serializer):
    # Output only: `Serializer(obj).data` as DRF makes it, from fields built once. (No docstring:
    # drf-spectacular would show it as every answer's description.)

    @classmethod
    def _plan(cls) -> list:
        plan = cls.__dict__.get("_answer_plan")
        if plan is None:
            with _lock:
                plan = cls.__dict__.get("_answer_plan")
                if plan is None:
                    plan = [
                        (name, field.source_attrs, field.to_representation)
                        for name, field in cls().fields.items()
                        if not field.write_only
                    ]
                    cls._answer_plan = plan
        return plan

    def to_representation(self, instance):
        answer = {}
        for name, source, represent in self._plan():
            try:
                value = get_attribute(instance, source)
            except SkipField:
                continue
            answer[name] = None if value is None else represent(value)
        return answer
