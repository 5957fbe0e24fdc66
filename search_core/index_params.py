"""FAISS search parameters for one query: the build's tuned knobs, widened where a search needs more.

One function for search and for the build's recall measurement, so the recall the build records
is the recall search delivers.
- IVF: the manifest's nprobe; a year range holding `share` of the rows probes
  (1/share)^FILTER_PROBE_EXPONENT times as many lists (from at least MIN_FILTERED_NPROBE). With
  rows added in order, every list's ids ascend and an ``IDSelectorRange(..., assume_sorted=True)``
  scans only the range's stretch of each list, so the cost stays near the unfiltered query's. An HNSW coarse quantizer gets an efSearch of at
  least nprobe: FAISS's HNSW returns k results from a search of width efSearch even when k is
  larger, so a narrower quantizer search silently probes worse lists than nprobe promises.
- HNSW: the manifest's efSearch, raised to the number of candidates fetched, for the same reason:
  a deeper page's candidates must come from a search at least that wide.
"""

from __future__ import annotations

import math
from typing import Any

# A filtered IVF search probes max(nprobe, MIN_FILTERED_NPROBE) / share**FILTER_PROBE_EXPONENT
# lists. At 1M hard rows (nprobe 128 of 4,000), ranges of 10-31% of the rows: exponent 1 (as many
# eligible rows scored as unfiltered) gave recall@10 0.992-1.000 at 1.3-2.1x the unfiltered
# query's time, 0.7 gave 0.984-1.000 at 0.9-1.3x, 0.5 gave 0.972-1.000. The floor is for a
# small tuned nprobe: at 1M easy rows (nprobe 1) a 10% range needed ~160 lists for 0.975.
FILTER_PROBE_EXPONENT = 0.7
MIN_FILTERED_NPROBE = 32


def search_parameters(index: Any, settings: dict[str, Any], fetch: int, selector: Any = None,
                      share: float = 1.0) -> Any:
    """Parameters for ``index.search(query, fetch, params=...)``; None when the defaults do."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        nprobe = int(settings.get("nprobe", ivf.nprobe))
        if share < 1.0:
            nprobe = math.ceil(max(nprobe, MIN_FILTERED_NPROBE) / max(share, 1e-9) ** FILTER_PROBE_EXPONENT)
        nprobe = min(ivf.nlist, nprobe)
        params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        quantizer = faiss.downcast_index(ivf.quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):
            ef = max(int(settings.get("quantizer_efSearch", quantizer.hnsw.efSearch)), nprobe)
            # SWIG stores a raw pointer: the Python object must live as long as params does.
            params.quantizer_keep_alive = faiss.SearchParametersHNSW(efSearch=ef)
            params.quantizer_params = params.quantizer_keep_alive
        return params
    hnsw = faiss.downcast_index(index)
    if isinstance(hnsw, faiss.IndexHNSW):
        ef = max(int(settings.get("efSearch", hnsw.hnsw.efSearch)), fetch)
        return faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
    return faiss.SearchParameters(sel=selector) if selector is not None else None
