"""Users, admins and groups: creation, keys, settings, authentication.

All principal reads go through an in-memory cache kept coherent by this class
(the only writer), so authenticating a request costs no database round trip.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import attrs
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sealskin import authz
from sealskin.blocking import Pool
from sealskin.crypto import KeyFormatError, TokenError, keys, tokens
from sealskin.errors import ApiError, Kind
from sealskin.model import Group, Principal, UserSettings
from sealskin.store import Conflict, Missing, Store

log = Logger()

BOOTSTRAP_ADMIN = "admin"
NOT_AUTHENTICATED = "Invalid or expired token."
VERIFIED_TOKENS_MAX = 1024


def _generate_pair(bits: int) -> tuple[str, str]:
    """Runs on the work pool: (private PKCS#8 PEM, public SPKI PEM)."""
    key = keys.generate_rsa(bits)
    return keys.private_pem(key), keys.public_pem(key)


class Principals:
    def __init__(self, store: Store, clock: IReactorTime, work: Pool, *,
                 user_key_bits: int = 2048, leeway_seconds: int = 60,
                 max_lifetime_seconds: int = 600) -> None:
        self._store = store
        self._clock = clock
        self._work = work
        self._user_key_bits = user_key_bits
        self._leeway = leeway_seconds
        self._max_lifetime = max_lifetime_seconds
        self._cache: dict[str, Principal] | None = None
        self._groups: dict[str, Group] | None = None
        self._keys: dict[str, RSAPublicKey] = {}
        # Tokens whose signature verified under their subject's current key. The extension
        # mints a token per call, but calls in the same second carry the same bytes; the
        # time claims are still checked on every use. Cleared with the other caches.
        self._verified: OrderedDict[str, tokens.Parsed] = OrderedDict()
        self._generation = 0

    # -- reads ---------------------------------------------------------------

    async def _all(self) -> dict[str, Principal]:
        if self._cache is None:
            self._cache = {p.username: p for p in await self._store.principals()}
        return self._cache

    async def _all_groups(self) -> dict[str, Group]:
        if self._groups is None:
            self._groups = {g.name: g for g in await self._store.groups()}
        return self._groups

    def _forget(self) -> None:
        self._cache = None
        self._groups = None
        self._keys.clear()
        self._verified.clear()
        self._generation += 1

    async def get(self, username: str) -> Principal | None:
        return (await self._all()).get(username)

    async def everyone(self) -> Sequence[Principal]:
        return sorted((await self._all()).values(), key=lambda p: p.username)

    async def groups(self) -> Sequence[Group]:
        return sorted((await self._all_groups()).values(), key=lambda g: g.name)

    async def effective(self, p: Principal) -> UserSettings:
        group = None
        if p.settings is not None:
            group = (await self._all_groups()).get(p.settings.group)
        return authz.effective_settings(p, group)

    # -- authentication --------------------------------------------------------

    async def authenticate(self, authorization: str | None) -> Principal:
        """The principal behind ``Authorization: Bearer <RS256 JWT>``.

        Every failure, unknown user included, is the same 401 (no enumeration);
        an inactive user is 403.
        """
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(Kind.UNAUTHENTICATED, "Authorization header missing or invalid.")
        token = authorization[len("Bearer "):].strip()
        try:
            p = await self._verified_principal(token)
        except (TokenError, KeyFormatError):
            raise ApiError(Kind.UNAUTHENTICATED, NOT_AUTHENTICATED) from None
        if not p.is_admin and not (await self.effective(p)).active:
            raise ApiError(Kind.FORBIDDEN, "User account is inactive.")
        return p

    async def _verified_principal(self, token: str) -> Principal:
        """Raises TokenError or KeyFormatError; parses and verifies each token once."""
        known = self._verified.get(token)
        generation = self._generation
        parsed = known if known is not None else tokens.parse(token)
        p = await self.get(parsed.subject)
        if p is None:
            raise TokenError(NOT_AUTHENTICATED)
        now = self._clock.seconds()
        if known is not None and generation == self._generation:
            tokens.check_claims(parsed, now=now, leeway_seconds=self._leeway,
                                max_lifetime_seconds=self._max_lifetime)
            return p
        tokens.check(parsed, self._public_key(p), now=now, leeway_seconds=self._leeway,
                     max_lifetime_seconds=self._max_lifetime)
        if generation == self._generation:  # no key changed while we looked the user up
            self._verified[token] = parsed
            if len(self._verified) > VERIFIED_TOKENS_MAX:
                self._verified.popitem(last=False)
        return p

    def _public_key(self, p: Principal) -> RSAPublicKey:
        key = self._keys.get(p.username)
        if key is None:
            key = self._keys[p.username] = keys.load_public_pem(p.public_key)
        return key

    # -- writes ----------------------------------------------------------------

    async def create(self, actor: str, username: str, public_key: str | None, *,
                     is_admin: bool, settings: UserSettings | None = None,
                     key_bits: int | None = None) -> tuple[Principal, str | None]:
        """Adds a user or admin; without a public key, makes a pair and returns its
        private half (PKCS#8 PEM) once. CONFLICT if the name is taken, INVALID for a
        bad key."""
        if await self.get(username) is not None:
            raise ApiError(Kind.CONFLICT, f"User '{username}' already exists.")
        private: str | None = None
        if public_key:
            try:
                public = keys.normalize_public_pem(public_key)
            except KeyFormatError as e:
                raise ApiError(Kind.INVALID, str(e)) from None
        else:
            private, public = await self.new_pair(key_bits)
        p = Principal(username=username, public_key=public, is_admin=is_admin,
                      settings=None if is_admin else (settings or UserSettings()),
                      created_at=self._clock.seconds())
        try:
            await self._store.add_principal(p, actor=actor)
        except Conflict:
            raise ApiError(Kind.CONFLICT, f"User '{username}' already exists.") from None
        finally:
            self._forget()
        return p, private

    async def set_settings(self, actor: str, username: str, s: UserSettings) -> Principal:
        p = await self.get(username)
        if p is None or p.is_admin:
            raise ApiError(Kind.NOT_FOUND, f"User '{username}' not found.")
        try:
            return await self._store.set_settings(username, s, actor=actor)
        except Missing:
            raise ApiError(Kind.NOT_FOUND, f"User '{username}' not found.") from None
        finally:
            self._forget()

    async def new_pair(self, key_bits: int | None = None) -> tuple[str, str]:
        """A fresh key pair, made on the work pool: (private PKCS#8 PEM, public SPKI PEM)."""
        return await self._work.run(_generate_pair, key_bits or self._user_key_bits)

    async def set_key(self, actor: str, username: str, public_key: str) -> None:
        """Gives ``username`` another public key; the old one stops working at once.
        NOT_FOUND for an unknown name."""
        try:
            await self._store.set_public_key(username, public_key, actor=actor)
        except Missing:
            raise ApiError(Kind.NOT_FOUND, f"User '{username}' not found.") from None
        finally:
            self._forget()

    async def remove(self, actor: str, username: str, *, is_admin: bool) -> Principal:
        """Removes a user (``is_admin=False``) or an admin; ``admin`` itself is kept."""
        p = await self.get(username)
        if p is None or p.is_admin != is_admin:
            kind = "Admin" if is_admin else "User"
            raise ApiError(Kind.NOT_FOUND, f"{kind} '{username}' not found.")
        if username == BOOTSTRAP_ADMIN:
            raise ApiError(Kind.FORBIDDEN, "The bootstrap admin cannot be deleted.")
        try:
            await self._store.remove_principal(username, actor=actor)
        except Missing:
            raise ApiError(Kind.NOT_FOUND, f"User '{username}' not found.") from None
        finally:
            self._forget()
        return p

    async def add_group(self, actor: str, group: Group) -> Group:
        try:
            await self._store.add_group(group, actor=actor)
        except Conflict:
            raise ApiError(Kind.CONFLICT, f"Group '{group.name}' already exists.") from None
        finally:
            self._forget()
        return group

    async def set_group(self, actor: str, group: Group) -> Group:
        try:
            await self._store.set_group(group, actor=actor)
        except Missing:
            raise ApiError(Kind.NOT_FOUND, f"Group '{group.name}' not found.") from None
        finally:
            self._forget()
        return group

    async def remove_group(self, actor: str, name: str) -> None:
        try:
            await self._store.remove_group(name, actor=actor)
        except Missing:
            raise ApiError(Kind.NOT_FOUND, f"Group '{name}' not found.") from None
        finally:
            self._forget()


def with_group_name(s: UserSettings, name: str) -> UserSettings:
    return attrs.evolve(s, group=name)
