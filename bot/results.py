"""The blocking half of answering a search: query -> page of hits -> contact sheet bytes.

Everything here runs in the bot's worker thread (`ImageBot.run_blocking`), never on the event
loop: FAISS, reading collection images and encoding the sheet all take real CPU time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from search_core.errors import QueryError
from search_core.ordering import ORDER_RELEVANCE, describe_order

if TYPE_CHECKING:
    from search_core.search import SearchPage, SearchService

# Stay a little under the interaction's upload limit: the multipart request carries the JSON too.
UPLOAD_MARGIN = 0.95
SHEET_COLUMNS = 3
SHEET_THUMB = 256


@dataclass(frozen=True)
class Query:
    """What a result message was asked, kept by its pager so later pages repeat the same search.

    One of `vector` (a prompt, an expression and/or an image, already encoded), `row` (more like
    that collection image) or `book_id` (that book's illustrations in page order) is set; the
    filters, the order and the page size carry over to every page. `group_row` lists the
    near-identical images grouped with that row instead, ranked by `vector` when there is one.
    `text_query`: the vector is a prompt's alone, so the page says whether it is a weak match.
    `collection` and `version` name the edition it was asked of (bot/library.py): a later page of
    a collection rebuilt since is refused, not searched in the new build.
    """

    label: str
    k: int
    collection: str
    version: str
    vector: np.ndarray | None = None
    row: int | None = None
    book_id: str | None = None
    year_from: int | None = None
    year_to: int | None = None
    group_row: int | None = None
    text_query: bool = False
    order: str = ORDER_RELEVANCE

    def fetch(self, service: SearchService, offset: int) -> SearchPage:
        if self.group_row is not None:
            return service.expand_group(self.group_row, self.vector, k=self.k, offset=offset,
                                        year_from=self.year_from, year_to=self.year_to)
        if self.book_id is not None:
            return service.book_page(self.book_id, k=self.k, offset=offset)
        if self.row is not None:
            return service.more_like_this(self.row, k=self.k, offset=offset, year_from=self.year_from,
                                          year_to=self.year_to, order=self.order)
        if self.vector is None:
            raise QueryError("Give a prompt, an image, or both.")
        return service.search_page(self.vector, k=self.k, offset=offset, order=self.order,
                                   year_from=self.year_from, year_to=self.year_to, text_query=self.text_query)


@dataclass(frozen=True)
class RenderedPage:
    page: SearchPage
    sheet: bytes | None     # None when the page has no hits, or no file may be attached (views.draw_page)
    extension: str          # "png" or "jpg" (search_core.sheet.encode_image)

    @property
    def filename(self) -> str:
        return f"results.{self.extension}"


def render_page(service: SearchService, query: Query, offset: int, max_upload_bytes: int) -> RenderedPage:
    """Search one page and draw its contact sheet, encoded to fit the upload limit.

    Thumbnails are decoded one at a time at reduced scale (`render_page_sheet`), so a page of 25
    large scans costs one scan's decode, and a hit whose image cannot be read is a placeholder.
    """
    from search_core.sheet import encode_image, render_page_sheet, with_title

    page = query.fetch(service, offset)
    if not page.hits:
        return RenderedPage(page=page, sheet=None, extension="png")
    sheet = render_page_sheet(service.collection, page.hits, columns=SHEET_COLUMNS, thumb=SHEET_THUMB)
    order = describe_order(page)
    if order:       # the sheet says which order is in force, as the message does
        sheet = with_title(sheet, order[0].upper() + order[1:])
    data, extension = encode_image(sheet, max_bytes=int(max_upload_bytes * UPLOAD_MARGIN))
    return RenderedPage(page=page, sheet=data, extension=extension)
