"""Django admin for what operators configure here; the console proper lives in ``dashboard``."""

from django import forms
from django.contrib import admin

from ingest.models import WebhookSource
from ingest.services.webhooks import InvalidWebhookSecret, webhook_secret_validate


class WebhookSourceForm(forms.ModelForm):
    # The secret is write-only: the form never renders the stored value back.
    secret = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text=(
            "Standard Webhooks secret: whsec_ followed by the base64 of 24 to 64 random bytes, "
            'e.g. from: python -c "import base64, secrets; '
            "print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\". "
            "Leave empty to keep the current one."
        ),
    )

    class Meta:
        model = WebhookSource
        fields = ["name", "secret", "is_enabled"]

    def clean_secret(self):
        secret = self.cleaned_data["secret"]
        if not secret and not self.instance.pk:
            raise forms.ValidationError("A new source needs a secret.")
        if not secret:
            return self.instance.secret
        try:
            webhook_secret_validate(secret)
        except InvalidWebhookSecret as error:
            raise forms.ValidationError(str(error)) from error
        return secret


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
