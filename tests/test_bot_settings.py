"""Settings.from_env and the entry point's start-up errors: one line, naming the variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.settings import ConfigError, RateLimit, Settings

# Token-shaped, so the no-echo tests mean something; assembled at runtime so that no secret
# scanner mistakes this file for a leaked token.
TOKEN_PARTS = ("MTIzNDU2Nzg5MDEyMzQ1Njc4", "Gabcde", "SECRET-token-value_0123456789")
TOKEN = ".".join(TOKEN_PARTS)
GUILD = "123456789012345678"
CHANNEL = "223456789012345678"


@pytest.fixture
def fake_collection(tmp_path: Path) -> Path:
    """A folder that passes the settings check (a manifest is present); not openable as a collection."""
    folder = tmp_path / "collection"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format_version": 1}), encoding="utf-8")
    return folder


@pytest.fixture
def env(fake_collection: Path) -> dict[str, str]:
    return {"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_COLLECTION": str(fake_collection)}


def test_minimal_environment_parses_with_safe_defaults(env: dict[str, str]) -> None:
    """Only the two required keys: no guild allowed, every channel, 5 searches a minute."""
    s = Settings.from_env(env)
    assert s.discord_token == TOKEN
    assert s.allowed_guilds == frozenset()
    assert s.allowed_channels is None
    assert s.rate_limit == RateLimit(20, 60.0)
    assert s.max_k == 25 and s.dev_guild_id is None and s.device == "auto"
    assert s.search_threads is None        # search_core's default


def test_full_environment_parses_every_key(env: dict[str, str], tmp_path: Path) -> None:
    """Every documented key is read into its typed field."""
    blocklist = tmp_path / "block.txt"
    blocklist.write_text("bad\n")
    env.update({
        "IMAGESEARCH_ALLOWED_GUILDS": f"{GUILD}, 323456789012345678",
        "IMAGESEARCH_ALLOWED_CHANNELS": CHANNEL,
        "IMAGESEARCH_BLOCKLIST": str(blocklist), "IMAGESEARCH_BLOCKED_CONCEPTS": str(blocklist),
        "IMAGESEARCH_HIDDEN": str(blocklist), "IMAGESEARCH_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "IMAGESEARCH_RATE_LIMIT": "3/10.5", "IMAGESEARCH_MODEL": "clip-ViT-B-32", "IMAGESEARCH_DEVICE": "cpu",
        "IMAGESEARCH_CONCEPT_THRESHOLD": "0.3", "IMAGESEARCH_IMAGE_CONCEPT_THRESHOLD": "0.4",
        "IMAGESEARCH_MAX_K": "12", "IMAGESEARCH_DEV_GUILD": GUILD, "IMAGESEARCH_LOG_LEVEL": "debug",
        "IMAGESEARCH_SEARCH_THREADS": "1",
    })
    s = Settings.from_env(env)
    assert s.allowed_guilds == {int(GUILD), 323456789012345678}
    assert s.allowed_channels == {int(CHANNEL)}
    assert s.rate_limit == RateLimit(3, 10.5)
    assert (s.concept_threshold, s.image_concept_threshold, s.max_k) == (0.3, 0.4, 12)
    assert s.dev_guild_id == int(GUILD) and s.log_level == "DEBUG" and s.audit_log == tmp_path / "audit.jsonl"
    assert s.search_threads == 1


def test_repr_never_shows_the_token(env: dict[str, str]) -> None:
    """A Settings in a log line or a traceback does not leak the token."""
    s = Settings.from_env(env)
    assert TOKEN not in repr(s) and TOKEN not in str(s)


@pytest.mark.parametrize("key, value", [
    ("DISCORD_TOKEN", ""),
    ("DISCORD_TOKEN", "two words"),
    ("IMAGESEARCH_COLLECTION", ""),
    ("IMAGESEARCH_COLLECTION", "/nonexistent/collection"),
    ("IMAGESEARCH_ALLOWED_GUILDS", "12345678901234567x"),
    ("IMAGESEARCH_ALLOWED_GUILDS", "my-server"),
    ("IMAGESEARCH_ALLOWED_CHANNELS", "42"),
    ("IMAGESEARCH_BLOCKLIST", "/nonexistent/blocklist.txt"),
    ("IMAGESEARCH_BLOCKED_CONCEPTS", "/nonexistent/concepts.txt"),
    ("IMAGESEARCH_HIDDEN", "/nonexistent/hidden.txt"),
    ("IMAGESEARCH_AUDIT_LOG", "/nonexistent-dir/audit.jsonl"),
    ("IMAGESEARCH_RATE_LIMIT", "5"),
    ("IMAGESEARCH_RATE_LIMIT", "five/60"),
    ("IMAGESEARCH_RATE_LIMIT", "0/60"),
    ("IMAGESEARCH_RATE_LIMIT", "5/-1"),
    ("IMAGESEARCH_DEVICE", "tpu"),
    ("IMAGESEARCH_CONCEPT_THRESHOLD", "high"),
    ("IMAGESEARCH_IMAGE_CONCEPT_THRESHOLD", "2"),
    ("IMAGESEARCH_MAX_K", "100"),
    ("IMAGESEARCH_DEV_GUILD", "dev"),
    ("IMAGESEARCH_LOG_LEVEL", "loud"),
    ("IMAGESEARCH_SEARCH_THREADS", "0"),
    ("IMAGESEARCH_SEARCH_THREADS", "two"),
    ("IMAGESEARCH_SEARCH_THREADS", "65"),
])
def test_each_bad_value_is_named(env: dict[str, str], key: str, value: str) -> None:
    """Each invalid value raises ConfigError whose one-line message names exactly that variable."""
    env[key] = value
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert key in message and "\n" not in message
    others = {"DISCORD_TOKEN", "IMAGESEARCH_COLLECTION", "IMAGESEARCH_RATE_LIMIT", "IMAGESEARCH_MAX_K"} - {key}
    assert not any(f"{other} " in message for other in others)


def test_all_bad_keys_reported_at_once(fake_collection: Path) -> None:
    """Several mistakes come back in one message, so one restart fixes them all."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"IMAGESEARCH_RATE_LIMIT": "lots", "IMAGESEARCH_ALLOWED_GUILDS": "x"})
    message = str(info.value)
    for key in ("DISCORD_TOKEN", "IMAGESEARCH_COLLECTION", "IMAGESEARCH_RATE_LIMIT", "IMAGESEARCH_ALLOWED_GUILDS"):
        assert key in message


