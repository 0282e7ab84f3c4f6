"""A tiktoken encoding made in the test: one token a byte, so counts are known without a download."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import tiktoken
import tiktoken.registry

from chatcli.llm.tokens import Tokenizer

TEST_ENCODING = "chatcli-test-bytes"


PLUGIN = f'''
import tiktoken

def _bytes():
    return {{
        "name": "{TEST_ENCODING}",
        "pat_str": r"[\\s\\S]+",
        "mergeable_ranks": {{bytes([i]): i for i in range(256)}},
        "special_tokens": {{}},
    }}

ENCODING_CONSTRUCTORS = {{"{TEST_ENCODING}": _bytes}}
'''


@contextmanager
def byte_encoding_registered() -> Iterator[tiktoken.Encoding]:
    """The encoding in tiktoken's registry while the block runs (conftest's byte_encoding fixture)."""
    encoding = tiktoken.Encoding(
        TEST_ENCODING, pat_str=r"[\s\S]+", mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={}
    )
    tiktoken.registry.ENCODINGS[TEST_ENCODING] = encoding
    yield encoding
    tiktoken.registry.ENCODINGS.pop(TEST_ENCODING, None)


def tokenizer(window: int = 10_000, output: int = 100, encoding: str = TEST_ENCODING) -> Tokenizer:
    t = Tokenizer(overrides={"test-model": {"context_window": window, "max_output_tokens": output, "encoding": encoding}})
    t.preload("test-model", wait=5)
    return t
