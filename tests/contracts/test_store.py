"""The Store contract: every implementation passes this suite (fixtures in conftest.py)."""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from sealskin.model import (
    AppStore,
    AuditEntry,
    Group,
    HomeDir,
    InstalledApp,
    Principal,
    SessionRecord,
    Template,
    Upload,
    UserSettings,
)
from sealskin.store import Conflict, Missing, Store
from sealskin.store.sqlite import SqliteStore, migrate

OpenStore = Callable[[], Store]  # the conftest fixture: opens a store on this test's data

ensure = pytest_twisted.ensureDeferred

SETTINGS = UserSettings(active=False, group="staff", persistent_storage=False, public_sharing=True,
                        harden_container=True, harden_openbox=True, gpu=False,
                        storage_limit=2048, session_limit=3)


def user(name: str = "alice", **kw: Any) -> Principal:
    fields: dict[str, Any] = dict(username=name, public_key=f"PEM of {name}", is_admin=False,
                                  settings=SETTINGS, created_at=1700000000.5)
    fields.update(kw)
    return Principal(**fields)


def admin(name: str = "root") -> Principal:
    return Principal(username=name, public_key="ADMIN PEM", is_admin=True, settings=None,
                     created_at=1700000001.0)


def app(app_id: str = "app-1", **kw: Any) -> InstalledApp:
    fields: dict[str, Any] = dict(
        id=app_id, name="Firefox", logo="/api/app_icon/app-1", url="https://example.org",
        source="SealSkin Apps", source_app_id="firefox", home_directories=True,
        users=("alice", "bob"), groups=("all",), auto_update=False, app_template="Kiosk",
        is_meta_app=True, base_app_id="base", home_template_name="tpl", pull_policy="never",
        allow_overrides=("privileged",),
        provider_config={"image": "lscr.io/linuxserver/firefox:latest", "port": 3000,
                         "extensions": ["pdf", "html"], "env": [{"name": "A", "value": "1"}],
                         "docker_overrides": {"shm_size": "1g"}, "nvidia_support": False})
    fields.update(kw)
    return InstalledApp(**fields)


def session(session_id: str = "s-1", username: str = "alice", **kw: Any) -> SessionRecord:
    fields: dict[str, Any] = dict(
        id=session_id, username=username, app_id="app-1", app_name="Firefox", app_logo="logo",
        instance_id="c0ffee", host="172.17.0.2", port=3000, created_at=1700000100.25,
        sealed_credentials=b"\x00sealed\xffbytes", launch_context={"type": "url", "value": "x"},
        home_path="/storage/alice/work", ephemeral=False, cookie_digests=("ab" * 32, "cd" * 32),
        state="starting")
    fields.update(kw)
    return SessionRecord(**fields)


def upload(upload_id: str = "u-1", username: str = "alice", **kw: Any) -> Upload:
    fields: dict[str, Any] = dict(id=upload_id, username=username, filename="big.iso",
                                  total_size=10_000, chunk_size=4096, total_chunks=3,
                                  received=(), created_at=1700000200.0, updated_at=1700000200.0)
    fields.update(kw)
    return Upload(**fields)


# principals

@ensure
async def test_principals_round_trip_users_and_admins(store: Store) -> None:
    await store.add_principal(user("bob"), actor="root")
    await store.add_principal(admin("root"), actor="root")
    await store.add_principal(user("alice", settings=UserSettings()), actor="root")
    assert await store.principal("bob") == user("bob")
    assert await store.principal("root") == admin("root")
    assert await store.principal("nobody") is None
    assert [p.username for p in await store.principals()] == ["alice", "bob", "root"]


@ensure
async def test_usernames_are_case_sensitive(store: Store) -> None:
    await store.add_principal(user("alice"), actor="root")
    await store.add_principal(user("Alice"), actor="root")
    assert len(await store.principals()) == 2


@ensure
async def test_users_and_admins_share_one_namespace(store: Store) -> None:
    await store.add_principal(user("alice"), actor="root")
    with pytest.raises(Conflict):
        await store.add_principal(admin("alice"), actor="root")
    assert await store.principal("alice") == user("alice")


@ensure
async def test_set_settings_returns_and_keeps_the_new_settings(store: Store) -> None:
    await store.add_principal(user("alice", settings=UserSettings()), actor="root")
    updated = await store.set_settings("alice", SETTINGS, actor="root")
    assert updated == user("alice")
    assert await store.principal("alice") == updated


