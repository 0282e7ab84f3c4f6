"""Images in the history database (issue 16, item 1): stored once by sha256 with the user's
message, brought back whole by --resume, /resume and `chatcli sessions`, noted (never their
bytes) by exports, collected once no message names them, and never written with --no-save.

The parts are real: SQLite files, another connection holding the lock, a process killed
with SIGKILL, chatcli's main() against the test server. The images are tiny PNGs made
here with zlib and struct.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

import chatcli.store.db
from chatcli.base.images import Image
from chatcli.core.export import to_json, to_markdown
from chatcli.core.journal import Journal, SessionState
from chatcli.core.resume import load_conversation, load_session
from chatcli.core.turn import COMPLETE, Turn
from chatcli.store.db import Store
from chatcli.store.migrations import MIGRATIONS
from chatcli.store.repair import recover
from tests.support.running import call_main, make_env, ok
from tests.support.sessions import default_db, make_session


def png(width: int, height: int, shade: int = 0) -> bytes:
    """A real PNG of width×height RGB pixels; `shade` makes images of the same size differ."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes((shade + x + y) % 256 for x in range(width * 3)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


CAT = Image.of_bytes("cat.png", png(16, 12, 1), "image/png", width=16, height=12, detail="high")
DOG = Image.of_bytes("dog.png", png(8, 8, 2), "image/png", width=8, height=8)
MAP = Image.of_url("https://example.com/map.png", detail="low")
STATE = SessionState(model="gpt-4o-mini", system=None, params={}, profile=None)


@pytest.fixture
def db_path(isolated_env: Path) -> Path:
    return default_db(isolated_env)


def raw(path: Path) -> sqlite3.Connection:
    """Another program's connection to the same file."""
    return sqlite3.connect(path, isolation_level=None, timeout=10)


def count(path: Path, table: str) -> int:
    db = raw(path)
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def ask(journal: Journal, text: str, images: list[Image], reply: str = "ok") -> Turn:
    """A turn as Session.send saves it: the user's message (with its images) first, the reply when it ends."""
    turn = Turn(user=text, model="gpt-4o-mini", params={}, images=list(images))
    journal.user_message(STATE, turn)
    turn.reply, turn.status, turn.finish_reason = reply, COMPLETE, "stop"
    journal.reply(turn)
    return turn


def saved(path: Path, *turns: tuple[str, list[Image]]) -> int:
    """A session saved through a journal, as a chat saves one: its id."""
    journal = Journal.open(path)
    for text, images in turns:
        ask(journal, text, images)
    session_id = journal.session_id
    journal.store.close()
    return session_id


# --------------------------------------------------------------------------- #
# Stored once, brought back whole
# --------------------------------------------------------------------------- #


def test_two_messages_sharing_an_image_store_its_bytes_once(db_path):
    session_id = saved(db_path, ("look at these", [CAT, DOG]), ("and this cat again, with a map", [CAT, MAP]))

    assert count(db_path, "images") == 2  # cat and dog; the URL has no bytes to keep
    assert count(db_path, "message_images") == 4
    db = raw(db_path)
    sizes = dict(db.execute("SELECT sha256, size FROM images").fetchall())
    url = db.execute("SELECT url FROM message_images WHERE sha256 = ?", (MAP.sha256,)).fetchone()[0]
    db.close()
    assert sizes == {CAT.sha256: len(CAT.data), DOG.sha256: len(DOG.data)}
    assert url == "https://example.com/map.png"

    store = Store.open(db_path)
    try:
        users = [m for m in store.messages(session_id) if m.role == "user"]
    finally:
        store.close()
    assert [list(m.images) for m in users] == [[CAT, DOG], [CAT, MAP]]


