"""The ranking page in real headless Chromium (Selenium): sign in, rank with mouse and keyboard,
flag, submit, and check what the database stored; untrusted text must render as literal text."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from rlhfkit.feedback.app import create_app

from .helpers import running_server

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} not installed (apt-get install chromium chromium-driver)")

NASTY = ["<script>window.__xss = 1</script>", "<b>x</b>", '<img src=x onerror="window.__xss = 2">', "plain"]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rlhfkit-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1200,900"]:
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, cond, timeout=10):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(cond)


def test_rank_an_item_in_the_browser_and_untrusted_text_stays_text(browser, store):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with store.transaction() as c:
        store.add_item(c, "Is <i>this</i> safe?", NASTY, "harmful")
        store.add_item(c, "second prompt", ["a", "b"], "math")
    _, token = store.create_annotator("alice")
    with running_server(create_app(store, redundancy=1)) as url:
        browser.get(url + "/")
        browser.find_element(By.ID, "token").send_keys(token)
        browser.find_element(By.ID, "login-btn").click()
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cards .card")) == 4)

        # Untrusted text: shown literally, no elements created from it, no script ran.
        assert browser.find_element(By.ID, "prompt").text == "Is <i>this</i> safe?"
        shown = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#cards .response-text")]
        assert sorted(shown) == sorted(NASTY)
        injected = "return document.querySelectorAll('#cards b, #cards script, #cards img, #prompt i').length"
        assert browser.execute_script(injected) == 0
        assert browser.execute_script("return window.__xss === undefined")

        # Rank: mouse on display position 1, keys 3 and 1, then 4 / Backspace / 4; flag position 0;
        # then drag position 3 from last to first.
        browser.find_element(By.CSS_SELECTOR, '.card[data-pos="1"] .response-text').click()
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("3", "1", "4", Keys.BACKSPACE)
        assert browser.find_element(By.ID, "submit").get_attribute("disabled") is not None
        body.send_keys("4")
        browser.find_element(By.CSS_SELECTOR, '.card[data-pos="0"] input[data-flag="harmful"]').click()
        badges = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#cards .badge")]
        assert badges == ["#3", "#1", "#2", "#4"]
        # Drag the last chip to the front (HTML5 drag events, dispatched as the browser would).
        browser.execute_script("""
            const chips = document.querySelectorAll('#order .chip'), dt = new DataTransfer();
            chips[3].dispatchEvent(new DragEvent('dragstart', {dataTransfer: dt, bubbles: true}));
            chips[0].dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));""")
        badges = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#cards .badge")]
        assert badges == ["#4", "#2", "#3", "#1"]
        browser.find_element(By.ID, "submit").click()
        _wait(browser, lambda d: d.find_element(By.ID, "prompt").text == "second prompt")
        assert browser.execute_script("return window.__xss === undefined")

    row = store.ranking_rows()[0]
    d = row["display_order"]
    assert [NASTY[c] for c in d] == shown  # the page showed candidates in the recorded display order
    assert row["ranking"] == [d[3], d[1], d[2], d[0]]
    assert row["flags"] == {str(d[0]): ["harmful"]}
    assert row["annotator"] == "alice" and row["time_ms"] > 0


def test_admin_page_creates_an_annotator_and_shows_names_as_text(browser, store):
    from selenium.webdriver.common.by import By

    _, admin = store.create_annotator("admin", is_admin=True)
    with running_server(create_app(store, redundancy=1)) as url:
        browser.get(url + "/admin")
        browser.execute_script("sessionStorage.clear()")
        browser.get(url + "/admin")
        browser.find_element(By.ID, "token").send_keys(admin)
        browser.find_element(By.ID, "login-btn").click()
        _wait(browser, lambda d: d.find_element(By.ID, "admin-view").is_displayed())
        browser.find_element(By.ID, "new-name").send_keys("<img src=x onerror=window.__xss=3>")
        browser.find_element(By.CSS_SELECTOR, "#new-form button").click()
        _wait(browser, lambda d: d.find_element(By.ID, "new-token").text != "")
        token = browser.find_element(By.ID, "new-token").text
        assert store.authenticate(token).name == "<img src=x onerror=window.__xss=3>"
        _wait(browser, lambda d: "onerror" in d.find_element(By.ID, "annotators").text)
        assert browser.execute_script("return document.querySelectorAll('#annotators img').length") == 0
        assert browser.execute_script("return window.__xss === undefined")