@ensure
async def test_set_public_key_replaces_the_key_of_users_and_admins(store: Store) -> None:
    await store.add_principal(user("alice"), actor="root")
    await store.add_principal(admin("root"), actor="root")
    assert await store.set_public_key("alice", "NEW PEM", actor="root") == user(
        "alice", public_key="NEW PEM")
    assert (await store.set_public_key("root", "NEW ROOT", actor="root")).public_key == "NEW ROOT"
    assert (await store.principal("root")).public_key == "NEW ROOT"
    with pytest.raises(Missing):
        await store.set_public_key("nobody", "X", actor="root")
    assert [r.action for r in await store.audit(limit=2)].count("principal.rekey") == 2


@ensure
async def test_set_settings_of_unknown_user_or_admin_is_missing(store: Store) -> None:
    await store.add_principal(admin("root"), actor="root")
    with pytest.raises(Missing):
        await store.set_settings("nobody", SETTINGS, actor="root")
    with pytest.raises(Missing):
        await store.set_settings("root", SETTINGS, actor="root")
    assert await store.principal("root") == admin("root")


@ensure
async def test_removing_a_principal_removes_its_homes_and_uploads(store: Store) -> None:
    for name in ("alice", "bob"):
        await store.add_principal(user(name), actor="root")
        await store.add_home(HomeDir(name, "work", 1.0), actor="root")
        await store.add_upload(upload(f"u-{name}", name))
    await store.remove_principal("alice", actor="root")
    assert await store.principal("alice") is None
    assert await store.homes("alice") == []
    assert await store.upload("u-alice") is None
    assert await store.homes("bob") == [HomeDir("bob", "work", 1.0)]
    assert await store.upload("u-bob") == upload("u-bob", "bob")
    with pytest.raises(Missing):
        await store.remove_principal("alice", actor="root")


# groups

@ensure
async def test_groups_round_trip_and_update(store: Store) -> None:
    await store.add_group(Group("staff", SETTINGS), actor="root")
    await store.add_group(Group("all-defaults", UserSettings()), actor="root")
    assert await store.group("staff") == Group("staff", SETTINGS)
    assert await store.group("nope") is None
    await store.set_group(Group("staff", UserSettings(gpu=False)), actor="root")
    assert await store.groups() == [Group("all-defaults", UserSettings()),
                                    Group("staff", UserSettings(gpu=False))]


@ensure
async def test_group_conflict_and_missing(store: Store) -> None:
    await store.add_group(Group("staff", SETTINGS), actor="root")
    with pytest.raises(Conflict):
        await store.add_group(Group("staff", UserSettings()), actor="root")
    with pytest.raises(Missing):
        await store.set_group(Group("nope", SETTINGS), actor="root")
    await store.remove_group("staff", actor="root")
    with pytest.raises(Missing):
        await store.remove_group("staff", actor="root")
    assert await store.groups() == []


# apps, app stores, templates

@ensure
async def test_apps_round_trip_every_field_in_install_order(store: Store) -> None:
    minimal = InstalledApp(id="app-0", name="Zed", provider_config={"image": "zed", "port": 8080})
    await store.add_app(app("app-9"), actor="root")
    await store.add_app(minimal, actor="root")
    got = await store.app("app-9")
    assert got == app("app-9")
    assert got is not None and isinstance(got.users, tuple) and isinstance(got.allow_overrides, tuple)
    assert await store.app("nope") is None
    assert [a.id for a in await store.apps()] == ["app-9", "app-0"]
    assert await store.app("app-0") == minimal


@ensure
async def test_set_app_replaces_the_whole_record(store: Store) -> None:
    await store.add_app(app(), actor="root")
    changed = app(name="Firefox ESR", users=(), provider_config={"image": "esr", "port": 3001})
    await store.set_app(changed, actor="root")
    assert await store.apps() == [changed]


@ensure
async def test_app_conflict_and_missing(store: Store) -> None:
    await store.add_app(app(), actor="root")
    with pytest.raises(Conflict):
        await store.add_app(app(name="Other"), actor="root")
    with pytest.raises(Missing):
        await store.set_app(app("nope"), actor="root")
    await store.remove_app("app-1", actor="root")
    with pytest.raises(Missing):
        await store.remove_app("app-1", actor="root")
    assert await store.apps() == []


@ensure
async def test_app_stores_keep_their_order(store: Store) -> None:
    await store.add_app_store(AppStore("Z store", "https://z.example/apps.yml"), actor="root")
    await store.add_app_store(AppStore("A store", "https://a.example/apps.yml"), actor="root")
    with pytest.raises(Conflict):
        await store.add_app_store(AppStore("A store", "https://other"), actor="root")
    assert await store.app_stores() == [AppStore("Z store", "https://z.example/apps.yml"),
                                        AppStore("A store", "https://a.example/apps.yml")]
    await store.remove_app_store("Z store", actor="root")
    with pytest.raises(Missing):
        await store.remove_app_store("Z store", actor="root")
    assert [s.name for s in await store.app_stores()] == ["A store"]


