"""A bounded HTTP load generator for the front door's tests and bench/spillover.py: N clients,
each sending one completion after the other (a closed loop) for a fixed time, to lab addresses.
Standard library only, so it also runs on a lab host:
    python3 loadgen.py HOST PORT CLIENTS SECONDS [N_PREDICT]   (prints the result as JSON)"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    """Per request: HTTP status (0: no answer) and seconds; the wall time of the whole run."""
    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(1 for status in self.statuses if status != 200)

    def rate(self) -> float:
        return len(self.statuses) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def load(host: str, port: int, clients: int, seconds: float, n_predict: int = 16, key: str = "",
         max_requests: int = 100_000, stop: threading.Event | None = None) -> Result:
    """Run `clients` closed-loop clients against POST /completion for `seconds` (and at most
    `max_requests` requests in all), or until `stop` is set; a request that gets no answer
    counts as status 0."""
    result, lock = Result(), threading.Lock()
    body = json.dumps({"prompt": "spill over", "n_predict": n_predict})
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            with lock:
                if len(result.statuses) >= max_requests:
                    return
            start = time.monotonic()
            try:
                conn = http.client.HTTPConnection(host, port, timeout=60)
                conn.request("POST", "/completion", body, headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                conn.close()
            except OSError:
                status = 0
            with lock:
                result.statuses.append(status)
                result.latencies.append(time.monotonic() - start)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    return result


if __name__ == "__main__":
    # HOST PORT CLIENTS SECONDS [N_PREDICT [KEY]]
    done = load(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]),
                int(sys.argv[5]) if len(sys.argv) > 5 else 16, sys.argv[6] if len(sys.argv) > 6 else "")
    print(json.dumps({"requests": len(done.statuses), "failed": done.failed, "seconds": round(done.seconds, 3),
                      "rate": round(done.rate(), 2), "p50": round(done.percentile(0.5), 4), "p99": round(done.percentile(0.99), 4)}))