def test_bad_values_are_not_echoed(env: dict[str, str]) -> None:
    """A token pasted into the wrong variable is not repeated in the error."""
    env["IMAGESEARCH_ALLOWED_GUILDS"] = TOKEN
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert TOKEN not in str(info.value)


def test_main_stops_with_one_line_naming_the_variable(capsys: pytest.CaptureFixture[str],
                                                      fake_collection: Path) -> None:
    """`imagesearch bot` with a bad rate limit exits non-zero with one stderr line and no traceback."""
    code = main({"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_COLLECTION": str(fake_collection),
                 "IMAGESEARCH_RATE_LIMIT": "many"})
    out, err = capsys.readouterr()
    assert code != 0
    assert err.strip().count("\n") == 0 and "IMAGESEARCH_RATE_LIMIT" in err
    assert "Traceback" not in err + out and TOKEN not in err + out


def test_main_reports_an_unopenable_collection_in_one_line(capsys: pytest.CaptureFixture[str],
                                                           fake_collection: Path) -> None:
    """A folder with a broken manifest stops start-up naming IMAGESEARCH_COLLECTION, without a traceback."""
    code = main({"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_COLLECTION": str(fake_collection)})
    out, err = capsys.readouterr()
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("imagesearch bot:")]
    assert len(lines) == 1 and "IMAGESEARCH_COLLECTION" in lines[0]
    assert "Traceback" not in err + out and TOKEN not in err + out


def test_hidden_list_skips_blank_lines_and_comments(tmp_path: Path, fake_collection: Path) -> None:
    """The takedown list is one file name per line; blank lines and # comments are not names."""
    from bot.__main__ import load_hidden

    hidden = tmp_path / "hidden.txt"
    hidden.write_text("# withdrawn 2024-05\n\n000499442_0_000579_1_[Poems]_1850.jpg\n  b.jpg  \n", encoding="utf-8")
    settings = Settings.from_env({"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_COLLECTION": str(fake_collection),
                                  "IMAGESEARCH_HIDDEN": str(hidden)})
    assert load_hidden(settings) == ["000499442_0_000579_1_[Poems]_1850.jpg", "b.jpg"]


def test_open_library_applies_the_hidden_list(tmp_path: Path, collection_dir: Path, sample_images) -> None:
    """IMAGESEARCH_HIDDEN reaches the search service: a listed image never comes back, even searched for itself."""
    from bot.__main__ import open_library
    from search_core.images import load_query_image

    target = sample_images[1][3].path
    hidden = tmp_path / "hidden.txt"
    hidden.write_text(target.name + "\n", encoding="utf-8")
    settings = Settings.from_env({"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_COLLECTION": str(collection_dir),
                                  "IMAGESEARCH_HIDDEN": str(hidden), "IMAGESEARCH_DEVICE": "cpu"})
    (edition,) = open_library(settings)
    service = edition.service
    page = service.search(image=load_query_image(target.read_bytes()), k=24)
    assert page.hits and target.name not in {hit.file_name for hit in page.hits}


