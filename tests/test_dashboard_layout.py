"""Every page of the dashboards on a desktop (1280x900) and on a phone (390x844) in real headless Chromium
(item 6 of issue 20): the page is never wider than the screen, every visible text has a contrast of at least
4.5:1 against what is behind it (WCAG 2 relative luminance, from the computed styles), every control has an
accessible name (Chromium's own computation), and a screenshot of each page at each size goes to
``docs/screenshots/`` (``{page}.png`` desktop, ``{page}-phone.png`` phone).

A page route of the app missing from :data:`PAGES` fails :func:`test_every_page_is_in_the_table`.
"""

from __future__ import annotations

import re

import pytest
from selenium.webdriver.common.by import By

from dashboards.app import ROUTERS
from tests.fixtures import browser as fx
from tests.fixtures.browser import DESKTOP, PHONE, live_walk, ready, reset_viewport, save_page, set_viewport, sign_in, wait

site, browser = fx.site, fx.browser

#: screenshot name -> (account, path); ``{sim}`` is pat-a's simulated walk
PAGES = {
    "login": (None, "/login"),
    "therapist-patients": ("ther-1", "/therapist"),
    "therapist-patient": ("ther-1", "/therapist/patients/pat-a"),
    "therapist-session": ("ther-1", "/therapist/sessions/{sim}"),
    "therapist-live": ("ther-1", "/therapist/live/pat-a"),
    "patient-me": ("patient-a", "/me"),
    "researcher-sessions": ("res-1", "/research"),
    "admin-accounts": ("admin-1", "/admin"),
    "api-docs": ("ther-1", "/api/docs"),
    "error-page": ("ther-1", "/therapist/patients/pat-c"),  # another therapist's patient: 404
    "therapist-digest": ("ther-1", "/therapist/digest"),
    "patient-digest": ("ther-1", "/therapist/patients/pat-a/digest"),
}
#: GET routes that are not pages (redirects, probes, JSON)
NOT_PAGES = {"/", "/healthz", "/api/openapi.json"}
#: WCAG 2.x AA for normal text
MIN_CONTRAST = 4.5

#: per visible text element: its colour against the colours behind it (composited up to the canvas, white)
CONTRAST_JS = r"""
function rgba(s) {
  const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null;
  const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
}
function over(top, below) {  // top composited over an opaque colour
  const a = top[3]; return [0, 1, 2].map(i => top[i] * a + below[i] * (1 - a)).concat([1]);
}
function lum(c) {
  const f = v => { v /= 255; return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
}
function background(el) {
  const layers = []; let opacity = 1;
  for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
    const cs = getComputedStyle(e);
    opacity *= Number(cs.opacity);
    const bg = rgba(cs.backgroundColor);
    if (bg && bg[3] > 0) { layers.push(bg); if (bg[3] >= 1) break; }
  }
  let c = [255, 255, 255, 1];
  for (let i = layers.length - 1; i >= 0; i--) c = over(layers[i], c);
  return [c, opacity];
}
const out = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
const seen = new Set();
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const el = n.parentElement;
  if (!n.textContent.trim() || !el || seen.has(el) || el.closest("title, script, style, option, noscript")) continue;
  seen.add(el);
  const cs = getComputedStyle(el), r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || cs.visibility !== "visible") continue;
  const isSvg = el instanceof SVGElement;
  const fg = rgba(isSvg && cs.fill !== "none" ? cs.fill : cs.color);
  const [bg, opacity] = background(el);
  const ink = over([fg[0], fg[1], fg[2], fg[3] * opacity], bg);
  const L1 = lum(ink), L2 = lum(bg);
  const ratio = (Math.max(L1, L2) + 0.05) / (Math.min(L1, L2) + 0.05);
  out.push({text: n.textContent.trim().slice(0, 40), tag: el.tagName, cls: String(el.className.baseVal ?? el.className),
            ratio: Math.round(ratio * 100) / 100, fg: cs.color, bg: "rgb(" + bg.slice(0, 3).join(",") + ")"});
}
return out;
"""

CONTROLS_JS = r"""
return [...document.querySelectorAll("input, select, textarea, button")].filter(e => {
  const r = e.getBoundingClientRect(); return e.type !== "hidden" && r.width > 0 && r.height > 0;
});
"""


