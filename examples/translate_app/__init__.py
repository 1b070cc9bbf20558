"""The demo translation app (the seed load-tests it): Flask + sessionshift under gunicorn."""