@ensure
async def test_put_template_adds_or_replaces(store: Store) -> None:
    await store.put_template(Template("Default", {}), actor="root")
    await store.put_template(Template("Kiosk", {"TITLE": "x"}), actor="root")
    await store.put_template(Template("Kiosk", {"HARDEN_DESKTOP": "true"}), actor="root")
    assert await store.templates() == [Template("Default", {}),
                                       Template("Kiosk", {"HARDEN_DESKTOP": "true"})]
    await store.remove_template("Default", actor="root")
    with pytest.raises(Missing):
        await store.remove_template("Default", actor="root")
    assert [t.name for t in await store.templates()] == ["Kiosk"]


# sessions

@ensure
async def test_sessions_round_trip_and_filter_by_user(store: Store) -> None:
    bare = session("s-2", "bob", launch_context=None, home_path=None, cookie_digests=(),
                   created_at=1700000000.0)
    await store.add_session(session())
    await store.add_session(bare)
    got = await store.session("s-1")
    assert got == session()
    assert got is not None and isinstance(got.sealed_credentials, bytes)
    assert await store.session("nope") is None
    assert await store.sessions() == [bare, session()]
    assert await store.sessions("alice") == [session()]
    assert await store.sessions("carol") == []


@ensure
async def test_session_conflict_update_and_missing(store: Store) -> None:
    await store.add_session(session())
    with pytest.raises(Conflict):
        await store.add_session(session(state="running"))
    running = session(state="running", cookie_digests=("ef" * 32,), host="172.17.0.9")
    await store.set_session(running)
    assert await store.session("s-1") == running
    with pytest.raises(Missing):
        await store.set_session(session("nope"))
    await store.remove_session("s-1")
    with pytest.raises(Missing):
        await store.remove_session("s-1")
    assert await store.sessions() == []


# homes

@ensure
async def test_homes_round_trip_conflict_and_missing(store: Store) -> None:
    await store.add_principal(user("alice"), actor="alice")
    await store.add_home(HomeDir("alice", "work", 5.5), actor="alice")
    await store.add_home(HomeDir("alice", "auto-firefox", 6.5), actor="alice")
    with pytest.raises(Conflict):
        await store.add_home(HomeDir("alice", "work", 7.0), actor="alice")
    with pytest.raises(Missing):
        await store.add_home(HomeDir("nobody", "work", 7.0), actor="root")
    assert await store.homes("alice") == [HomeDir("alice", "auto-firefox", 6.5),
                                          HomeDir("alice", "work", 5.5)]
    await store.remove_home("alice", "work", actor="alice")
    with pytest.raises(Missing):
        await store.remove_home("alice", "work", actor="alice")
    assert [h.name for h in await store.homes("alice")] == ["auto-firefox"]


# uploads

@ensure
async def test_uploads_round_trip_conflict_and_missing(store: Store) -> None:
    await store.add_principal(user("alice"), actor="root")
    partial = upload("u-2", received=(2, 0))
    await store.add_upload(upload())
    await store.add_upload(partial)
    assert await store.upload("u-1") == upload()
    assert await store.upload("u-2") == upload("u-2", received=(0, 2))
    assert await store.upload("nope") is None
    with pytest.raises(Conflict):
        await store.add_upload(upload())
    with pytest.raises(Missing):
        await store.add_upload(upload("u-3", "nobody"))
    await store.remove_upload("u-1")
    with pytest.raises(Missing):
        await store.remove_upload("u-1")


@ensure
async def test_mark_chunk_is_idempotent_and_bumps_updated_at(store: Store) -> None:
    await store.add_principal(user("alice"), actor="root")
    await store.add_upload(upload())
    await store.mark_chunk("u-1", 2, 1700000300.0)
    await store.mark_chunk("u-1", 0, 1700000301.0)
    again = await store.mark_chunk("u-1", 2, 1700000302.0)
    assert again == upload(received=(0, 2), updated_at=1700000302.0)
    assert await store.upload("u-1") == again
    with pytest.raises(Missing):
        await store.mark_chunk("nope", 0, 1700000303.0)


