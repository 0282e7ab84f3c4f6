"""How far chatcli's token counts are from a real server's, per kind of text (issue 13).

Starts llama-server with SmolLM2-135M from the test cache (tests/support/llama_server.py builds it), or
uses the server at --url. For each kind of text it sends one message (max_tokens 1) and sets the
server's prompt_tokens against what /tokens would have said for it:

  bytes/4    the estimate chatcli used before (ceil(bytes / 4) + 3 per message + 3)
  estimate   the per-character estimate, uncorrected (a model's first turn)
  corrected  the estimate corrected by the server's counts of two earlier turns of other kinds
  exact      counted by the server's /tokenize and /apply-template, as chatcli does near the window

Each cell is the ratio count / server (1.00 is exact; below 1 undercounts, which overflows).

    python tests/benchmarks/counts.py [--url http://127.0.0.1:8080/v1]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from chatcli.app import make_tokenizer  # noqa: E402
from chatcli.config.settings import Config  # noqa: E402
from chatcli.core.session import Session  # noqa: E402
from chatcli.llm.client import ChatClient  # noqa: E402
from tests.support import llama_server  # noqa: E402


def samples() -> dict[str, str]:
    rng = random.Random(7)
    readme = (ROOT / "README.md").read_text()
    code = (ROOT / "chatcli" / "session.py").read_text()
    rows = [{"id": i, "name": f"user{i}", "email": f"user{i}@example.com", "score": round(rng.random(), 4),
             "tags": ["alpha", "beta"][: i % 3]} for i in range(60)]
    return {
        "English": readme[3000:6000],
        "code": code[4000:7000],
        "JSON": json.dumps(rows, indent=2)[:3000],
        "CJK": ("人工智能是计算机科学的一个分支，它企图了解智能的实质，并生产出一种新的能以人类智能相似的方式做出反应的智能机器。" * 20)[:900],
        "digits": " ".join(str(rng.randint(0, 10**9)) for _ in range(300))[:2500],
    }


def session_for(url: str, model: str) -> Session:
    config = Config(base_url=url, model=model, max_retries=0, read_timeout=300, models={model: {"context_window": 8192}})
    session = Session(client=ChatClient(config), model=model, tokenizer=make_tokenizer(config))
    session.params = {"max_tokens": 1}
    session.settle(wait=10)
    return session


def reported(session: Session, text: str) -> int:
    session.clear()
    turn = session.send(text)
    assert turn.usage is not None, turn.error
    return turn.usage.prompt_tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running llama-server's base URL (default: start one from the test cache)")
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        found = llama_server.cached()
        if isinstance(found, str):
            sys.exit(found)
        binary, model_path = found
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([str(binary), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port),
                                   "--ctx-size", "8192", "--threads", "2", "-np", "1", "--no-webui", "--jinja"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/v1"
        for _ in range(100):
            try:
                urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
    try:
        model = json.load(urllib.request.urlopen(url + "/models"))["data"][0]["id"]
        texts = samples()
        print(f"server {url}, model {model}")
        print(f"{'text':8} {'server':>7} {'bytes/4':>8} {'estimate':>9} {'corrected':>10} {'exact':>7}")
        for kind, text in texts.items():
            probe = session_for(url, model)
            real = reported(probe, text)
            old = math.ceil(len(text.encode()) / 4) + 3 + 3
            estimate = session_for(url, model).plan(text).tokens.tokens
            corrected_session = session_for(url, model)
            for other in [k for k in texts if k != kind][:2]:  # two earlier turns of other kinds
                reported(corrected_session, texts[other])
            corrected_session.clear()  # the earlier turns taught the correction; they are not part of this request
            corrected = corrected_session.plan(text).tokens.tokens
            exact_session = session_for(url, model)
            exact_session.tokenizer.count_on_server(model, [text])
            exact = exact_session.plan(text)
            cells = [old / real, estimate / real, corrected / real, exact.tokens.tokens / real]
            print(f"{kind:8} {real:7} " + " ".join(f"{c:>{w}.2f}" for c, w in zip(cells, (8, 9, 10, 7)))
                  + ("" if exact.tokens.exact else "  (exact not available)"))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
