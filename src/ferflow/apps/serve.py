"""`fer serve`: a local web page and HTTP API over the same prediction code as `fer predict`.

    fer serve                      # http://127.0.0.1:8000 with the shipped model
    fer serve --port 9000 --model models/model.keras

Endpoints:
    GET  /          the page: drop a photo, see the faces boxed and labelled, with probabilities
    POST /predict   multipart upload (field `file`) -> {"class_names": [...], "faces": [...]},
                    the schema of `fer predict --json`
    POST /predict/video  a short clip (field `file`) -> the faces of its sampled frames with
                    their tracks and smoothed emotions, a timeline chart (PNG, as a data URL)
                    and each track's share of time in each emotion
    GET  /health    {"status": "ok"}
    GET  /model     class names, input spec, the sidecar's metrics
    GET  /openapi.json, /api   the API description (served locally, no CDN)

Every error is JSON `{"error": "..."}`: an empty body, a non-image, truncated or degenerate
image (400), an upload over the size limit or a clip over the length limit (413, said as soon
as the size passes it), a clip that is not a video or with no OpenCV on the server (415), one that
stalls (408), a photo with no face (422), a Host header that is not this server's (421), too
many uploads at once (503). Photos are read and decoded in memory; a clip is written to a
private temporary folder for OpenCV to read, and removed when it is answered.

Memory is bounded whatever the concurrency: at most MAX_UPLOADS uploads are read at once, and
photos are decoded only while their decoded size (from the header) fits DECODE_BUDGET_BYTES,
the others waiting their turn.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import io
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException as StarletteHTTPException

from ferflow.apps.defaults import DEFAULT_MAX_CLIP_MB, DEFAULT_MAX_CLIP_SECONDS, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT
from ferflow.faces.detectors import face_detector
from ferflow.faces.photo import Image, decode_image, pixel_count
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
MAX_UPLOADS = 16  # uploads read or waiting at once; more are answered 503 at once
STALL_SECONDS = 10.0  # the longest wait for the next piece of an upload's body
UPLOAD_SECONDS = 60.0  # the longest an upload may take to arrive
# Decoding takes about 10 bytes a pixel at its peak (Pillow's 4-byte pixels, the RGB copy, grey):
# photos are decoded while their sum fits this budget; a larger one waits until it runs alone.
DECODE_BYTES_PER_PIXEL = 10
DECODE_BUDGET_BYTES = 1_000_000_000
PHOTO_THREADS = 2  # threads that decode and classify photos


async def read_upload(request: Request, max_bytes: int) -> tuple[str, bytes]:
    """The file name and bytes of the form field `file`, read into memory and never to disk.

    Refused with 413 as soon as the declared or received size passes the limit (the rest of
    the body is not read), with 408 when the body stalls for STALL_SECONDS or takes longer than
    UPLOAD_SECONDS, with 400 for a body that is not a form with a `file` field.
    """
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(400, NO_FILE)
    limit = max_bytes + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"upload of {int(declared):,} bytes is over the limit of {max_bytes:,} bytes")
    body = bytearray()
    chunks = request.stream().__aiter__()
    deadline = asyncio.get_running_loop().time() + UPLOAD_SECONDS
    while True:
        left = deadline - asyncio.get_running_loop().time()
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), timeout=min(STALL_SECONDS, max(left, 0.0)))
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise UploadError(
                408,
                f"the upload stalled or took too long (at most {STALL_SECONDS:g} s without data, "
                f"{UPLOAD_SECONDS:g} s in all)",
            ) from None
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


class MemoryBudget:
    """Bytes that decoding may take at once, shared by the worker threads: `take(n)` waits until
    n bytes fit (or, for more than the whole budget, until nothing else is held)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0
        self.changed = threading.Condition()

    def take(self, amount: int) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.held == 0 or self.held + amount <= self.limit)
            self.held += amount

    def give_back(self, amount: int) -> None:
        with self.changed:
            self.held -= amount
            self.changed.notify_all()


def script_hashes(page: str) -> dict[str, str]:
    """The CSP sources that allow exactly the page's own inline scripts and styles."""
    found = re.findall(r"<(script|style)>(.*?)</\1>", page, flags=re.S)
    return {
        kind: " ".join(
            f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
            for tag, body in found
            if tag == kind
        )
        for kind in ("script", "style")
    }


