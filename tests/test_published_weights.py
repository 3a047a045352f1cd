"""Published weights: downloads from a loopback HTTP server and a prepared local Hub cache.

The official-checkpoint path (download, SHA-256 prefix, conversion, atomic cache) runs against a
``http.server`` in a thread; the Hub path against a Hugging Face cache laid out by the test. Each
failure must give its exact message and leave nothing but lock files in the cache.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch

from deepcolor.cli import main
from deepcolor.convert import official
from deepcolor.errors import ModelUnavailable, UnknownModel, WeightsNotDownloaded
from deepcolor.factory import create_colorizer, default_weights_problem
from deepcolor.models.eccv16 import ECCV16Colorizer
from deepcolor.published import (
    DEFAULT_MODEL_ENV,
    choice_label,
    choose_default_model,
    find_published,
    published_weights,
)
from deepcolor.registry import colorizer_info

# --- a loopback server -------------------------------------------------------------------------


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[path]`` with a behaviour: ``ok`` (honours Range), ``cut`` (every
    response breaks off half-way), ``cut-once`` (the first breaks off, Range requests succeed)."""

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_HEAD(self):  # noqa: N802 (the Hub's metadata request)
        self.server.requests.append((f"HEAD {self.path}", None))
        if self.path not in self.server.files:
            self.send_error(404)
            return
        body, _ = self.server.files[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"abc"')
        self.send_header("X-Repo-Commit", "0" * 40)
        self.end_headers()

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append((self.path, self.headers.get("Range")))
        if self.path not in self.server.files:
            self.send_error(404)
            return
        body, behaviour = self.server.files[self.path]
        start = 0
        ranged = self.headers.get("Range")
        if ranged:
            start = int(ranged.split("=", 1)[1].split("-", 1)[0])
        cut = behaviour == "cut" or (behaviour == "cut-once" and not ranged)
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(len(body) - start))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        if cut:  # half the file the first time; nothing when asked to resume
            self.wfile.write(b"" if ranged else body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the peer sees the body end early
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    httpd.files, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


CHUNK = 4096


def _delivered(body: bytes) -> int:
    """Bytes written before a cut half-way through ``body`` (whole chunks only)."""
    return len(body) // 2 // CHUNK * CHUNK


@pytest.fixture
def online(monkeypatch):
    """Downloads allowed (tests run with HF_HUB_OFFLINE=1); retries without their 1 s pauses."""
    import huggingface_hub.constants
    import huggingface_hub.file_download

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.file_download.time, "sleep", lambda _s: None)
    # small reads, so that a connection cut half-way has delivered whole chunks to resume from
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("DEEPCOLOR_CACHE", str(root))
    return root


def _left_in(cache: Path) -> list[str]:
    """Everything in the cache except the (empty) lock files."""
    return sorted(
        p.relative_to(cache).as_posix()
        for p in cache.rglob("*")
        if p.is_file() and p.parent.name != ".locks"
    )


def _checkpoint_bytes(seed: int = 0) -> tuple[bytes, dict[str, torch.Tensor]]:
    """A compact eccv16 state dict as a .pth file's bytes (small, so the tests stay fast)."""
    torch.manual_seed(seed)
    state = ECCV16Colorizer(variant="compact").state_dict()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    path = Path(__import__("tempfile").mkdtemp()) / "c.pth"
    torch.save(state, path)
    return path.read_bytes(), state


def _load_compact(path: Path):
    model = ECCV16Colorizer(variant="compact")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def _publish(monkeypatch, server, body: bytes, behaviour: str = "ok", prefix: str | None = None):
    """Put ``body`` on the server under a name whose SHA-256 prefix is ``prefix`` (default: the
    body's own) and make it eccv16's official checkpoint."""
    prefix = prefix or hashlib.sha256(body).hexdigest()[:8]
    name = f"release-{prefix}.pth"
    server.files[f"/{name}"] = (body, behaviour)
    entry = official.OfficialCheckpoint("eccv16", name, f"{server.url}/{name}", _load_compact)
    monkeypatch.setitem(official.OFFICIAL, "eccv16", entry)
    return entry


RETRY = (
    "on a machine with internet run `deepcolor download eccv16-official` and pass the folder it "
    "prints as --weights FOLDER"
)


