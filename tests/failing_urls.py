"""A URLconf for tests: the real one plus views that fail unexpectedly, to see what clients get."""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from gemini_server.urls import handler400, handler403, handler404, handler500, urlpatterns

SECRET_IN_THE_TRACE = "db-password=hunter2-very-secret"


class FailingApiView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request):
        raise RuntimeError(SECRET_IN_THE_TRACE)


def failing_plain_view(request):
    raise RuntimeError(SECRET_IN_THE_TRACE)


urlpatterns = [
    path("test-failures/api", FailingApiView.as_view()),
    path("test-failures/plain", failing_plain_view),
    *urlpatterns,
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
