"""Composition root: builds every component from the Config, starts and stops them in order.

The only module that names concrete classes. ``makeService`` does the startup
work that may fail (directories, keys, migrations) before the reactor runs, and
exits with a clear message.
"""

from __future__ import annotations

import atexit
import ctypes
import os
from pathlib import Path
import sys
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import IService, Service
from twisted.internet import endpoints
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.web.resource import IResource
from twisted.web.server import Site

from sealskin import config as _config
from sealskin.api.admin import AdminHandlers
from sealskin.api.apps import AppHandlers
from sealskin.api.edge import Edge
from sealskin.api.files import WithPublic
from sealskin.api.handshake import HandshakeHandlers
from sealskin.api.homes import HomeHandlers
from sealskin.api.resource import ApiSite, build_api
from sealskin.api.sessions import SessionHandlers
from sealskin.api.stores import StoreHandlers
from sealskin.api.routes import Handlers, routes
from sealskin.blocking import Pool
from sealskin.httpbody import (LimitedRequest, api_request_factory, app_body_bytes,
                               enveloped_bytes)
from sealskin.crypto import cookies, keys
from sealskin.crypto.secretbox import SecretKeeper
from sealskin.crypto.sessions import CryptoSessions, RateLimiter
from sealskin.orchestration.bootstrap import bootstrap_admin
from sealskin.orchestration.catalogue import Catalogue
from sealskin.orchestration.fetch import Fetcher
from sealskin.orchestration.icons import Icons
from sealskin.orchestration.launching import ContainerDefaults, Planner
from sealskin.orchestration.meta import MetaApps
from sealskin.orchestration.ownership import AppUser
from sealskin.orchestration.homes import Homes
from sealskin.orchestration.host import HostFacts
from sealskin.orchestration.principals import Principals
from sealskin.orchestration.registry import Registry
from sealskin.orchestration.stores import AppStores
from sealskin.orchestration.sessions import Limits, Sessions
from sealskin.orchestration.updates import AfterFirstInterval, Updates
from sealskin.providers.docker import DockerProvider
from sealskin.providers.readiness import HttpReadiness
from sealskin.proxy import tls
from sealskin.proxy.http import HttpLimits, StreamingRequest
from sealskin.proxy.ws import WsLimits
from sealskin.proxy.site import build_root, build_site
from sealskin.proxy.worker import WorkerConfig
from sealskin.workers import InternalRoot, ProxyWorkers
from sealskin.store import sqlite

log = Logger()

Options = _config.Options


class Paths:
    """Where things live under the data directory."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.db = os.path.join(data_dir, "sealskin.db")
        self.keys = os.path.join(data_dir, "keys")
        self.server_key = os.path.join(self.keys, "server_key.pem")
        self.secret_key = os.path.join(self.keys, "secretbox.key")
        self.tls_cert = os.path.join(self.keys, "tls_cert.pem")
        self.tls_key = os.path.join(self.keys, "tls_key.pem")
        self.admin_json = os.path.join(data_dir, "admin.json")
        self.storage = os.path.join(data_dir, "storage")
        self.homes = os.path.join(self.storage, "homes")
        self.internal = os.path.join(data_dir, "internal")  # never a user's name space (W15)
        self.ephemeral = os.path.join(self.internal, "ephemeral")
        self.home_templates = os.path.join(self.internal, "home_templates")  # meta apps

    def make(self) -> None:
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.keys, mode=0o700, exist_ok=True)
        os.makedirs(self.homes, mode=0o755, exist_ok=True)
        os.makedirs(self.internal, mode=0o700, exist_ok=True)
        os.makedirs(self.ephemeral, mode=0o711, exist_ok=True)


def lock_data_dir(data_dir: str) -> Any:
    """An exclusive lock on ``<data_dir>/sealskin.lock``, held while the server runs.

    Two servers on one data directory would share its database, keys and server id, and
    each would remove the other's session containers as unknown. The kernel drops the lock
    when the process ends, even by ``kill -9``.
    """
    import fcntl

    f = open(os.path.join(data_dir, "sealskin.lock"), "a")  # noqa: SIM115  # held open
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise OSError(f"another SealSkin server is using the data directory {data_dir}") from None
    return f


def load_or_create_server_key(path: str, bits: int) -> Any:
    """The E2EE server key: PKCS#8, mode 0600, made once and never regenerated."""
    if os.path.exists(path):
        with open(path, "rb") as f:
            return keys.load_private_pem(f.read())
    key = keys.generate_rsa(bits)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(keys.private_pem(key))
    os.replace(path + ".tmp", path)
    log.info("Generated a {bits}-bit server key at {path}", bits=bits, path=path)
    return key


