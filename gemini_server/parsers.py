"""JSON bodies with a size limit: DRF reads the body itself, past Django's upload limit."""

from io import BytesIO

from django.conf import settings
from rest_framework.parsers import JSONParser

from gemini_server.errors import PayloadTooLarge


class LimitedJSONParser(JSONParser):
    """Refuses a JSON body over JSON_BODY_MAX_BYTES with 413 before parsing it."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.JSON_BODY_MAX_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"JSON bodies are limited to {limit} bytes")
        if stream is not None:
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise PayloadTooLarge(f"JSON bodies are limited to {limit} bytes")
            stream = BytesIO(body)
        return super().parse(stream, media_type, parser_context)
