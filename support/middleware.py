"""The language of a request: the console's is the user's stored choice (else the browser's, via Django's
LocaleMiddleware, Russian by default); everything else answers in English."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import translation

from support.models import ConsolePreference

SESSION_KEY = "console_language"
API_LANGUAGE = "en"


def console_language(request: HttpRequest) -> str:
    """The signed-in user's stored language ("" without one), remembered in the session after the first read."""
    if SESSION_KEY not in request.session:
        request.session[SESSION_KEY] = (
            ConsolePreference.objects.filter(user=request.user).values_list("language", flat=True).first() or "")
    return request.session[SESSION_KEY]


def console_language_set(request: HttpRequest, language: str) -> None:
    """Store the user's choice (and use it from the next request on)."""
    ConsolePreference.objects.update_or_create(user=request.user, defaults={"language": language})
    request.session[SESSION_KEY] = language


class ConsoleLanguageMiddleware:
    """After authentication (so the user is known) and after LocaleMiddleware (whose choice it may override)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        language = API_LANGUAGE
        if request.path_info.startswith(settings.CONSOLE_PATH_PREFIX):
            language = (console_language(request) if request.user.is_authenticated else "") or request.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = language
        return self.get_response(request)
