"""`imagesearch verify` and the bot's start-up check: every kind of damage is named, by file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from scripts.cli import main as cli_main
from search_core import layout
from search_core.integrity import verify_collection
from search_core.layout import Manifest
from tests.fixtures.synthetic_collection import unit_vectors, write_collection

ARROW = "dataset/data-00000-of-00001.arrow"
# Token-shaped, assembled at runtime so that no secret scanner mistakes this file for a leak.
TOKEN_PARTS = ("MTIzNDU2Nzg5MDEyMzQ1Njc4", "Gabcde", "SECRET-token-value_0123456789")
TOKEN = ".".join(TOKEN_PARTS)


@pytest.fixture
def coll(tmp_path: Path, collection_dir: Path) -> Path:
    """A writable copy of the built test collection."""
    return Path(shutil.copytree(collection_dir, tmp_path / "coll"))


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def edit_manifest(folder: Path, **fields) -> None:
    """Change fields in manifest.json by hand (as a user with an editor would), not via Manifest.write."""
    raw = json.loads((folder / layout.MANIFEST).read_text(encoding="utf-8"))
    raw.update(fields)
    (folder / layout.MANIFEST).write_text(json.dumps(raw, indent=2), encoding="utf-8")


def rewrite_consistently(folder: Path) -> None:
    """Recompute every checksum, as a build would: only the content checks can find what is wrong."""
    from search_core.integrity import file_checksums

    manifest = Manifest.read(folder)
    Manifest.from_dict({**json.loads(manifest.to_json()), "checksums": file_checksums(folder)}).write(folder)


def verify_lines(folder: Path, *args: str, capsys) -> tuple[int, list[str]]:
    code = cli_main(["verify", str(folder), "--no-progress", *args])
    return code, capsys.readouterr().out.strip().splitlines()


def test_a_fresh_build_verifies(coll: Path, capsys):
    """Everything the build wrote matches: exit 0, one OK line saying what was checked."""
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 0
    assert len(lines) == 1 and lines[0].startswith(f"OK: {coll}: 24 rows; 8 files")   # groups.npy, files.arrow
    assert "agree on 24 sampled rows" in lines[0]


def _tamper_index(folder: Path) -> None:
    # The index's codes sit at its end (header first): a flipped byte there still reads.
    flip_byte(folder / layout.INDEX, offset=(folder / layout.INDEX).stat().st_size - 100)


def _tamper_embeddings(folder: Path) -> None:
    emb = np.load(folder / layout.EMBEDDINGS)
    emb[3] = -emb[3]
    np.save(folder / layout.EMBEDDINGS, emb)


TAMPERING = {
    "index bytes": (_tamper_index, layout.INDEX),
    "embeddings": (_tamper_embeddings, layout.EMBEDDINGS),
    "dataset arrow": (lambda f: flip_byte(f / ARROW), ARROW),
    "dataset metadata": (lambda f: (f / "dataset" / "state.json").write_text("{}"), "dataset/state.json"),
    "skipped list": (lambda f: (f / layout.SKIPPED).write_text('{"file": "x", "reason": "y"}\n'), layout.SKIPPED),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_a_changed_file_is_named_with_exit_1(coll: Path, capsys, kind: str):
    tamper, file = TAMPERING[kind]
    tamper(coll)
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1
    assert f"{file}: does not match its checksum in manifest.json (changed or damaged since the build)" in lines
    assert lines[-1] == (f"{coll}: {len(lines) - 1} problem(s) found; rebuild the collection with "
                         "`imagesearch build` or restore it from a copy.")


def test_damaged_index_bytes_are_never_parsed(coll: Path, capsys, monkeypatch):
    """A file that fails its checksum stops the check before FAISS reads it (FAISS trusts the sizes
    its file declares): the report is the checksum line alone."""
    import search_core.collection

    def no_parse(*args, **kwargs):
        raise AssertionError("a damaged index was handed to FAISS")

    monkeypatch.setattr(search_core.collection, "read_index", no_parse)
    _tamper_index(coll)
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1
    assert lines[:-1] == ["index.faiss: does not match its checksum in manifest.json (changed or damaged since the build)"]


@pytest.mark.parametrize("file", [layout.INDEX, layout.EMBEDDINGS, ARROW, "dataset/state.json"])
def test_a_missing_file_is_named(coll: Path, capsys, file: str):
    (coll / file).unlink()
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1
    assert lines[:-1] == [f"{file}: is missing"]


@pytest.mark.parametrize("fields", [{"source": "somewhere else"}, {"model": "clip-ViT-L-14"}, {"rows": 23},
                                    {"built_at": "2020-01-01T00:00:00+00:00"}])
def test_an_edited_manifest_field_is_named(coll: Path, capsys, fields):
    """Any field changed by hand breaks the manifest's own checksum."""
    edit_manifest(coll, **fields)
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1
    assert "manifest.json: was edited after the build: its content does not match its own checksum" in lines


