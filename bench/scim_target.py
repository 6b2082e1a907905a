#!/usr/bin/env python3
"""A SCIM 2.0 target for the relay's benchmarks (RFC 7644 Users: look-up by userName, create,
read, PATCH), with a rate limit of its own, fast enough not to be the bottleneck. Not a test
fixture: the suite runs scim2-server. Users live in memory under `/v2`.

- `--limit` requests per `--window` seconds in all (0: none); past it a 429 with `Retry-After`
  and Datadog's `X-RateLimit-*` headers, as a SaaS target answers;
- `GET /control/stats`: requests answered per method, 429s, users held.

Prints its port on the first line of stdout. Nagle's delay is off on every connection.
"""
import argparse
import json
import threading
import urllib.parse
import uuid

from fixture_http import FixedWindow, JsonHandler, serve

parser = argparse.ArgumentParser()
parser.add_argument("--limit", type=int, default=0)
parser.add_argument("--window", type=int, default=60)
args = parser.parse_args()

lock = threading.Lock()
users = {}  # id -> resource
by_name = {}  # lowercased userName -> id
stats = {"throttled": 0}
budget = FixedWindow(args.window)
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def admit():
    """Whether the request fits the window; the headers that say so."""
    if args.limit <= 0:
        return True, {}
    allowed, used, _, reset = budget.take(args.limit)
    with lock:
        stats["throttled"] += int(not allowed)
    headers = {
        "X-RateLimit-Limit": str(args.limit),
        "X-RateLimit-Period": str(args.window),
        "X-RateLimit-Remaining": str(max(0, args.limit - used)),
        "X-RateLimit-Reset": str(reset),
    }
    if not allowed:
        headers["Retry-After"] = str(reset)
    return allowed, headers


class Handler(JsonHandler):
    content_type = "application/scim+json"

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def gate(self, method):
        if self.path == "/control/stats":
            return None
        allowed, headers = admit()
        if allowed:
            with lock:
                stats[method] = stats.get(method, 0) + 1
            return headers
        self.reply(429, {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                         "status": "429", "detail": "rate limited"}, headers)
        return False

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/control/stats":
            with lock:
                self.reply(200, dict(stats, users=len(users)))
            return
        headers = self.gate("GET")
        if headers is False:
            return
        if url.path == "/v2/Users":
            query = urllib.parse.parse_qs(url.query)
            flt = query.get("filter", [""])[0]
            with lock:
                if flt.startswith("userName eq "):
                    name = flt.split(" eq ", 1)[1].strip().strip('"').lower()
                    found = [users[by_name[name]]] if name in by_name else []
                else:
                    start = int(query.get("startIndex", ["1"])[0])
                    count = int(query.get("count", ["100"])[0])
                    found = list(users.values())[start - 1:start - 1 + count]
                total = len(found) if flt else len(users)
            self.reply(200, {"schemas": [LIST], "totalResults": total, "itemsPerPage": len(found),
                             "startIndex": 1, "Resources": found}, headers)
        elif url.path.startswith("/v2/Users/"):
            with lock:
                found = users.get(url.path.rsplit("/", 1)[1])
            self.reply(200 if found else 404, found or {"status": "404"}, headers)
        else:
            self.reply(404, {"status": "404"}, headers)

    def do_POST(self):
        # The body is read before any answer, a 429 too: left unread, it would be taken for the
        # next request on the kept-alive connection.
        resource = self.body()
        headers = self.gate("POST")
        if headers is False:
            return
        name = str(resource.get("userName", "")).lower()
        with lock:
            if name in by_name:
                self.reply(409, {"status": "409", "scimType": "uniqueness"}, headers)
                return
            uid = uuid.uuid4().hex
            resource.update({"id": uid, "schemas": [USER],
                             "meta": {"resourceType": "User", "location": f"/v2/Users/{uid}"}})
            users[uid] = resource
            by_name[name] = uid
        self.reply(201, resource, headers)

    def do_PATCH(self):
        patch = self.body()
        headers = self.gate("PATCH")
        if headers is False:
            return
        uid = urllib.parse.urlsplit(self.path).path.rsplit("/", 1)[1]
        with lock:
            found = users.get(uid)
            if found:
                for op in patch.get("Operations", []):
                    value = op.get("value")
                    if op.get("path") and "[" not in op["path"] and "." not in op["path"]:
                        found[op["path"]] = value
                    elif isinstance(value, dict) and not op.get("path"):
                        found.update(value)
        self.reply(200 if found else 404, found or {"status": "404"}, headers)

    def do_PUT(self):
        headers = self.gate("PUT")
        if headers is False:
            return
        resource = self.body()
        uid = urllib.parse.urlsplit(self.path).path.rsplit("/", 1)[1]
        with lock:
            if uid in users:
                resource["id"] = uid
                users[uid] = resource
        self.reply(200 if uid in users else 404, users.get(uid, {"status": "404"}), headers)


serve(Handler)
