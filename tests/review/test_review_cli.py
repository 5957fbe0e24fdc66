"""`imagesearch review`: prints the report's path; bad input is one `error:` line, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from review.folder import MARKER
from scripts.cli import main
from search_core.search import MAX_K, MAX_PROMPT_CHARS
from tests.review.page import parse

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    code = main(["review", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def prompts_file(tmp_path: Path, text: str = "ships: a ship\nbirds in a tree -- look for owls\n") -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_writes_the_report_and_prints_its_path(capsys: pytest.CaptureFixture, collection_dir: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "report"
    code, stdout, err = run(capsys, collection_dir, "--out", out, "--prompts", prompts_file(tmp_path), "-k", "3")
    assert code == 0, err
    assert stdout.strip() == str(out / "index.html")
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count('class="tile') == 6 and "a ship" in html
    assert (out / MARKER).is_file()


def test_rerun_replaces_the_previous_report(capsys: pytest.CaptureFixture, collection_dir: Path,
                                            tmp_path: Path) -> None:
    """A second run swaps the whole folder: nothing of the first report, nothing left beside it."""
    out = tmp_path / "report"
    assert run(capsys, collection_dir, "--out", out, "--prompts", prompts_file(tmp_path, "a red ship\n"))[0] == 0
    first_images = {p.name for p in (out / "img").iterdir()}
    assert run(capsys, collection_dir, "--out", out, "--prompts", prompts_file(tmp_path, "a blue bird\n"),
               "-k", "1")[0] == 0
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "a blue bird" in html and "a red ship" not in html
    assert len(list((out / "img").iterdir())) == 2 < len(first_images)    # one row: thumbnail + full view
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.txt", "report"]


@pytest.mark.parametrize(("case", "message"), [
    ("missing collection", "No collection at"),
    ("not a collection", "is not a collection"),
    ("missing prompts", "does not exist"),
    ("empty prompts", "holds no prompts"),
    ("comment-only prompts", "holds no prompts"),
    ("too long prompt", "line 2: The prompt is too long"),
    ("k zero", f"between 1 and {MAX_K}"),
    ("k too big", f"between 1 and {MAX_K}"),
    ("missing text model", "Could not load the text model"),
    ("out is a file", "is a file"),
    ("out holds other things", "refusing to replace it"),
    ("missing blocklist", "does not exist"),
    ("missing hidden list", "does not exist"),
    ("bad threshold", "IMAGESEARCH_CONCEPT_THRESHOLD must be a number"),
])
def test_bad_input_is_one_error_line(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                     collection_dir: Path, tmp_path: Path, case: str, message: str) -> None:
    out = tmp_path / "report"
    collection: Path = collection_dir
    extra: list[object] = []
    if case == "missing collection":
        collection = tmp_path / "nope"
    elif case == "not a collection":
        collection = tmp_path / "empty-folder"
        collection.mkdir()
    elif case == "missing prompts":
        extra = ["--prompts", tmp_path / "absent.txt"]
    elif case == "empty prompts":
        extra = ["--prompts", prompts_file(tmp_path, "")]
    elif case == "comment-only prompts":
        extra = ["--prompts", prompts_file(tmp_path, "# nothing\n\n")]
    elif case == "too long prompt":
        extra = ["--prompts", prompts_file(tmp_path, "fine\n" + "y" * (MAX_PROMPT_CHARS + 5) + "\n")]
    elif case == "k zero":
        extra = ["-k", "0"]
    elif case == "k too big":
        extra = ["-k", str(MAX_K + 1)]
    elif case == "missing text model":
        extra = ["--text-model", tmp_path / "no-such-model"]
    elif case == "out is a file":
        out.write_text("notes")
    elif case == "out holds other things":
        out.mkdir()
        (out / "thesis.docx").write_text("years of work")
    elif case == "missing blocklist":
        extra = ["--blocklist", tmp_path / "absent-blocklist.txt"]
    elif case == "missing hidden list":
        extra = ["--hidden", tmp_path / "absent-hidden.txt"]
    elif case == "bad threshold":
        monkeypatch.setenv("IMAGESEARCH_CONCEPT_THRESHOLD", "high")
        extra = ["--concepts", prompts_file(tmp_path, "a concept\n")]
    code, stdout, err = run(capsys, collection, "--out", out, *extra)
    assert code == 1
    assert stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    if case == "out holds other things":
        assert (out / "thesis.docx").read_text() == "years of work"
    elif case == "out is a file":
        assert out.read_text() == "notes"
    else:
        assert not out.exists()


def test_prompts_in_another_language_through_an_aligned_text_model(
        capsys: pytest.CaptureFixture, collection_dir: Path, tiny_text_model: Path, tmp_path: Path) -> None:
    """--text-model encodes the prompts (the overview names it); the hits are that model's search."""
    from search_core.search import SearchService

    out = tmp_path / "report"
    texts = ["ein Dampfschiff im Sturm", "une cathédrale"]
    code, stdout, err = run(capsys, collection_dir, "--out", out, "--prompts", prompts_file(tmp_path, "\n".join(texts)),
                            "-k", "4", "--text-model", tiny_text_model)
    assert code == 0 and stdout.strip() == str(out / "index.html"), err
    page = parse(out / "index.html")
    assert f"Prompts encoded by {tiny_text_model}" in page.find_id("overview").text
    service = SearchService.open(collection_dir, device="cpu", text_model=str(tiny_text_model))
    shown = {a.find_all("span", "q")[0].text: [int(t.attrs["data-row"]) for t in a.find_all("li", "tile")]
             for a in page.find_all("article", "probe")}
    for text, vector in zip(texts, service.encode_text(texts)):
        assert shown[text] == [h.row for h in service.search_vector(vector, k=4).hits]


def test_a_misaligned_text_model_is_refused(capsys: pytest.CaptureFixture, collection_dir: Path,
                                            misaligned_text_model: Path, tmp_path: Path) -> None:
    code, stdout, err = run(capsys, collection_dir, "--out", tmp_path / "report", "--prompts",
                            prompts_file(tmp_path), "--text-model", misaligned_text_model)
    assert code == 1 and stdout == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "does not encode into" in err
    assert not (tmp_path / "report").exists()


def test_a_real_process_gives_no_traceback(tmp_path: Path) -> None:
    """The installed entry point on a missing collection: one line on stderr, exit 1."""
    proc = subprocess.run([sys.executable, "-m", "scripts.cli", "review", str(tmp_path / "missing"), "--out",
                           str(tmp_path / "r")], check=False, capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: No collection at") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_documents_the_prompts_convention(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["review", "--help"])
    out = capsys.readouterr().out
    for option in ("--out", "--prompts", "+FILE", "--blocklist", "--concepts", "--hidden", "--text-model", "-k"):
        assert option in out
