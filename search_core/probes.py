"""The probe prompts shipped with the package: generic descriptions of book illustrations.

Text prompts are the bot's main query, and CLIP text vectors sit apart from image vectors (the
"modality gap"), so an index tuned only on image rows can miss for text. The build encodes these
prompts with the collection's own model to tune and measure recall for text queries, and to record
how strong a best hit usually is (what a "weak match" is measured against).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from search_core.listfile import read_list

PROBE_PROMPTS_RESOURCE = "data/probe_prompts.txt"


@lru_cache(maxsize=1)
def load_probe_prompts() -> tuple[str, ...]:
    """The shipped probe prompts, in file order (a few hundred)."""
    path = resources.files("search_core").joinpath(PROBE_PROMPTS_RESOURCE)
    with resources.as_file(path) as file:
        return tuple(read_list(file, what="Probe prompts file"))