# --- official checkpoints ------------------------------------------------------------------------


def test_first_download_converts_once_and_caches(server, online, cache, monkeypatch, capsys):
    body, state = _checkpoint_bytes()
    entry = _publish(monkeypatch, server, body)
    folder = official.official_folder("eccv16")
    assert folder == cache / "converted" / entry.folder_name
    assert _left_in(cache) == [  # the converted folder alone: no .pth, no partial file
        f"converted/{entry.folder_name}/README.md",
        f"converted/{entry.folder_name}/config.json",
        f"converted/{entry.folder_name}/{official.PROVENANCE_FILE}",
        f"converted/{entry.folder_name}/model.safetensors",
    ]
    assert json.loads((folder / official.PROVENANCE_FILE).read_text())["url"] == entry.url
    assert entry.file_name in capsys.readouterr().err  # the progress bar names the file
    model = create_colorizer("eccv16", weights="official")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert len(server.requests) == 1


def test_cached_reuse_needs_no_server(server, online, cache, monkeypatch):
    body, _ = _checkpoint_bytes()
    _publish(monkeypatch, server, body)
    first = official.official_folder("eccv16")
    server.files.clear()  # the server no longer has it: the cache must answer
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert official.official_folder("eccv16") == first
    assert find_published("eccv16-official").cached
    assert len(server.requests) == 1


def test_hash_mismatch_keeps_nothing(server, online, cache, monkeypatch):
    body, _ = _checkpoint_bytes()
    actual = hashlib.sha256(body).hexdigest()[:8]
    entry = _publish(monkeypatch, server, body, prefix="00000000")
    with pytest.raises(WeightsNotDownloaded) as caught:
        official.official_folder("eccv16")
    assert str(caught.value) == (
        f"weights for 'eccv16': the official {entry.file_name}: the download is damaged or not "
        f"the published file (its SHA-256 begins {actual}, its name promises 00000000); nothing "
        f"was kept. Run it again to download it afresh, or {RETRY}"
    )
    assert _left_in(cache) == []


def test_truncated_download_keeps_nothing(server, online, cache, monkeypatch):
    body, _ = _checkpoint_bytes()
    entry = _publish(monkeypatch, server, body, behaviour="cut")
    with pytest.raises(WeightsNotDownloaded) as caught:
        official.official_folder("eccv16")
    host = server.url.removeprefix("http://")
    assert str(caught.value) == (
        f"weights for 'eccv16': the official {entry.file_name}: the download from {host} was cut "
        f"off after {_delivered(body):,} bytes; nothing was kept. Run it again to restart the "
        f"download, or {RETRY}"
    )
    assert _left_in(cache) == []
    assert server.requests[1][1] == f"bytes={_delivered(body)}-"  # it tried to resume first


def test_cut_connection_resumes(server, online, cache, monkeypatch):
    body, state = _checkpoint_bytes()
    _publish(monkeypatch, server, body, behaviour="cut-once")
    folder = official.official_folder("eccv16")
    assert [r for _, r in server.requests] == [None, f"bytes={_delivered(body)}-"]
    loaded = create_colorizer("eccv16", weights=str(folder)).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_server_down(online, cache, monkeypatch, caplog):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    entry = official.OfficialCheckpoint(
        "eccv16", "release-12345678.pth", f"http://127.0.0.1:{port}/x.pth", _load_compact
    )
    monkeypatch.setitem(official.OFFICIAL, "eccv16", entry)
    with pytest.raises(WeightsNotDownloaded) as caught:
        official.official_folder("eccv16")
    assert str(caught.value) == (
        f"weights for 'eccv16': the official release-12345678.pth: cannot reach 127.0.0.1:{port} "
        f"(ConnectError); nothing was kept. Run it again to restart the download, or {RETRY}"
    )
    assert _left_in(cache) == []
    assert "resume" not in caplog.text  # the retries are not each a warning


def test_http_error_status(server, online, cache, monkeypatch):
    entry = official.OfficialCheckpoint(
        "eccv16", "gone-12345678.pth", f"{server.url}/gone-12345678.pth", _load_compact
    )
    monkeypatch.setitem(official.OFFICIAL, "eccv16", entry)
    with pytest.raises(WeightsNotDownloaded, match=r"answered HTTP 404 for http://127\.0\.0\.1"):
        official.official_folder("eccv16")
    assert _left_in(cache) == []


