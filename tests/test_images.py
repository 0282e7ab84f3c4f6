"""Images before they go anywhere: their type and size told from their content, the checks that
refuse what cannot be sent, OpenAI's count of their tokens, the wire's content parts, and the
chips the prompt shows for what waits to go with the next message."""

from __future__ import annotations

import base64
import os
import shlex
import threading

import pytest

from chatcli.base.images import (
    Image,
    ImageRefused,
    dimensions,
    image_of_bytes,
    image_of_url,
    read_image,
    size_of_location,
    sniff,
)
from chatcli.core.attachments import AttachedFile, chips
from chatcli.core.session import Session
from chatcli.llm.failures import says_no_images
from chatcli.llm.tokens import Count, Tokenizer, image_tokens
from tests.support.images import gif, jpeg, png, webp_vp8, webp_vp8l, webp_vp8x


@pytest.mark.parametrize(
    ("width", "height", "detail", "tokens"),
    [
        (1024, 1024, "high", 765),  # OpenAI's worked example: 768×768, 4 tiles
        (2048, 4096, "high", 1105),  # 1024×2048, then 768×1536: 6 tiles
        (4096, 8192, "high", 1105),  # fitted into 2048×2048 first
        (512, 512, "auto", 255),  # one tile; auto is counted as high
        (100, 30, "high", 255),  # small images are not scaled up
        (4096, 8192, "low", 85),
        (1, 1, "low", 85),
    ],
)
def test_image_tokens_follow_openais_tile_formula(width, height, detail, tokens):
    assert image_tokens(width, height, detail) == tokens


@pytest.mark.parametrize(
    ("data", "mime", "size"),
    [
        (png(640, 480), "image/png", (640, 480)),
        (gif(320, 200), "image/gif", (320, 200)),
        (jpeg(1920, 1080), "image/jpeg", (1920, 1080)),
        (jpeg(800, 600, exif=30_000), "image/jpeg", (800, 600)),  # the frame comes after a long EXIF segment
        (webp_vp8(300, 150), "image/webp", (300, 150)),
        (webp_vp8l(1000, 16000), "image/webp", (1000, 16000)),
        (webp_vp8x(5000, 7), "image/webp", (5000, 7)),
    ],
)
def test_type_and_size_are_read_from_the_content_whatever_the_name(tmp_path, data, mime, size):
    path = tmp_path / "notes.txt"  # the name says nothing
    path.write_bytes(data)

    image = read_image(str(path))

    assert (image.mime, (image.width, image.height)) == (mime, size)
    assert image.data == data
    assert size_of_location(image.location) == size  # the size read back from the data URL, as counting does


def test_a_header_that_does_not_say_its_size_is_refused_as_cut_short():
    assert sniff(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert dimensions(b"\xff\xd8\xff\xe0", "image/jpeg") is None
    with pytest.raises(ImageRefused, match="^cut.jpg starts as JPEG but its header is cut short or damaged$"):
        image_of_bytes("cut.jpg", b"\xff\xd8\xff\xe0")


def _fifo(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: str(p / "missing.png"), "Could not read {} (No such file or directory)"),
        (lambda p: str(p), "{} is a directory"),
        (_fifo, "{} is not a regular file"),
        (lambda p: "/dev/null", "{} is not a regular file"),
        (lambda p: (p / "a.png").write_text("hello") and str(p / "a.png"), "{} is not a PNG, JPEG, GIF or WebP image"),
        (lambda p: (p / "big.png").write_bytes(png(8, 8) + b"\x00" * 2_000_000) and str(p / "big.png"),
         "{} is 2.0 MB, over the 1 MB limit on an image (image_max_mb)"),
        (lambda p: (p / "cut.png").write_bytes(png(8, 8)[:8] + bytes(30)) and str(p / "cut.png"),
         "{} starts as PNG but its header is cut short or damaged"),
        (lambda p: (p / "empty.png").write_bytes(b"") or str(p / "empty.png"), "{} is empty"),
        (lambda p: "", "An empty file name was given"),
    ],
)
def test_what_is_not_an_image_file_is_refused_in_one_sentence(tmp_path, make, says):
    path = make(tmp_path)
    done: list[BaseException] = []
    reader = threading.Thread(target=lambda: _refused(path, done), daemon=True)
    reader.start()
    reader.join(5)  # a FIFO with no writer must not hang the read

    assert not reader.is_alive(), f"reading {path} hung"
    assert [str(e) for e in done] == [says.format(path)]


def _refused(path: str, done: list[BaseException]) -> None:
    try:
        read_image(path, max_mb=1)
    except ImageRefused as exc:
        done.append(exc)


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://example.com/cat.png", "is not an http or https URL"), ("file:///etc/passwd", "is not an http or https URL"),
    ("javascript:alert(1)", "is not an http or https URL"), ("https://", "is not a well-formed URL"),
    ("http://example.com/a cat.png", "is not a well-formed URL")])
def test_only_http_and_https_urls_are_taken(url, says):
    with pytest.raises(ImageRefused, match=says):
        image_of_url(url)


def test_a_url_goes_as_it_is():
    image = image_of_url("https://example.com/cat.png?size=large")
    assert image.part() == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png?size=large",
                                                               "detail": "auto"}}


