"""What the upscaler reports while it works (callbacks) and what it hands back (one result per image)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


class UpscaleProgress:
    """Callbacks the library calls while it works; subclass and override what you need."""

    def image_started(self, name: str, index: int, total: int, tiles: int) -> None:
        pass

    def tile_done(self) -> None:
        pass

    def image_done(self, result: ImageResult) -> None:
        pass

    def image_failed(self, name: str, message: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


@dataclass
class ImageResult:
    source: str
    output: str | None
    size_in: tuple[int, int]  # (width, height)
    size_out: tuple[int, int]
    seconds: float
    tiles: int = 1
    status: str = "ok"  # ok | skipped | failed
    message: str = ""
    notes: list[str] = field(default_factory=list)


def results_json(results: Sequence[ImageResult]) -> list[dict]:
    return [asdict(r) for r in results]


__all__ = ["ImageResult", "UpscaleProgress", "results_json"]
