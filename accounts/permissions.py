"""Role-based permissions, reusable on any DRF view."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.models import Role


def _role(request) -> str | None:
    user = request.user
    return getattr(user, "role", None) if user and user.is_authenticated else None


class IsAdmin(BasePermission):
    """Admins only: monitoring and user management."""

    message = "Admins only"

    def has_permission(self, request, view):
        return _role(request) == Role.ADMIN


class CanOperate(BasePermission):
    """Engineers and admins: chat and run tools. Viewers may not."""

    message = "Your role may not chat or run tools"

    def has_permission(self, request, view):
        return _role(request) in (Role.ADMIN, Role.ENGINEER)


class ReadOnlyForViewers(BasePermission):
    """Viewers read; engineers and admins also write."""

    message = "Your role may only read"
    refuses_reads = False  # the OpenAPI schema: a read is never refused (gemini_server/schema.py)

    def has_permission(self, request, view):
        role = _role(request)
        if role is None:
            return False
        return request.method in SAFE_METHODS or role in (Role.ADMIN, Role.ENGINEER)
