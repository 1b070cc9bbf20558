"""gunicorn examples.notes_app.wsgi:app"""

from examples.notes_app.app import create_app

app = create_app()