@ensure
async def test_uploads_older_than_uses_updated_at(store: Store) -> None:
    await store.add_principal(user("alice"), actor="root")
    await store.add_upload(upload("old", updated_at=100.0, created_at=100.0))
    await store.add_upload(upload("busy", updated_at=100.0, created_at=100.0))
    await store.add_upload(upload("new", updated_at=300.0, created_at=300.0))
    await store.mark_chunk("busy", 1, 250.0)
    stale = await store.uploads_older_than(200.0)
    assert stale == [upload("old", updated_at=100.0, created_at=100.0)]


# audit and meta

@ensure
async def test_each_admin_change_writes_one_audit_row(store: Store, clock: task.Clock) -> None:
    clock.advance(1000)
    await store.add_principal(user("alice"), actor="root")
    clock.advance(1)
    await store.add_principal(admin("ops"), actor="root")
    clock.advance(1)
    await store.set_settings("alice", UserSettings(), actor="ops")
    await store.remove_principal("ops", actor="root")
    await store.add_group(Group("staff", SETTINGS), actor="root")
    await store.set_group(Group("staff", UserSettings()), actor="root")
    await store.remove_group("staff", actor="root")
    await store.add_app(app(), actor="root")
    await store.set_app(app(), actor="root")
    await store.remove_app("app-1", actor="root")
    await store.add_app_store(AppStore("S", "https://s/apps.yml"), actor="root")
    await store.remove_app_store("S", actor="root")
    await store.put_template(Template("T", {}), actor="root")
    await store.remove_template("T", actor="root")
    await store.add_home(HomeDir("alice", "work", 1.0), actor="alice")
    await store.remove_home("alice", "work", actor="alice")
    rows = list(reversed(await store.audit(limit=1000)))
    assert [(r.actor, r.action, r.target) for r in rows] == [
        ("root", "user.create", "alice"), ("root", "admin.create", "ops"),
        ("ops", "user.update", "alice"), ("root", "admin.remove", "ops"),
        ("root", "group.create", "staff"), ("root", "group.update", "staff"),
        ("root", "group.remove", "staff"), ("root", "app.install", "app-1"),
        ("root", "app.update", "app-1"), ("root", "app.remove", "app-1"),
        ("root", "app_store.add", "S"), ("root", "app_store.remove", "S"),
        ("root", "template.put", "T"), ("root", "template.remove", "T"),
        ("alice", "home.create", "alice/work"), ("alice", "home.remove", "alice/work")]
    assert [r.at for r in rows[:3]] == [1000.0, 1001.0, 1002.0]
    assert rows[0].detail["settings"]["group"] == "staff"


@ensure
async def test_a_failed_change_writes_no_audit_row(store: Store) -> None:
    await store.add_principal(user("alice"), actor="root")
    failures = [store.add_principal(user("alice"), actor="mallory"),
                store.set_settings("nobody", SETTINGS, actor="mallory"),
                store.remove_principal("nobody", actor="mallory"),
                store.remove_group("nope", actor="mallory"),
                store.set_app(app(), actor="mallory"),
                store.remove_template("nope", actor="mallory"),
                store.add_home(HomeDir("nobody", "x", 1.0), actor="mallory"),
                store.remove_home("alice", "nope", actor="mallory")]
    for attempt in failures:
        with pytest.raises((Conflict, Missing)):
            await attempt
    assert [r.actor for r in await store.audit()] == ["root"]


@ensure
async def test_audit_details_hold_no_secrets(store: Store) -> None:
    secret_app = app(provider_config={"image": "img", "port": 1,
                                      "env": [{"name": "TOKEN", "value": "s3cret"}]})
    await store.add_principal(user("alice", public_key="KEY-MATERIAL"), actor="root")
    await store.add_app(secret_app, actor="root")
    await store.put_template(Template("T", {"WATERMARK_PNG": "s3cret"}), actor="root")
    await store.add_app_store(AppStore("S", "https://bob:s3cret@example.org/a.yml"), actor="root")
    text = repr(await store.audit())
    assert "s3cret" not in text and "KEY-MATERIAL" not in text
    assert "https://example.org/a.yml" in text


@ensure
async def test_audit_is_newest_first_and_limited(store: Store) -> None:
    for i in range(5):
        await store.record(AuditEntry(float(i), "root", "session.stop", f"s-{i}", {"n": i}))
    newest = await store.audit(limit=2)
    assert newest == [AuditEntry(4.0, "root", "session.stop", "s-4", {"n": 4}),
                      AuditEntry(3.0, "root", "session.stop", "s-3", {"n": 3})]


@ensure
async def test_meta_values_can_be_set_and_replaced(store: Store) -> None:
    assert await store.meta("jwt_secret_id") is None
    await store.set_meta("jwt_secret_id", "one")
    await store.set_meta("jwt_secret_id", "two")
    assert await store.meta("jwt_secret_id") == "two"