def test_an_edited_checksum_is_caught_twice(coll: Path, capsys):
    """Changing a file's checksum in the manifest: the manifest is edited, and the file no longer matches."""
    raw = json.loads((coll / layout.MANIFEST).read_text())
    raw["checksums"][layout.INDEX] = "0" * 64
    (coll / layout.MANIFEST).write_text(json.dumps(raw))
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1
    assert [line.split(":")[0] for line in lines[:-1]] == [layout.MANIFEST, layout.INDEX]


def test_a_missing_or_unreadable_manifest_is_one_problem(coll: Path, capsys):
    (coll / layout.MANIFEST).write_text("{ not json")
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1 and len(lines) == 2 and lines[0].startswith("manifest.json: cannot be read:")
    (coll / layout.MANIFEST).unlink()
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1 and lines[0] == "manifest.json: is missing: this folder is not a collection"


def test_a_folder_that_does_not_exist(tmp_path: Path, capsys):
    code, lines = verify_lines(tmp_path / "nope", capsys=capsys)
    assert code == 1 and lines[0] == ".: the collection folder does not exist"


def test_a_manifest_without_checksums_cannot_pass(coll: Path, capsys):
    raw = json.loads((coll / layout.MANIFEST).read_text())
    raw["checksums"] = {}
    (coll / layout.MANIFEST).write_text(json.dumps(raw))
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1
    assert "manifest.json: lists no file checksums, so the files cannot be checked; rebuild the collection" in lines


def test_a_checksum_path_outside_the_collection_is_not_followed(coll: Path, tmp_path: Path, capsys):
    (tmp_path / "outside.txt").write_text("x")
    raw = json.loads((coll / layout.MANIFEST).read_text())
    raw["checksums"]["../outside.txt"] = "0" * 64
    (coll / layout.MANIFEST).write_text(json.dumps(raw))
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1
    assert "manifest.json: lists '../outside.txt', which is not a path inside the collection" in lines


def test_an_index_of_other_vectors_is_caught_by_the_sample_even_with_matching_checksums(coll: Path, capsys):
    """A consistent manifest over a wrong index (rows shuffled): the sampled rows do not find themselves."""
    emb = np.load(coll / layout.EMBEDDINGS)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(np.ascontiguousarray(emb[np.random.default_rng(1).permutation(len(emb))]))
    faiss.write_index(index, str(coll / layout.INDEX))
    rewrite_consistently(coll)
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1
    assert all(line.startswith("index.faiss: ") for line in lines[:-1])
    assert "do not find themselves" in lines[0]     # rows found by chance score below 1: a second line


def test_embeddings_that_are_not_unit_length_are_named(coll: Path, capsys):
    emb = np.load(coll / layout.EMBEDDINGS)
    np.save(coll / layout.EMBEDDINGS, emb * 2)
    rewrite_consistently(coll)
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1
    assert any(line.startswith("embeddings.npy: 24 of 24 sampled rows are not unit length") for line in lines)


