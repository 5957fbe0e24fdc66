"""Run the bot's real entry point against a fake Discord, in a process of its own.

    python -m tests.fake_discord.run_bot API_BASE GATEWAY_URL CDN_BASE [--debug-url-loggers]

Everything else is as for `imagesearch bot`: the configuration comes from the environment, and
`bot.__main__.main` sets up logging, loads the model and runs the bot until SIGINT. Get the three
addresses from `FakeDiscord.bot_process_args()`.

`--debug-url-loggers` lifts the INFO cap that the entry point puts on the loggers known to print
request URLs (`bot.__main__.URL_LOGGERS`), so a test sees those URLs, interaction tokens and all,
reach the logging system: what it then asserts about the log is the redaction alone.
"""

from __future__ import annotations

import logging
import sys

import bot.__main__ as entry
from tests.fake_discord.server import point_discord_at


def main(argv: list[str]) -> int:
    api_base, gateway_url, cdn_base, *flags = argv
    point_discord_at(api_base, gateway_url, cdn_base)
    if "--debug-url-loggers" in flags:
        configure = entry.configure_logging

        def configure_then_lift_caps(settings) -> None:
            configure(settings)
            for name in entry.URL_LOGGERS:
                logging.getLogger(name).setLevel(logging.DEBUG)

        entry.configure_logging = configure_then_lift_caps
    return entry.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
