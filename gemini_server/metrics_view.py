"""`GET /metrics`: the Prometheus exposition, for admins and for a scraper holding METRICS_TOKEN."""

import hmac

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.views import APIView

from accounts.authentication import ApiKeyAuthentication, JWTAuthentication
from accounts.permissions import IsAdmin
from gemini_server import metrics

METRICS_TOKEN_AUTH = "metrics-token"


class MetricsTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <METRICS_TOKEN>`; any other credential is left to the usual classes."""

    def authenticate(self, request):
        token = settings.METRICS_TOKEN
        parts = get_authorization_header(request).split()
        if not token or len(parts) != 2 or parts[0].lower() != b"bearer":
            return None
        if not hmac.compare_digest(parts[1], token.encode()):
            return None
        return AnonymousUser(), METRICS_TOKEN_AUTH

    def authenticate_header(self, request):
        return 'Bearer realm="metrics"'


class MetricsReader(BasePermission):
    """Admins, or whoever holds the metrics token."""

    message = "Only admins or the metrics token may read the metrics"

    def has_permission(self, request, view):
        return request.auth == METRICS_TOKEN_AUTH or IsAdmin().has_permission(request, view)


class MetricsView(APIView):
    authentication_classes = [
        MetricsTokenAuthentication,
        ApiKeyAuthentication,
        JWTAuthentication,
    ]
    permission_classes = [MetricsReader]
    # Scrapers poll on a schedule; the rate limit is for people.
    throttle_classes = []

    @extend_schema(exclude=True)
    def get(self, request):
        body, content_type = metrics.exposition()
        response = HttpResponse(body, content_type=content_type)
        response["Cache-Control"] = "no-store"
        return response


metrics_view = MetricsView.as_view()