def test_image_parts_are_counted_exactly_for_openai_models_and_estimated_for_others():
    shot = image_of_bytes("shot.png", png(1024, 1024))
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is it?"}, shot.part()]}]
    t = Tokenizer()

    assert t.image_parts("gpt-4o", messages) == Count(765, exact=True)
    assert t.image_parts("llama3.2", messages) == Count(765, exact=False)
    low = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": shot.location, "detail": "low"}}]}]
    assert t.image_parts("gpt-4o", low) == Count(85, exact=True)
    url = [{"role": "user", "content": [image_of_url("https://example.com/x.png").part()]}]
    assert str(t.image_parts("gpt-4o", url)) == "≈765"  # its size is not known here


def _session(model: str = "gpt-4o") -> Session:
    return Session(client=None, model=model)


def test_a_message_with_images_is_a_list_of_parts_and_one_without_stays_a_string():
    session = _session()
    shot = image_of_bytes("shot.png", png(4, 4))

    assert session.messages("plain") == [{"role": "user", "content": "plain"}]
    assert session.messages("look", images=[shot])[-1]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png(4, 4)).decode(),
                                            "detail": "auto"}},
    ]
    assert session.messages("", images=[shot])[-1]["content"] == [shot.part()]  # no empty text part
    session.params["image_detail"] = "low"
    assert session.messages("look", images=[shot])[-1]["content"][1]["image_url"]["detail"] == "low"


def test_fitting_counts_the_waiting_images():
    session = _session()
    before = session.plan().tokens.tokens
    session.images.append(image_of_bytes("shot.png", png(1024, 1024)))

    assert session.plan().tokens.tokens == before + 765
    assert session.plan(images=[]).tokens.tokens == before


def test_chips_show_each_waiting_file_and_image_with_its_tokens_through_the_gate():
    session = _session(model="llama3.2")
    session.attached.append(AttachedFile("File main.py:\n```\nprint(1)\n```", name="main.py"))
    session.images.append(image_of_bytes("/tmp/ca\x1b[31mt.png", png(512, 384)))
    session.images.append(Image.of_url("https://example.com/x.png"))

    shown = chips(session)

    assert shown[0].startswith("[file main.py ") and shown[0].endswith(" tok]")
    assert shown[1] == "[image cat.png 512×384 ≈255 tok]"  # the escape sequence is gone
    assert shown[2] == "[image https://example.com/x.png ≈765 tok]"
    assert session.drop_attachments() == 3 and chips(session) == []


@pytest.mark.parametrize("said", [
    "Invalid content type. image_url is only supported by certain models.",  # OpenAI
    "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj",  # llama.cpp
    "facebook/opt-125m is not a multimodal model None",  # vLLM
    "this model does not support image input",  # Ollama's 400
    "Failed to create new sequence: failed to process inputs: this model is missing data required for image input",
])
def test_each_servers_refusal_of_images_is_recognised(said):
    assert says_no_images(said)


@pytest.mark.parametrize("said", ["Unsupported parameter: 'temperature'", "The image of the request is fine",
                                  "context length exceeded"])
def test_other_errors_are_not_taken_for_a_refusal_of_images(said):
    assert not says_no_images(said)


def test_tab_completes_paths_after_file_and_image_only(tmp_path, monkeypatch):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from chatcli.commands import REGISTRY
    from chatcli.ui.prompt import SlashCompleter

    (tmp_path / "cat.png").write_bytes(b"")
    (tmp_path / "main.py").write_text("")
    monkeypatch.chdir(tmp_path)
    completer = SlashCompleter(REGISTRY, paths=("file", "image"))

    def completed(line: str) -> list[str]:
        found = completer.get_completions(Document(line, len(line)), CompleteEvent(completion_requested=True))
        return [line[: len(line) + c.start_position] + c.text for c in found]

    assert completed("/image ca") == ["/image cat.png"]
    assert completed("/file cat.png ma") == ["/file cat.png main.py"]  # the last path of several
    assert completed("/system ca") == []

    (tmp_path / "my shot.png").write_bytes(b"")
    (tmp_path / "it's.png").write_bytes(b"")
    assert completed("/image my") == ["/image 'my shot.png'"]  # quoted, so it stays one path
    assert completed("/image 'my s") == ["/image 'my shot.png'"]
    assert completed("/image my\\ s") == ["/image 'my shot.png'"]
    assert completed("/file it") == ["/file 'it'\"'\"'s.png'"]
    for line in ("/image 'my shot.png'", "/file 'it'\"'\"'s.png'"):
        assert shlex.split(line)[1] in ("my shot.png", "it's.png")  # as /image and /file read it


def test_a_nul_in_a_path_is_a_sentence_not_a_crash():
    with pytest.raises(ImageRefused, match="A file name cannot hold a NUL character"):
        read_image("cat\x00.png")


def test_a_size_over_a_small_cap_is_said_in_the_unit_that_shows_it():
    with pytest.raises(ImageRefused) as small:
        image_of_bytes("error.png", png(8, 8) + bytes(3000), max_mb=0.001)
    assert str(small.value) == "error.png is 3.1 KB, over the 0.001 MB limit on an image (image_max_mb)"


def test_a_url_that_is_not_well_formed_is_told_from_one_of_another_scheme():
    with pytest.raises(ImageRefused) as spaced:
        image_of_url("http://exa mple.com/x.png")
    assert str(spaced.value) == "'http://exa mple.com/x.png' is not a well-formed URL (it has a space, or no host)"
