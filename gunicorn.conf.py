"""gunicorn reads this file from the working directory (``gunicorn billing_project.wsgi`` in the project folder);
elsewhere pass ``--config /path/to/gunicorn.conf.py``. Command-line options still override what is set here.

The access log redacts the secrets of portal sign-in and deep links (paths and Referer) — see
billing_project/gunicorn_logging.py and docs/SECURITY.md.
"""

logger_class = "billing_project.gunicorn_logging.RedactingLogger"
# The combined format plus the time taken; the logger redacts every atom, so any format is safe.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
