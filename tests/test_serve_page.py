"""The demo page at GET / in a real headless browser (Chromium through Selenium).

Runs with `pytest -m browser` (CI installs Debian's chromium and chromium-driver);
it needs both, and fails rather than skips without them.
"""

import re

import numpy as np
import pytest
from PIL import Image

from jaxlearn.evaluation import evaluate
from jaxlearn.runs import inference
from tests.test_serve import Server

pytestmark = pytest.mark.browser


@pytest.fixture
def browser():
  from selenium import webdriver  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
  options = webdriver.ChromeOptions()
  options.binary_location = "/usr/bin/chromium"
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
  yield driver
  driver.quit()


def _rows(driver, timeout=30):
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=import-outside-toplevel
  WebDriverWait(driver, timeout).until(
      lambda d: d.find_elements("css selector", "tr.prediction"))
  return [(r.find_element("css selector", ".name").text,
           float(r.find_element("css selector", ".probability").text.rstrip("%")) / 100)
          for r in driver.find_elements("css selector", "tr.prediction")]


def test_draw_a_digit_or_upload_an_image_and_see_the_probabilities(finished_runs, browser,
                                                                    tmp_path):
  from selenium.webdriver.common.action_chains import ActionChains  # pylint: disable=import-outside-toplevel
  workdir = finished_runs["lenet"]
  server = Server(f"--workdir={workdir}")
  try:
    browser.get(server.url + "/")
    assert "lenet5" in browser.find_element("id", "name").text
    pad = browser.find_element("id", "pad")
    ActionChains(browser).move_to_element_with_offset(pad, -60, -80).click_and_hold() \
        .move_by_offset(120, 0).move_by_offset(-60, 160).release().perform()  # A "7".
    browser.find_element("id", "predict").click()
    drawn = _rows(browser)
    assert len(drawn) == 5 and all(re.fullmatch(r"\d", name) for name, _ in drawn)
    probabilities = [p for _, p in drawn]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001

    predictor = inference.load_predictor(workdir)
    _, stored, _ = evaluate.split_inputs(predictor.run, "test")
    Image.fromarray(stored[5, ..., 0]).save(tmp_path / "digit.png")
    expected = predictor.predict_stored(stored[5:6])[0]
    browser.execute_script("document.querySelector('#result tbody').innerHTML = ''")
    browser.find_element("id", "file").send_keys(str(tmp_path / "digit.png"))
    uploaded = _rows(browser)
    assert [name for name, _ in uploaded] == [str(c) for c in np.argsort(-expected)[:5]]
    assert uploaded[0][1] == pytest.approx(expected.max(), abs=5e-5)  # Shown to 0.01%.
  finally:
    server.stop()
