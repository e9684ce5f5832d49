#!/usr/bin/env bash
# The photo tool as a user installs it: a wheel built from this checkout, installed into a fresh
# virtualenv in a temporary folder outside the checkout, first with [predict] alone for
# `fer predict`, then with [serve] for `fer serve`, each run from there on a photo.
# TensorFlow, Keras and OpenCV must not be installed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$repo"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --upgrade pip
wheel="$(ls "$work"/dist/ferflow-*.whl)"
"$work/venv/bin/pip" install --quiet "${wheel}[predict]"  # fer predict first, with its extra alone
cp "$repo/tests/data/astronaut.jpg" "$work/photo.jpg"
cd "$work"

"$work/venv/bin/python" - <<'PY'
import importlib.util
heavy = ("tensorflow", "keras", "cv2")
installed = [name for name in heavy if importlib.util.find_spec(name) is not None]
assert not installed, f"the photo tool's extra installed {installed}"
PY
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "wheel: $(basename "$wheel"), [predict] site-packages $(du -sm "$site" | cut -f1) MB"

"$work/venv/bin/python" - <<'PY'
import subprocess, sys, time
start = time.perf_counter()
subprocess.run([sys.prefix + "/bin/fer", "predict", "photo.jpg", "--json", "faces.json"], check=True)
print(f"cold fer predict: {time.perf_counter() - start:.2f} s")
PY
"$work/venv/bin/python" -c "
import json; faces = json.load(open('faces.json'))['faces']
assert len(faces) == 1, faces; print('fer predict found', faces[0]['emotion'], round(faces[0]['confidence'], 3))"

"$work/venv/bin/pip" install --quiet "${wheel}[serve]"
"$work/venv/bin/python" -c "import importlib.util; assert all(importlib.util.find_spec(m) is None for m in ('tensorflow', 'keras', 'cv2'))"
echo "[predict,serve] site-packages $(du -sm "$site" | cut -f1) MB"
port=$("$work/venv/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$work/venv/bin/fer" serve --port "$port" &
server=$!
"$work/venv/bin/python" - "$port" <<'PY'
import json, sys, time, urllib.request, uuid
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(300):  # up to 30 s for the server to come up
    try:
        urllib.request.urlopen(f"{base}/health", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
boundary = uuid.uuid4().hex
body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n\r\n").encode() + open("photo.jpg", "rb").read() + f"\r\n--{boundary}--\r\n".encode()
request = urllib.request.Request(f"{base}/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
answer = json.load(urllib.request.urlopen(request, timeout=60))
assert len(answer["faces"]) == 1 and answer["model"]["runtime"] == "onnx", answer
print("fer serve answered", answer["faces"][0]["emotion"], "with", answer["model"]["file"])
PY

# fer predict --engine ray with [predict,ray], against a head started with `ray start` on 127.0.0.1
# (--block: it lives in its own process group, stopped on exit): the local engine's records, and
# the driver in the head's job table.
"$work/venv/bin/pip" install --quiet "${wheel}[predict,ray]"
echo "[predict,serve,ray] site-packages $(du -sm "$site" | cut -f1) MB"
python3 - "$repo" "$work/faces" <<'PY'  # the first 100 happy faces of the sample (no pipe: pipefail)
import shutil, sys
from pathlib import Path
Path(sys.argv[2]).mkdir()
for path in sorted((Path(sys.argv[1]) / "data/sample/test/happy").glob("*.jpg"))[:100]:
    shutil.copy(path, sys.argv[2])
PY
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token
RAY_AUTH_TOKEN="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export RAY_AUTH_TOKEN
ray_port=$("$work/venv/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
setsid "$work/venv/bin/ray" start --head --node-ip-address 127.0.0.1 --port "$ray_port" --num-cpus 2 \
    --include-dashboard false --disable-usage-stats --block >"$work/ray_head.log" 2>&1 &
ray_head=$!
stop_ray_head() {  # SIGTERM drains the head's processes (at most 30 s), then they are killed
    kill -TERM -- -"$ray_head" 2>/dev/null || return 0
    for _ in $(seq 60); do kill -0 "$ray_head" 2>/dev/null || return 0; sleep 1; done
    kill -KILL -- -"$ray_head" 2>/dev/null || true
}
trap 'kill "${server:-0}" 2>/dev/null || true; stop_ray_head; rm -rf "$work"' EXIT
"$work/venv/bin/python" - "$ray_port" <<'PY'
import socket, sys, time
for _ in range(300):  # up to 60 s for the head to listen
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        time.sleep(0.2)
PY
start=$(date +%s)
"$work/venv/bin/fer" predict faces --no-detect --engine ray --ray-address "127.0.0.1:$ray_port" --json ray.json
echo "fer predict --engine ray: $(( $(date +%s) - start )) s for 100 faces, with the actors' start"
"$work/venv/bin/fer" predict faces --no-detect --json local.json >/dev/null
"$work/venv/bin/python" - "$ray_port" <<'PY'
import json, math, sys
import ray
ray_faces, local_faces = (json.load(open(name))["faces"] for name in ("ray.json", "local.json"))
assert len(ray_faces) == len(local_faces) == 100, (len(ray_faces), len(local_faces))
for mine, theirs in zip(ray_faces, local_faces):
    assert (mine["file"], mine["emotion"]) == (theirs["file"], theirs["emotion"]), (mine, theirs)
    assert all(math.isclose(mine["probabilities"][k], v, abs_tol=1e-6) for k, v in theirs["probabilities"].items())
ray.init(address=f"127.0.0.1:{sys.argv[1]}", logging_level="error")
drivers = [job["Entrypoint"] for job in ray._private.state.state.job_table()]  # the GCS's job table
assert any("fer predict faces" in entrypoint for entrypoint in drivers), drivers
print("--engine ray gave the local records; the job table lists:", [d for d in drivers if "fer predict" in d][0])
PY
