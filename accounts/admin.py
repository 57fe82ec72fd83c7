"""The admin for users and API keys; every change goes through the accounts services."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Sum
from django.urls import reverse
from django.utils.html import format_html

from accounts.models import ApiKey, Role, User
from accounts.services import (
    api_key_create,
    api_key_revoke,
    api_key_rotate,
    user_create,
    user_update,
)


class UserCreationForm(forms.ModelForm):
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    class Meta:
        model = User
        fields = ["email", "name", "role"]


class UserChangeForm(forms.ModelForm):
    new_password = forms.CharField(
        widget=forms.PasswordInput,
        strip=False,
        required=False,
        help_text="Leave empty to keep the password.",
    )

    class Meta:
        model = User
        fields = ["name", "role", "is_active"]


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "name",
        "role",
        "is_active",
        "date_joined",
        "session_count",
        "total_tokens",
        "activity",
    ]
    list_filter = ["role", "is_active"]
    search_fields = ["email", "name"]
    ordering = ["email"]
    readonly_fields = ["date_joined", "last_login"]

    def get_form(self, request, obj=None, **kwargs):
        kwargs["form"] = UserCreationForm if obj is None else UserChangeForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["email", "name", "role", "password"]
        return ["email", "name", "role", "is_active", "new_password", "date_joined", "last_login"]

    def get_readonly_fields(self, request, obj=None):
        return ["email", "date_joined", "last_login"] if obj else []

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                session_total=Count("sessions", distinct=True),
                token_total=Sum("sessions__total_tokens"),
            )
        )

    @admin.display(description="Sessions", ordering="session_total")
    def session_count(self, user):
        url = reverse("admin:sessions_app_session_changelist") + f"?user__id__exact={user.pk}"
        return format_html('<a href="{}">{}</a>', url, user.session_total)

    @admin.display(description="Tokens (live sessions)", ordering="token_total")
    def total_tokens(self, user):
        return user.token_total or 0

    @admin.display(description="Activity")
    def activity(self, user):
        url = reverse("admin:monitoring_event_changelist") + f"?user__id__exact={user.pk}"
        return format_html('<a href="{}">events</a>', url)

    def save_model(self, request, obj, form, change):
        # The services record who changed what; the admin never writes a user by itself.
        if change:
            user_update(
                user=User.objects.get(pk=obj.pk),
                actor=request.user,
                name=form.cleaned_data.get("name"),
                role=form.cleaned_data.get("role"),
                is_active=form.cleaned_data.get("is_active"),
                password=form.cleaned_data.get("new_password") or None,
            )
        else:
            created = user_create(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                name=form.cleaned_data.get("name", ""),
                role=form.cleaned_data.get("role", Role.ENGINEER),
                actor=request.user,
            )
            obj.pk = created.pk


class ApiKeyCreationForm(forms.ModelForm):
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650, required=False)

    class Meta:
        model = ApiKey
        fields = ["user", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "name",
        "user",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "state",
    ]
    list_filter = ["revoked_at", "expires_at", "created_at"]
    search_fields = ["prefix", "name", "user__email"]
    list_select_related = ["user"]
    actions = ["revoke_keys", "rotate_keys"]
    readonly_fields = [
        "prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "rotated_from",
    ]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreationForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "expires_in_days"]
        return [
            "user",
            "name",
            "prefix",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "rotated_from",
        ]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else [*self.readonly_fields, "user"]

    @admin.display(description="State")
    def state(self, key):
        return "usable" if key.is_usable() else ("revoked" if key.revoked_at else "expired")

    def save_model(self, request, obj, form, change):
        # After creation only the name may change; the rest goes through revoke and rotate.
        if change:
            ApiKey.objects.filter(pk=obj.pk).update(name=obj.name)
            return
        key, raw = api_key_create(
            user=form.cleaned_data["user"],
            name=form.cleaned_data.get("name", ""),
            expires_in_days=form.cleaned_data.get("expires_in_days"),
            actor=request.user,
        )
        obj.pk = key.pk
        messages.warning(request, f"The new API key, shown this once: {raw}")

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key, actor=request.user)
        messages.success(request, f"Revoked {queryset.count()} key(s).")

    @admin.action(description="Rotate the selected keys (old ones work 24 more hours)")
    def rotate_keys(self, request, queryset):
        for key in queryset:
            if not key.is_usable():
                messages.error(
                    request, f"API key gsk_{key.prefix} is revoked or expired and was not rotated."
                )
                continue
            _new_key, raw = api_key_rotate(key=key, actor=request.user, grace=timedelta(hours=24))
            messages.warning(
                request, f"API key gsk_{key.prefix} replaced; the new key, shown this once: {raw}"
            )
