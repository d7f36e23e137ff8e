"""The web page of `img2num serve` in headless Chromium: the run's description and test metrics,
predictions with intervals beside thumbnails, rounding, keyboard and screen-reader access, and a
layout without overlaps at phone (390 px) and desktop (1280 px) widths, with screenshots of both."""

from __future__ import annotations

import numpy as np

from conftest import chromium, needs
from test_serve import TIMEOUT, cli_predictions, photos, server  # noqa: F401 (photos, server: fixtures)


def as_number(text: str) -> float:
    """A number as the page shows it (en-US: 12,350.5) as a float."""
    return float(text.replace(",", ""))


def significant_digits(text: str) -> int:
    return len(text.replace(",", "").replace(".", "").lstrip("-0"))


def rectangle(driver, element_id: str) -> dict:
    return driver.execute_script(f"const r = document.getElementById('{element_id}').getBoundingClientRect(); "
                                 "return {left: r.left, top: r.top, right: r.right, bottom: r.bottom};")


def overlap(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


@needs("chromium", "selenium")
def test_web_page_in_headless_chromium(server, image_run, photos, capsys, tmp_path):
    import base64

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions", "--lang=en-US"):
        options.add_argument(flag)
    # With the driver's path given, Selenium Manager (which would look for one online) never runs.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.set_page_load_timeout(TIMEOUT)
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
        driver.get(server + "/")
        wait = WebDriverWait(driver, TIMEOUT)
        wait.until(lambda d: "model mlp" in d.find_element(By.ID, "about").text)
        # The run's test metrics, each to 4 significant digits.
        stats = driver.find_elements(By.CSS_SELECTOR, "#metrics div")
        shown = {item.find_element(By.TAG_NAME, "dt").text: item.find_element(By.TAG_NAME, "dd").text for item in stats}
        test = image_run.metrics["test"]
        assert driver.find_element(By.ID, "metrics-title").text == "Test metrics" and set(shown) == {"R²", "MAE", "RMSE"}
        for label, key in (("R²", "r2"), ("MAE", "mae"), ("RMSE", "rmse")):
            assert as_number(shown[label]) == float(f"{test[key]:.4g}") and significant_digits(shown[label]) <= 4, shown
        assert "80%, from 8 calibration images" in driver.find_element(By.ID, "facts").text
        # Keyboard: the drop zone is the first stop of Tab, a button that Enter and Space open the picker with.
        drop = driver.find_element(By.ID, "drop")
        assert drop.aria_role == "button" and drop.accessible_name.startswith("Choose images or drop them here")
        driver.execute_script("window.picks = 0; document.getElementById('files').addEventListener('click', "
                              "(event) => { window.picks += 1; event.preventDefault(); });")
        ActionChains(driver).send_keys(Keys.TAB).perform()
        assert driver.switch_to.active_element.get_attribute("id") == "drop"
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        ActionChains(driver).send_keys(Keys.SPACE).perform()
        assert driver.execute_script("return window.picks") == 2
        status = driver.find_element(By.ID, "status")
        assert (status.get_attribute("role"), status.get_attribute("aria-live")) == ("status", "polite")
        # Predictions with their intervals, rounded, beside thumbnails.
        chosen = [photos[3], photos[6]]
        driver.find_element(By.ID, "files").send_keys("\n".join(str(path) for path in chosen))
        wait.until(lambda d: "2 images predicted." in d.find_element(By.ID, "status").text)
        expected = cli_predictions(capsys, image_run, chosen)
        _, lower, upper = image_run.interval(np.array([expected[path.name] for path in chosen]), 0.8)
        cards = driver.find_elements(By.CSS_SELECTOR, "#cards .card")
        assert [card.find_element(By.CLASS_NAME, "file").text for card in cards] == [path.name for path in chosen]
        for card, path, low, high in zip(cards, chosen, lower, upper):
            value = card.find_element(By.CLASS_NAME, "prediction")
            number, units = value.text.split()
            assert units == "tenths" and float(value.get_attribute("data-value")) == expected[path.name]
            assert as_number(number) == float(f"{expected[path.name]:.4g}") and significant_digits(number) <= 4
            words = card.find_element(By.CLASS_NAME, "interval").text.split()
            assert words[:2] == ["80%", "interval"] and words[3] == "to"
            assert (as_number(words[2]), as_number(words[4])) == (float(f"{low:.4g}"), float(f"{high:.4g}"))
            thumb = card.find_element(By.CSS_SELECTOR, "img.thumb")
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb) == 12
        # A clean layout at phone and desktop widths: nothing overlaps, nothing runs off the side.
        for width in (390, 1280):
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600})
            boxes = {name: rectangle(driver, name) for name in ("about", "drop", "status", "metrics", "cards")}
            for a, b in [("about", "drop"), ("about", "status"), ("drop", "status"), ("drop", "metrics"), ("status", "cards")]:
                assert not overlap(boxes[a], boxes[b]), (width, a, b, boxes)
            assert all(box["right"] - box["left"] > 0 and box["bottom"] - box["top"] > 0 for box in boxes.values())
            assert driver.execute_script("return document.documentElement.scrollWidth") <= width
            side_by_side = boxes["metrics"]["right"] <= boxes["drop"]["left"]
            assert side_by_side == (width == 1280), (width, boxes)
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
            (tmp_path / f"page-{width}.png").write_bytes(base64.b64decode(shot["data"]))
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        # The CSV keeps every digit.
        driver.find_element(By.ID, "download").click()
        csv = tmp_path / "predictions.csv"
        wait.until(lambda d: csv.exists() and csv.read_text().count("\n") == 3)
        lines = csv.read_text().splitlines()
        assert lines[0] == "file,prediction,lower,upper,error"
        assert {line.split(",")[0]: float(line.split(",")[1]) for line in lines[1:]} == expected
    finally:
        driver.quit()
