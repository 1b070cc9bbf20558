"""The WSGI entry point: ``gunicorn examples.translate_app.wsgi:app`` (config from TRANSLATE_APP_CONFIG)."""

from examples.translate_app.app import create_app

app = create_app()
