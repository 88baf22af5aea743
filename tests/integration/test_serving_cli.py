"""`mlops serve --model-dir DIR` through the real CLI on the host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from dataset.paths import ROOT
from standins.ports import free_port
from tests.serving_model import write_model_dir

MLOPS = str(ROOT / ".venv" / "bin" / "mlops")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_mlops_serve_runs_the_server_on_the_host(tmp_path):
    model = write_model_dir(tmp_path / "model")
    port = free_port()
    proc = subprocess.Popen(
        [MLOPS, "serve", "--model-dir", str(model), "--port", str(port)],
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlops serve exited with {proc.returncode}: {proc.stderr.read()[-2000:]!r}")
            try:
                if _get(f"http://127.0.0.1:{port}/ping")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlops serve did not answer /ping with 200 within 120 s")
            time.sleep(0.2)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"user_id": 3, "k": 4}).encode(),
            headers={"Content-Type": "application/json", "X-Request-Id": "cli-1"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.headers["X-Request-Id"] == "cli-1"
            assert len(json.loads(r.read())["recommendations"]) == 4
        status, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert (
            status == 200 and b'mlops_serving_requests_total{route="/invocations",status="200"} 1.0' in body
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    access = [json.loads(x) for x in err.decode().splitlines() if '"inference.access"' in x]
    assert any(x["request_id"] == "cli-1" and x["status"] == 200 for x in access)


def test_mlops_serve_names_a_directory_without_a_model(tmp_path):
    proc = subprocess.run(
        [MLOPS, "serve", "--model-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2 and "holds no metadata.json" in proc.stderr
