"""The defaults that `fer` (apps.cli) and `fer serve` (apps.serve) share, written once."""

DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 10.0
MAX_UPLOAD_MB = 1000.0  # the most --max-upload-mb may be: uploads are held in memory
