"""The demo's gateway: ``tunegate serve`` as a child process on a free loopback port.

Why a subprocess and not the app in this process: the demo shows what a user runs
(``tunegate serve --config ... --release ...``), the gateway's own event loop and model stay out of
the demo's process, and the replay reaches it over real HTTP with the real ``openai`` SDK.

:func:`write_configs` derives the served files from the example's ``gateway.yaml`` and
``release.yaml``: the ``candidate`` arm runs the candidate that was gated, and the route serves it
only to the cohorts the verdict allows (``cohorts:``); every path is made absolute so the files
work from the report folder.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tunegate.errors import TunegateError, UserError

__all__ = ["GatewayProcess", "free_port", "write_configs"]


def free_port() -> int:
    """A port nobody listens on now (the OS picks it; a tiny race with other programs remains)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read: {e}", file=str(path)) from None
    if not isinstance(data, dict):
        raise UserError("expected a mapping", file=str(path))
    return data


def _abs(base: Path, value: Any) -> Any:
    """A relative file name in a config → absolute (names without a file stay as they are)."""
    if isinstance(value, str) and (base / value).exists():
        return str((base / value).resolve())
    return value


def write_configs(folder: Path, out: Path, *, route: str, arm: str, candidate: Path,
                  cohorts: Sequence[str] | None) -> tuple[Path, Path | None]:
    """``out/gateway.yaml`` (and ``out/release.yaml`` when the example has one) for the gated candidate.

    ``cohorts``: the cohorts the candidate may serve; None keeps the example's list (used when the
    verdict allows none: the promotion is then refused and the route only mirrors).
    """
    import yaml

    gw = _read(folder / "gateway.yaml")
    routes = gw.get("routes") or []
    mine = next((r for r in routes if isinstance(r, dict) and r.get("name") == route), None)
    if mine is None:
        raise UserError(f"no route {route!r}", file=str(folder / "gateway.yaml"), field="routes")
    arms = mine.get("arms") or {}
    if arm not in arms:
        raise UserError(f"route {route!r} has no arm {arm!r}", file=str(folder / "gateway.yaml"), field="arms")
    for spec in arms.values():
        if isinstance(spec, dict) and "candidate" in spec:
            spec["candidate"] = _abs(folder, spec["candidate"])
    arms[arm] = {**(arms[arm] if isinstance(arms[arm], dict) else {}), "candidate": str(candidate.resolve())}
    if cohorts is not None:
        mine["cohorts"] = list(cohorts)
    out.mkdir(parents=True, exist_ok=True)
    gw_path = out / "gateway.yaml"
    gw_path.write_text("# written by tunegate demo from " + str(folder / "gateway.yaml") + "\n"
                       + yaml.safe_dump(gw, sort_keys=False), encoding="utf-8")
    rel_src = folder / "release.yaml"
    if not rel_src.exists():
        return gw_path, None
    rel = _read(rel_src)
    for r in rel.get("routes") or []:
        if isinstance(r, dict):
            for key in ("policy", "evaluators"):
                if key in r:
                    r[key] = _abs(folder, r[key])
    rel_path = out / "release.yaml"
    rel_path.write_text("# written by tunegate demo from " + str(rel_src) + "\n" + yaml.safe_dump(rel, sort_keys=False),
                        encoding="utf-8")
    return gw_path, rel_path


class GatewayProcess:
    """``tunegate serve`` in a child process; ``with`` starts it and waits for ``/healthz``."""

    def __init__(self, config: Path, release: Path | None, *, db: str | None, log: Path,
                 port: int | None = None, start_timeout_s: float = 180.0) -> None:
        self.config, self.release, self.db, self.log = config, release, db, log
        self.port = port or free_port()
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def argv(self) -> list[str]:
        args = [sys.executable, "-c", "from tunegate.cli.main import entry; entry()"]
        if self.db:
            args += ["--db", self.db]
        args += ["serve", "--config", str(self.config), "--port", str(self.port), "--host", "127.0.0.1"]
        if self.release is not None:
            args += ["--release", str(self.release)]
        return args

    def __enter__(self) -> GatewayProcess:
        import httpx

        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(self.argv(), stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TunegateError(f"tunegate serve exited with {self.proc.returncode}; see {self.log}:\n"
                                    + self._tail())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise TunegateError(f"tunegate serve did not answer /healthz within {self.start_timeout_s:.0f}s; see {self.log}")

    def _tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def get(self, path: str, timeout_s: float = 60.0) -> Any:
        import httpx

        return httpx.get(self.url + path, timeout=timeout_s)

    def stop(self) -> int | None:
        """SIGTERM (the gateway drains and closes its controller), then SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def lines(self) -> Iterator[str]:
        yield from self._tail(200).splitlines()
