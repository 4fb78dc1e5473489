"""Type stub of the C fast path (``_accel.c``)."""

from collections.abc import Mapping, Sequence

Frame = tuple[int, int, int]  # (group number, child position, repetitions there)

class Program:
    def __init__(self, groups: Sequence[tuple[object, ...]],
                 plans: Mapping[str, tuple[object, ...]], service: Sequence[str]) -> None: ...
    def run(self, texts: list[str], i: int, frames: Sequence[Frame], element: str,
            component: str, release: str, repetition: str, out: list[str]
            ) -> tuple[int, int, tuple[Frame, ...]]: ...
