"""The dashboard in a real headless Chromium (Debian's), driven by Playwright's sync API.

One operator session end to end: log in, add a backend pointing at a fake upstream, create
a client key and read it from the page, send requests with the openai package, watch the
overview update without a reload, open a request's detail, revoke the key and see the next
request refused. Screenshots of every page go to test-artifacts/ (light, and dark for the overview).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.fakes import FakeUpstream
from tests.servers import ADMIN_TOKEN, GatewayServer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (scripts/ensure-chromium installs it)"
    ),
]

if CHROMIUM.exists():
    from playwright.sync_api import Browser, Page, expect, sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def card(page: Page, card_id: str) -> object:
    return page.locator(f'[data-card="{card_id}"] [data-part="display"]')


def test_operator_session_end_to_end(
    page: Page, make_gateway: Callable[..., GatewayServer], fake: FakeUpstream
) -> None:
    gateway = make_gateway()
    url = gateway.url

    # Log in.
    page.goto(url + "/")
    expect(page).to_have_url(url + "/login?next=%2F")
    shot(page, "login")
    page.fill("input[name=token]", "wrong-token")
    page.click("button:has-text('Log in')")
    expect(page.locator(".form-error")).to_have_text("Wrong token.")
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(url + "/")
    expect(page.locator("h1")).to_have_text("Overview")
    shot(page, "overview-empty")

    # Add a backend through the form, then test it.
    page.click("nav >> text=Backends")
    form = page.locator("#add form")
    form.locator("input[name=name]").fill("fake-up")
    form.locator("input[name=base_url]").fill(fake.url)
    form.locator("input[name=api_key]").fill("sk-browser-upstream-7788")
    form.locator("textarea[name=models]").fill("gpt-4o-mini\nfast = gpt-4o-mini")
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash")).to_have_text("Backend 'fake-up' added.")
    row = page.locator("#backends tbody tr", has_text="fake-up")
    expect(row).to_contain_text("...7788")
    expect(row).not_to_contain_text("sk-browser-upstream")
    row.locator("button:has-text('Test')").click()
    expect(page.locator(".flash")).to_contain_text("Test of 'fake-up': HTTP 200")
    shot(page, "backends")

    # Create a client key and read it from the page.
    page.click("nav >> text=Keys")
    page.fill("form[action='/keys'] input[name=name]", "browser")
    page.click("button:has-text('Create key')")
    key = page.locator("#new-key").inner_text().strip()
    assert key.startswith("sk-gw-")
    page.click("button[data-copy]")
    expect(page.locator("button[data-copy]")).not_to_have_text("Copy")
    shot(page, "keys-created")

    # Traffic appears on the overview without a reload.
    page.click("nav >> text=Overview")
    expect(card(page, "requests")).to_have_text("0")
    page.evaluate("window.__notReloaded = true")
    client = gateway.client(key)
    for model in ("gpt-4o-mini", "fast"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    for _ in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        pass
    expect(card(page, "requests")).to_have_text("3", timeout=20_000)
    expect(card(page, "tokens")).to_have_text("45")
    expect(card(page, "cost_usd")).not_to_have_text("$0.00")
    expect(page.locator("#live-backends")).to_contain_text("fake-up")
    assert page.evaluate("window.__notReloaded") is True
    assert page.locator("svg[data-chart=hourly] rect title", has_text="3 requests").count() >= 1
    shot(page, "overview")
    page.emulate_media(color_scheme="dark")
    shot(page, "overview-dark")
    page.emulate_media(color_scheme="light")

    # The request log and a request's detail.
    page.click("nav >> text=Requests")
    expect(page.locator("#requests tbody tr")).to_have_count(3)
    shot(page, "requests")
    page.locator("#requests tbody tr a").first.click()
    expect(page.locator("h2", has_text="Attempt chain")).to_be_visible()
    expect(page.locator("#attempts tbody")).to_contain_text("fake-up")
    expect(page.locator("#attempts tbody")).to_contain_text("ok")
    shot(page, "request-detail")

    for name in ("Usage", "Pricing"):
        page.click(f"nav >> text={name}")
        expect(page.locator("h1")).to_have_text(name)
        shot(page, name.lower())
    page.click("nav >> text=Usage")
    expect(page.locator("#usage tbody")).to_contain_text("gpt-4o-mini")
    page.click("#usage thead a:has-text('Requests')")
    expect(page).to_have_url(
        f"{url}/usage?group_by=model&start={page.input_value('input[name=start]')}"
        f"&end={page.input_value('input[name=end]')}&sort=requests&dir=desc"
    )

    # Revoke the key: the next request is refused.
    page.click("nav >> text=Keys")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#keys tbody tr", has_text="browser").locator("button:has-text('Revoke')").click()
    expect(page.locator(".flash")).to_contain_text("Key 'browser' revoked")
    shot(page, "keys-revoked")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert os.listdir(ARTIFACTS)
