"""Django admin for what operators configure here; the console proper lives in ``dashboard``."""

from django import forms
from django.contrib import admin

from ingest.models import WebhookSource


class WebhookSourceForm(forms.ModelForm):
    # The secret is write-only: the form never renders the stored value back.
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Shared HMAC-SHA256 secret. Leave empty to keep the current one.",
    )

    class Meta:
        model = WebhookSource
        fields = ["name", "secret", "is_enabled"]

    def clean_secret(self):
        secret = self.cleaned_data["secret"]
        if not secret and not self.instance.pk:
            raise forms.ValidationError("A new source needs a secret.")
        return secret or self.instance.secret


@admin.register(WebhookSource)
class WebhookSourceAdmin(admin.ModelAdmin):
    form = WebhookSourceForm
    list_display = ["name", "is_enabled", "created_at"]
    list_filter = ["is_enabled"]
    search_fields = ["name"]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not self.has_change_permission(request, obj):
            # Read-only admin pages show model values as text: never the secret.
            fields = [name for name in fields if name != "secret"]
        return fields