def test_resume_rebuilds_each_turns_images_exactly_so_they_are_sent_again_the_same(db_path):
    session_id = saved(db_path, ("what breed?", [CAT, DOG]), ("no picture here", []), ("where?", [MAP, CAT]))

    session = load_session(Journal.open(db_path), session_id, client=None)

    assert [turn.images for turn in session.turns] == [[CAT, DOG], [], [MAP, CAT]]
    restored = session.turns[0].images[0]
    assert (restored.data, restored.mime, restored.detail, restored.width, restored.height) == \
        (CAT.data, "image/png", "high", 16, 12)
    # The content part built from the restored image is the one first sent: the same data URL.
    assert [image.part() for image in session.turns[2].images] == [MAP.part(), CAT.part()]
    assert session.turns[0].images[0].part()["image_url"]["url"] == \
        "data:image/png;base64," + base64.b64encode(CAT.data).decode()
    assert session.journal.take_warning() is None  # nothing missing, nothing to say


def test_an_image_gone_from_the_database_is_said_once_and_the_session_goes_on_without_it(db_path):
    session_id = saved(db_path, ("two pets", [CAT, DOG]), ("the dog again", [DOG]))
    db = raw(db_path)
    db.execute("DELETE FROM images WHERE sha256 = ?", (DOG.sha256,))
    db.close()

    conversation = load_conversation(Journal.open(db_path), session_id)

    assert [turn.images for turn in conversation.turns] == [[CAT], []]
    assert [turn.user for turn in conversation.turns] == ["two pets", "the dog again"]
    said = conversation.journal.take_warning()
    assert said == (f"In session {session_id}, 2 images (dog.png, dog.png) are no longer in the history "
                    "database; the session goes on without them.")
    assert conversation.journal.take_warning() is None


def test_bytes_that_no_longer_match_their_sha256_are_not_sent_as_the_image(db_path):
    session_id = saved(db_path, ("a cat", [CAT]))
    db = raw(db_path)
    db.execute("UPDATE images SET bytes = ? WHERE sha256 = ?", (b"not the cat", CAT.sha256))
    db.close()

    conversation = load_conversation(Journal.open(db_path), session_id)

    assert conversation.turns[0].images == []
    assert "the image cat.png is no longer in the history database" in conversation.journal.take_warning()


# --------------------------------------------------------------------------- #
# Written with the message: a kill, a lock, --no-save
# --------------------------------------------------------------------------- #

KILLED = """
import sys, time
from chatcli.base.images import Image
from chatcli.core.journal import Journal, SessionState
from chatcli.core.turn import Turn
journal = Journal.open(__import__("pathlib").Path(sys.argv[1]))
data = bytes.fromhex(sys.argv[2])
turn = Turn(user="what is in this picture?", model="m", params={},
            images=[Image.of_bytes("shot.png", data, "image/png", width=16, height=12), Image.of_url(sys.argv[3])])
journal.user_message(SessionState(model="m", system=None, params={}, profile=None), turn)
print("sent", journal.session_id, flush=True)  # where Session.send goes on to send the request
time.sleep(60)
"""


