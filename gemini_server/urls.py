"""The server's URL map: the web client, health, the v1 API, its OpenAPI schema and docs, the admin."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.urls import auth_urlpatterns, user_urlpatterns
from chat.urls import urlpatterns as chat_urlpatterns
from gemini_server import errors, health
from gemini_server.metrics_view import metrics_view
from gemini_server.web_client import web_client
from monitoring.urls import urlpatterns as monitoring_urlpatterns
from sessions_app.urls import urlpatterns as session_urlpatterns

handler400 = "gemini_server.errors.handler400"
handler403 = "gemini_server.errors.handler403"
handler404 = "gemini_server.errors.handler404"
handler500 = "gemini_server.errors.handler500"

api_v1 = [
    path("auth/", include(auth_urlpatterns)),
    *user_urlpatterns,
    *session_urlpatterns,
    *chat_urlpatterns,
    *monitoring_urlpatterns,
]

urlpatterns = [
    path("", web_client, name="web-client"),
    path("health", csrf_exempt(health.health), name="health"),
    path("health/ready", csrf_exempt(health.ready), name="health-ready"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
    # Unknown API paths answer in the contract's shape even in debug, where Django would render HTML.
    # CSRF-exempt: a PUT or DELETE to a path no view serves is a 404, not an HTML CSRF refusal.
    re_path(r"^(?:api|health)(?:/.*)?$", csrf_exempt(errors.handler404)),
]
