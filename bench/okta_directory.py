#!/usr/bin/env python3
"""A large Okta directory for the relay's benchmarks: USERS users served as Okta's Users API
serves them, with Okta's rate limits. Not a test fixture (the suite's is in
tests/support/idp.rs): a load generator's counterpart, fast enough not to be the bottleneck.

- `GET /api/v1/users?search=lastUpdated gt "…"&limit=200[&after=N]`: whole users, oldest
  change first, paged with `Link: <…>; rel="next"`;
- `GET /api/v1/users/{id}`; `GET /api/v1/logs` (an empty System Log);
- every answer carries `X-Rate-Limit-Limit/Remaining/Reset` for its bucket (the path with the
  ids left out, as Okta's buckets are), a fixed window of `--window` seconds and `--limit`
  requests (Okta documents 600 a minute for these endpoints in many orgs); past the limit a 429;
- `POST /control/change?count=K`: K users change (title and `lastUpdated`); answers their ids;
- `POST /control/limit?limit=N`: the limit from now on;
- `GET /control/stats`: requests answered per bucket, and 429s.

Prints its port on the first line of stdout. Nagle's delay is off on every connection.
"""
import argparse
import bisect
import datetime
import json
import threading
import urllib.parse

from fixture_http import FixedWindow, JsonHandler, serve

parser = argparse.ArgumentParser()
parser.add_argument("--users", type=int, default=100_000)
parser.add_argument("--limit", type=int, default=600, help="requests per window and bucket")
parser.add_argument("--window", type=int, default=60, help="seconds")
parser.add_argument("--page", type=int, default=200, help="Okta's largest page")
args = parser.parse_args()

BASE = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
lock = threading.Lock()
stats = {"throttled": 0}
windows = {}  # bucket -> FixedWindow


def stamp(ms):
    t = BASE + datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def user_id(n):
    return f"00u{n:017d}"


class Directory:
    """Users sorted by lastUpdated (as Okta's search answers): a change moves a user last."""

    def __init__(self, count):
        self.order = [user_id(n) for n in range(count)]  # by lastUpdated
        self.updated = list(range(count))  # lastUpdated, ms after BASE, same order
        self.users = {
            uid: {"n": n, "title": "Engineer", "updated": n} for n, uid in enumerate(self.order)
        }
        self.clock = count

    def body(self, uid):
        u = self.users[uid]
        n = u["n"]
        email = f"user{n}@bench.example"
        return {
            "id": uid,
            "status": "ACTIVE",
            "created": "2026-01-01T00:00:00.000Z",
            "lastUpdated": stamp(u["updated"]),
            "profile": {
                "login": email,
                "email": email,
                "firstName": "Bench",
                "lastName": f"User{n}",
                "title": u["title"],
                "department": "Engineering",
            },
        }

    def change(self, count):
        changed = []
        with lock:
            for uid in self.order[:count]:
                self.clock += 1
                self.users[uid]["title"] = f"Title {self.clock}"
                self.users[uid]["updated"] = self.clock
                changed.append(uid)
            self.order = self.order[count:] + changed
            self.updated = self.updated[count:] + [self.users[u]["updated"] for u in changed]
        return changed


directory = Directory(args.users)


def bucket(path):
    rest = path.split("/api/v1/", 1)[-1].split("/")
    return "/".join("{id}" if i % 2 == 1 else s for i, s in enumerate(rest))


def take(name):
    """Counts a request in its bucket's window: (allowed, limit headers)."""
    with lock:
        window = windows.setdefault(name, FixedWindow(args.window))
    allowed, used, end, _ = window.take(args.limit)
    with lock:
        stats["throttled"] += int(not allowed)
        stats[name] = stats.get(name, 0) + int(allowed)
    headers = {
        "X-Rate-Limit-Limit": str(args.limit),
        "X-Rate-Limit-Remaining": str(max(0, args.limit - used)),
        "X-Rate-Limit-Reset": str(end),
    }
    return allowed, headers


class Handler(JsonHandler):

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/control/change":
            self.reply(200, directory.change(int(query.get("count", ["1"])[0])))
        elif url.path == "/control/limit":
            args.limit = int(query["limit"][0])
            self.reply(200, {"limit": args.limit})
        else:
            self.reply(404, {"errorCode": "E0000022"})

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/control/stats":
            with lock:
                self.reply(200, dict(stats))
            return
        if not url.path.startswith("/api/v1/"):
            self.reply(404, {"errorCode": "E0000022"})
            return
        allowed, limits = take(bucket(url.path))
        if not allowed:
            self.reply(429, {"errorCode": "E0000047"}, limits)
            return
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/api/v1/users":
            self.list_users(query, limits)
        elif url.path.startswith("/api/v1/users/") and url.path.count("/") == 4:
            uid = url.path.rsplit("/", 1)[1]
            with lock:
                found = uid in directory.users and directory.body(uid)
            self.reply(200 if found else 404, found or {"errorCode": "E0000007"}, limits)
        elif url.path == "/api/v1/logs":
            self.reply(200, [], limits)
        else:
            self.reply(404, {"errorCode": "E0000022"}, limits)

    def list_users(self, query, limits):
        search = query.get("search", [""])[0]
        since = search.removeprefix('lastUpdated gt "').removesuffix('"')
        try:
            t = datetime.datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            self.reply(400, {"errorCode": "E0000031"}, limits)
            return
        since_ms = (t - BASE) // datetime.timedelta(milliseconds=1)
        limit = min(int(query.get("limit", ["200"])[0]), args.page)
        with lock:
            first = bisect.bisect_right(directory.updated, since_ms)
            after = int(query.get("after", [str(first)])[0])
            ids = directory.order[after:after + limit]
            page = [directory.body(uid) for uid in ids]
            more = after + limit < len(directory.order)
        headers = dict(limits)
        if more:
            host = self.headers.get("Host")
            next_url = f"http://{host}/api/v1/users?" + urllib.parse.urlencode(
                {"search": search, "limit": limit, "after": after + limit})
            headers["Link"] = f'<{next_url}>; rel="next"'
        self.reply(200, page, headers)


serve(Handler)