@pytest.mark.server  # a process of its own, killed
def test_a_kill_9_right_after_the_users_message_keeps_its_images(db_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(db_path), CAT.data.hex(), MAP.url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("sent "), proc.stderr.read() if proc.poll() is not None else line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    conversation = load_conversation(Journal.open(db_path), int(line.split()[1]))
    [turn] = conversation.turns
    assert turn.user == "what is in this picture?" and turn.reply == ""
    assert [(i.name, i.data, i.url) for i in turn.images] == [("shot.png", CAT.data, None), (MAP.url, None, MAP.url)]


def test_images_held_back_by_a_lock_are_written_with_their_message_once_it_is_free(db_path, monkeypatch):
    monkeypatch.setattr(chatcli.store.db, "BUSY_TIMEOUT_MS", 200)  # the lock is real; the wait for it short
    journal = Journal.open(db_path)
    other = raw(db_path)
    other.execute("BEGIN IMMEDIATE")
    try:
        turn = ask(journal, "held back", [CAT, DOG])
        assert "not being saved for now" in journal.take_warning()
        assert len(journal.backlog.held) == 2  # the message with its images, and the reply
    finally:
        other.execute("COMMIT")
        other.close()
    journal.settle()

    assert count(db_path, "images") == 2
    assert load_conversation(journal, journal.session_id).turns[0].images == [CAT, DOG]
    assert len(turn.ids) == 2


@pytest.mark.parametrize("how", ["no store", "ledger only"])
def test_with_no_save_nothing_of_an_image_is_written_anywhere(db_path, isolated_env, how):
    # --no-save is Journal() with no store; with a budget it keeps the usage ledger alone.
    journal = Journal() if how == "no store" else Journal.open(db_path, keep_text=False)
    ask(journal, "private picture", [CAT, MAP])

    assert journal.backlog is None or journal.backlog.held == []
    if how == "ledger only":
        journal.store.close()
        assert count(db_path, "messages") == count(db_path, "images") == count(db_path, "message_images") == 0
    else:
        assert not db_path.exists()
    # Not in the database, nor anywhere else: no file under HOME holds the bytes or their data URL.
    encoded = base64.b64encode(CAT.data)
    for path in isolated_env.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert CAT.data not in content and encoded not in content, path


# --------------------------------------------------------------------------- #
# Collected once no message names them: delete, prune, /undo
# --------------------------------------------------------------------------- #


def test_deleting_sessions_drops_their_images_once_no_other_message_names_them(db_path):
    first = saved(db_path, ("cat and dog", [CAT, DOG]))
    second = saved(db_path, ("the cat again", [CAT]))
    assert count(db_path, "images") == 2

    env = make_env()
    assert call_main(["sessions", "delete", str(first)], env) == 0
    assert count(db_path, "images") == 1  # the cat is still named by the second session
    assert count(db_path, "message_images") == 1
    store = Store.open(db_path)
    try:
        [user, _] = store.messages(second)
    finally:
        store.close()
    assert user.images == (CAT,)

    assert call_main(["sessions", "delete", str(second)], make_env()) == 0
    assert count(db_path, "images") == count(db_path, "message_images") == 0


def test_prune_drops_the_images_of_the_sessions_it_deletes(db_path):
    old = saved(db_path, ("old pets", [CAT, DOG]))
    saved(db_path, ("new dog", [DOG]))
    db = raw(db_path)
    db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time() - 40 * 86400, old))
    db.close()

    assert call_main(["sessions", "prune", "--older-than", "30d"], env := make_env()) == 0, env.stderr.getvalue()
    db = raw(db_path)
    kept = [row[0] for row in db.execute("SELECT sha256 FROM images")]
    db.close()
    assert kept == [DOG.sha256]


def test_undo_drops_the_turns_images_unless_an_earlier_turn_sends_them_too(db_path):
    session_id = saved(db_path, ("a cat", [CAT]), ("a cat and a dog", [CAT, DOG]))
    session = load_session(Journal.open(db_path), session_id, client=None)

    undone = session.undo()

    assert undone is not None and undone.images == [CAT, DOG]
    db = raw(db_path)
    kept = [row[0] for row in db.execute("SELECT sha256 FROM images")]
    db.close()
    assert kept == [CAT.sha256]
    assert count(db_path, "message_images") == 1
    session.undo()
    assert count(db_path, "images") == count(db_path, "message_images") == 0


# --------------------------------------------------------------------------- #
# An older database
# --------------------------------------------------------------------------- #


