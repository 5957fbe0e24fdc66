"""Is a collection on disk still what its build wrote? Checksums, structure, and the index itself.

`verify_collection` checks, and reports every problem it finds (not only the first):
1. manifest.json reads, and its content matches its own checksum (layout.manifest_digest), so an
   edited field (rows, model, a checksum) is caught;
2. every file the manifest lists exists and has its sha256 (streamed in 1 MiB blocks: a million
   images are tens of GB);
3. the collection opens (dataset rows, embeddings shape, index size and dimension agree with the
   manifest: Collection.open's checks), tried only when every file matched (so damaged index
   bytes are never parsed);
4. the index matches the embeddings on a sample of rows: each sampled embedding, searched through
   the index, finds its own row with the score it has against itself, and is unit length;
5. a collection that references its images (``--images reference``): every referenced file is
   there, with the size it had when it was embedded (files.arrow). URLs are not fetched. One
   stat a row: ~2 s for a million files in the page cache. Not in quick mode: a missing file
   costs one placeholder, not the collection.

``quick=True`` (what the bot runs at every start) skips hashing the dataset's Arrow files, the
image bytes that are nearly all of a collection's size, and hashes the rest in full: manifest,
dataset metadata, embeddings and index: 2.5 GB for a million rows, measured 4.4 s in the page
cache and 7.1 s from disk on a busy 2-core machine (BENCHMARKS.md). The Arrow files are still
opened and counted by step 3.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import Any

import numpy as np

from search_core import layout
from search_core.errors import CollectionError

BLOCK = 1 << 20
SAMPLE_ROWS = 256
# How far the index's score of a row against itself may be from the exact one: float rounding
# for an exact index; SQ8 codes measured within 0.01 (HNSW/IVF over SQ8), so 0.05 is a fault.
EXACT_SCORE_TOLERANCE = 1e-3
APPROXIMATE_SCORE_TOLERANCE = 0.05
# An approximate index may miss a row now and then; more than this share of the sample is a fault.
APPROXIMATE_MISSES_ALLOWED = 0.01
UNIT_NORM_TOLERANCE = 1e-2
MISSING_LISTED = 20        # missing referenced files named in the report (the count is exact)
MISSING_SHOWN = 3          # of those, named in the problem line


@dataclass(frozen=True)
class Problem:
    """One thing wrong, and the file it is wrong in (a path inside the collection)."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class VerifyReport:
    path: Path
    problems: list[Problem] = field(default_factory=list)
    rows: int | None = None
    files_hashed: list[str] = field(default_factory=list)
    bytes_hashed: int = 0
    files_not_hashed: list[str] = field(default_factory=list)   # quick mode: the image Arrow files
    sampled_rows: int = 0
    image_root: str | None = None          # a referenced collection's image folder, as found
    references_checked: int = 0            # referenced local files looked for
    missing_images: list[str] = field(default_factory=list)    # references not found (first MISSING_LISTED)
    missing_count: int = 0
    changed_count: int = 0                 # found, but another size than when embedded

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, file: str, message: str) -> None:
        self.problems.append(Problem(file, message))

    def to_dict(self) -> dict[str, Any]:
        return {"collection": str(self.path), "ok": self.ok,
                "problems": [{"file": p.file, "problem": p.message} for p in self.problems],
                "rows": self.rows, "files_hashed": self.files_hashed, "bytes_hashed": self.bytes_hashed,
                "files_not_hashed": self.files_not_hashed, "sampled_rows": self.sampled_rows,
                "image_root": self.image_root, "references_checked": self.references_checked,
                "missing_images": self.missing_count, "missing_images_first": self.missing_images,
                "changed_images": self.changed_count}


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """sha256 hex of a file, read in blocks (memory stays flat whatever its size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return digest.hexdigest()


def file_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder but manifest.json, keyed by its posix path inside folder."""
    folder = Path(folder)
    return {path.relative_to(folder).as_posix(): sha256_file(path)
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != layout.MANIFEST}


def is_bulk(name: str) -> bool:
    """The dataset's Arrow files: the image bytes, nearly all of a collection's size."""
    return name.startswith(f"{layout.DATASET_DIR}/") and name.endswith(".arrow")


