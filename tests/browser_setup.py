"""Set-up for the browser test (``tests/test_site.py``): Debian's Chromium, the widget scripts
from npm in place of the CDN, and a local web server for the built site.

The test does all of this itself when it is needed; to do the slow part ahead of a run::

    python -m tests.browser_setup            # apt-get install chromium (as root or with sudo)

Chromium comes from Debian's package (``/usr/bin/chromium``; ``LESSON_CHROMIUM`` names another
binary): Playwright never downloads a browser of its own here. The site's pages load
``require.js`` and ``@jupyter-widgets/html-manager`` from public CDNs, which offline machines
cannot reach, so the test answers those requests with the same package versions fetched by
``npm pack`` and kept in ``LESSON_NPM_CACHE`` (default ``~/.cache/needs-more-jpeg/npm``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.server
import json
import mimetypes
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path(os.environ.get("LESSON_CHROMIUM", "/usr/bin/chromium"))
NPM_CACHE = Path(os.environ.get("LESSON_NPM_CACHE",
                                Path.home() / ".cache" / "needs-more-jpeg" / "npm")).expanduser()
# cdnjs serves its own minified builds of npm packages: library -> (npm name, {cdnjs: npm file}).
CDNJS_LIBRARIES = {"require.js": ("requirejs", {"require.min.js": "require.js"})}
APT_TIMEOUT_S = 900


class BrowserSetupError(RuntimeError):
    """Chromium or the widget scripts could not be made available; the message says what to do."""


def chromium_version(path: Path = CHROMIUM) -> str | None:
    """``chromium --version``, or None when there is no working binary at ``path``."""
    if not path.is_file():
        return None
    try:
        result = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"Chromium [\d.]+", result.stdout)
    return match.group(0) if result.returncode == 0 and match else None


def _as_root() -> list[str]:
    """What runs a command as root: nothing for root, else ``sudo -n`` if it needs no password."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True,
                                               stdin=subprocess.DEVNULL).returncode == 0:
        return ["sudo", "-n"]
    raise BrowserSetupError(
        f"Chromium is not installed at {CHROMIUM} and this user can neither install it (not root) "
        "nor use sudo without a password. Install it once with `sudo apt-get install chromium`, "
        "or set LESSON_CHROMIUM to a Chromium binary.")


def ensure_chromium() -> Path:
    """Debian's Chromium, installed with apt-get unless it already runs (then it takes a second)."""
    if chromium_version():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        raise BrowserSetupError(
            f"Chromium is not at {CHROMIUM} and this is not a Debian-like system with apt-get. "
            "Install Chromium and set LESSON_CHROMIUM to its binary.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_for_lock = ["-o", "DPkg::Lock::Timeout=300"]
    for step in (["apt-get", "update", "-qq", *wait_for_lock],
                 ["apt-get", "install", "-y", "-qq", *wait_for_lock, "chromium"]):
        command = _as_root() + step
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=env,
                                    timeout=APT_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise BrowserSetupError(f"`{' '.join(command)}` took over {APT_TIMEOUT_S} s") from exc
        if result.returncode != 0:
            raise BrowserSetupError(
                f"`{' '.join(command)}` failed (exit {result.returncode}); install Chromium by "
                f"hand (`sudo apt-get install chromium`) or set LESSON_CHROMIUM.\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    if not chromium_version():
        raise BrowserSetupError(f"apt-get installed chromium, but `{CHROMIUM} --version` fails; "
                                "check LESSON_CHROMIUM (unset, it means /usr/bin/chromium)")
    return CHROMIUM


@dataclass(frozen=True)
class NpmFile:
    """One file of one npm package version: what a CDN URL serves."""

    spec: str  # "name@version" (a version range works too)
    path: str  # the file inside the package


def npm_file_for(url: str) -> NpmFile | None:
    """The npm file behind a CDN URL (jsDelivr, unpkg, cdnjs's known libraries), else None."""
    url = url.split("?", 1)[0].split("#", 1)[0]
    match = re.match(r"https://(?:cdn\.jsdelivr\.net/npm|unpkg\.com)/"
                     r"((?:@[^/@]+/)?[^/@]+)@([^/]+)/(.+)$", url)
    if match:
        return NpmFile(f"{match[1]}@{match[2]}", match[3])
    match = re.match(r"https://cdnjs\.cloudflare\.com/ajax/libs/([^/]+)/([^/]+)/(.+)$", url)
    if match and match[1] in CDNJS_LIBRARIES:
        name, files = CDNJS_LIBRARIES[match[1]]
        return NpmFile(f"{name}@{match[2]}", files.get(match[3], match[3]))
    return None


def npm_package(spec: str) -> Path:
    """The unpacked npm package ``spec``: from the cache, else fetched once with ``npm pack``."""
    folder = NPM_CACHE / spec.replace("/", "+")
    if (folder / "package.json").is_file():
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise BrowserSetupError(f"npm is needed to fetch {spec} for the widget test; install "
                                "Node.js and npm (`apt-get install npm`).")
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=NPM_CACHE) as tmp:
        result = subprocess.run([npm, "pack", spec, "--json", "--pack-destination", tmp],
                                capture_output=True, text=True, timeout=600,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise BrowserSetupError(f"`npm pack {spec}` failed (exit {result.returncode}): "
                                    f"{result.stderr[-2000:]}")
        tarball = Path(tmp) / json.loads(result.stdout)[0]["filename"]
        with tarfile.open(tarball) as archive:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(Path(tmp) / "unpacked", **safe)
        with contextlib.suppress(OSError):  # another run may have unpacked it meanwhile
            (Path(tmp) / "unpacked" / "package").rename(folder)
    return folder


def npm_file_path(file: NpmFile) -> Path:
    return npm_package(file.spec) / file.path


def content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def subresource_integrity(path: Path, algorithm: str) -> str:
    """The ``integrity`` value (``sha256-…``) a file has, for the algorithm the page uses."""
    digest = hashlib.new(algorithm, path.read_bytes()).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode()}"


def relax_integrity(html: str) -> tuple[str, list[str]]:
    """Drop ``integrity`` from CDN scripts whose npm copy is not the byte-identical file.

    cdnjs's ``require.min.js`` is cdnjs's own minified build of requirejs; npm ships the same
    version unminified, whose hash differs, so Chromium would block it. Returns the page and a
    note for every attribute dropped; scripts whose npm copy matches keep their check.
    """
    notes = []

    def fix(tag: re.Match) -> str:
        src = re.search(r'\ssrc="([^"]+)"', tag[0])
        integrity = re.search(r'\sintegrity="((sha\d+)-[^"]+)"', tag[0])
        file = npm_file_for(src[1]) if src else None
        if not (integrity and file):
            return tag[0]
        local = npm_file_path(file)
        if local.is_file() and subresource_integrity(local, integrity[2]) == integrity[1]:
            return tag[0]
        notes.append(f"{src[1]} is served from npm {file.spec}/{file.path}, which is not "
                     f"byte-identical; its integrity attribute was dropped")
        return tag[0].replace(integrity[0], "")

    return re.sub(r"<script\b[^>]*>", fix, html), notes


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free loopback port; yields the base URL (ending in ``/``)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main() -> None:
    print(f"{chromium_version(ensure_chromium())} at {CHROMIUM}")


if __name__ == "__main__":
    main()
