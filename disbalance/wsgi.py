import os

from django.core.wsgi import get_wsgi_application

from disbalance.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disbalance.settings")
tracing_setup()  # only with OTEL_TRACES_EXPORTER set; before the middleware is loaded
application = get_wsgi_application()
