"""The report in a real browser: headless Debian Chromium through Selenium and chromium-driver.

Every image loads, the contents links land on their sections, the console stays clean, the
keyboard reaches the page, and screenshots at desktop and phone width are not blank. The
screenshots are kept in test-artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.browser import DESKTOP, PHONE, chromium, find_browser, pixel_spread, set_viewport
from tests.review.conftest import WrittenReport

pytestmark = pytest.mark.skipif(
    find_browser() is None,
    reason="no /usr/bin/chromium + /usr/bin/chromedriver: `make test` installs Debian's chromium and "
           "chromium-driver with apt-get, which was not possible here")

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
MIN_SPREAD = 20.0       # greyscale standard deviation; a blank page is ~0, this report ~60+


@pytest.fixture(scope="module")
def browser():
    with chromium(*DESKTOP) as driver:
        yield driver


def load(driver, report: WrittenReport, size: tuple[int, int] = DESKTOP):
    set_viewport(driver, *size)
    driver.get(report.index.as_uri())
    driver.get_log("browser")      # start each page with an empty log
    return driver


def save(png: bytes, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_bytes(png)
    return path


def test_every_image_loads(browser, written_report: WrittenReport) -> None:
    """Lazy images are made eager so each is fetched; each decodes to a non-empty picture."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver = load(browser, written_report)
    lazy = driver.execute_script("return document.querySelectorAll('img[loading=lazy]').length")
    total = driver.execute_script("return document.images.length")
    assert total > 500 and lazy > total * 0.9
    driver.execute_script("for (const img of document.images) img.loading = 'eager';")
    WebDriverWait(driver, 120).until(
        lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"))
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute('src'))")
    assert broken == []
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_contents_links_land_on_their_sections(browser, written_report: WrittenReport) -> None:
    """Clicking each contents link scrolls its section to the top (or the page to its end)."""
    from selenium.webdriver.common.by import By

    driver = load(browser, written_report)
    links = driver.find_elements(By.CSS_SELECTOR, "#contents a")
    assert len(links) > 90
    for link in links:
        target = link.get_attribute("href").split("#", 1)[1]
        link.click()
        top, scrolled, max_scroll, hash_ = driver.execute_script(
            "const el = document.getElementById(arguments[0]);"
            "return [el.getBoundingClientRect().top, window.scrollY,"
            " document.documentElement.scrollHeight - window.innerHeight, location.hash];", target)
        assert hash_ == f"#{target}"
        assert abs(top) <= 2 or (top > 0 and scrolled >= max_scroll - 2), (target, top)
        driver.execute_script("window.scrollTo(0, 0)")
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_keyboard_reaches_the_skip_link_and_the_contents(browser, written_report: WrittenReport) -> None:
    """Tab shows the skip link with a focus outline; Enter moves focus to the contents."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver = load(browser, written_report)
    ActionChains(driver).send_keys(Keys.TAB).perform()
    active = driver.switch_to.active_element
    assert "skip" in active.get_attribute("class")
    assert driver.execute_script("const r = arguments[0].getBoundingClientRect(); return r.left >= 0 && r.top >= 0",
                                 active)
    assert driver.execute_script("return getComputedStyle(arguments[0]).outlineStyle", active) != "none"
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    assert driver.execute_script("return location.hash") == "#contents"
    ActionChains(driver).send_keys(Keys.TAB).perform()
    assert driver.execute_script("return document.activeElement.closest('#contents') !== null")


def test_screenshots_at_desktop_and_phone_width_are_not_blank(browser, written_report: WrittenReport) -> None:
    """The top of the page and the sensitive probes at 1280 px and 390 px; no sideways scrolling on a phone."""
    for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        driver = load(browser, written_report, size)
        top = driver.get_screenshot_as_png()
        assert pixel_spread(top) > MIN_SPREAD, name
        save(top, f"review-{name}-top.png")
        driver.execute_script("for (const img of document.images) img.loading = 'eager';"
                              "document.getElementById('part-2').scrollIntoView();")
        driver.execute_script("return new Promise(done => Promise.all(Array.from(document.images)"
                              ".map(i => i.decode().catch(() => null))).then(done))")
        sheet = driver.get_screenshot_as_png()
        assert pixel_spread(sheet) > MIN_SPREAD, name
        save(sheet, f"review-{name}-sensitive.png")
        width, inner = driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width <= inner, f"{name}: the page scrolls sideways ({width} > {inner})"
    columns = driver.execute_script(
        "return getComputedStyle(document.querySelector('.sheet')).gridTemplateColumns.split(' ').length")
    assert columns == 2