def verify_collection(path: str | Path, *, quick: bool = False, sample: int = SAMPLE_ROWS,
                      progress: bool = False, image_roots: list[Path] | None = None) -> VerifyReport:
    """Check a collection against its manifest and its index against its embeddings.

    Never raises for a broken collection: every fault is a Problem in the report.
    progress: a bar of bytes hashed on stderr. image_roots: as Collection.open's.
    """
    report = VerifyReport(Path(path))
    folder = report.path
    if not folder.is_dir():
        report.add(".", "the collection folder does not exist")
        return report
    manifest = _check_manifest(folder, report)
    if manifest is None:
        return report
    report.rows = manifest.rows
    if not _check_files(folder, manifest, report, quick=quick, progress=progress):
        # Opening would only say again that a file is missing, and parsing damaged index bytes
        # is what this check exists to prevent (FAISS trusts the sizes its file declares).
        return report
    from search_core.collection import Collection

    try:
        collection = Collection.open(folder, image_roots=image_roots)
    except CollectionError as exc:
        report.add(".", " ".join(str(exc).split()))
        return report
    _check_index_sample(collection, report, sample)
    if not quick and collection.references_images:
        _check_references(collection, report)
    return report


def _check_manifest(folder: Path, report: VerifyReport) -> layout.Manifest | None:
    file = folder / layout.MANIFEST
    if not file.is_file():
        report.add(layout.MANIFEST, "is missing: this folder is not a collection")
        return None
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        report.add(layout.MANIFEST, f"cannot be read: {exc}")
        return None
    if not isinstance(raw, dict):
        report.add(layout.MANIFEST, "cannot be read: it is not a JSON object")
        return None
    if raw.get("format_version") != layout.FORMAT_VERSION:
        report.add(layout.MANIFEST, f"has format version {raw.get('format_version')!r}; this program checks "
                                    f"version {layout.FORMAT_VERSION}")
        return None
    try:
        manifest = layout.Manifest.from_dict(raw)
    except (TypeError, KeyError, ValueError) as exc:
        report.add(layout.MANIFEST, f"is incomplete or malformed: {exc}")
        return None
    checksums = raw.get("checksums")
    own = checksums.get(layout.MANIFEST) if isinstance(checksums, dict) else None
    if own is not None and own != layout.manifest_digest(raw):
        report.add(layout.MANIFEST, "was edited after the build: its content does not match its own checksum")
    if not [name for name in manifest.checksums if name != layout.MANIFEST]:
        report.add(layout.MANIFEST, "lists no file checksums, so the files cannot be checked; rebuild the collection")
    return manifest


def _check_files(folder: Path, manifest: layout.Manifest, report: VerifyReport, *, quick: bool,
                 progress: bool) -> bool:
    """Hash the listed files; True when every one is present and matches."""
    todo: list[tuple[str, Path, str]] = []
    intact = True
    for name, expected in sorted(manifest.checksums.items()):
        if name == layout.MANIFEST:
            continue
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            report.add(layout.MANIFEST, f"lists {name!r}, which is not a path inside the collection")
            continue
        file = folder / relative
        if not file.is_file():
            report.add(name, "is missing")
            intact = False
        elif quick and is_bulk(name):
            report.files_not_hashed.append(name)
        else:
            todo.append((name, file, expected))

    from tqdm import tqdm

    total = sum(file.stat().st_size for _, file, _ in todo)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="verify", file=sys.stderr,
              disable=not (progress and sys.stderr.isatty()), dynamic_ncols=True) as bar:
        for name, file, expected in todo:
            try:
                actual = sha256_file(file, bar.update)
            except OSError as exc:
                report.add(name, f"cannot be read: {exc.strerror or type(exc).__name__}")
                intact = False
                continue
            report.files_hashed.append(name)
            report.bytes_hashed += file.stat().st_size
            if actual != expected:
                report.add(name, f"does not match its checksum in {layout.MANIFEST} (changed or damaged since "
                                 "the build)")
                intact = False
    return intact


def _self_scores(index: Any, vectors: np.ndarray) -> np.ndarray:
    """Each vector's inner product with itself as the index scores it: after the index's own
    transform (a scaled rotation or projection, scripts/indexing.py), else as it is."""
    import faiss

    transform = faiss.downcast_index(index)
    if isinstance(transform, faiss.IndexPreTransform):
        for i in range(transform.chain.size()):
            vectors = faiss.downcast_VectorTransform(transform.chain.at(i)).apply(np.ascontiguousarray(vectors))
    return np.einsum("ij,ij->i", vectors, vectors)


