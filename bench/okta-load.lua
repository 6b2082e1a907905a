-- wrk script: POST a distinct Okta user.lifecycle.create delivery per request to /okta.
-- Usage: see scripts/load-standalone.sh
local counter = 0
local secret = os.getenv("OKTA_SECRET") or "local-demo-okta-secret"
-- Events name this many distinct users, round robin (USERS; default 1000).
local users = tonumber(os.getenv("USERS") or "1000")
local template = [[{"eventType":"com.okta.event_hook","eventId":"d-%d","data":{"events":[{"uuid":"load-%d-%d","published":"%s","eventType":"user.lifecycle.create","outcome":{"result":"SUCCESS"},"target":[{"id":"00uload%d","type":"User","alternateId":"load%d@example.com","displayName":"Load User"}]}]}}]]
local thread_id = 0

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

function request()
  counter = counter + 1
  -- Published now (to the second), as Okta stamps it: the relay's apply latency is measured
  -- from it.
  local body = string.format(template, counter, id, counter, os.date("!%Y-%m-%dT%H:%M:%SZ"), counter % users, counter % users)
  return wrk.format("POST", "/okta", {["Authorization"] = secret, ["Content-Type"] = "application/json"}, body)
end

local non200 = 0
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  io.write(string.format("requests: %d, errors: %d, p50: %.2f ms, p99: %.2f ms\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
