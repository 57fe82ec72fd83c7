"""Request validation shared by every view: a DRF serializer's validated data, or the 400."""

from rest_framework import serializers


def validated(serializer_class: type[serializers.Serializer], data) -> dict:
    """Validates `data`; a failure raises DRF's ValidationError, rendered as `validation_error`."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