def test_a_short_number_is_named_with_how_to_find_real_ids(env: dict[str, str]) -> None:
    """A typo'd id is pointed out (it is only digits, so safe to show) with where real ids come from."""
    env["IMAGESEARCH_ALLOWED_CHANNELS"] = "123"
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert "IMAGESEARCH_ALLOWED_CHANNELS" in str(info.value)
    assert "123 has 3 digits" in str(info.value) and "Copy ID" in str(info.value)


def test_dev_guild_must_be_an_allowed_guild(env: dict[str, str]) -> None:
    """Commands synced to a server the guard then leaves would be useless: refused at start-up."""
    env["IMAGESEARCH_DEV_GUILD"] = "999999999999999999"
    with pytest.raises(ConfigError, match="IMAGESEARCH_DEV_GUILD must be one of IMAGESEARCH_ALLOWED_GUILDS"):
        Settings.from_env(env)


def test_debug_logging_keeps_url_loggers_at_info(env: dict[str, str]) -> None:
    """Even at DEBUG, the loggers that print request URLs (which hold interaction tokens) log at
    INFO at most, and every record is redacted from then on."""
    import logging

    from bot import redaction
    from bot.__main__ import URL_LOGGERS, configure_logging

    env["IMAGESEARCH_LOG_LEVEL"] = "DEBUG"
    configure_logging(Settings.from_env(env))   # undone by conftest's _restore_logging
    assert logging.getLogger().level == logging.DEBUG
    assert {"discord.http", "discord.webhook.async_", "discord.webhook.sync"} <= set(URL_LOGGERS)
    assert not any(logging.getLogger(name).isEnabledFor(logging.DEBUG) for name in URL_LOGGERS)
    record = logging.getLogger("any.library").makeRecord("any.library", logging.DEBUG, __file__, 1,
                                                        "token %s", (env["DISCORD_TOKEN"],), None)
    assert env["DISCORD_TOKEN"] not in record.getMessage() and redaction.REDACTED in record.getMessage()


# --- Several collections ------------------------------------------------------------------------

@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """Three folders that pass the settings check, named after their collections."""
    out = {}
    for name in ("maps", "Broadsides", "plates"):
        folder = tmp_path / f"{name}-folder"
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({"format_version": 1}), encoding="utf-8")
        out[name] = folder
    return out


def _several(folders: dict[str, Path], **extra: str) -> dict[str, str]:
    listed = ",".join(f"{name}={path}" for name, path in folders.items())
    return {"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_COLLECTIONS": listed, "IMAGESEARCH_ALLOWED_GUILDS": GUILD, **extra}


def test_several_collections_keep_their_order_and_names(folders: dict[str, Path]) -> None:
    """IMAGESEARCH_COLLECTIONS=name=path,...: every collection, in order; the first is every server's default."""
    s = Settings.from_env(_several(folders))
    assert [(c.name, c.path) for c in s.collections] == list(folders.items())
    assert s.collections_key == "IMAGESEARCH_COLLECTIONS"
    assert s.collection_names(int(GUILD)) == ("maps", "Broadsides", "plates")
    assert s.collection_names(None) == ("maps", "Broadsides", "plates")


def test_one_collection_is_named_after_its_folder(fake_collection: Path, tmp_path: Path) -> None:
    """The single IMAGESEARCH_COLLECTION keeps working, as one collection named after its folder;
    a folder name with characters a name may not hold is tidied, not refused."""
    s = Settings.from_env({"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_COLLECTION": str(fake_collection)})
    assert [(c.name, c.path) for c in s.collections] == [("collection", fake_collection)]
    assert s.collections_key == "IMAGESEARCH_COLLECTION"
    odd = tmp_path / "BL: plates, 1800s (draft)"
    odd.mkdir()
    (odd / "manifest.json").write_text("{}", encoding="utf-8")
    s = Settings.from_env({"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_COLLECTION": str(odd)})
    assert s.collections[0].name == "BL-plates-1800s-draft"


@pytest.mark.parametrize("value, expected", [
    ("maps", "entry 1 must look like name=folder"),
    ("maps=", "entry 1 must look like name=folder"),
    ("=/tmp", "entry 1 must look like name=folder"),
    ("{maps},-x={maps}", "entry 2: a collection name may hold"),
    ("{maps},MAPS={plates}", "names the collection MAPS twice"),
    ("{maps},plates=/nonexistent/folder", "does not name an existing folder (plates)"),
    (",", "lists no collection"),
])
def test_a_bad_collections_list_is_named(folders: dict[str, Path], value: str, expected: str) -> None:
    """Bad syntax, a bad or duplicate name (names ignore case) and a missing folder each name
    IMAGESEARCH_COLLECTIONS and the entry."""
    value = value.replace("{maps}", f"maps={folders['maps']}").replace("{plates}", str(folders["plates"]))
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_COLLECTIONS": value})
    message = str(info.value)
    assert "IMAGESEARCH_COLLECTIONS" in message and expected in message and "\n" not in message


