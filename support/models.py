"""The console's own state: each support user's language."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ConsolePreference(models.Model):
    """A support user's console settings; without a row the browser's language applies (Russian by default)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_preference")
    language = models.CharField(_("language"), max_length=8, choices=settings.LANGUAGES)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("console preference")
        verbose_name_plural = _("console preferences")

    def __str__(self) -> str:
        return f"{self.user} · {self.language}"