def test_a_database_from_before_images_upgrades_and_its_sessions_load_and_take_images(db_path):
    Store.open(db_path, migrations=MIGRATIONS[:9]).close()
    old = raw(db_path)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 9
    old.execute("INSERT INTO sessions (id, title, created_at, updated_at, model, params) "
                "VALUES (3, 'Before images', 1700000000.0, 1700000000.0, 'gpt-old', '{}')")
    old.execute("INSERT INTO messages (session_id, role, content, created_at) VALUES (3, 'user', 'plain words', 1700000001.0)")
    old.close()

    journal = Journal.open(db_path)
    assert raw(db_path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conversation = load_conversation(journal, 3)
    assert [(t.user, t.images) for t in conversation.turns] == [("plain words", [])]
    ask(conversation.journal, "now with a picture", [DOG])
    again = load_conversation(journal, 3)
    assert [t.images for t in again.turns] == [[], [DOG]]


@pytest.mark.server  # recovery runs the sqlite3 program where there is one
def test_recovering_the_database_into_a_new_file_keeps_the_images(db_path):
    # `chatcli sessions check --recover` copies every table chatcli's schema has: the images too.
    session_id = saved(db_path, ("two pets", [CAT, DOG]), ("a map", [MAP]))

    done = recover(db_path)

    assert (done.sessions, done.messages) == (1, 4)
    conversation = load_conversation(Journal.open(db_path), session_id)
    assert [turn.images for turn in conversation.turns] == [[CAT, DOG], [MAP]]


# --------------------------------------------------------------------------- #
# Exports and `chatcli sessions show` note each image, never its bytes
# --------------------------------------------------------------------------- #

BIG = Image.of_bytes("photo.jpg", png(64, 64, 3) * 10, "image/jpeg", width=512, height=384)


def test_markdown_and_json_exports_note_each_image_without_its_bytes(db_path):
    session_id = saved(db_path, ("compare", [BIG, CAT, MAP]))
    session = load_session(Journal.open(db_path), session_id, client=None)

    md = to_markdown(session)
    size = f"{len(BIG.data) / 1000:.1f} KB"
    assert ("## You\n\ncompare\n\n"
            f"[image: photo.jpg, image/jpeg, 512×384, {size}, sha256 {BIG.sha256[:12]}…]\n\n"
            f"[image: cat.png, image/png, 16×12, {len(CAT.data)} bytes, sha256 {CAT.sha256[:12]}…]\n\n"
            "[image: https://example.com/map.png, by URL]\n\n## Assistant") in md

    record = json.loads(to_json(session))
    assert record["messages"][0]["images"] == [
        {"name": "photo.jpg", "mime": "image/jpeg", "width": 512, "height": 384, "bytes": len(BIG.data),
         "sha256": BIG.sha256, "url": None},
        {"name": "cat.png", "mime": "image/png", "width": 16, "height": 12, "bytes": len(CAT.data),
         "sha256": CAT.sha256, "url": None},
        {"name": MAP.url, "mime": None, "width": None, "height": None, "bytes": None, "sha256": MAP.sha256,
         "url": MAP.url},
    ]
    for text in (md, to_json(session)):
        assert base64.b64encode(CAT.data).decode()[:40] not in text and "data:image" not in text


def test_sessions_show_and_export_note_images_and_an_image_name_cannot_steer_the_terminal(db_path):
    sneaky = Image.of_bytes("\x1b]0;pwned\x07cat\x1b[2J.png", DOG.data, "image/png", width=8, height=8)
    session_id = saved(db_path, ("see this", [sneaky]))

    for argv in (["sessions", "show", str(session_id)], ["sessions", "export", str(session_id)]):
        env = make_env(stdout_isatty=True)
        assert call_main(argv, env) == 0, env.stderr.getvalue()
        out = env.stdout.getvalue()
        assert "\x1b]0;" not in out and "\x1b[2J" not in out and "\x07" not in out
        assert "cat" in out and "image/png, 8×8" in out, out

    env = make_env()
    assert call_main(["sessions", "export", str(session_id), "--format", "json"], env) == 0
    assert json.loads(env.stdout.getvalue())["messages"][0]["images"][0]["name"] == sneaky.name  # data, exactly


def test_sessions_show_says_once_on_stderr_when_an_image_is_gone(db_path):
    session_id = saved(db_path, ("a dog", [DOG]))
    db = raw(db_path)
    db.execute("DELETE FROM images")
    db.close()

    env = make_env()
    assert call_main(["sessions", "show", str(session_id)], env) == 0
    assert env.stderr.getvalue() == (f"In session {session_id}, the image dog.png is no longer in the history "
                                     "database; the session goes on without it.\n")
    assert "a dog" in env.stdout.getvalue() and "[image:" not in env.stdout.getvalue()


# --------------------------------------------------------------------------- #
# --resume through chatcli, against the test server
# --------------------------------------------------------------------------- #


def test_resume_goes_on_with_a_session_that_has_images_and_keeps_them(srv, run_chatcli, db_path):
    session_id = saved(db_path, ("what is this?", [CAT, MAP]))

    ok(run_chatcli("-r", str(session_id), "and now?"))

    [request] = srv.chat_requests
    first, *_, last = request.body["messages"]
    assert first["content"] == [  # the resumed turn's images go again, exactly as they went the first time
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(CAT.data).decode(),
                                            "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/map.png", "detail": "low"}},
    ]
    assert last == {"role": "user", "content": "and now?"}  # a message without images stays a plain string
    store = Store.open(db_path)
    try:
        users = [m for m in store.messages(session_id) if m.role == "user"]
    finally:
        store.close()
    assert [(m.content, m.images) for m in users] == [("what is this?", (CAT, MAP)), ("and now?", ())]


