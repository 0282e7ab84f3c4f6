"""What waits to go with the next message, and the images a message carries: /file's files and
the images of /image, /paste and -i; their content parts and counts; and the chips the prompt
shows for them, such as [image cat.png 512×384 ≈255 tok]."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chatcli.base.images import Image, label
from chatcli.base.text import strip_controls
from chatcli.llm.tokens import Count

if TYPE_CHECKING:
    from chatcli.core.turn import Turn
    from chatcli.llm.client import ChatClient
    from chatcli.llm.tokens import Tokenizer


class AttachedFile(str):
    """A file /file attached: its text as it is sent (a str, joined into the message), and its name."""

    name: str

    def __new__(cls, text: str, *, name: str) -> AttachedFile:
        made = super().__new__(cls, text)
        made.name = name
        return made


class Attachments:
    """The Session's part that knows images: what a message with images is on the wire, what its
    images cost, whether the model takes any, and the files and images that wait."""

    client: ChatClient | None
    tokenizer: Tokenizer
    model: str
    params: dict[str, Any]
    attached: list[str]
    images: list[Image]
    no_images: set[str]
    context_turns: list[Turn]

    def _content(self, text: str, images: list[Image]) -> str | list[dict[str, Any]]:
        if not images:
            return text
        return [*([{"type": "text", "text": text}] if text else []), *(self._detailed(i).part() for i in images)]

    def _detailed(self, image: Image) -> Image:
        """The image at the detail `image_detail` asks for (-o image_detail low), if it is set."""
        detail = self.params.get("image_detail")
        return image if not detail or detail == image.detail else replace(image, detail=detail)

    def image_tokens(self, images: list[Image]) -> Count | None:
        """What the images cost in the model's context, or None for none."""
        total = None
        for image in map(self._detailed, images):
            count = self.tokenizer.image(self.model, image.width, image.height, image.detail)
            total = count if total is None else total + count
        return total

    def _user(self, text: str, images: list[Image]) -> Count:
        message = self.tokenizer.message(self.model, "user", text)
        return message if not images else message + self.image_tokens(images)  # type: ignore[operator]

    def refuses_images(self) -> bool:
        """Whether the model is known not to take images: it refused them this run, or the
        capability table (or a config [models."NAME"] vision = false) says so."""
        if self.model in self.no_images:
            return True
        return self.client is not None and self.client.adapter.capabilities(self.model).vision is False

    def carries_images(self, turn: Turn, left_out: int) -> bool:
        """Whether the turn's request holds images: its own, or those of earlier turns sent with it."""
        return bool(turn.images) or any(t.images for t in [t for t in self.context_turns if t.in_context][left_out:])

    def drop_attachments(self) -> int:
        """Forget the files and images waiting for the next message (/clear, /new); how many there were."""
        count = len(self.attached) + len(self.images)
        self.attached, self.images = [], []
        return count

    def _raw_estimate(self, messages: list[dict[str, Any]]) -> int:
        """The uncorrected estimate of a request, its images counted as the server would."""
        return self.tokenizer.raw_estimate(messages) + self.tokenizer.image_parts(self.model, messages).tokens



def wire_params(params: dict[str, Any]) -> dict[str, Any]:
    """The request's parameters: image_detail is said in each image part, never at the top level."""
    return {k: v for k, v in params.items() if k != "image_detail"} if "image_detail" in params else params


def chips(session: Attachments) -> list[str]:
    """One chip per waiting attachment, names through the terminal's gate (a name can hold anything)."""
    out = []
    for piece in session.attached:
        name = getattr(piece, "name", "file")
        count = session.tokenizer.message(session.model, "user", piece)
        out.append(f"[file {strip_controls(name)} {count} tok]")
    for image in session.images:
        count = session.image_tokens([image])
        out.append(f"[image {strip_controls(label(image))} {count} tok]")
    return out