class SealskinService(Service):
    """Starts store, pools, bootstrap, timers, then listeners; stops in reverse."""

    def __init__(self, cfg: _config.Config, reactor: Any) -> None:
        self.cfg = cfg
        self.reactor = reactor
        self.paths = Paths(cfg.data_dir)
        self.paths.make()
        self._lock = lock_data_dir(cfg.data_dir)
        self.server_key = load_or_create_server_key(self.paths.server_key,
                                                    cfg.server_key_bits)
        self.server_public_pem = keys.public_pem(self.server_key)
        sqlite.migrate(self.paths.db)
        self.secrets = SecretKeeper.load_or_create(self.paths.secret_key)
        self.cookie_key = cookies.load_or_create_key(os.path.join(self.paths.keys, "cookie.key"))
        self._tls_paths()
        needed = enveloped_bytes(cfg.max_chunk_bytes)
        if cfg.max_upload_body_bytes < needed:
            log.warn("--max-upload-body-bytes {body} cannot carry a chunk of --max-chunk-bytes "
                     "{chunk} (that needs {needed}): clients sending such chunks get 413",
                     body=cfg.max_upload_body_bytes, chunk=cfg.max_chunk_bytes, needed=needed)
        self.api_endpoint = self.cfg.api_endpoint or f"tcp:{self.cfg.api_port}"
        self.session_endpoint = self.cfg.session_endpoint or f"tcp:{self.cfg.session_port}"
        self._server_endpoint("api-endpoint", self.api_endpoint)  # a bad one fails here, in
        self._server_endpoint("session-endpoint", self.session_endpoint)  # one line
        self._build()
        self.ports: list[IListeningPort] = []
        self.workers: ProxyWorkers | None = None
        self.internal_port: Any = None
        self.timers = [
            TimerService(60, self.crypto.sweep),
            TimerService(30, lambda: Deferred.fromCoroutine(self.sessions.reap())),
        ]
        self.timers += self.file_timers + self.store_timers
        self._reconcile_retry: Any = None
        self._stop_waiters: list[Deferred[None]] | None = None  # set once stop() has begun
        self._stopped = False

    def _server_endpoint(self, option: str, desc: str) -> IStreamServerEndpoint:
        """The endpoint ``desc`` describes; ValueError naming the option if it is unusable."""
        try:
            endpoint: IStreamServerEndpoint = endpoints.serverFromString(self.reactor, desc)
        except IndexError:  # systemd:...:index=N beyond the sockets passed
            raise ValueError(f"--{option} {desc!r}: no socket at that index was passed by "
                             f"systemd (is the unit socket-activated?)") from None
        except Exception as e:  # Twisted's parsers raise ValueError, TypeError, OSError...
            raise ValueError(f"--{option} {desc!r}: {e}") from None
        return endpoint

    def _tls_paths(self) -> None:
        cert, key = self.cfg.tls_cert, self.cfg.tls_key
        if bool(cert) != bool(key):
            raise ValueError("--tls-cert and --tls-key go together: give both or neither.")
        if not cert:
            cert, key = self.paths.tls_cert, self.paths.tls_key
            if tls.ensure_self_signed(Path(cert), Path(key), self.cfg.host_url or "localhost"):
                log.warn("Generated a self-signed certificate at {cert}: browsers will "
                         "not trust it. Pass --tls-cert/--tls-key for production.", cert=cert)
        self.tls_cert, self.tls_key = Path(cert), Path(key)
        self.tls_context = tls.server_context_factory(self.tls_cert, self.tls_key)  # fail now

    def _build(self) -> None:
        cfg, reactor = self.cfg, self.reactor
        self.work = Pool(reactor, "sealskin-work", cfg.work_threads)
        self.store = sqlite.SqliteStore(reactor, self.paths.db, clock=reactor)
        self.crypto = CryptoSessions(reactor, idle_seconds=cfg.crypto_session_idle_seconds,
                                     max_sessions=cfg.crypto_sessions_max)
        limiter = RateLimiter(reactor, per_second=cfg.handshake_rate, burst=cfg.handshake_burst)
        self.principals = Principals(self.store, reactor, self.work,
                                     leeway_seconds=cfg.jwt_leeway_seconds,
                                     max_lifetime_seconds=cfg.jwt_max_lifetime_seconds)
        self.app_user = AppUser(cfg.puid, cfg.pgid)
        self.homes = Homes(self.store, reactor, self.work, self.paths.homes, self.app_user)
        self.docker_pool = Pool(reactor, "sealskin-docker", cfg.docker_threads)
        self.stream_pool = Pool(reactor, "sealskin-docker-stream", 4)
        self.provider = DockerProvider(reactor, server_id=self._server_id(),
                                       docker_pool=self.docker_pool,
                                       stream_pool=self.stream_pool,
                                       allow_dangerous=cfg.allow_dangerous_overrides)
        host = HostFacts(reactor, self.work, self.paths.storage, self.provider.gpus)
        self.sessions = Sessions(
            self.store, self.provider, HttpReadiness(reactor, reactor), self.secrets, reactor,
            Limits(launch_timeout_seconds=cfg.launch_timeout_seconds,
                   token_ttl_seconds=cfg.access_token_ttl_seconds,
                   idle_seconds=cfg.session_idle_seconds, max_seconds=cfg.session_max_seconds,
                   default_session_limit=cfg.default_session_limit),
            cookie_key=self.cookie_key)
        self.sessions.on_ended = self._remove_ephemeral
        planner = Planner(self.store, self.homes, self.work, ephemeral_root=self.paths.ephemeral,
                          gpus=host.gpus,
                          defaults=ContainerDefaults(
                              puid=cfg.puid, pgid=cfg.pgid,
                              allow_dangerous=cfg.allow_dangerous_overrides))
        self.catalogue = Catalogue(self.store, self.provider, reactor, self.sessions.ops,
                                   allow_dangerous=cfg.allow_dangerous_overrides)
        planner.meta = MetaApps(self.store, self.catalogue, self.work, self.paths.home_templates,
                                AppUser(cfg.puid, cfg.pgid))
        handlers = Handlers(
            handshake=HandshakeHandlers(self.server_key, self.crypto, limiter, self.work),
            admin=AdminHandlers(self.principals, self.homes, host,
                                server_public_key=self.server_public_pem,
                                api_port=cfg.api_port, session_port=cfg.session_port,
                                end_sessions=self.sessions.end_all_of),
            homes=HomeHandlers(self.principals, self.homes),
            sessions=SessionHandlers(self.sessions, planner, self.principals,
                                     default_limit=cfg.default_session_limit),
            apps=AppHandlers(self.catalogue, planner.meta),
            stores=self._build_stores(),
            files=self._build_files(planner),
        )
        planner.store_script = self.app_stores.cached_script
        self.edge = Edge(self.crypto, self.principals, self.work)
        self.api = build_api(self.edge, routes(handlers))

    def _build_stores(self) -> Any:
        """App stores, available apps, icons, background updates (issue: apps and files).

        Its timers are in ``self.store_timers`` (``self.timers`` is made after ``_build``).
        """
        cfg = self.cfg
        fetcher = Fetcher(self.reactor, timeout_seconds=cfg.store_fetch_timeout_seconds,
                          max_bytes=cfg.store_max_bytes)
        self.app_stores = AppStores(self.store, fetcher, self.work,
                                    os.path.join(self.paths.internal, "store_cache"),
                                    default_url=cfg.app_store_url)
        icons = Icons(os.path.join(self.paths.internal, "app_icons"), self.work,
                      max_bytes=cfg.icon_max_bytes)
        self.catalogue.prepare_logo = icons.prepare
        self.catalogue.drop_logo = icons.remove
        self.updates = Updates(self.store, self.catalogue, self.provider,
                               Registry(fetcher, timeout_seconds=cfg.registry_timeout_seconds),
                               self.reactor, self.sessions.ops)
        self.store_timers = [
            TimerService(seconds, AfterFirstInterval(name, run))
            for seconds, name, run in (
                (cfg.store_refresh_seconds, "app store refresh", self.app_stores.refresh_all),
                (cfg.auto_update_seconds, "auto-update", self.updates.auto_update))
            if seconds > 0]
        return StoreHandlers(self.app_stores, self.updates, icons)

    def _build_files(self, planner: Planner) -> Any:
        """Uploads, file manager and shares; ``self.file_timers``; the ``/public`` pages."""
        from sealskin.api.files import FileDeps, FileHandlers, PublicShares
        from sealskin.orchestration.files import Files, Storage
        from sealskin.orchestration.shares import ShareLimits, Shares
        from sealskin.orchestration.uploads import UploadLimits, Uploads

        cfg, reactor = self.cfg, self.reactor
        uploads = Uploads(self.store, reactor, self.work,
                          os.path.join(self.paths.internal, "uploads"),
                          UploadLimits(max_total_bytes=cfg.max_upload_bytes,
                                       max_chunk_bytes=cfg.max_chunk_bytes,
                                       per_user=cfg.uploads_per_user,
                                       ttl_seconds=cfg.upload_ttl_seconds,
                                       stale_seconds=cfg.upload_stale_seconds),
                          self.app_user)
        self.uploads = uploads
        shares = Shares(os.path.join(self.paths.internal, "shares"), reactor, self.work,
                        ShareLimits(per_user=cfg.shares_per_user, max_bytes=cfg.max_share_bytes,
                                    password_attempts=cfg.share_password_attempts,
                                    token_seconds=cfg.share_token_seconds))
        self.public = PublicShares(shares)

        async def cleanup() -> None:
            await uploads.sweep()
            await shares.sweep()

        self.file_timers = [TimerService(cfg.cleanup_interval_seconds,
                                         lambda: Deferred.fromCoroutine(cleanup()))]
        storage = Storage(self.principals, self.homes, reactor, self.work,
                          usage_cache_seconds=cfg.storage_usage_cache_seconds)
        planner.storage = storage  # meta apps copy their template into the user's storage
        return FileHandlers(FileDeps(
            principals=self.principals, storage=storage, uploads=uploads,
            files=Files(reactor, self.work, owner=self.app_user), shares=shares, sessions=self.sessions,
            launcher=SessionHandlers(self.sessions, planner, self.principals,
                                     default_limit=cfg.default_session_limit),
            work=self.work, ephemeral_root=self.paths.ephemeral))

    def _server_id(self) -> str:
        """A stable id for this server's containers (labels), kept in the data directory."""
        if self.cfg.server_id:
            return str(self.cfg.server_id)
        path = os.path.join(self.paths.keys, "server_id")
        if not os.path.exists(path):
            with open(path + ".tmp", "w") as f:
                f.write(os.urandom(8).hex())
            os.replace(path + ".tmp", path)
        with open(path) as f:
            return f.read().strip()

    async def _remove_ephemeral(self, record: Any) -> None:
        if record.ephemeral:
            root = os.path.join(self.paths.ephemeral, record.id)
            await self.work.run(_thd_rmtree, root)

    async def _reconcile(self) -> None:
        """Runs in the background; retried every 10 s while Docker is unreachable."""
        self._reconcile_retry = None
        try:
            done = await self.sessions.reconcile()
        except Exception:
            log.failure("reconciliation failed; retrying")
            done = False
        if not done and self.running:
            self._reconcile_retry = self.reactor.callLater(
                10, lambda: Deferred.fromCoroutine(self._reconcile()))

    def _request_factory(self, base: Any = LimitedRequest) -> Any:
        return api_request_factory(self.cfg.max_body_bytes, self.cfg.max_upload_body_bytes,
                                   self._app_body_bytes(), base)

    def _app_body_bytes(self) -> int:
        return app_body_bytes(self.cfg.max_body_bytes, self.cfg.icon_max_bytes)

    def _site(self, root: IResource) -> Site:
        return ApiSite(root, request_factory=self._request_factory(),
                       access_log=self.cfg.access_log, max_head_bytes=self.cfg.max_header_bytes)

    def _api_port_root(self) -> IResource:
        """The API port's tree: ``/public`` and the API."""
        return WithPublic(self.api, self.public)

    def _tls_root(self) -> IResource:
        cfg = self.cfg
        self.proxy_root = build_root(
            api=self.api, directory=self.sessions, reactor=self.reactor,
            children={b"public": self.public},
            http_limits=HttpLimits(response_timeout_seconds=cfg.proxy_timeout_seconds),
            ws_limits=WsLimits.from_settings(ping_seconds=cfg.ws_ping_seconds,
                                             ping_timeout_seconds=cfg.ws_ping_timeout_seconds,
                                             max_message_bytes=cfg.ws_max_message_bytes))
        return self.proxy_root

    async def start(self) -> None:
        """Store, pools, bootstrap, timers, listeners (STYLE.md section 10).

        A failure part-way stops what was started before it propagates.
        """
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self.store.start()
        self.work.start()
        self.docker_pool.start()
        self.stream_pool.start()
        self.running = 1
        self._reconciling = self.sessions.ops.run(self._reconcile())
        for timer in self.timers:
            timer.startService()
        api = self._server_endpoint("api-endpoint", self.api_endpoint)
        self.ports.append(await api.listen(self._site(self._api_port_root())))
        self.ports.append(await self._listen_tls())
        await bootstrap_admin(self.store, self.principals, self.work,
                              config_path=self.paths.admin_json,
                              host=self.cfg.host_url or "localhost",
                              api_port=self.api_port, session_port=self.session_port,
                              server_public_key=self.server_public_pem,
                              key_bits=self.cfg.admin_key_bits,
                              reset=self.cfg.reset_admin_key)
        log.info("SealSkin API on port {api}, sessions (TLS) on port {tls}; admin config: "
                 "{path}", api=self.api_port, tls=self.session_port,
                 path=self.paths.admin_json)

    async def _listen_tls(self) -> IListeningPort:
        ctx = self.tls_context
        site = build_site(self._tls_root(), access_log=self.cfg.access_log,
                          max_head_bytes=self.cfg.max_header_bytes)
        site.requestFactory = self._request_factory(StreamingRequest)
        desc = self.session_endpoint
        ep = self._server_endpoint("session-endpoint", desc)
        if desc.startswith("ssl:"):
            port: IListeningPort = await ep.listen(site)
        else:  # plain or systemd-activated socket: we add TLS ourselves
            port = await ep.listen(TLSMemoryBIOFactory(ctx, False, site))
        if self.cfg.proxy_workers:
            await self._start_workers(port)
        return port

    async def _start_workers(self, tls_port: IListeningPort) -> None:
        """Extra processes on the same socket (sealskin.proxy.worker); they reach us
        on a loopback listener guarded by a per-start secret."""
        cfg = self.cfg
        self.workers = ProxyWorkers(self.reactor, self.sessions, cfg.proxy_workers)
        internal = InternalRoot(self.workers.secret, self.sessions, self._api_port_root())
        endpoint = endpoints.serverFromString(self.reactor, "tcp:0:interface=127.0.0.1")
        self.internal_port = await endpoint.listen(self._site(internal))
        self.workers.start(tls_port.fileno(), WorkerConfig(  # type: ignore[attr-defined]  # TCP ports have fileno()
            cert=str(self.tls_cert), key=str(self.tls_key),
            cookie_key_path=os.path.join(self.paths.keys, "cookie.key"),
            internal_port=_port_number(self.internal_port),
            internal_secret=self.workers.secret, max_body_bytes=cfg.max_body_bytes,
            max_upload_body_bytes=cfg.max_upload_body_bytes,
            max_app_body_bytes=self._app_body_bytes(),
            proxy_timeout_seconds=cfg.proxy_timeout_seconds,
            ws_ping_seconds=cfg.ws_ping_seconds, ws_ping_timeout_seconds=cfg.ws_ping_timeout_seconds,
            ws_max_message_bytes=cfg.ws_max_message_bytes,
            access_log=cfg.access_log, max_header_bytes=cfg.max_header_bytes))

    @property
    def api_port(self) -> int:
        return _port_number(self.ports[0])

    @property
    def session_port(self) -> int:
        return _port_number(self.ports[1])

    async def stop(self) -> None:
        """Listeners, timers, in-flight work, pools, store (STYLE.md section 10).

        Runs once: a failed start stops what it started, and the reactor's shutdown calls
        stop again; later calls wait for the first (a stopped pool would never answer them).
        """
        if self._stopped:
            return
        if self._stop_waiters is not None:
            waiter: Deferred[None] = Deferred()
            self._stop_waiters.append(waiter)
            await waiter
            return
        self._stop_waiters = []
        try:
            await self._stop()
        finally:
            self._stopped = True
            for waiter in self._stop_waiters:
                waiter.callback(None)

    async def _stop(self) -> None:
        self.running = 0
        if self.workers is not None:  # they listen on our socket: first to go
            await self.workers.stop()
            await self.internal_port.stopListening()
        for port in self.ports:
            stopped = port.stopListening()  # IListeningPort allows None; TCP ports return a Deferred
            if stopped is not None:
                await stopped
        self.ports.clear()
        left = await self.edge.drain(self.reactor, self.cfg.shutdown_grace_seconds)
        if left:
            log.warn("{count} API requests were still running at shutdown", count=left)
        for timer in self.timers:
            if timer.running:
                await timer.stopService()
        if self._reconcile_retry is not None and self._reconcile_retry.active():
            self._reconcile_retry.cancel()
        if getattr(self, "proxy_root", None) is not None:
            await self.proxy_root.close()
        await self.sessions.close_all_views()
        await self.provider.close()
        for pool in (self.stream_pool, self.docker_pool, self.work):
            pool.stop()
        await self.store.close()
        self._lock.close()  # the data directory is free for the next server

    def startService(self) -> None:
        Service.startService(self)
        _ = Deferred.fromCoroutine(self.start()).addErrback(self._failed_start)

    def _failed_start(self, failure: Any) -> None:
        """Logs why, stops the reactor (or keeps it from running: twistd starts services
        before it runs the reactor) and makes the process exit with status 1."""
        if failure.check(CannotListenError):  # a busy port: the message says all
            log.error("SealSkin failed to start: {why}", why=failure.getErrorMessage())
        else:
            log.failure("SealSkin failed to start", failure)
        sys.stderr.write(f"sealskin: cannot start: {failure.getErrorMessage()}\n")
        atexit.register(_exit_with, 1)
        self.reactor.callWhenRunning(self.reactor.stop)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return Deferred.fromCoroutine(self.stop())


