"""Agent pages in a real Chromium: build an agent through the form, edit, duplicate,
delete with confirmation, and what a viewer may not do."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from agents.models import Agent
from tests.factories import make_agent, make_credential, make_phone_number


def choose(page: Page, label: str, value: str) -> None:
    """Pick an option that redraws part of the form (htmx), and wait for the redraw to
    settle: the new controls only listen for changes once htmx has processed them."""
    with page.expect_response(lambda r: r.request.method == "POST"):
        page.get_by_label(label).select_option(value)
    page.wait_for_function(
        "!document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')"
    )


def test_create_an_agent_through_the_form(page: Page, login_as: Any) -> None:
    member = login_as("member")
    deepgram = make_credential(member.organization, "deepgram")
    page.goto("/agents/")
    page.get_by_role("link", name="Create an agent").click()
    expect(page.get_by_role("heading", name="Create an agent")).to_be_visible()
    page.evaluate("window.__samePage = true")

    page.get_by_label("Name", exact=True).fill("Front desk")
    page.get_by_label("System prompt").fill("You answer the phone for a dental practice.")
    # Choosing a provider redraws its settings in place (htmx), without a reload.
    stt = page.locator("#stage-stt")
    choose(page, "Speech-to-text provider", "pocketsphinx")
    expect(stt.get_by_label("Model")).to_have_count(0)
    expect(stt.get_by_label("Credential")).to_have_count(0)
    choose(page, "Speech-to-text provider", "deepgram")
    expect(stt.get_by_label("Credential")).to_be_visible()
    stt.get_by_label("Credential").select_option(str(deepgram.pk))
    stt.get_by_label("Model").fill("nova-3")
    assert page.evaluate("window.__samePage") is True

    choose(page, "Language model provider", "openai")
    choose(page, "Text-to-speech provider", "espeak")
    page.get_by_label("Temperature").fill("3")
    page.get_by_role("button", name="Create agent").click()

    # The API's own words, in the summary (focused) and beside the field.
    message = "Ensure this value is less than or equal to 2.0."
    summary = page.get_by_role("alert")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text(message)
    expect(page.locator("#id_llm-temperature-error")).to_contain_text(message)
    summary.get_by_role("link").first.click()
    expect(page.get_by_label("Temperature")).to_be_focused()
    expect(page.get_by_label("Name", exact=True)).to_have_value("Front desk")

    page.get_by_label("Temperature").fill("0.3")
    page.get_by_role("button", name="Create agent").click()
    expect(page.locator(".notice[role=status]")).to_contain_text("Agent “Front desk” created.")
    agent = Agent.objects.for_org(member.organization).get(name="Front desk")
    expect(page).to_have_url(re.compile(rf"/agents/{agent.pk}/(#.*)?$"))
    assert agent.llm["temperature"] == 0.3
    assert agent.stt["model"] == "nova-3" and agent.stt_credential == deepgram


def test_edit_duplicate_and_delete(page: Page, login_as: Any) -> None:
    member = login_as("admin")
    agent = make_agent(member.organization, name="Sales")
    number = make_phone_number(member.organization, agent=agent)

    page.goto(f"/agents/{agent.pk}/")
    page.get_by_label("First message", exact=True).fill("Hi, this is Sales.")
    page.get_by_label("Callers can interrupt the agent").uncheck()
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".notice[role=status]")).to_contain_text("saved")
    agent.refresh_from_db()
    assert agent.first_message == "Hi, this is Sales."
    assert agent.interruption["enabled"] is False
    expect(page.get_by_label("Callers can interrupt the agent")).not_to_be_checked()

    page.get_by_role("link", name="Duplicate").click()
    expect(page.get_by_label("Name of the copy")).to_have_value("Copy of Sales")
    page.get_by_role("button", name="Duplicate agent").click()
    expect(page.get_by_role("heading", name="Copy of Sales")).to_be_visible()
    expect(page.get_by_label("First message", exact=True)).to_have_value("Hi, this is Sales.")

    page.goto(f"/agents/{agent.pk}/")
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_role("heading", name="Delete “Sales”?")).to_be_visible()
    expect(page.locator(".routed-numbers")).to_contain_text(number.number)
    page.get_by_role("button", name="Delete agent").click()
    expect(page).to_have_url(re.compile(r"/agents/$"))
    expect(page.locator(".notice[role=status]")).to_contain_text("Agent “Sales” deleted.")
    expect(page.get_by_role("link", name="Copy of Sales")).to_be_visible()
    expect(page.get_by_role("link", name="Sales", exact=True)).to_have_count(0)


def test_a_viewer_reads_but_cannot_change(page: Page, login_as: Any) -> None:
    member = login_as("viewer")
    agent = make_agent(member.organization, name="Read me")
    page.goto("/agents/")
    expect(page.get_by_role("link", name="Read me")).to_be_visible()
    expect(page.get_by_role("link", name="Create an agent")).to_have_count(0)
    page.get_by_role("link", name="Read me").click()
    expect(page.get_by_role("heading", name="Read me")).to_be_visible()
    expect(page.get_by_text("Maximum tokens per reply")).to_be_visible()
    expect(page.locator("main input:not([type=hidden]), main select, main textarea")).to_have_count(
        0
    )
    expect(page.get_by_role("button", name="Save changes")).to_have_count(0)
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)
    response = page.goto(f"/agents/{agent.pk}/delete/")
    assert response is not None and response.status == 403
    response = page.goto("/agents/new/")
    assert response is not None and response.status == 403


def test_credentials_and_numbers_pages(page: Page, login_as: Any) -> None:
    member = login_as("member")
    agent = make_agent(member.organization, name="Reception")
    page.goto("/credentials/new/")
    page.get_by_label("Name").fill("Twilio main")
    choose(page, "Provider", "twilio")
    expect(page.get_by_label("Account SID")).to_be_visible()
    expect(page.get_by_label("API key")).to_have_count(0)
    page.get_by_label("Account SID").fill("AC" + "a" * 32)
    page.get_by_label("Auth token").fill("twilio-auth-token-wxyz")
    page.get_by_role("button", name="Add credential").click()
    expect(page.get_by_role("cell", name="••••wxyz")).to_be_visible()
    expect(page.get_by_text("twilio-auth-token")).to_have_count(0)

    page.goto("/phone-numbers/new/")
    page.get_by_label("Number").fill("4155550100")
    page.get_by_label("Carrier credential").select_option(label="Twilio main (…wxyz)")
    page.get_by_label("Agent").select_option(label="Reception")
    page.get_by_role("button", name="Add phone number").click()
    expect(page.get_by_role("alert")).to_contain_text("Use E.164 format, e.g. +14155550123.")
    page.get_by_label("Number").fill("+14155550100")
    page.get_by_role("button", name="Add phone number").click()
    expect(page.get_by_role("link", name="+14155550100")).to_be_visible()
    expect(page.get_by_role("link", name="Reception")).to_be_visible()
    assert agent.phone_numbers.count() == 1


def test_provider_fields_without_javascript(
    browser: Any, dashboard_url: str, page: Page, login_as: Any
) -> None:
    member = login_as("member")
    cookies = page.context.cookies()
    context = browser.new_context(base_url=dashboard_url, java_script_enabled=False)
    try:
        context.add_cookies(cookies)
        tab = context.new_page()
        tab.goto("/agents/new/")
        tab.get_by_label("Name", exact=True).fill("No script")
        tab.get_by_label("Text-to-speech provider").select_option("espeak")
        # The <noscript> button beside the picker redraws the page for that provider.
        tab.locator("#stage-tts").get_by_role("button").click()
        expect(tab.get_by_label("Voice", exact=True)).to_be_visible()
        expect(tab.locator("#stage-tts").get_by_label("Model")).to_have_count(0)
        expect(tab.get_by_label("Name", exact=True)).to_have_value("No script")
        assert not Agent.objects.for_org(member.organization).exists()
        tab.get_by_label("Speech-to-text provider").select_option("pocketsphinx")
        tab.get_by_label("Language model provider").select_option("scripted")
        tab.get_by_role("button", name="Create agent").click()
        expect(tab.locator(".notice[role=status]")).to_contain_text("Agent “No script” created.")
        agent = Agent.objects.for_org(member.organization).get()
        assert agent.tts["provider"] == "espeak" and agent.stt["provider"] == "pocketsphinx"
    finally:
        context.close()
