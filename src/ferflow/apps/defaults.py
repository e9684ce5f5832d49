"""The defaults that `fer` (apps.cli) and `fer serve` (apps.serve) share, written once."""

DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 10.0
MAX_UPLOAD_MB = 1000.0  # the most --max-upload-mb may be: uploads are held in memory
DEFAULT_MAX_CLIP_SECONDS = 30.0  # fer serve: a short clip is scored while the request waits
DEFAULT_MAX_CLIP_MB = 20.0
MAX_CLIP_SECONDS = 600.0  # the most --max-clip-seconds may be