def test_offline_mode_downloads_nothing(server, cache, monkeypatch):
    body, _ = _checkpoint_bytes()
    entry = _publish(monkeypatch, server, body)
    with pytest.raises(WeightsNotDownloaded) as caught:
        create_colorizer("eccv16", weights="official")
    assert str(caught.value) == (
        f"weights for 'eccv16': the official {entry.file_name} is not in the cache "
        f"({cache / 'converted' / entry.folder_name}) and downloads are off (HF_HUB_OFFLINE is "
        f"set); {RETRY}, or unset HF_HUB_OFFLINE"
    )
    assert server.requests == [] and _left_in(cache) == []


def test_stale_staging_from_a_killed_run_is_removed(server, online, cache, monkeypatch):
    body, _ = _checkpoint_bytes()
    entry = _publish(monkeypatch, server, body)
    stale = cache / "converted" / f".{entry.folder_name}.dead"
    stale.mkdir(parents=True)
    (stale / f"{entry.file_name}.part").write_bytes(b"half")
    official.official_folder("eccv16")
    assert not stale.exists()
    assert all(not name.endswith(".part") for name in _left_in(cache))


@pytest.mark.slow
def test_real_eccv16_conversion_through_the_cache(server, online, cache, monkeypatch):
    """The real converter on a full-size checkpoint of the official layout (129 MB)."""
    from deepcolor.convert.eccv16 import OFFICIAL_SHAPES

    torch.manual_seed(0)
    state = {k: torch.randn(s) if s else torch.tensor(0) for k, s in OFFICIAL_SHAPES.items()}
    path = cache.parent / "official.pth"
    torch.save(state, path)
    body = path.read_bytes()
    prefix = hashlib.sha256(body).hexdigest()[:8]
    name = f"colorization_release_v2-{prefix}.pth"
    server.files[f"/{name}"] = (body, "ok")
    real = official.OFFICIAL["eccv16"]
    entry = official.OfficialCheckpoint("eccv16", name, f"{server.url}/{name}", real.load)
    monkeypatch.setitem(official.OFFICIAL, "eccv16", entry)
    assert main(["download", "eccv16-official"]) == 0
    model = create_colorizer("eccv16", weights="official")
    assert model.variant == "full"
    assert torch.equal(model.state_dict()["classifier.weight"], state["model8.6.weight"])


# --- the Hub: a prepared local cache ---------------------------------------------------------------


