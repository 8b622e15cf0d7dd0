"""The main job's look at the live feed: a customer-service client on ``/ws`` that counts the alerts pushed
to it while the simulated day runs (the feed people use, checked the way they use it)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

from config.settings import Settings


class LiveProbe:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kinds: Counter[str] = Counter()
        self.first_after_s: float | None = None
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-probe", daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> LiveProbe:
        self._thread.start()
        return self

    def _run(self) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        from service.auth import issue

        s = self.settings
        token = issue(s.api_secret, "kuailv-run", "customer_service", None)
        url = f"ws://{s.api_host}:{s.api_port}/ws?token={token}"
        deadline = time.monotonic() + 60
        while not self._stop.is_set():
            try:
                with connect(url, open_timeout=5) as ws:
                    ws.send(json.dumps({"subscribe": [{"alerts": True}]}))
                    while not self._stop.is_set():
                        try:
                            msg = json.loads(ws.recv(timeout=0.5))
                        except TimeoutError:
                            continue
                        if msg["type"] == "change":
                            self.kinds[msg["kind"]] += 1
                            if self.first_after_s is None:
                                self.first_after_s = time.monotonic() - self._t0
                        elif msg["type"] == "error":
                            self.error = msg["detail"]
                            return
                    return
            except (OSError, ConnectionClosed) as exc:  # the API is still starting
                if time.monotonic() > deadline:
                    self.error = f"no live feed at {url.split('?')[0]}: {exc}"
                    return
                time.sleep(0.5)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.error:
            return f"live feed: {self.error}"
        first = f", the first {self.first_after_s:.1f} s into the run" if self.first_after_s is not None else ""
        return (f"live feed: {sum(self.kinds.values())} alert changes pushed over /ws to a customer-service "
                f"client while the day ran{first}")
