"""What `make run` does: make sure the collection exists, then run the bot (with a Discord token)
or the seed's demo search (without one).

The demo collection is the seed blog post made real: the British Library embellishments sample,
built once into `collections/embellishments-sample` (the download needs internet, and so does the
model the first time). It is built whenever that collection is the one configured and it is
missing, token or not, so that a first `make run` with only `DISCORD_TOKEN` and
`IMAGESEARCH_ALLOWED_GUILDS` set gets a working bot. Any other missing `IMAGESEARCH_COLLECTION` is
an error: building the demo into a folder the user named for their own collection would hide the
mistake behind a collection of someone else's images.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from dotenv import find_dotenv, load_dotenv

from search_core.command_line import print_error
from search_core.encoder import DEFAULT_MODEL
from search_core.layout import MANIFEST

SEED_SAMPLE_URL = "https://zenodo.org/record/6224034/files/embellishments_sample.zip?download=1"
DEFAULT_COLLECTION = Path("collections/embellishments-sample")
DEMO_PROMPT = "A steam engine"
# Where the demo's images and model come from: a mirror or local copy, and the tests' local
# server and tiny model (documented in .env.example).
DEMO_SOURCE = "IMAGESEARCH_DEMO_SOURCE"
DEMO_MODEL = "IMAGESEARCH_DEMO_MODEL"
EXIT_CONFIG = 2   # as bot.__main__: a setting to change


def main() -> int:
    load_dotenv(find_dotenv(usecwd=True), override=False)  # the user's .env, not one beside this file
    collection = Path(os.environ.get("IMAGESEARCH_COLLECTION") or DEFAULT_COLLECTION).expanduser()
    code = ensure_collection(collection, os.environ)
    if code:
        return code
    if os.environ.get("DISCORD_TOKEN"):
        from bot.__main__ import main as bot_main

        # The environment already holds .env; the collection is named even when .env left it out.
        return bot_main({**os.environ, "IMAGESEARCH_COLLECTION": str(collection)})
    return demo_search(collection)


def ensure_collection(collection: Path, env: Mapping[str, str]) -> int:
    """0 when `collection` is built (building the demo there if it is the default), else an exit code."""
    if (collection / MANIFEST).is_file():
        return 0
    if not is_default_collection(collection):
        print_error(f"IMAGESEARCH_COLLECTION names {collection}, which is not a built collection "
                    f"(no {MANIFEST}): build it with `imagesearch build SOURCE --out {collection}`, or set "
                    f"IMAGESEARCH_COLLECTION={DEFAULT_COLLECTION} (or leave it out) for the demo collection.")
        return EXIT_CONFIG

    from scripts.build_cli import main as build_main

    source = env.get(DEMO_SOURCE) or SEED_SAMPLE_URL
    model = env.get(DEMO_MODEL) or DEFAULT_MODEL
    print(f"No collection at {collection}: building the seed's embellishments sample first "
          f"(downloads the images and the {model} model).", file=sys.stderr)
    collection.parent.mkdir(parents=True, exist_ok=True)
    return build_main([source, "--out", str(collection), "--model", model])


def is_default_collection(collection: Path) -> bool:
    return collection.absolute().resolve() == DEFAULT_COLLECTION.absolute().resolve()


def demo_search(collection: Path) -> int:
    """Search the collection for the seed's prompt and save a contact sheet beside it."""
    from search_core.cli import main as search_main

    sheet = collection.parent / f"{collection.name}-demo.png"
    code = search_main(["search", str(collection), DEMO_PROMPT, "-k", "9", "--sheet", str(sheet)])
    if code == 0:
        print(f"Contact sheet of the results: {sheet}", file=sys.stderr)
        print("To run the Discord bot instead, set DISCORD_TOKEN in .env (see .env.example and README).",
              file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
