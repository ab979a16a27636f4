"""Login throttling (django-axes): repeated wrong passwords lock the login out,
the right password is then refused too, staff see the lockout in the admin,
and the reset command lifts it.

Real parts: Django's admin login form and the suite's database; the reset is
the real `axes_reset` command. tests/test_web_security_processes.py does the
same through the Procfile's web line on a "dyno", where the client's address
comes from Heroku's router's X-Forwarded-For.
"""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password-42"
LIMIT = 5  # LOGIN_FAILURE_LIMIT's default
LOGIN = "/admin/login/?next=/admin/"
RTL = "\u202e"  # right-to-left override


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@localhost", PASSWORD)


def attempt(client: Client, password: str, username: str = "admin", **extra):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, **extra
    )


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_wrong_passwords_lock_out_the_right_one_until_the_reset_command(admin_user):
    client = Client(REMOTE_ADDR="203.0.113.7")
    limit = LIMIT
    answers = [attempt(client, f"wrong-{i}").status_code for i in range(limit + 3)]
    # The first failures redisplay the form; from the limit on, 429 (before, all were 200).
    assert answers[: limit - 1] == [200] * (limit - 1)
    assert answers[limit:] == [429] * 3
    locked = attempt(client, PASSWORD)
    assert locked.status_code == 429
    assert "Account locked" in locked.content.decode()
    assert not logged_in(client)
    # From another address too: the username itself is locked out.
    other = Client(REMOTE_ADDR="198.51.100.9")
    assert attempt(other, PASSWORD).status_code == 429 and not logged_in(other)

    call_command("axes_reset", verbosity=0)
    response = attempt(client, PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert logged_in(client)
    assert settings.AXES_FAILURE_LIMIT == LIMIT


def test_one_address_guessing_many_usernames_is_locked_out(admin_user):
    guesser = Client(REMOTE_ADDR="203.0.113.8")
    for i in range(LIMIT):
        attempt(guesser, "nope", username=f"user{i}")
    assert attempt(guesser, PASSWORD).status_code == 429
    # Someone else, elsewhere, still logs in.
    elsewhere = Client(REMOTE_ADDR="198.51.100.10")
    assert attempt(elsewhere, PASSWORD).status_code == 302 and logged_in(elsewhere)


def test_staff_see_lockouts_in_the_admin_without_the_password(admin_user, django_user_model):
    locked = Client(REMOTE_ADDR="203.0.113.9")
    for i in range(LIMIT):
        attempt(locked, f"secret-guess-{i}", username="operator")
    # Whoever tries types the name and sends the user agent: "adm\u202enimda" must
    # not reach staff raw, reordered by the browser (issue 18, finding 7).
    liar = Client(REMOTE_ADDR="203.0.113.11", HTTP_USER_AGENT=f"Mozilla{RTL}exe.png")
    for i in range(LIMIT):
        liar.post(
            f"/admin/login/?next=/admin/{RTL}",  # the query string is recorded too
            {"username": f"adm{RTL}nimda", "password": f"secret-guess-{i}", "next": "/admin/"},
        )
    staff = django_user_model.objects.create_user("ops", password="pw-ops-5678", is_staff=True)
    viewer = Client()
    viewer.force_login(staff)
    index = viewer.get("/admin/").content.decode()
    assert "/admin/axes/accessattempt/" in index
    listing = viewer.get("/admin/axes/accessattempt/?locked_out=yes")
    assert listing.status_code == 200
    text = listing.content.decode()
    assert "operator" in text and "203.0.113.9" in text
    assert "secret-guess" not in text
    # Staff may look, not delete (a superuser may).
    assert b"delete_selected" not in listing.content

    lockout = AccessAttempt.objects.get(ip_address="203.0.113.11")
    superuser = Client()
    superuser.force_login(admin_user)
    for who, url in [
        (viewer, "/admin/axes/accessattempt/"),
        (viewer, "/admin/axes/accessattempt/?locked_out=yes"),
        (viewer, f"/admin/axes/accessattempt/{lockout.pk}/change/"),
        (superuser, "/admin/axes/accessattempt/"),
        (superuser, f"/admin/axes/accessattempt/{lockout.pk}/change/"),
    ]:
        response = who.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert RTL not in html, url
        assert "adm\\u202enimda" in html and "Mozilla\\u202eexe.png" in html, url
        assert "secret-guess" not in html, url
        if "/change/" in url:
            assert "next=/admin/\\u202e" in html, url


def test_the_login_log_shows_what_the_browser_sent_escaped(admin_user):
    # A successful login is logged with the user agent and path the browser
    # sent: a superuser reading axes' access log must not get them raw either.
    browser = Client(REMOTE_ADDR="203.0.113.12", HTTP_USER_AGENT=f"Mozilla{RTL}exe.png")
    response = browser.post(
        f"/admin/login/?next=/admin/{RTL}",
        {"username": "admin", "password": PASSWORD, "next": "/admin/"},
    )
    assert response.status_code == 302 and logged_in(browser)
    entry = AccessLog.objects.get(ip_address="203.0.113.12")
    superuser = Client()
    superuser.force_login(admin_user)
    for url in ["/admin/axes/accesslog/", f"/admin/axes/accesslog/{entry.pk}/change/"]:
        response = superuser.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert RTL not in html, url
        assert "Mozilla\\u202eexe.png" in html, url


def test_on_a_dyno_the_client_is_the_address_herokus_router_appended(rf, settings):
    from config.client_ip import client_ip

    settings.PROXY_HOPS = 1  # the default where DYNO is set
    spoofed = rf.get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.20")
    assert client_ip(spoofed) == "203.0.113.20"
    assert client_ip(rf.get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="203.0.113.21")) == (
        "203.0.113.21"
    )
    assert client_ip(rf.get("/", REMOTE_ADDR="10.1.2.3")) == "10.1.2.3"
    assert client_ip(rf.get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="junk")) == "10.1.2.3"
    settings.PROXY_HOPS = 0  # locally: nothing in front, the header is the client's own claim
    assert client_ip(spoofed) == "10.1.2.3"
