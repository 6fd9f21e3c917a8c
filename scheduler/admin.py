"""Operators configure collection sources here (the console links to it as Settings)."""

from django import forms
from django.contrib import admin

from scheduler.models import CollectionSource


class CollectionSourceForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    # Write-only: the stored header (a credential) is never rendered back.
    auth_header = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="e.g. 'Authorization: Bearer …'. Leave empty to keep the current one.",
    )
    clear_auth_header = forms.BooleanField(required=False, help_text="Remove the stored header.")

    class Meta:
        model = CollectionSource
        fields = ["name", "url", "interval_seconds", "device", "auth_header", "is_enabled"]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_auth_header"):
            cleaned["auth_header"] = ""
        elif not cleaned.get("auth_header"):
            cleaned["auth_header"] = self.instance.auth_header
        return cleaned


@admin.register(CollectionSource)
class CollectionSourceAdmin(admin.ModelAdmin):
    form = CollectionSourceForm
    list_display = ["name", "url", "interval_seconds", "device", "is_enabled", "last_run_at"]
    list_filter = ["is_enabled"]
    raw_id_fields = ["device"]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not self.has_change_permission(request, obj):
            # Read-only admin pages show model values as text: never the credential.
            fields = [name for name in fields if name not in ("auth_header", "clear_auth_header")]
        return fields