def test_a_manifest_disagreeing_with_the_files_is_named(coll: Path, capsys):
    """rows changed and the manifest checksum recomputed (a consistent but wrong manifest): the files say otherwise."""
    manifest = Manifest.read(coll)
    Manifest.from_dict({**json.loads(manifest.to_json()), "rows": 25}).write(coll)
    code, lines = verify_lines(coll, capsys=capsys)
    assert code == 1
    assert lines[:-1] == [".: dataset/ has 24 rows but manifest.json says 25."]


@pytest.mark.parametrize("spec", ["HNSW16", "IVF16,SQ8", "IVF4,Flat", "RR32,IVF16,SQ8_direct_signed",
                                  "PCAR16,IVF16,SQ8_direct_signed"])
def test_approximate_indexes_pass_the_sample_check(tmp_path: Path, spec: str):
    """Approximate indexes over the right vectors are not reported (no false alarm), duplicates included;
    int8 codes of scaled vectors are judged in the index's own units."""
    emb = unit_vectors(2000, 32, seed=3)
    emb[100:130] = emb[99]           # 31 identical rows: more twins than the candidates fetched
    folder = write_collection(tmp_path / "c", emb, index_spec=spec, index_params={"nprobe": 2} if "IVF" in spec
                              else {"efSearch": 32})
    report = verify_collection(folder, sample=2000)
    assert report.ok, report.problems
    assert report.sampled_rows == 2000


def test_quick_mode_skips_only_the_image_arrow_files(coll: Path):
    """--quick (the bot's check) does not hash the image Arrow files, and hashes everything else."""
    flip_byte(coll / ARROW)
    quick = verify_collection(coll, quick=True)
    assert quick.ok and quick.files_not_hashed == [ARROW]
    assert set(quick.files_hashed) == {layout.INDEX, layout.EMBEDDINGS, layout.GROUPS, layout.SKIPPED, layout.FILES,
                                       "dataset/state.json", "dataset/dataset_info.json"}
    assert [p.file for p in verify_collection(coll).problems] == [ARROW]


def test_json_report(coll: Path, capsys):
    _tamper_embeddings(coll)
    code = cli_main(["verify", str(coll), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["ok"] is False
    assert report["problems"][0] == {"file": layout.EMBEDDINGS, "problem": "does not match its checksum in "
                                     "manifest.json (changed or damaged since the build)"}


# --- the bot refuses to start on a collection that does not match ---------------------------

@pytest.mark.parametrize("kind", ["index bytes", "embeddings", "missing index", "manifest field"])
def test_the_bot_refuses_a_damaged_collection_in_one_line(coll: Path, capfd, monkeypatch, kind: str):
    """`imagesearch bot` exits 2 with one line naming IMAGESEARCH_COLLECTION and the fault, before
    loading the model or connecting, and never prints the token."""
    from bot.__main__ import main
    from search_core import encoder

    if kind == "missing index":
        (coll / layout.INDEX).unlink()
    elif kind == "manifest field":
        edit_manifest(coll, source="elsewhere")
    else:
        TAMPERING[kind][0](coll)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded for a collection that does not match")

    monkeypatch.setattr(encoder.Encoder, "load", no_model)
    code = main({"DISCORD_TOKEN": TOKEN, "IMAGESEARCH_COLLECTION": str(coll), "IMAGESEARCH_DEVICE": "cpu"})
    out, err = capfd.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"imagesearch bot: IMAGESEARCH_COLLECTION: {coll} does not match its manifest: ")
    file = {"missing index": layout.INDEX, "manifest field": layout.MANIFEST}.get(kind) or TAMPERING[kind][1]
    assert f"does not match its manifest: {file}: " in lines[0]
    assert f"imagesearch verify {coll}" in lines[0]
    assert "Traceback" not in out + err and TOKEN not in out + err
