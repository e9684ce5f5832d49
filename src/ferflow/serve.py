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

Bad input gets a 4xx JSON `{"error": "..."}`: an empty body or a non-image or truncated image
(400), an upload over the size limit (413), a photo with no face (422). Uploads are decoded in
memory; nothing is written to disk.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from ferflow.detectors import face_detector
from ferflow.predict import Classifier, Image, PredictOptions, decode_image, faces_in
from ferflow.sidecar import INPUT_SPEC, read_sidecar

DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 10.0


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def model_summary(classifier: Classifier) -> dict[str, Any]:
    """What /model shows: the classes, the input the model takes, and its sidecar's metrics."""
    info = read_sidecar(classifier.path)
    return {"path": classifier.path.name, "class_names": list(classifier.class_names), "input": INPUT_SPEC,
            "crop_size": classifier.crop_size, "arch": info.get("arch"), "metrics": info.get("metrics", {}),
            "test_metrics": info.get("test_metrics", {})}


def create_app(classifier: Classifier, max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6),
               options: PredictOptions | None = None) -> FastAPI:
    """The FastAPI app serving `classifier`. Keras models are not safe to call from several
    threads at once, so predictions take a lock; requests are still accepted concurrently."""
    options = options or PredictOptions()
    detector = face_detector(options.detector) if options.detect else None
    summary = model_summary(classifier)
    predicting = threading.Lock()
    app = FastAPI(title="ferflow", version="1", docs_url=None, redoc_url=None,
                  description="Facial-emotion recognition on FER-2013: faces, boxes, emotions, probabilities.")
    page = resources.files("ferflow").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/api", response_class=HTMLResponse, include_in_schema=False)
    def api_page() -> str:
        rows = "".join(f"<tr><td><code>{method.upper()} {path}</code></td><td>{spec.get('summary', '')}</td></tr>"
                       for path, item in app.openapi()["paths"].items() for method, spec in item.items())
        return (f"<!doctype html><title>ferflow API</title><h1>ferflow API</h1><table>{rows}</table>"
                "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Example:</p>"
                "<pre>curl -F file=@photo.jpg http://127.0.0.1:8000/predict</pre>")

    @app.get("/health", summary="The server is up")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model", summary="Classes, input spec and metrics of the model served")
    def model() -> dict[str, Any]:
        return summary

    @app.post("/predict", summary="Faces, boxes, emotions and probabilities in an uploaded photo")
    def predict(request: Request, file: UploadFile | None = None) -> JSONResponse:
        # A plain def: FastAPI runs it in its thread pool, so /health answers while a photo
        # is being classified instead of waiting behind it on the event loop.
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_upload_bytes + 64_000:
            return error(413, f"upload of {int(declared):,} bytes is over the limit of {max_upload_bytes:,} bytes")
        if file is None:
            return error(400, "no file: send the photo as multipart form field 'file' "
                              "(curl -F file=@photo.jpg http://127.0.0.1:8000/predict)")
        data = file.file.read(max_upload_bytes + 1)
        name = file.filename or "upload"
        if len(data) > max_upload_bytes:
            return error(413, f"'{name}' is over the upload limit of {max_upload_bytes:,} bytes")
        try:
            pixels = decode_image(data, name)
        except ValueError as problem:
            return error(400, str(problem))
        with predicting:
            faces = faces_in(Image(name, None, pixels), classifier, options, detector)
        if not faces:
            return error(422, f"no face found in '{name}'")
        return JSONResponse({"class_names": list(classifier.class_names), "detector": options.detector,
                             "faces": [f.record() for f in faces],
                             "image": {"width": int(pixels.shape[1]), "height": int(pixels.shape[0])}})

    return app


def serve(classifier: Classifier, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> None:
    import uvicorn

    app = create_app(classifier, int(max_upload_mb * 1e6))
    print(f"serving {classifier.path.name} on http://{host}:{port} (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