def _exit_with(status: int) -> None:
    """At interpreter exit, after twistd has cleaned up: twistd itself always exits 0."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _port_number(port: IListeningPort) -> int:
    """The TCP port a listener is bound to (``getHost()`` is typed as any IAddress)."""
    address = port.getHost()
    if not isinstance(address, (IPv4Address, IPv6Address)):
        raise TypeError(f"not a TCP listener: {address!r}")
    return int(address.port)


def return_large_buffers_to_the_os() -> None:
    """Makes glibc serve every allocation above 128 KiB with its own mapping.

    Upload chunks pass through ~15 MB buffers; with glibc's default adaptive
    threshold those end up in the heap and the process never shrinks back. With
    a fixed threshold each big buffer is unmapped when freed (bench/upload_bench.py).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, 128 * 1024)


def _thd_rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def makeService(options: usage.Options) -> IService:
    """twistd entry point. Startup failures exit with a clear message, no traceback."""
    from twisted.internet import reactor

    cfg = options.config if isinstance(options, _config.Options) else None
    if cfg is None:
        cfg = _config.build_config(options, os.environ)
    return_large_buffers_to_the_os()
    try:
        return SealskinService(cfg, reactor)
    except (OSError, ValueError, sqlite.MigrationError) as e:
        sys.stderr.write(f"sealskin: cannot start: {e}\n")
        raise SystemExit(1) from None