def security_headers(page: str) -> dict[str, str]:
    """Headers for every answer: the page runs only its own script and loads nothing from
    elsewhere (the preview is a blob: URL, the empty icon a data: one), and no answer is sniffed
    as another type."""
    hashes = script_hashes(page)
    policy = (
        f"default-src 'none'; script-src {hashes['script']}; style-src {hashes['style']}; img-src blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff"}


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class HostCheck:
    """ASGI middleware: answer only requests whose Host header names this server (421 otherwise),
    so that a web page on another name pointed at this address (DNS rebinding) reads nothing."""

    def __init__(self, app, allowed_hosts: set[str], headers: dict[str, str]) -> None:
        self.app, self.allowed, self.headers = app, {h.lower().strip("[]") for h in allowed_hosts}, headers

    async def __call__(self, scope, receive, send) -> None:
        from starlette.datastructures import Headers

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = host_name(Headers(scope=scope).get("host", ""))
        if host not in self.allowed:
            response = error(421, f"this server answers to {', '.join(sorted(self.allowed))} only, not {host!r}")
            response.headers.update(self.headers)
            await response(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in self.headers.items()
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def host_name(header: str) -> str:
    """The host of a Host header, without the port: 'localhost:8000' -> 'localhost', '[::1]:80' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


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


# The request body of both upload endpoints, for the OpenAPI description: one file field.
UPLOAD_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            }
        }
    }
}


def create_app(
    classifier: Classifier,
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6),
    options: PredictOptions | None = None,
    model: dict | None = None,
    allowed_hosts: tuple[str, ...] = (),
    max_clip_seconds: float = DEFAULT_MAX_CLIP_SECONDS,
    max_clip_bytes: int = int(DEFAULT_MAX_CLIP_MB * 1e6),
):
    """The app serving `classifier` (FastAPI, behind the Host check: 127.0.0.1, localhost, ::1
    and `allowed_hosts`). Keras models are not safe to call from several threads at once, so
    predictions take a lock; requests are still accepted concurrently, within the memory bounds."""
    served = model or {"quality": "custom", "file": classifier.path.name, "runtime": classifier.runtime, "tta": False}
    best = served.get("quality") == "best"
    options = options or PredictOptions(tta=served["tta"], find_turned=best, second_look=best)
    detector = face_detector(options.detector, options.second_look) if options.detect else None
    summary = {**model_summary(classifier), "model": served}
    predicting = threading.Lock()
    decoding = MemoryBudget(DECODE_BUDGET_BYTES)
    uploads = asyncio.Semaphore(MAX_UPLOADS)
    # Photos are worked on by a few threads of their own, not Starlette's pool of 40: each thread
    # that decodes keeps an allocator arena of its own, and 40 of them held gigabytes after a burst.
    photo_workers = ThreadPoolExecutor(PHOTO_THREADS, thread_name_prefix="photo")
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
        openapi_extra=UPLOAD_BODY,
    )
    async def predict(request: Request) -> JSONResponse:
        # The body is read here, counted as it streams and kept in memory; the work on the
        # photo runs in the thread pool, so /health answers while a photo is being classified.
        return await one_of_the_uploads(answer(request))

    async def one_of_the_uploads(work) -> JSONResponse:
        """Await `work` as one of at most MAX_UPLOADS uploads; beyond them, 503 at once."""
        if uploads.locked():
            work.close()  # never started
            return error(503, f"the server is busy with {MAX_UPLOADS} uploads; try again in a moment")
        async with uploads:
            return await work

    async def answer(request: Request) -> JSONResponse:
        try:
            name, data = await read_upload(request, max_upload_bytes)
        except UploadError as problem:
            return error(problem.status, str(problem))
        try:
            (height, width), faces = await asyncio.get_running_loop().run_in_executor(
                photo_workers, find_and_classify, name, data
            )
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
                "image": {"width": int(width), "height": int(height)},
            }
        )

    @app.post(
        "/predict/video",
        summary="Faces followed through an uploaded clip: tracks, smoothed emotions, a timeline",
        openapi_extra=UPLOAD_BODY,
    )
    async def predict_video(request: Request) -> JSONResponse:
        return await one_of_the_uploads(answer_clip(request))

    async def answer_clip(request: Request) -> JSONResponse:
        try:
            name, data = await read_upload(request, max_clip_bytes)
            answer = await asyncio.get_running_loop().run_in_executor(photo_workers, score_clip, name, data)
        except UploadError as problem:
            return error(problem.status, str(problem))
        return JSONResponse({"class_names": list(classifier.class_names), "model": served, **answer})

    def score_clip(name: str, data: bytes) -> dict[str, Any]:
        """Track and smooth the faces of a clip (`clip_answer`); raises UploadError."""
        with predicting:  # one clip at a time: it holds the models for its whole length
            return clip_answer(name, data, classifier, options, max_clip_seconds)

    def find_and_classify(name: str, data: bytes):
        cost = pixel_count(data, name) * DECODE_BYTES_PER_PIXEL  # from the header: raises for a non-image
        decoding.take(cost)
        try:
            pixels = decode_image(data, name)
            with predicting:
                faces = faces_in(Image(name, None, pixels), classifier, options, detector)
            return pixels.shape[:2], faces
        finally:
            decoding.give_back(cost)

    add_json_errors(app)
    return HostCheck(app, {*LOCAL_HOSTS, *allowed_hosts}, security_headers(page))


CLIP_SAMPLES_PER_SECOND = 5  # frames of a clip searched each second: the stride follows its rate


def clip_answer(
    name: str, data: bytes, classifier: Classifier, options: PredictOptions, max_seconds: float
) -> dict[str, Any]:
    """The faces of an uploaded clip, written to a private temporary folder for OpenCV, sampled
    at about CLIP_SAMPLES_PER_SECOND, with a timeline and each track's share of each emotion.
    Raises UploadError: 415 (no OpenCV, not a video name), 413 (too long), 400, 422."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from ferflow.faces.photo import VIDEO_SUFFIXES, require_opencv, video_frame_rate
    from ferflow.faces.predict import predict_paths
    from ferflow.faces.video import timeline_image

    try:
        cv2 = require_opencv("clips")
    except RuntimeError as missing:
        raise UploadError(415, f"{missing} on the server") from None
    suffix = Path(name).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise UploadError(415, f"'{name}' is not named as a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    with tempfile.TemporaryDirectory(prefix="ferflow-clip-") as folder:
        clip = Path(folder) / f"clip{suffix}"
        clip.write_bytes(data)
        fps = video_frame_rate(clip)
        seconds = clip_seconds(cv2, clip, fps, max_seconds)
        if seconds > max_seconds:
            raise UploadError(413, f"'{name}' is {seconds:.1f} s long; the limit is {max_seconds:g} s")
        stride = max(1, round(fps / CLIP_SAMPLES_PER_SECOND)) if fps > 0 else 1
        result = predict_paths([clip], classifier, dataclasses.replace(options, video_stride=stride))
    for face in result.faces:
        face.file = name
    if result.problems and not result.faces:
        problem = result.problems[0]
        status = 422 if problem.kind == "no_face" else 400
        raise UploadError(status, problem.message.replace(str(clip), name))
    image = timeline_image(result.faces, classifier.class_names)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {
        "clip": {"seconds": round(seconds, 2), "fps": fps, "stride": stride},
        "faces": [face.record() for face in result.faces],
        "tracks": track_summaries(result.faces, classifier.class_names),
        "timeline": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
    }


def clip_seconds(cv2, clip, fps: float, max_seconds: float) -> float:
    """A clip's length from its header's frame count, or, when the header has none, from counting
    its frames (without decoding them) up to just past the limit: a header cannot hide a long clip."""
    if fps <= 0:
        return 0.0  # no usable frame rate: read_video refuses the clip in one line
    capture = cv2.VideoCapture(str(clip))
    try:
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT) if capture.isOpened() else 0
        if frames <= 0:
            limit = int(max_seconds * fps) + 1
            while frames < limit and capture.grab():
                frames += 1
    finally:
        capture.release()
    return frames / fps


def track_summaries(faces: list, class_names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per track: when it is seen, and the share of its sampled frames in each smoothed emotion."""
    from ferflow.faces.video import group_by_track

    return [
        {
            "track": track,
            "from": min(f.time for f in group),
            "to": max(f.time for f in group),
            "share": {name: sum(f.emotion_smoothed == name for f in group) / len(group) for name in class_names},
        }
        for track, group in sorted(group_by_track(faces).items())
    ]


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
    allowed_hosts: tuple[str, ...] = (),
    max_clip_seconds: float = DEFAULT_MAX_CLIP_SECONDS,
    max_clip_mb: float = DEFAULT_MAX_CLIP_MB,
) -> None:
    """Serve until Ctrl-C. Raises OSError, before printing anything, if the port cannot be had.
    The Host header may name this machine, the address listened on, or `allowed_hosts`."""
    import uvicorn

    sock = listening_socket(host, port)  # taken before the banner, so a port in use is said first
    app = create_app(
        classifier,
        int(max_upload_mb * 1e6),
        model=model,
        allowed_hosts=(host, *allowed_hosts),
        max_clip_seconds=max_clip_seconds,
        max_clip_bytes=int(max_clip_mb * 1e6),
    )
    how = f"quality {model['quality']}, " if model else ""
    print(
        f"serving {classifier.path.name} ({how}{classifier.runtime}) on http://{host}:{port} (Ctrl-C stops)", flush=True
    )
    # Connections beyond the uploads' cap and the quick requests get uvicorn's own 503.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", limit_concurrency=4 * MAX_UPLOADS))
    server.run(sockets=[sock])