def test_resume_of_a_session_whose_image_is_gone_says_so_once_and_answers(srv, run_chatcli, db_path):
    session_id = saved(db_path, ("what is this?", [CAT]))
    db = raw(db_path)
    db.execute("DELETE FROM images")
    db.close()

    result = ok(run_chatcli("-r", str(session_id), "and now?"))

    assert result.stdout.strip()  # the reply
    assert result.stderr.count("no longer in the history database") == 1, result.stderr
    assert "cat.png" in result.stderr



# --------------------------------------------------------------------------- #
# The REPL: a resumed session's images, the input history
# --------------------------------------------------------------------------- #


def test_the_repl_says_once_that_an_image_is_gone_and_its_input_history_holds_no_image(srv, db_path, tmp_path):
    from contextlib import ExitStack

    from chatcli.config.settings import Config
    from chatcli.llm.client import ChatClient
    from tests.support.keys import TEST_KEY
    from tests.support.repl import ENTER, piped_chat

    session_id = saved(db_path, ("cat and dog", [CAT, DOG]))
    db = raw(db_path)
    db.execute("DELETE FROM images WHERE sha256 = ?", (DOG.sha256,))
    db.close()
    history = tmp_path / "history"
    gone = f"In session {session_id}, the image dog.png is no longer in the history database"

    with ExitStack() as stack:
        journal = Journal.open(db_path)
        stack.callback(journal.store.close)
        client = ChatClient(Config(base_url=srv.base_url, api_key=TEST_KEY, max_retries=0, read_timeout=10))
        resumed = load_session(journal, session_id, client=client)  # as --resume loads it
        out = piped_chat(stack, resumed, markdown=False, history=history).run("more about the cat", ENTER)
        assert out.count(gone) == 1, out
        assert resumed.turns[0].images == [CAT]

        fresh = make_session(client=client, journal=journal.fork())  # a new chat, then /resume
        out = piped_chat(stack, fresh, markdown=False, history=history).run(f"/resume {session_id}", ENTER)
        assert out.count(gone) == 1, out
        assert [turn.images for turn in fresh.turns] == [[CAT], []]

    typed = history.read_bytes()
    assert b"more about the cat" in typed
    for image in (CAT, DOG):
        assert base64.b64encode(image.data)[:40] not in typed and image.data not in typed
    assert b"data:image" not in typed
