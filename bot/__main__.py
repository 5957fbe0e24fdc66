"""`python -m bot` / `imagesearch bot`: read the configuration, load the model once, run the bot.

The only module that reads `os.environ`. Every start-up failure the user can fix ends in one
line on stderr naming the variable to change, and a non-zero exit code; never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bot import redaction
from bot.settings import ConfigError, Settings
from search_core.encoder import quiet_model_loading
from search_core.errors import CollectionError, DeviceError, ImageSearchError, TextModelMismatchError
from search_core.listfile import read_list

if TYPE_CHECKING:
    from bot.library import Library
    from search_core.moderation import ModerationPolicy

log = logging.getLogger("bot")

EXIT_CONFIG = 2      # something to change in the configuration, the invitation or the code
EXIT_UNREACHABLE = 3  # Discord could not be reached or was down: the same start may work later


# Loggers that print request URLs at DEBUG, and follow-up URLs hold interaction tokens (valid 15
# minutes, enough to post as the bot). Redaction (bot/redaction.py) already removes the tokens;
# these loggers also stay at INFO whatever the level, in case a URL form ever escapes a pattern.
URL_LOGGERS = ("discord.http", "discord.webhook.async_", "discord.webhook.sync")
LOG_FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Redact secrets in every log record, then log to stderr (unless the host already set up
    logging: its handlers get the redacted records too)."""
    redactor = redaction.install([settings.discord_token])
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(redaction.RedactingFormatter(redactor, LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in URL_LOGGERS:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
    quiet_model_loading()


def load_hidden(settings: Settings) -> list[str]:
    """The takedown list: one source file name per line; blank lines and # comments ignored."""
    if settings.hidden is None:
        return []
    return read_list(settings.hidden, what="IMAGESEARCH_HIDDEN: the takedown list", trailing_comments=False,
                     error=ConfigError)


def open_library(settings: Settings) -> Library:
    """Open every collection, loading each distinct model once; errors name the variable at fault."""
    from bot.library import Library, open_edition
    from bot.shared_models import SharedModels
    from search_core.encoder import Encoder, resolve_device
    from search_core.query_threads import QUERY_THREADS
    from search_core.text_model import TextModel

    hidden = load_hidden(settings)
    if settings.search_threads is not None:
        QUERY_THREADS.set_limit(settings.search_threads)
    try:
        resolve_device(settings.device)    # before the collections and models: seconds, not minutes
    except DeviceError as exc:
        raise ConfigError(f"IMAGESEARCH_DEVICE: {exc}") from exc
    text_model = settings.text_model
    models = SharedModels(lambda name: Encoder.load(name, device=settings.device),
                          lambda encoder: load_policy(settings, encoder), override=settings.model_name,
                          load_text_model=(lambda: TextModel.load(text_model, device=settings.device))
                          if text_model else None)
    editions = []
    for spec in settings.collections:
        where = settings.collections_key
        if where == "IMAGESEARCH_COLLECTIONS":
            where += f" ({spec.name})"
        try:
            editions.append(open_edition(spec, models, hidden))
        except TextModelMismatchError as exc:       # the text model could not be loaded at all
            raise ConfigError(f"IMAGESEARCH_TEXT_MODEL: {exc}") from exc
        except CollectionError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        except ConfigError:
            raise
        except ImageSearchError as exc:
            key = "IMAGESEARCH_MODEL" if settings.model_name else f"{where}, its model"
            raise ConfigError(f"{key}: {exc}") from exc
    if text_model and not any(edition.service.text_model is not None for edition in editions):
        # Aligned with no collection's model: a mistake, not a choice (one line, the first reason).
        raise ConfigError(f"IMAGESEARCH_TEXT_MODEL: {next(iter(models.text_refusals.values()))}")
    return Library(editions, settings.guild_collections,
                   opener=functools.partial(open_edition, models=models, hidden_files=hidden))


def load_policy(settings: Settings, encoder) -> ModerationPolicy | None:
    """The moderation policy for one model, or None when neither a blocklist nor blocked concepts
    are configured. Blocked concepts are embedded by `encoder`, the model they will be compared with."""
    if settings.blocklist is None and settings.blocked_concepts is None:
        return None
    from search_core.moderation import ModerationPolicy

    thresholds = {}
    if settings.concept_threshold is not None:
        thresholds["text_threshold"] = settings.concept_threshold
    if settings.image_concept_threshold is not None:
        thresholds["image_threshold"] = settings.image_concept_threshold
    try:
        return ModerationPolicy.from_files(settings.blocklist, settings.blocked_concepts, encoder, **thresholds)
    except ImageSearchError as exc:
        raise ConfigError(f"IMAGESEARCH_BLOCKLIST / IMAGESEARCH_BLOCKED_CONCEPTS: {exc}") from exc


async def run(settings: Settings, library: Library) -> None:
    from bot.client import ImageBot

    async with ImageBot(settings, library) as bot:
        await bot.start(settings.discord_token)


def main(env: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit code. `env` is for tests; by default the environment plus .env."""
    if env is None:
        from dotenv import find_dotenv, load_dotenv

        load_dotenv(find_dotenv(usecwd=True), override=False)  # real environment wins over .env
        env = os.environ
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"imagesearch bot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings)
    try:
        library = open_library(settings)
    except ConfigError as exc:
        print(f"imagesearch bot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not settings.allowed_guilds:
        log.warning("IMAGESEARCH_ALLOWED_GUILDS is empty: the bot will leave every server it is in")

    import aiohttp
    import discord

    from bot.client import StartupError

    try:
        asyncio.run(run(settings, library))
    except discord.LoginFailure:
        print("imagesearch bot: DISCORD_TOKEN was refused by Discord; copy the bot token again "
              "from the developer portal.", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"imagesearch bot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except discord.PrivilegedIntentsRequired:
        print("imagesearch bot: Discord refused the gateway intents this bot asks for.", file=sys.stderr)
        return EXIT_CONFIG
    except discord.ConnectionClosed as exc:
        print(f"imagesearch bot: Discord closed the gateway connection (code {exc.code}: {exc.reason or 'no reason'}); "
              "start the bot again, and check the bot's settings in the developer portal if it repeats.",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    except discord.DiscordServerError as exc:
        print(f"imagesearch bot: Discord's API is failing ({exc.status}); start the bot again in a few minutes.",
              file=sys.stderr)
        return EXIT_UNREACHABLE
    except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"imagesearch bot: could not reach Discord ({reason}); check this machine's network "
              "connection, DNS, proxy or firewall, then start the bot again.", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