def page_routes() -> set[str]:
    """The app's HTML pages: GET routes of its routers left out of the API schema, except :data:`NOT_PAGES`."""
    return {r.path for router in ROUTERS for r in router.routes if "GET" in (getattr(r, "methods", None) or ())
            and not getattr(r, "include_in_schema", True) and r.path not in NOT_PAGES}


def test_every_page_is_in_the_table():
    routes = page_routes()
    assert {"/login", "/therapist", "/therapist/sessions/{session_id}", "/me"} <= routes  # the listing sees pages
    paths = [path for _user, path in PAGES.values()]
    missing = [route for route in routes
               if not any(re.fullmatch(re.sub(r"\{[a-z_]+\}", "[^/]+", route), path) for path in paths)]
    assert not missing, f"pages without a layout check: {sorted(missing)}"


def check_page(browser, name: str, size: tuple[int, int]) -> list[str]:
    """What is wrong with the page that is open now, at ``size``; also saves its screenshot."""
    problems = []
    width = browser.execute_script("return document.documentElement.scrollWidth")
    inner = browser.execute_script("return window.innerWidth")
    if inner != size[0] or width > size[0]:
        problems.append(f"{width} px wide on a {size[0]} px screen (window {inner} px)")
    problems += [f"contrast {t['ratio']}: {t['tag']}.{t['cls']} {t['text']!r} {t['fg']} on {t['bg']}"
                 for t in browser.execute_script(CONTRAST_JS) if t["ratio"] < MIN_CONTRAST]
    problems += [f"control without a name: {c.get_attribute('outerHTML')[:120]}"
                 for c in browser.execute_script(CONTROLS_JS) if not c.accessible_name.strip()]
    save_page(browser, f"{name}.png" if size == DESKTOP else f"{name}-phone.png")
    return problems


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_page_fits_reads_and_names_its_controls(site, browser, size):
    url, sim = site["url"], site["created"]["simulated"]["pat-a"]
    problems: dict[str, list[str]] = {}
    account = "?"
    try:
        set_viewport(browser, size)
        for name, (user, path) in sorted(PAGES.items(), key=lambda kv: str(kv[1][0])):
            if user != account:
                if user is None:
                    browser.delete_all_cookies()
                else:
                    sign_in(browser, url, user)
                account = user
            browser.get(url + path.format(sim=sim))
            if name == "therapist-live":
                with live_walk(site["pub"], "pat-a"):
                    wait(browser, lambda d: d.execute_script("return document.body.dataset.liveSides") == "LR")
                    problems[name] = check_page(browser, name, size)
                browser.get(url + "/therapist")  # closes the event stream
                continue
            if name != "error-page":
                ready(browser)
            problems[name] = check_page(browser, name, size)
    finally:
        reset_viewport(browser)
    assert not {k: v for k, v in problems.items() if v}
    assert len(problems) == len(PAGES)


def test_phone_layout_keeps_wide_content_inside(site, browser):
    """On a phone the stride table and the trend charts stay inside the screen: the table scrolls in its own box."""
    sign_in(browser, site["url"], "ther-1")
    try:
        set_viewport(browser, PHONE)
        browser.get(site["url"] + "/therapist/patients/pat-a")
        ready(browser)
        for svg in browser.find_elements(By.CSS_SELECTOR, "#trends svg.trend"):
            box = svg.rect
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0], svg.get_attribute("data-metric")
        # the overview: one labelled card per patient, nothing to scroll sideways inside the table either
        browser.get(site["url"] + "/therapist")
        ready(browser)
        table = browser.find_element(By.ID, "patients")
        assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", table)
        row = browser.find_element(By.CSS_SELECTOR, "#patients tbody tr[data-patient=pat-a]")
        assert row.rect["width"] <= PHONE[0] and "7 active flags" in row.find_element(By.CSS_SELECTOR, "td.urgency").text
        labels = browser.execute_script(  # each cell says what it is (the header row is hidden on a phone)
            "return [...arguments[0].querySelectorAll('td[data-label]')]"
            ".map(td => getComputedStyle(td, '::before').content)", row)
        assert labels[:2] == ['"Why here: "', '"Active flags: "'] and len(labels) == 7
    finally:
        reset_viewport(browser)
