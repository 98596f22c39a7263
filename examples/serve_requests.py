"""Serve deletion requests for a run and drive the service as a client would: send requests, wait for their
receipts, read the model's state, and (with ``--screenshot``) look at the status page in a headless browser.

    python examples/serve_requests.py                      # trains a small digits run in a temporary folder
    python examples/serve_requests.py --run runs/digits    # a run of yours (it must have a ledger)
    python examples/serve_requests.py --screenshot docs/images/service_page.png   # needs Debian's chromium

The page needs the bearer token like every endpoint, and a browser cannot be given a header from its command
line, so the screenshot is taken of the page's HTML as the service sent it (a static page: no script, no
other files); the example checks the page names the requests and the model hash before it saves the picture.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from amnesiac.run import TrainConfig, train_run
from amnesiac.service import start_service


def screenshot(page: str, out: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("--screenshot needs chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "page.html"
        html.write_text(page)
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={out.resolve()}", "--window-size=1100,760", html.as_uri()],
                       check=True, capture_output=True, timeout=120)
    print(f"saved {out} ({out.stat().st_size} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=None, help="a run directory with a ledger (default: train one)")
    ap.add_argument("--screenshot", type=Path, default=None, help="save a picture of the status page here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            print("training a small digits run with a ledger ...", flush=True)
            run = train_run(TrainConfig(dataset="digits", model="small-cnn", epochs=2, batch_size=32, seed=0),
                            Path(tmp) / "digits", progress=False).run.path
        served = start_service(run, quiet=True)  # amnesiac serve RUN in its own process, answering
        try:
            with httpx.Client(base_url=served.url, headers=served.headers, timeout=60) as client:
                sent = [client.post("/v1/deletions", json=body).json()["request_id"]
                        for body in ({"ids": [17, 42]}, {"ids": [99], "idempotency_key": "ticket-1"}, {"ids": [5]})]
                for rid in sent:
                    while (state := client.get(f"/v1/deletions/{rid}").json())["status"] not in ("done", "refused"):
                        time.sleep(0.1)
                    print(f"{rid}: {state['status']}")
                receipt = client.get(f"/v1/receipts/{sent[0]}").json()
                print(f"receipt of {sent[0]}: batch {receipt['batch']['id']}, {len(receipt['steps_reverted'])} "
                      f"step(s) reverted, model {receipt['model_hash_after'][:16]}")
                model = client.get("/v1/model").json()
                print(f"model {model['head_hash'][:16]}: {model['reverted']} of {model['steps']} undone")
                page = client.get("/").text
            if args.screenshot is not None:
                missing = [s for s in [*sent, model["head_hash"][:16]] if s not in page]
                if missing:
                    raise SystemExit(f"the page does not show {missing}")
                screenshot(page, args.screenshot)
        finally:
            served.stop()


if __name__ == "__main__":
    main()
