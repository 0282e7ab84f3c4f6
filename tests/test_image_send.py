"""Images on the wire, against the test server: -i, /image and /paste send image_url parts
exactly as OpenAI documents them, refusals send nothing, and a model that does not take images
is said once and refused before sending for the rest of the run."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
from pathlib import Path

import pytest

from chatcli.base.clipboard import NO_IMAGE, NO_TOOL
from chatcli.base.env import Env
from chatcli.base.errors import EXIT_USAGE
from chatcli.base.images import image_of_bytes
from chatcli.commands import REGISTRY
from chatcli.config.settings import Config
from chatcli.core.turn import COMPLETE, ERROR
from chatcli.llm.tokens import Tokenizer
from tests.support.images import png
from tests.support.keys import TEST_KEY
from tests.support.running import bash_completes, call_main
from tests.support.server import Reply
from tests.support.sessions import make_session

QUESTION = "what does this say?"


def _image_parts(body: dict) -> list[dict]:
    return [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image_url"]


def test_one_shot_sends_the_file_as_a_data_url_after_the_text(srv, run_chatcli, tmp_path):
    data = png(1024, 1024)
    (tmp_path / "error.png").write_bytes(data)

    result = run_chatcli("--json", "-i", str(tmp_path / "error.png"), QUESTION)

    assert result.returncode == 0, result.stderr
    body = srv.chat_requests[0].body
    content = body["messages"][-1]["content"]
    assert [p["type"] for p in content] == ["text", "image_url"]
    assert content[0] == {"type": "text", "text": QUESTION}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.removeprefix("data:image/png;base64,")) == data  # the file's bytes, exactly
    assert content[1]["image_url"]["detail"] == "auto"
    # The server counted the image (85 tokens a part here), and the usage and cost show it.
    record = json.loads(result.stdout)
    assert record["usage"]["prompt_tokens"] == len(QUESTION.split()) + 4 + 85
    assert record["cost_usd"] > 0


def test_image_detail_goes_in_each_part_never_as_a_parameter(srv, run_chatcli, tmp_path):
    (tmp_path / "a.png").write_bytes(png(8, 8))
    (tmp_path / "b.gif").write_bytes(b"GIF89a\x08\x00\x08\x00\x00\x00\x00;")

    result = run_chatcli("-o", "image_detail", "low", "-i", str(tmp_path / "a.png"), "-i", str(tmp_path / "b.gif"),
                         "-i", "https://example.com/c.webp", QUESTION)

    assert result.returncode == 0, result.stderr
    body = srv.chat_requests[0].body
    assert "image_detail" not in body
    parts = _image_parts(body)
    assert [p["image_url"]["detail"] for p in parts] == ["low", "low", "low"]
    assert parts[1]["image_url"]["url"].startswith("data:image/gif;base64,")
    assert parts[2]["image_url"]["url"] == "https://example.com/c.webp"  # a URL goes as it is


def test_a_message_without_images_stays_a_plain_string(srv, run_chatcli):
    assert run_chatcli("hello").returncode == 0
    assert srv.chat_requests[0].body["messages"][-1]["content"] == "hello"


def test_dash_reads_the_image_from_stdin_and_the_question_from_the_arguments(srv, chat_env, monkeypatch):
    data = png(16, 16)
    for key, value in chat_env.items():
        monkeypatch.setenv(key, value)
    stdout, stderr = io.StringIO(), io.StringIO()
    env = Env(stdin=io.TextIOWrapper(io.BytesIO(data)), stdout=stdout, stderr=stderr, stdin_isatty=False,
              stdout_isatty=False, environ=dict(chat_env), cwd=Path.cwd())

    code = call_main(["-i", "-", QUESTION], env)

    assert code == 0, stderr.getvalue()
    content = srv.chat_requests[0].body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": QUESTION}
    assert base64.b64decode(content[1]["image_url"]["url"].partition(",")[2]) == data


def _fifo(tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "pipe")
    return str(tmp_path / "pipe")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: (p / "notes.png").write_text("not an image") and str(p / "notes.png"),
         "{} is not a PNG, JPEG, GIF or WebP image; nothing was attached."),
        (lambda p: str(p), "{} is a directory; nothing was attached."),
        (_fifo, "{} is not a regular file; nothing was attached."),
        (lambda p: str(p / "missing.png"), "Could not read {} (No such file or directory); nothing was attached."),
        (lambda p: "ftp://example.com/a.png", "'{}' is not an http or https URL: only those can be sent for the server to fetch; nothing was attached."),
    ],
)
def test_each_refusal_is_one_sentence_a_usage_error_and_nothing_is_sent(srv, run_chatcli, tmp_path, make, says):
    name = make(tmp_path)

    result = run_chatcli("-i", name, QUESTION)

    assert result.returncode == EXIT_USAGE
    assert result.stderr == f"chatcli: -i: {says.format(name)}\n"
    assert srv.chat_requests == []


def test_an_image_over_image_max_mb_is_refused_before_it_is_read(srv, run_chatcli, tmp_path):
    (tmp_path / "big.png").write_bytes(png(8, 8) + b"\x00" * 1_500_000)

    result = run_chatcli("-i", str(tmp_path / "big.png"), QUESTION, env={"CHATCLI_IMAGE_MAX_MB": "1"})

    assert result.returncode == EXIT_USAGE
    assert "big.png is 1.5 MB, over the 1 MB limit on an image (image_max_mb); nothing was attached." in result.stderr
    assert srv.chat_requests == []


@pytest.mark.parametrize("flavor", ["openai", "llamacpp", "vllm", "ollama"])
def test_a_model_that_refuses_images_is_said_once_and_remembered_for_the_run(srv, flavor):
    srv.flavor = flavor
    srv.blind = {"gpt-4o-mini"}
    session = make_session(srv)
    shot = image_of_bytes("shot.png", png(8, 8))
    sentence = ("gpt-4o-mini does not take images; leave them out, or choose a vision model (--model, or /model "
                "in a chat).")

    session.images.append(shot)
    first = session.send(QUESTION)
    assert (first.status, first.error.message) == (ERROR, sentence)
    assert len(srv.chat_requests) == 1
    assert session.images == [shot]  # it waits again, for /clear or another model

    again = session.send(QUESTION)
    assert again.error.message == sentence
    assert len(srv.chat_requests) == 1  # refused before sending

    REGISTRY.dispatch(session, "/clear")
    assert session.images == []
    assert session.send("no images now").status == COMPLETE  # text still goes


def test_a_models_table_with_vision_false_refuses_before_sending(srv):
    config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, models={"textonly": {"vision": False}})
    session = make_session(srv, config=config, model="textonly")
    session.images.append(image_of_bytes("shot.png", png(8, 8)))

    turn = session.send(QUESTION)

    assert turn.error.message.startswith("textonly does not take images;")
    assert srv.chat_requests == []


def test_the_turn_counts_its_images_so_an_estimated_cost_includes_them(srv):
    srv.script(Reply("ok", usage=False))
    session = make_session(srv, model="gpt-4o")
    text_only = session.plan(QUESTION, images=[]).tokens.tokens
    session.images.append(image_of_bytes("shot.png", png(2048, 4096)))

    turn = session.send(QUESTION)

    assert turn.status == COMPLETE and turn.usage is None
    assert turn.sent.tokens == text_only + 1105
    assert len(turn.images) == 1


def test_tokens_shows_the_images_waiting_and_in_the_history(srv):
    session = make_session(srv, model="gpt-4o")
    session.images.append(image_of_bytes("shot.png", png(1024, 1024)))
    session.send(QUESTION)
    session.images.append(image_of_bytes("low.png", png(1024, 1024), detail="low"))

    rows = {row[0]: row[1] for row in REGISTRY.dispatch(session, "/tokens").rows}

    assert rows["of which images (1)"] == "765"
    assert rows["waiting: 1 image (/image, /paste)"] == "85"
    # The server counts images its own way (85 here): that is not taken for a prompt it cut.
    assert rows["context window"].startswith("128,000 ")


def test_a_waiting_file_counts_in_tokens_and_the_next_request_as_a_waiting_image_does(srv, tmp_path):
    session = make_session(srv, model="gpt-4o")
    (tmp_path / "notes.txt").write_text("word " * 1000)
    before = session.plan().tokens.tokens

    assert not REGISTRY.dispatch(session, f"/file {tmp_path / 'notes.txt'}").error
    rows = {row[0]: row[1] for row in REGISTRY.dispatch(session, "/tokens").rows}

    file_tokens = int(rows["waiting: 1 file (/file)"].lstrip("≈").replace(",", ""))
    assert file_tokens > 1000
    after = int(rows["next request, before your message"].lstrip("≈").replace(",", ""))
    assert after >= before + file_tokens - 10  # counted in what the next request carries (and the toolbar's context)


def test_an_image_too_big_for_the_window_is_not_attached(srv, tmp_path):
    tokenizer = Tokenizer(overrides={"gpt-4o": {"context_window": 1000, "max_output_tokens": 100}})
    session = make_session(srv, model="gpt-4o", tokenizer=tokenizer)
    (tmp_path / "huge.png").write_bytes(png(2048, 4096))

    result = REGISTRY.dispatch(session, f"/image {tmp_path / 'huge.png'}")

    assert result.error
    assert result.text == ("The image is 1,105 tokens, more than the model's 1,000-token window has room for; "
                           "nothing was attached.")
    assert session.images == []


def test_redaction_scrubs_the_text_part_of_a_message_with_images(srv):
    config = Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, redact=("email",))
    session = make_session(srv, config=config)
    session.images.append(image_of_bytes("shot.png", png(8, 8)))

    session.send("mail me at someone@example.com about this")

    text = srv.chat_requests[0].body["messages"][-1]["content"][0]["text"]
    assert "someone@example.com" not in text and "[EMAIL_REDACTED]" in text


def test_retry_sends_the_images_again_and_later_turns_carry_them(srv):
    session = make_session(srv)
    session.images.append(image_of_bytes("shot.png", png(8, 8)))
    first = session.send(QUESTION)
    assert first.status == COMPLETE, first.error

    assert session.retry().status == COMPLETE
    assert session.send("and now?").status == COMPLETE

    assert [len(_image_parts(r.body)) for r in srv.chat_requests] == [1, 1, 1]


def _tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.server
def test_paste_reads_the_clipboard_through_wl_paste(tmp_path, monkeypatch):
    shot = tmp_path / "shot.png"
    shot.write_bytes(png(32, 16))
    _tool(tmp_path, "wl-paste", f'[ "$1" = --list-types ] && {{ echo text/plain; echo image/png; exit 0; }}\n'
                                f'[ "$3" = image/png ] && exec /bin/cat {shot}\nexit 1\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    session = make_session(None)

    result = REGISTRY.dispatch(session, "/paste")

    assert not result.error, result.text
    assert result.text.startswith("Attached clipboard 32×16 (")
    assert session.images[0].data == shot.read_bytes()


@pytest.mark.server
def test_paste_reads_the_clipboard_through_xclip(tmp_path, monkeypatch):
    shot = tmp_path / "shot.png"
    shot.write_bytes(png(5, 7))
    _tool(tmp_path, "xclip", f'[ "$4" = TARGETS ] && {{ echo TARGETS; echo image/png; exit 0; }}\n'
                             f'[ "$4" = image/png ] && exec /bin/cat {shot}\nexit 1\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    session = make_session(None)

    assert not REGISTRY.dispatch(session, "/paste").error
    assert (session.images[0].width, session.images[0].height) == (5, 7)


@pytest.mark.server
def test_paste_says_when_the_clipboard_holds_no_image(tmp_path, monkeypatch):
    _tool(tmp_path, "wl-paste", 'echo text/plain\necho UTF8_STRING\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    session = make_session(None)

    result = REGISTRY.dispatch(session, "/paste")

    assert (result.error, result.text) == (True, NO_IMAGE)
    assert session.images == []


def test_paste_says_when_there_is_no_clipboard_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    monkeypatch.setenv("DISPLAY", ":0")
    session = make_session(None)

    result = REGISTRY.dispatch(session, "/paste")

    assert (result.error, result.text) == (True, NO_TOOL)


def test_llama_cpps_500_for_an_image_is_said_at_once_not_retried(srv, run_chatcli, tmp_path):
    srv.flavor = "llamacpp"  # without --mmproj it answers 500 "image input is not supported"
    srv.blind = {"gpt-4o-mini"}
    (tmp_path / "shot.png").write_bytes(png(8, 8))

    result = run_chatcli("-m", "gpt-4o-mini", "-i", str(tmp_path / "shot.png"), QUESTION,
                         env={"CHATCLI_MAX_RETRIES": "2"})

    assert result.returncode == 1
    assert result.stderr == ("chatcli: gpt-4o-mini does not take images; leave them out, or choose a vision model "
                             "(--model, or /model in a chat).\n")
    assert len(srv.chat_requests) == 1


def test_the_bash_completion_completes_a_file_after_dash_i(run_chatcli):
    Path("cat.png").write_bytes(png(2, 2))
    script = run_chatcli("--completion", "bash").stdout

    assert bash_completes(script, "-i", "ca") == ["cat.png"]
    assert bash_completes(script, "--image", "ca") == ["cat.png"]


def test_image_alone_lists_the_waiting_images(srv, tmp_path):
    session = make_session(srv)
    assert REGISTRY.dispatch(session, "/image").text == "No images are waiting; /image PATH attaches one."
    (tmp_path / "cat.png").write_bytes(png(4, 3))
    REGISTRY.dispatch(session, f"/image {tmp_path / 'cat.png'} https://example.com/dog.jpg")

    assert REGISTRY.dispatch(session, "/image").text == ("Waiting for your next message: cat.png 4×3, "
                                                          "https://example.com/dog.jpg.")


def test_a_retry_refused_for_its_images_leaves_nothing_waiting(srv):
    session = make_session(srv)
    session.images.append(image_of_bytes("shot.png", png(8, 8)))
    assert session.send(QUESTION).status == COMPLETE
    srv.blind = {"gpt-4o-mini"}  # as if the server now ran a model without a projector

    retried = session.retry()

    assert retried.error.message.startswith("gpt-4o-mini does not take images;")
    assert session.images == []  # the retried turn's images are its own, not the next message's
    assert session.turns[-1].reply  # the earlier reply is kept


def test_new_drops_what_waits(srv, tmp_path):
    session = make_session(srv)
    (tmp_path / "notes.txt").write_text("notes\n")
    REGISTRY.dispatch(session, f"/file {tmp_path / 'notes.txt'}")
    session.images.append(image_of_bytes("shot.png", png(8, 8)))

    assert REGISTRY.dispatch(session, "/new").text == "Started a new session; dropped 2 waiting attachments."
    assert (session.attached, session.images) == ([], [])


def test_images_in_the_history_are_refused_too_until_clear(srv):
    session = make_session(srv)
    session.images.append(image_of_bytes("shot.png", png(8, 8)))
    assert session.send(QUESTION).status == COMPLETE
    srv.blind = {"gpt-4o-mini"}

    first = session.send("and the colours?")  # text only, but the history carries the image
    again = session.send("and the colours?")

    assert first.error.message == ("gpt-4o-mini does not take images, and earlier messages of this conversation "
                                   "carry some; /clear stops sending them, or choose a vision model with /model.")
    assert again.error.message == first.error.message
    assert len(srv.chat_requests) == 2  # the second was refused before it was sent
    REGISTRY.dispatch(session, "/clear")
    assert session.send("and the colours?").status == COMPLETE


def test_undo_puts_the_messages_images_back_with_it(srv):
    session = make_session(srv)
    shot = image_of_bytes("shot.png", png(8, 8))
    session.images.append(shot)
    assert session.send(QUESTION).status == COMPLETE

    result = REGISTRY.dispatch(session, "/undo")

    assert result.prefill == QUESTION
    assert result.text == ("Dropped the last exchange; its message is back at the prompt, and its image waits to go "
                           "with it (/clear drops it).")
    assert session.images == [shot]
    assert session.send(result.prefill).status == COMPLETE
    assert [len(_image_parts(r.body)) for r in srv.chat_requests] == [1, 1]  # sent again with its image


@pytest.mark.server
def test_paste_says_so_when_what_the_clipboard_calls_an_image_is_not_one(tmp_path, monkeypatch):
    _tool(tmp_path, "xclip", 'case "$*" in *TARGETS*) echo image/png ;; *) echo "just some text" ;; esac\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    session = make_session(None)

    result = REGISTRY.dispatch(session, "/paste")

    assert (result.error, result.text) == (True, "What the clipboard holds is not a PNG, JPEG, GIF or WebP image; "
                                                 "nothing was attached.")
    assert session.images == []


def test_file_points_an_image_to_image(srv, tmp_path):
    session = make_session(srv)
    (tmp_path / "error.png").write_bytes(png(8, 8))

    result = REGISTRY.dispatch(session, f"/file {tmp_path / 'error.png'}")

    assert result.error and result.text == (f"{tmp_path / 'error.png'} is an image, not a text file; attach it with "
                                            "/image (or -i); nothing was attached.")
    assert session.attached == []


def test_a_message_of_images_alone_is_titled_by_their_names(srv):
    session = make_session(srv)
    session.images += [image_of_bytes("error.png", png(8, 8)), image_of_bytes("trace.png", png(4, 4))]

    assert session.send("").status == COMPLETE

    assert session.title == "error.png, trace.png"
