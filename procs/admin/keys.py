"""`ringex admin keys` and `ringex admin revoke-key`: the operator's view of the REST API's
keys (``apikeys.json``, shared by the gateways).

``keys`` lists them, a user's (``--comp-id``) or every one: the public key id, its user and
account, scopes, label and when it was made; never a secret. ``revoke-key`` revokes one by
its id (a key thought leaked), the user's other keys and sessions untouched: its REST
requests get 401 and the private streams it opened close within a second (each gateway
looks at the file at most that long after a change). A key id that is not there is
exit 1, and so is a key file that cannot be read or written, one line naming it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from config.refused_value import cut_values
from config.schema import RingexConfig
from procs.common.apikeys import ApiKeyStore
from procs.common.change_log import ChangeMadeError
from procs.common.topology import apikeys_path


def _store(cfg: RingexConfig, command: str) -> ApiKeyStore | None:
    try:
        return ApiKeyStore(apikeys_path(cfg))
    except (OSError, ValueError) as exc:
        print(f"ringex admin {command}: the API key file {apikeys_path(cfg)} cannot be read "
              f"({exc})", file=sys.stderr)  # fmt: skip
        return None


def list_keys(cfg: RingexConfig, args: argparse.Namespace) -> int:
    store = _store(cfg, "keys")
    if store is None:
        return 1
    keys = store.all_keys() if args.comp_id is None else store.keys_of(args.comp_id)
    if args.json:
        shown = [
            {"apiKey": k.key, "compId": k.comp_id, "account": k.account, "scopes": k.scopes,
             "label": k.label, "createdMs": k.created_ms}
            for k in keys
        ]  # fmt: skip
        print(json.dumps(shown))
        return 0
    if not keys:
        print("no API keys" + ("" if args.comp_id is None else f" of {cut_values(args.comp_id)}"))
    for k in keys:
        try:
            made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(k.created_ms / 1000))
        except (OverflowError, OSError, ValueError):  # a hand-edited file's: shown as it is
            made = f"{k.created_ms} ms"
        label = f"  {k.label!r}" if k.label else ""
        print(f"{k.key}  {k.comp_id:32} account {k.account:>12}  {','.join(k.scopes):10} "
              f"made {made}{label}")  # fmt: skip
    return 0


def revoke_key(cfg: RingexConfig, args: argparse.Namespace) -> int:
    store = _store(cfg, "revoke-key")
    if store is None:
        return 1
    key = store.get(args.api_key)
    try:
        revoked = store.revoke(args.api_key)
    except ChangeMadeError as exc:  # revoked: every gateway may have read it
        print(f"ringex admin revoke-key: {args.api_key[:64]!r}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ringex admin revoke-key: {args.api_key[:64]!r} not revoked: the key file "
              f"{apikeys_path(cfg)} could not be written ({exc.strerror or exc})",
              file=sys.stderr)  # fmt: skip
        return 1
    if not revoked:
        print(f"ringex admin revoke-key: no API key {args.api_key[:64]!r} (`ringex admin keys` "
              "lists them)", file=sys.stderr)  # fmt: skip
        return 1
    whose = "" if key is None else f" of {key.comp_id} (account {key.account})"
    print(f"API key {args.api_key}{whose} revoked; its private streams close within a second")
    return 0
