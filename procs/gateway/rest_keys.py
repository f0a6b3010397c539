"""``POST /api/v1/apiKey`` (log in with a username and password, get an API key and its
secret) and ``DELETE /api/v1/apiKey`` (a key revokes itself; its private streams close).

Logins are rate-limited per client address, and wrong passwords per username from any
address (review 44: a guesser spread over many addresses was never slowed); the password is
checked with scrypt off the event loop; a user at ``max_keys_per_user`` gets a new key by
revoking its oldest, named in the answer (``revokedApiKey``). A login whose check passed on
a password changed since is refused (401), the file read anew before its key is made (so no
key of the user's is evicted for it) and after (a key made as `ringex admin set-password
--revoke-keys` swept the keys is revoked at once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from procs.common.apikeys import KeysFileError, NotHeldError
from procs.common.change_log import ChangeMadeError
from procs.common.users import User, UsersFileError, UserStore, still_held
from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway.api_errors import ApiError, bad_request, throttle
from procs.gateway.rest_public import json_response

log = logging.getLogger("ringex.gateway")

if TYPE_CHECKING:
    from procs.gateway.rest import RestApi


class KeyRoutes:
    def __init__(self, api: RestApi) -> None:
        self.api = api

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_post("/api/v1/apiKey", self.create_key)
        router.add_delete("/api/v1/apiKey", self.revoke_key)

    async def create_key(self, request: web.Request) -> web.Response:
        api = self.api
        throttle(api.login_limits, request.remote or "", f"logins from {request.remote}")
        if "username" in request.query or "password" in request.query:
            raise bad_request(
                codes.ILLEGAL_PARAM,
                "username and password go in the request body, never in the URL (logs and "
                "proxies keep URLs)",
            )
        params = await api.params(request, rp.CREATE_KEY_PARAMS)
        username, password = rp.required(params, "username"), rp.required(params, "password")
        # every try spends one of the username's tokens, and a right password gives it back
        throttle(api.failed_logins, username, f"wrong passwords for user {username[:64]!r}")
        loop = asyncio.get_running_loop()  # scrypt takes tens of ms: off the event loop
        user = await loop.run_in_executor(None, api.logins.verify, username, password)
        if user is None:
            raise ApiError(401, codes.BAD_CREDENTIALS, "wrong username or password")
        api.failed_logins.refund(username)
        scopes = [s for s in params.get("scopes", "read,trade").split(",") if s]
        if not _password_held(api.logins, user):  # changed during the check: no key made,
            raise _changed()  # none of the user's evicted to make room for it (review 163)
        try:  # asked again under the keys' lock: the change may land while create waits (286)
            key = api.keys.create(user, scopes, params.get("label", ""), evict_oldest=True,
                                  held=lambda: _password_held(api.logins, user))  # fmt: skip
        except NotHeldError:
            raise _changed() from None
        except (KeysFileError, UsersFileError, OSError) as exc:  # a damaged file (the users'
            # too, read by ``held``: review 293) or a full disk: no key; or
            log.error("a key for %s: %s", user.comp_id, exc)  # one whose fsync failed, its
            if api.keys.evicted is not None:  # secret said to no one, the oldest revoked
                api.streams.sweep()  # (its streams close: review 177)
            raise _unstored() from None
        except ValueError as exc:  # the client's: a scope, a label
            raise bad_request(codes.ILLEGAL_PARAM, str(exc)) from None
        if not _password_held(api.logins, user):  # changed while the key was made: a
            _revoke(api, key.key)  # `set-password --revoke-keys` may have swept before it
            raise _changed()
        answer: dict[str, Any] = {
            "apiKey": key.key,
            "secretKey": key.secret,
            "scopes": key.scopes,
            "accountId": key.account,
            "username": key.comp_id,
        }
        if api.keys.evicted is not None:  # at the limit: the oldest key made room
            answer["revokedApiKey"] = api.keys.evicted.key
            api.streams.sweep()
        return json_response(answer)

    async def revoke_key(self, request: web.Request) -> web.Response:
        api = self.api
        key = await api.signed(request, "")  # any valid key may revoke itself
        await api.params(request, frozenset())  # and only itself: naming another is refused
        _revoke(api, key.key)
        api.streams.sweep()
        return json_response({"apiKey": key.key, "revoked": True})


def _revoke(api: RestApi, key: str) -> None:
    """``key`` revoked, or a 503 (a damaged file, a full disk: the key stays); a revoke
    made whose fsync failed is logged and taken as made (review 177: each was a 500)."""
    try:
        api.keys.revoke(key)
    except ChangeMadeError as exc:
        log.error("API key %s revoked: %s", key, exc)
    except (KeysFileError, OSError) as exc:
        log.error("API key %s not revoked: %s", key, exc)
        raise _unstored() from None


def _unstored() -> ApiError:
    return ApiError(503, codes.UNKNOWN, "the API keys could not be read or written: try again")


def _password_held(logins: UserStore, user: User) -> bool:
    """Whether the users (looked at now, not a view of a second ago: ``logins`` looks at
    every call) still give ``user`` the password it was checked with. The view reads only
    what the users' log gained: a fresh read of the file whole, twice a login, held the
    gateway's loop 370 ms at 20,000 users (review 169)."""
    return still_held(logins.get(user.comp_id), user) is not None


def _changed() -> ApiError:
    return ApiError(401, codes.BAD_CREDENTIALS, "the password changed: log in again")