def test_collection_and_collections_together_are_refused(folders: dict[str, Path], fake_collection: Path) -> None:
    env = _several(folders, IMAGESEARCH_COLLECTION=str(fake_collection))
    with pytest.raises(ConfigError, match="IMAGESEARCH_COLLECTION and IMAGESEARCH_COLLECTIONS are both set"):
        Settings.from_env(env)


def test_guild_collections_limit_a_server_in_its_own_order(folders: dict[str, Path]) -> None:
    """A listed server may search only its collections, its first listed is its default; names
    match ignoring case and are kept as IMAGESEARCH_COLLECTIONS spells them; other servers get all."""
    other = "323456789012345678"
    env = _several(folders, IMAGESEARCH_ALLOWED_GUILDS=f"{GUILD},{other}",
                   IMAGESEARCH_GUILD_COLLECTIONS=f" {GUILD}: plates | broadsides ; ")
    s = Settings.from_env(env)
    assert s.guild_collections == {int(GUILD): ("plates", "Broadsides")}
    assert s.collection_names(int(GUILD)) == ("plates", "Broadsides")
    assert s.collection_names(int(other)) == ("maps", "Broadsides", "plates")


@pytest.mark.parametrize("value, expected", [
    (f"{GUILD}", "entry 1 must look like server_id:name|name"),
    (f"{GUILD}:", "entry 1 must look like server_id:name|name"),
    (f"{GUILD}:maps||plates", "entry 1 must look like server_id:name|name"),
    ("lab:maps", "entry 1: an entry is not a number"),
    ("12:maps", "entry 1: 12 has 2 digits"),
    (f"{GUILD}:maps;{GUILD}:plates", f"lists server {GUILD} twice"),
    ("423456789012345678:maps", "lists server 423456789012345678, which is not in IMAGESEARCH_ALLOWED_GUILDS"),
    (f"{GUILD}:maps|charts", "entry 1 names a collection that is not in IMAGESEARCH_COLLECTIONS: charts"),
])
def test_a_bad_guild_collections_list_is_named(folders: dict[str, Path], value: str, expected: str) -> None:
    """Bad syntax, a bad or repeated server id, a server the bot may not stay in and an unknown
    collection name each name IMAGESEARCH_GUILD_COLLECTIONS and what is wrong."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env(_several(folders, IMAGESEARCH_GUILD_COLLECTIONS=value))
    message = str(info.value)
    assert "IMAGESEARCH_GUILD_COLLECTIONS" in message and expected in message and "\n" not in message


def test_an_unknown_name_that_may_be_a_secret_is_not_echoed(folders: dict[str, Path]) -> None:
    """A token pasted where a collection name belongs is not repeated in the error."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env(_several(folders, IMAGESEARCH_GUILD_COLLECTIONS=f"{GUILD}:{TOKEN}"))
    assert TOKEN not in str(info.value) and "not in IMAGESEARCH_COLLECTIONS" in str(info.value)


@pytest.mark.parametrize("value, expected", [(None, 10.0), ("0", 0.0), ("2.5", 2.5)])
def test_reload_interval(env: dict[str, str], value: str | None, expected: float) -> None:
    if value is not None:
        env["IMAGESEARCH_RELOAD_INTERVAL"] = value
    assert Settings.from_env(env).reload_interval == expected


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "1e9"])
def test_a_bad_reload_interval_is_named(env: dict[str, str], value: str) -> None:
    env["IMAGESEARCH_RELOAD_INTERVAL"] = value
    with pytest.raises(ConfigError, match="IMAGESEARCH_RELOAD_INTERVAL must be a number of seconds"):
        Settings.from_env(env)


def test_main_names_the_collection_that_cannot_be_opened(capsys: pytest.CaptureFixture[str], collection_dir: Path,
                                                         fake_collection: Path) -> None:
    """With several collections, a broken one stops start-up in one line naming the variable and the collection."""
    code = main({"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_DEVICE": "cpu",
                 "IMAGESEARCH_COLLECTIONS": f"good={collection_dir},broken={fake_collection}"})
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("imagesearch bot:")]
    assert code != 0 and len(lines) == 1 and "IMAGESEARCH_COLLECTIONS (broken):" in lines[0]
    assert "Traceback" not in err + out
