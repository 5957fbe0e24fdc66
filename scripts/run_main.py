"""What `make run` does: the bot when a Discord token is configured, otherwise the seed's demo.

The demo is the seed blog post made real: build the British Library embellishments sample into a
collection (once; it needs internet for the download and the model), then search it for
"A steam engine" and save a contact sheet of the results.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dotenv import find_dotenv, load_dotenv

from search_core.layout import MANIFEST

SEED_SAMPLE_URL = "https://zenodo.org/record/6224034/files/embellishments_sample.zip?download=1"
DEFAULT_COLLECTION = Path("collections/embellishments-sample")
DEMO_PROMPT = "A steam engine"


def main() -> int:
    load_dotenv(find_dotenv(usecwd=True), override=False)  # the user's .env, not one beside this file
    if os.environ.get("DISCORD_TOKEN"):
        from bot.__main__ import main as bot_main

        return bot_main()

    from scripts.build_cli import main as build_main
    from search_core.cli import main as search_main

    collection = Path(os.environ.get("IMAGESEARCH_COLLECTION") or DEFAULT_COLLECTION)
    if not (collection / MANIFEST).exists():
        print(f"No collection at {collection}: building the seed's embellishments sample "
              "(downloads the images and the clip-ViT-B-32 model).", file=sys.stderr)
        collection.parent.mkdir(parents=True, exist_ok=True)
        code = build_main([SEED_SAMPLE_URL, "--out", str(collection)])
        if code:
            return code
    sheet = collection.parent / f"{collection.name}-demo.png"
    code = search_main(["search", str(collection), DEMO_PROMPT, "-k", "9", "--sheet", str(sheet)])
    if code == 0:
        print(f"Contact sheet of the results: {sheet}", file=sys.stderr)
        print("To run the Discord bot instead, set DISCORD_TOKEN in .env (see .env.example and README).",
              file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