# lifecycle, concurrency, threads

@ensure
async def test_everything_survives_a_restart(open_store: OpenStore) -> None:
    first = open_store()
    await first.add_principal(user(), actor="root")
    await first.add_group(Group("staff", SETTINGS), actor="root")
    await first.add_app(app(), actor="root")
    await first.add_app_store(AppStore("S", "https://s"), actor="root")
    await first.put_template(Template("T", {"A": "b"}), actor="root")
    await first.add_session(session())
    await first.add_home(HomeDir("alice", "work", 1.0), actor="root")
    await first.add_upload(upload(received=(1,)))
    await first.set_meta("k", "v")
    await first.close()

    second = open_store()
    assert await second.principals() == [user()]
    assert await second.groups() == [Group("staff", SETTINGS)]
    assert await second.apps() == [app()]
    assert await second.app_stores() == [AppStore("S", "https://s")]
    assert await second.templates() == [Template("T", {"A": "b"})]
    assert await second.sessions() == [session()]
    assert await second.homes("alice") == [HomeDir("alice", "work", 1.0)]
    assert await second.upload("u-1") == upload(received=(1,))
    assert await second.meta("k") == "v"
    assert len(await second.audit()) == 6


@ensure
async def test_fifty_parallel_writes_all_land(store: Store) -> None:
    names = [f"user{i:02}" for i in range(50)]
    await defer.gatherResults([defer.Deferred.fromCoroutine(store.add_principal(user(n), actor="root"))
                               for n in names])
    assert [p.username for p in await store.principals()] == names
    assert len(await store.audit(limit=100)) == 50


@ensure
async def test_parallel_duplicates_let_exactly_one_win(store: Store) -> None:
    async def attempt(actor: str) -> str:
        try:
            await store.add_principal(user(), actor=actor)
        except Conflict:
            return "conflict"
        return "added"

    outcomes = await defer.gatherResults([defer.Deferred.fromCoroutine(attempt(f"a{i}"))
                                          for i in range(10)])
    assert sorted(outcomes) == ["added"] + ["conflict"] * 9
    assert len(await store.audit()) == 1


@ensure
async def test_close_lets_queued_calls_finish(open_store: OpenStore) -> None:
    store = open_store()
    pending = [defer.Deferred.fromCoroutine(store.add_principal(user(f"u{i}"), actor="root"))
               for i in range(20)]
    await store.close()
    await defer.gatherResults(pending)  # none failed with "not running"
    assert len(await open_store().principals()) == 20


@ensure
async def test_calls_return_to_the_reactor_before_the_work_is_done(store: Store) -> None:
    d = defer.Deferred.fromCoroutine(store.principals())
    assert not d.called  # a synchronous implementation would already have the result
    assert await d == []


@ensure
async def test_sqlite_calls_run_on_a_thread_other_than_the_reactors(open_store: OpenStore) -> None:
    callers: set[int] = set()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        owner = getattr(arg, "__self__", None)
        if event == "c_call" and (arg is sqlite3.connect
                                  or isinstance(owner, (sqlite3.Connection, sqlite3.Cursor))):
            callers.add(threading.get_ident())

    threading.setprofile(profile)  # inherited by threads the store starts from now on
    try:
        store = open_store()
    finally:
        threading.setprofile(None)
    sys.setprofile(profile)  # the reactor thread
    try:
        await store.add_principal(user(), actor="root")
        assert await store.principals() == [user()]
    finally:
        sys.setprofile(None)
    assert callers, "no SQLite calls seen"
    assert threading.get_ident() not in callers


# SQLite specifics (not part of the contract): rows written by older code still read.

@ensure
async def test_sqlite_rows_missing_newer_keys_read_with_defaults(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    migrate(path)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO principals VALUES ('old', 'PEM', 0, ?, 1.0)",
                 ('{"gpu": false, "dropped_key": 1}',))
    conn.execute("INSERT INTO apps VALUES ('a', 'A', ?)",
                 ('{"id": "a", "name": "A", "provider_config": {"image": "i"}, "users": ["x"]}',))
    conn.commit()
    conn.close()
    store = SqliteStore(reactor, path, clock=task.Clock())
    store.start()
    try:
        old = await store.principal("old")
        assert old is not None and old.settings == UserSettings(gpu=False)
        assert await store.app("a") == InstalledApp(id="a", name="A", provider_config={"image": "i"},
                                                    users=("x",))
    finally:
        await store.close()
