#!/usr/bin/env python3
"""A large Entra ID tenant for the relay's benchmarks: USERS users served as Microsoft Graph
serves them, with Graph's identity throttling. Not a test fixture (the suite's is in
tests/support/idp.rs): a load generator's counterpart, fast enough not to be the bottleneck.

- `POST /{tenant}/oauth2/v2.0/token`: an app token (client credentials);
- `GET /v1.0/users/delta?$select=…`: without a token every user, `--page` a page, joined by
  `@odata.nextLink` (`$skiptoken`), ending with an `@odata.deltaLink` (`$deltatoken`); with a
  `$deltatoken`, the users changed since it, oldest change first;
- `GET /v1.0/users/{id}`; `GET /v1.0/directory/deletedItems/{id}` (404: nobody deleted);
- every `/v1.0` request costs one ResourceUnit of the app+tenant pair's budget: `--limit` a
  `--window` (Graph documents 8,000 every 10 seconds for a tenant over 500 users, and a cost
  of 1 for these reads); past it a 429 with `Retry-After`, as Graph answers;
- `POST /control/change?count=K`: K users change (jobTitle); answers their ids;
- `GET /control/stats`: requests answered per path, and 429s.

Prints its port on the first line of stdout. Nagle's delay is off on every connection.
"""
import argparse
import json
import threading
import urllib.parse

from fixture_http import FixedWindow, JsonHandler, serve

parser = argparse.ArgumentParser()
parser.add_argument("--users", type=int, default=100_000)
parser.add_argument("--limit", type=int, default=8000, help="ResourceUnits per window")
parser.add_argument("--window", type=int, default=10, help="seconds")
parser.add_argument("--page", type=int, default=100, help="users a delta page")
args = parser.parse_args()

lock = threading.Lock()
stats = {"throttled": 0}
budget = FixedWindow(args.window)


def user_id(n):
    return f"{n:08x}-0000-4000-8000-{n:012x}"


class Tenant:
    """Users in id order; each with the version of its last change."""

    def __init__(self, count):
        self.ids = [user_id(n) for n in range(count)]
        self.users = {uid: {"n": n, "title": "Engineer", "version": 0} for n, uid in enumerate(self.ids)}
        self.version = 0
        # Changed users, oldest change first: (version, id).
        self.changes = []

    def body(self, uid):
        u = self.users[uid]
        n = u["n"]
        upn = f"user{n}@bench.example"
        return {
            "id": uid,
            "userPrincipalName": upn,
            "mail": upn,
            "givenName": "Bench",
            "surname": f"User{n}",
            "displayName": f"Bench User{n}",
            "jobTitle": u["title"],
            "accountEnabled": True,
            "employeeId": None,
            "department": "Engineering",
        }

    def change(self, count):
        changed = []
        with lock:
            for uid in self.ids[:count]:
                self.version += 1
                self.users[uid]["title"] = f"Title {self.version}"
                self.users[uid]["version"] = self.version
                self.changes.append((self.version, uid))
                changed.append(uid)
        return changed


tenant = Tenant(args.users)


def admit(path):
    """Counts a request against the window: whether it is served, and the wait if not."""
    allowed, _, _, wait = budget.take(args.limit)
    with lock:
        stats["throttled"] += int(not allowed)
        if allowed:
            stats[path] = stats.get(path, 0) + 1
    return allowed, wait


class Handler(JsonHandler):

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        query = urllib.parse.parse_qs(url.query)
        if url.path.endswith("/oauth2/v2.0/token"):
            with lock:
                stats["token"] = stats.get("token", 0) + 1
            self.reply(200, {"token_type": "Bearer", "expires_in": 3599,
                             "access_token": "bench-graph-token"})
        elif url.path == "/control/change":
            self.reply(200, tenant.change(int(query.get("count", ["1"])[0])))
        else:
            self.reply(404, {"error": {"code": "NotFound"}})

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/control/stats":
            with lock:
                self.reply(200, dict(stats))
            return
        if not url.path.startswith("/v1.0/"):
            self.reply(404, {"error": {"code": "NotFound"}})
            return
        parts = url.path.split("/")
        name = "users/delta" if url.path == "/v1.0/users/delta" else "/".join(
            p if i < 3 else "{id}" for i, p in enumerate(parts[2:], start=2))
        if url.path.startswith("/v1.0/directory/deletedItems/"):
            name = "directory/deletedItems/{id}"
        allowed, wait = admit(name)
        if not allowed:
            self.reply(429, {"error": {"code": "TooManyRequests"}}, {"Retry-After": str(wait)})
            return
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/v1.0/users/delta":
            self.delta(query)
        elif url.path.startswith("/v1.0/users/") and len(parts) == 4:
            uid = urllib.parse.unquote(parts[3])
            with lock:
                found = uid in tenant.users and tenant.body(uid)
            self.reply(200 if found else 404, found or {"error": {"code": "Request_ResourceNotFound"}})
        elif url.path.startswith("/v1.0/directory/deletedItems/"):
            self.reply(404, {"error": {"code": "Request_ResourceNotFound"}})
        else:
            self.reply(404, {"error": {"code": "NotFound"}})

    def delta(self, query):
        host = f"http://{self.headers.get('Host')}/v1.0/users/delta"
        skip = query.get("$skiptoken", [None])[0]
        if skip:
            base, _, offset = skip.partition(".")
            offset = int(offset or 0)
        else:
            base, offset = query.get("$deltatoken", ["full"])[0], 0
        with lock:
            if base == "full":
                ids = tenant.ids
            else:
                since = int(base)
                # Each changed user once, in the order of their last change.
                last = {uid: version for version, uid in tenant.changes if version > since}
                ids = sorted(last, key=last.get)
            page = [tenant.body(uid) for uid in ids[offset:offset + args.page]]
            more = offset + args.page < len(ids)
            version = tenant.version
        body = {"value": page}
        if more:
            body["@odata.nextLink"] = f"{host}?$skiptoken={base}.{offset + args.page}"
        else:
            body["@odata.deltaLink"] = f"{host}?$deltatoken={version}"
        self.reply(200, body)


serve(Handler)
