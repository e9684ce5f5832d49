"""`fer serve`: a local web page and HTTP API over the same prediction code as `fer predict`.

    fer serve                      # http://127.0.0.1:8000 with the shipped model
    fer serve --port 9000 --model models/model.keras

Endpoints:
    GET  /          the page: drop a photo, see the faces boxed and labelled, with probabilities
    POST /predict   multipart upload (field `file`) -> {"class_names": [...], "faces": [...]},
                    the schema of `fer predict --json`
    GET  /health    {"status": "ok"}
    GET  /model     class names, input spec, the sidecar's metrics
    GET  /openapi.json, /api   the API description (served locally, no CDN)

Every error is JSON `{"error": "..."}`: an empty body, a non-image, truncated or degenerate
image (400), an upload over the size limit (413, said as soon as the size passes it), a photo
with no face (422). Uploads are read and decoded in memory; nothing is written to disk.
"""

from __future__ import annotations

import errno
import socket
import threading
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ferflow.apps.cli import DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT
from ferflow.faces.detectors import face_detector
from ferflow.faces.photo import Image, decode_image
from ferflow.faces.predict import Classifier, PredictOptions, faces_in
from ferflow.model.sidecar import INPUT_SPEC


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class UploadError(ValueError):
    """An upload refused before its photo is looked at, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


NO_FILE = (
    "no file: send the photo as multipart form field 'file' (curl -F file=@photo.jpg http://127.0.0.1:8000/predict)"
)
MULTIPART_OVERHEAD = 64_000  # bytes of form headers and boundaries allowed beyond the photo
MAX_PARTS = 8  # form fields in one upload


async def read_upload(request: Request, max_bytes: int) -> tuple[str, bytes]:
    """The file name and bytes of the form field `file`, read into memory and never to disk.

    Refused with 413 as soon as the declared or received size passes the limit (the rest of
    the body is not read), with 400 for a body that is not a form with a `file` field.
    """
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(400, NO_FILE)
    limit = max_bytes + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"upload of {int(declared):,} bytes is over the limit of {max_bytes:,} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadError(413, f"upload is over the limit of {max_bytes:,} bytes")
    parts = parse_form(bytes(body), options[b"boundary"])
    if "file" not in parts:
        raise UploadError(400, NO_FILE)
    name, data = parts["file"]
    name = name or "upload"
    if len(data) > max_bytes:
        raise UploadError(413, f"'{name}' is over the upload limit of {max_bytes:,} bytes")
    return name, data


def parse_form(body: bytes, boundary: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The parts of a multipart/form-data body: field name -> (file name or None, bytes)."""
    parts: dict[str, tuple[str | None, bytes]] = {}
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}
    current: dict = {}

    def begin() -> None:
        current.clear()
        current.update(headers={}, data=bytearray())

    def header_end() -> None:
        current["headers"][bytes(header["field"]).lower()] = bytes(header["value"])
        header["field"].clear()
        header["value"].clear()

    def end() -> None:
        if len(parts) >= MAX_PARTS:
            raise UploadError(400, f"too many form fields; send at most {MAX_PARTS}")
        _, disposition = parse_options_header(current["headers"].get(b"content-disposition", b""))
        field = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        parts.setdefault(field, (filename.decode("utf-8", "replace") if filename else None, bytes(current["data"])))

    callbacks = {
        "on_part_begin": begin,
        "on_part_data": lambda data, start, stop: current["data"].extend(data[start:stop]),
        "on_part_end": end,
        "on_header_field": lambda data, start, stop: header["field"].extend(data[start:stop]),
        "on_header_value": lambda data, start, stop: header["value"].extend(data[start:stop]),
        "on_header_end": header_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except UploadError:
        raise
    except Exception as problem:  # python-multipart raises its own types on a malformed body
        raise UploadError(400, f"the form could not be read ({type(problem).__name__}); {NO_FILE}") from None
    return parts


def add_json_errors(app: FastAPI) -> None:
    """Every error answer is `{"error": "..."}`, also those FastAPI and Starlette make."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, problem: StarletteHTTPException) -> JSONResponse:
        return error(problem.status_code, str(problem.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, problem: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in problem.errors())
        return error(400, f"bad request: {details}")


def model_summary(classifier: Classifier) -> dict[str, Any]:
    """What /model shows: the classes, the input the model takes, and its sidecar's metrics."""
    info = classifier.sidecar
    return {
        "path": classifier.path.name,
        "class_names": list(classifier.class_names),
        "input": INPUT_SPEC,
        "crop_size": classifier.crop_size,
        "arch": info.get("arch"),
        "metrics": info.get("metrics", {}),
        "test_metrics": info.get("test_metrics", {}),
    }


def create_app(
    classifier: Classifier,
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6),
    options: PredictOptions | None = None,
    model: dict | None = None,
) -> FastAPI:
    """The FastAPI app serving `classifier`. Keras models are not safe to call from several
    threads at once, so predictions take a lock; requests are still accepted concurrently."""
    served = model or {"quality": "custom", "file": classifier.path.name, "runtime": classifier.runtime, "tta": False}
    options = options or PredictOptions(tta=served["tta"])
    detector = face_detector(options.detector) if options.detect else None
    summary = {**model_summary(classifier), "model": served}
    predicting = threading.Lock()
    app = FastAPI(
        title="ferflow",
        version="1",
        docs_url=None,
        redoc_url=None,
        description="Facial-emotion recognition on FER-2013: faces, boxes, emotions, probabilities.",
    )
    page = resources.files("ferflow.apps").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/api", response_class=HTMLResponse, include_in_schema=False)
    def api_page() -> str:
        rows = "".join(
            f"<tr><td><code>{method.upper()} {path}</code></td><td>{spec.get('summary', '')}</td></tr>"
            for path, item in app.openapi()["paths"].items()
            for method, spec in item.items()
        )
        return (
            f"<!doctype html><title>ferflow API</title><h1>ferflow API</h1><table>{rows}</table>"
            "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Example:</p>"
            "<pre>curl -F file=@photo.jpg http://127.0.0.1:8000/predict</pre>"
        )

    @app.get("/health", summary="The server is up")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model", summary="Classes, input spec and metrics of the model served")
    def model() -> dict[str, Any]:
        return summary

    @app.post(
        "/predict",
        summary="Faces, boxes, emotions and probabilities in an uploaded photo",
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
                    }
                }
            }
        },
    )
    async def predict(request: Request) -> JSONResponse:
        # The body is read here, counted as it streams and kept in memory; the work on the
        # photo runs in the thread pool, so /health answers while a photo is being classified.
        try:
            name, data = await read_upload(request, max_upload_bytes)
        except UploadError as problem:
            return error(problem.status, str(problem))
        try:
            pixels, faces = await run_in_threadpool(find_and_classify, name, data)
        except ValueError as problem:  # ImageError: the photo cannot be decoded or searched
            return error(400, str(problem))
        if not faces:
            return error(422, f"no face found in '{name}'")
        return JSONResponse(
            {
                "class_names": list(classifier.class_names),
                "detector": options.detector,
                "model": served,
                "faces": [f.record() for f in faces],
                "image": {"width": int(pixels.shape[1]), "height": int(pixels.shape[0])},
            }
        )

    def find_and_classify(name: str, data: bytes):
        pixels = decode_image(data, name)
        with predicting:
            return pixels, faces_in(Image(name, None, pixels), classifier, options, detector)

    add_json_errors(app)
    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port). Raises OSError with a one-line reason if it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as problem:
        sock.close()
        if problem.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on {host} is in use by another program; choose another with --port") from None
        raise OSError(f"cannot listen on {host}:{port}: {problem.strerror or problem}") from None
    return sock


def serve(
    classifier: Classifier,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    model: dict | None = None,
) -> None:
    """Serve until Ctrl-C. Raises OSError, before printing anything, if the port cannot be had."""
    import uvicorn

    sock = listening_socket(host, port)  # taken before the banner, so a port in use is said first
    app = create_app(classifier, int(max_upload_mb * 1e6), model=model)
    how = f"quality {model['quality']}, " if model else ""
    print(
        f"serving {classifier.path.name} ({how}{classifier.runtime}) on http://{host}:{port} (Ctrl-C stops)", flush=True
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
