"""How fast the app is: cold start to first page, and a 1024x768 photo through the default model.

Targets: first page served within 20 s of `python app.py`; a 1024x768 photo through the
default model within 2 s on CPU. Figures are printed, never asserted. The photo is Kodak's
kodim05 from the data folder (``--data``, default ``$DEEPCOLOR_EVAL_DATA``), else the shipped
example.

    .venv/bin/python bench/app_speed.py [--repeat 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deepcolor" / "examples" / "kodim23-parrots.jpg"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far (Linux), None elsewhere.

    On a shared machine the wall-clock figures include waiting for other people's processes;
    the CPU time is what the app itself costs.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cold_start(tmp: Path, timeout: float = 180.0) -> tuple[float, subprocess.Popen, str]:
    """Seconds from launching `python app.py` to its first page served (HTTP 200)."""
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "DEEPCOLOR_DEVICE": "cpu",
    }
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter() - start, process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"no page within {timeout:.0f} s")


def test_photo(tmp: Path, data: str | None) -> Path:
    """A 1024x768 colour photo (a Kodak photo resized)."""
    from PIL import Image

    from deepcolor.datasets import eval_data_folder
    from deepcolor.errors import DataUnavailable
    from deepcolor.images import load_uint8

    try:
        source = eval_data_folder(data) / "eval" / "kodak24" / "kodim05.png"
    except DataUnavailable:
        source = EXAMPLE
    path = tmp / "photo-1024x768.png"
    Image.fromarray(load_uint8(source)).resize((1024, 768), Image.LANCZOS).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--data", help="the data folder (default: $DEEPCOLOR_EVAL_DATA)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    with tempfile.TemporaryDirectory(prefix="deepcolor-bench-") as folder:
        tmp = Path(folder)
        photo = test_photo(tmp, args.data)

        starts, cpu = [], []
        for i in range(args.repeat):
            seconds, process, url = cold_start(tmp)
            starts.append(seconds)
            cpu.append(cpu_seconds(process.pid))
            if i < args.repeat - 1:
                process.terminate()
                process.wait(timeout=30)
        print(
            f"cold start to first page: {' '.join(f'{s:.1f}' for s in starts)} s "
            f"(median {statistics.median(starts):.1f} s; target < 20 s); CPU time used by the "
            f"app until then: {' '.join('?' if c is None else f'{c:.1f}' for c in cpu)} s"
        )

        try:
            from gradio_client import Client, handle_file

            client = Client(url, verbose=False, download_files=str(tmp / "downloads"))
            api_times = []
            for _ in range(args.repeat + 1):  # the first call also loads the model
                start = time.perf_counter()
                client.predict(handle_file(str(photo)), "", api_name="/colorize")
                api_times.append(time.perf_counter() - start)
            print(
                f"API /colorize 1024x768, default model: first {api_times[0]:.2f} s, then "
                f"{' '.join(f'{t:.2f}' for t in api_times[1:])} s "
                f"(median {statistics.median(api_times[1:]):.2f} s; target < 2 s)"
            )
        finally:
            process.terminate()
            process.wait(timeout=30)

        from deepcolor.ui import AppSettings, ModelCatalog

        catalog = ModelCatalog(AppSettings(device="cpu"))
        name = catalog.default_model()
        start = time.perf_counter()
        pipe = catalog.pipeline(name)
        load = time.perf_counter() - start
        runs, cpu_runs = [], []
        for _ in range(args.repeat):
            start, cpu_start = time.perf_counter(), time.process_time()
            pipe(str(photo))
            runs.append(time.perf_counter() - start)
            cpu_runs.append(time.process_time() - cpu_start)
        print(
            f"in process, default model {name!r} on CPU: load {load:.2f} s; 1024x768 "
            f"{' '.join(f'{t:.2f}' for t in runs)} s (median {statistics.median(runs):.2f} s; "
            f"target < 2 s); CPU time {' '.join(f'{t:.2f}' for t in cpu_runs)} s"
        )
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