def _check_index_sample(collection: Any, report: VerifyReport, sample: int) -> None:
    """Sampled rows searched through the index must find themselves, scoring as against themselves."""
    from search_core.rerank import candidate_count, is_exact

    n = collection.rows
    if n == 0 or sample <= 0:
        return
    rows = np.sort(np.random.default_rng(0).choice(n, size=min(n, sample), replace=False))
    vectors = np.asarray(collection.embeddings[rows], dtype=np.float32)
    report.sampled_rows = len(rows)

    norms = np.linalg.norm(vectors, axis=1)
    off = np.flatnonzero(np.abs(norms - 1) > UNIT_NORM_TOLERANCE)
    if off.size:
        report.add(layout.EMBEDDINGS, f"{off.size} of {len(rows)} sampled rows are not unit length "
                                      f"(row {rows[off[0]]}: {norms[off[0]]:.3f})")

    exact = is_exact(collection.index)
    k = min(n, 10 if exact else candidate_count(10))
    scores, ids = collection.index.search(vectors, k)
    own = _self_scores(collection.index, vectors)
    # Relative to the row's own score: an index whose leading transform scales vectors into int8
    # range scores in units of that scale squared.
    tolerance = (EXACT_SCORE_TOLERANCE if exact else APPROXIMATE_SCORE_TOLERANCE) * np.maximum(own, 1e-6)
    at = ids == rows[:, None]
    found = at.any(axis=1)
    # A row with more identical copies than k may be crowded out by its twins: tied at the last
    # place with its own score, it is not a fault.
    crowded = ~found & (scores[:, -1] >= own - tolerance)
    missed = np.flatnonzero(~found & ~crowded)
    allowed = 0 if exact else int(APPROXIMATE_MISSES_ALLOWED * len(rows))
    if missed.size > allowed:
        report.add(layout.INDEX, f"{missed.size} of {len(rows)} sampled rows of {layout.EMBEDDINGS} do not find "
                                 f"themselves through the index (row {rows[missed[0]]} first); the index does "
                                 "not match the embeddings")
    own_score = np.where(found, np.where(at, scores, -np.inf).max(axis=1), own)
    wrong = np.flatnonzero(found & (np.abs(own_score - own) > tolerance))
    if wrong.size:
        r = wrong[0]
        report.add(layout.INDEX, f"{wrong.size} of {len(rows)} sampled rows score against themselves "
                                 f"differently in the index than in {layout.EMBEDDINGS} (row {rows[r]}: "
                                 f"{own_score[r]:.3f} instead of {own[r]:.3f}); the index does not match the "
                                 "embeddings")


def _check_references(collection: Any, report: VerifyReport) -> None:
    """Every referenced local file exists under the image root, with the size it was embedded at."""
    import pyarrow.compute as pc

    from search_core.provenance import read_files
    from search_core.references import UnreadableReference, is_url, local_path

    root = collection.image_root
    report.image_root = None if root is None else str(root)
    images = collection.dataset.data.column("image")
    references = (pc.struct_field(images, "path") if images.type.num_fields else images).to_pylist()
    try:
        files = read_files(collection.path)
    except (OSError, ValueError) as exc:
        report.add(layout.FILES, f"cannot be read: {exc}")
        files = None
    sizes = files.column("size").to_pylist() if files is not None and len(files) == len(references) else None
    missing: list[str] = []
    for row, reference in enumerate(references):
        if reference and is_url(reference):
            continue
        report.references_checked += 1
        try:
            if not reference:
                raise UnreadableReference("no reference")
            stat = local_path(root, reference).stat()
            if not S_ISREG(stat.st_mode):
                raise UnreadableReference("not a file")
        except (OSError, UnreadableReference):
            report.missing_count += 1
            if len(missing) < MISSING_LISTED:
                missing.append(reference or f"(row {row}: no reference)")
            continue
        if sizes is not None and sizes[row] is not None and stat.st_size != sizes[row]:
            report.changed_count += 1
    report.missing_images = missing
    where = f"under {root}" if root is not None else "(the collection records no image folder)"
    if report.missing_count:
        more = report.missing_count - MISSING_SHOWN
        names = ", ".join(missing[:MISSING_SHOWN]) + (f" and {more:,} more" if more > 0 else "")
        report.add("images", f"{report.missing_count:,} of {report.references_checked:,} referenced image files are "
                             f"missing {where}: {names}; if they moved, set IMAGESEARCH_IMAGE_ROOT (or "
                             "--image-root) to their folder, or build again from where they are now")
    if report.changed_count:
        report.add("images", f"{report.changed_count:,} referenced image files changed size since they were "
                             "embedded: their vectors describe the old pictures; run `imagesearch build` again "
                             "(it re-embeds only changed files)")