class _HubCache:
    def __init__(self, root: Path, add) -> None:
        self.root, self.add = root, add


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache; ``add(repo_id)`` lays out a snapshot with a config.json."""
    import huggingface_hub.constants

    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_CACHE", str(root))

    def add(repo_id: str, files: dict[str, bytes] | None = None) -> Path:
        repo = root / f"models--{repo_id.replace('/', '--')}"
        commit = "0" * 40
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for name, data in (files or {"config.json": b"{}"}).items():
            (snapshot / name).write_bytes(data)
        return snapshot

    return _HubCache(root, add)


def _ddcolor_entry():
    try:
        colorizer_info("ddcolor")
    except UnknownModel:
        pytest.skip("the ddcolor model is not installed")
    return find_published("ddcolor")


def test_published_list_has_sources_sizes_and_licences():
    keys = {entry.key: entry for entry in published_weights()}
    assert keys["eccv16-official"].licence == "BSD-2-Clause"
    assert keys["eccv16-official"].source.endswith("colorization_release_v2-9b330a0b.pth")
    assert keys["eccv16-official"].size_label == "129 MB"
    if "ddcolor" in keys:
        assert keys["ddcolor"].weights == "piddnad/ddcolor_modelscope"
        assert keys["ddcolor"].licence == "Apache-2.0" and keys["ddcolor"].size_label == "912 MB"
        assert keys["ddcolor-tiny"].size_label == "220 MB"
    with pytest.raises(UnknownModel, match="no published weights named 'nope'; choose from"):
        find_published("nope")


def test_default_model_follows_the_cache(hub_cache, monkeypatch):
    entry = _ddcolor_entry()
    assert choose_default_model().line() == (
        "default model: blend (ddcolor's weights are not cached and HF_HUB_OFFLINE is set; "
        "using the shipped blend)"
    )
    assert choice_label("ddcolor") == "ddcolor (912 MB download)"
    hub_cache.add(entry.weights)
    assert entry.cached and choice_label("ddcolor") == "ddcolor"
    assert choose_default_model().line() == (
        "default model: ddcolor (its published weights piddnad/ddcolor_modelscope are cached)"
    )
    monkeypatch.setenv(DEFAULT_MODEL_ENV, "tint")
    assert choose_default_model().line() == "default model: tint (set by DEEPCOLOR_DEFAULT_MODEL)"
    monkeypatch.setenv(DEFAULT_MODEL_ENV, "nope")
    with pytest.raises(UnknownModel, match="^DEEPCOLOR_DEFAULT_MODEL=nope: unknown model 'nope'"):
        choose_default_model()


def test_default_model_online(hub_cache, online, monkeypatch):
    from deepcolor import published

    _ddcolor_entry()
    monkeypatch.setattr(published, "_reachable", lambda repo: True)
    assert choose_default_model().line() == (
        "default model: ddcolor (its published weights piddnad/ddcolor_modelscope download on "
        "first use, 912 MB)"
    )
    assert default_weights_problem(colorizer_info("ddcolor")) == ""
    monkeypatch.setattr(published, "_reachable", lambda repo: False)
    assert choose_default_model().line() == (
        "default model: blend (ddcolor's weights are not cached and the Hub cannot be reached; "
        "using the shipped blend)"
    )


HUB_OFFLINE = (
    "error: weights for 'ddcolor': the Hub repository 'piddnad/ddcolor_modelscope' is not in the "
    "local cache and downloads are off (HF_HUB_OFFLINE is set). On a machine with internet run "
    "`deepcolor download ddcolor` (it prints the folder) or `hf download "
    "piddnad/ddcolor_modelscope --local-dir FOLDER` and pass that folder as --weights FOLDER, or "
    "unset HF_HUB_OFFLINE.\n"
)


def test_cli_offline_choice_is_one_line_and_exit_2(hub_cache, tmp_path, capsys):
    _ddcolor_entry()
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    Image.new("L", (32, 24), 128).save(photo)
    assert main(["colorize", str(photo), "-o", str(tmp_path / "out"), "--model", "ddcolor"]) == 2
    captured = capsys.readouterr()
    assert captured.err == HUB_OFFLINE and captured.out == ""
    assert main(["download", "ddcolor"]) == 2
    assert capsys.readouterr().err == HUB_OFFLINE
    assert list(hub_cache.root.iterdir()) == []


def test_hub_server_down_says_so(hub_cache, online, monkeypatch):
    import huggingface_hub.utils._http as hub_http

    from deepcolor.weights import download_from_hub

    monkeypatch.setattr(hub_http.time, "sleep", lambda _s: None)
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WeightsNotDownloaded) as caught:
        download_from_hub(
            "piddnad/ddcolor_paper_tiny", "ddcolor-tiny", endpoint=f"http://127.0.0.1:{port}"
        )
    message = str(caught.value)
    assert message.startswith(
        "weights for 'ddcolor-tiny': the Hub repository 'piddnad/ddcolor_paper_tiny' is not in "
        "the local cache and cannot be downloaded here ("
    )
    assert message.endswith("and pass that folder as --weights FOLDER.")
    assert "\n" not in message and list(hub_cache.root.rglob("*.incomplete")) == []


def test_cli_models_and_download_from_the_cache(
    hub_cache, server, online, cache, monkeypatch, capsys
):
    body, _ = _checkpoint_bytes()
    _publish(monkeypatch, server, body)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert (
        f"published weights (--weights official): {server.url}/release-" in out
        and "BSD-2-Clause; not cached: `deepcolor download eccv16-official`" in out
    )
    assert main(["download", "eccv16-official"]) == 0
    folder = official.converted_folder("eccv16")
    assert capsys.readouterr().out == f"eccv16-official: {folder}\n"
    assert main(["models", "-v"]) == 0
    out = capsys.readouterr().out
    assert "BSD-2-Clause; cached" in out and "by: richzhang/colorization" in out
    assert main(["download", "nope"]) == 1
    assert "no published weights named 'nope'" in capsys.readouterr().err


# --- Stable Diffusion + ControlNet defaults ---------------------------------------------------------


def test_prompt_model_defaults_need_no_settings_online(hub_cache, monkeypatch):
    from deepcolor.models.controlnet import ControlNetColorizer
    from deepcolor.ui.diffusion import missing_weights

    monkeypatch.delenv("DEEPCOLOR_SD_MODEL", raising=False)
    monkeypatch.delenv("DEEPCOLOR_CONTROLNET_MODEL", raising=False)
    model = create_colorizer("controlnet")
    assert model.resolved_sources() == (
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "latentcat/control_v1p_sd15_brightness",
    )
    assert missing_weights(model) == (
        "diffusion weights are not downloaded and HF_HUB_OFFLINE is set: set DEEPCOLOR_SD_MODEL "
        "(the Stable Diffusion base model; the default "
        "'stable-diffusion-v1-5/stable-diffusion-v1-5' is not downloaded) and "
        "DEEPCOLOR_CONTROLNET_MODEL (the colourisation ControlNet; the default "
        "'latentcat/control_v1p_sd15_brightness' is not downloaded) to a local diffusers folder "
        "(or a Hub id), or unset HF_HUB_OFFLINE"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # an online host: downloaded on first use
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert missing_weights(model) == ""
    monkeypatch.setenv("DEEPCOLOR_CONTROLNET_MODEL", "someone/my-controlnet")  # still overrides
    assert ControlNetColorizer().resolved_sources()[1] == "someone/my-controlnet"


# --- the app: the default model and the Compare list ------------------------------------------------


def test_app_default_and_labels_follow_the_cache(hub_cache):
    from deepcolor.ui.models import ModelCatalog

    entry = _ddcolor_entry()
    offline = ModelCatalog()
    status = offline.status("ddcolor")
    assert not status.available and status.reason == HUB_OFFLINE.removeprefix("error: ").strip()
    assert offline.default_choice().name == "blend"
    assert "HF_HUB_OFFLINE is set" in offline.default_choice().reason
    hub_cache.add(entry.weights)
    cached = ModelCatalog()
    assert cached.status("ddcolor").available
    assert cached.default_choice().line() == (
        "default model: ddcolor (its published weights piddnad/ddcolor_modelscope are cached)"
    )
    assert choice_label("ddcolor") == "ddcolor" and choice_label("blend") == "blend"
    assert choice_label("ddcolor-tiny") == "ddcolor-tiny (220 MB download)"


def test_space_front_matter_preloads_the_ddcolor_weights():
    import yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(readme.split("---\n", 2)[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    hub_ids = {e.weights for e in published_weights() if e.key.startswith("ddcolor")}
    if not hub_ids:
        pytest.skip("the ddcolor model is not installed")
    assert set(front["preload_from_hub"]) == hub_ids


def test_downloadable_means_the_hub_answers(server, online, monkeypatch):
    import huggingface_hub.constants

    from deepcolor import published

    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"  # HF_ENDPOINT's effect
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    published._reachable.cache_clear()
    server.files["/someone/here/resolve/main/config.json"] = (b"{}", "ok")
    try:
        assert published._reachable("someone/here")
        assert not published._reachable("someone/gone")  # 404: not downloadable
    finally:
        published._reachable.cache_clear()
    assert [path for path, _ in server.requests] == [
        "HEAD /someone/here/resolve/main/config.json",
        "HEAD /someone/gone/resolve/main/config.json",
    ]


def test_unwritable_cache_says_what_to_set(server, online, tmp_path, monkeypatch):
    body, _ = _checkpoint_bytes()
    entry = _publish(monkeypatch, server, body)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DEEPCOLOR_CACHE", str(blocker / "cache"))
    with pytest.raises(ModelUnavailable) as caught:
        official.official_folder("eccv16")
    assert str(caught.value) == (
        f"weights for 'eccv16': cannot write the converted {entry.file_name} under "
        f"{blocker / 'cache'} (Not a directory); set DEEPCOLOR_CACHE to a writable folder with "
        "room for it"
    )
    assert server.requests == []
