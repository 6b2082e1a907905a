#!/usr/bin/env python3
"""Start-up time of each Lambda function's release binary, from process start to ready: the
moment it asks the Lambda Runtime API for its first invocation. A stand-in Runtime API on
127.0.0.1 answers nothing else; the functions read plain settings from the environment (no
Secrets Manager calls), as after secret resolution. With `--moto URL` the secrets are instead
Secrets Manager ARNs on that moto server, so "ready" includes reading them (one
`GetSecretValue` per distinct secret, as a real cold start). Run from the repository root after
`cargo build --release -p scim-relay-inbound -p scim-relay-worker -p scim-relay-sweeper`
(`RELEASE_DIR` if the binaries are elsewhere than target/release).

Usage: scripts/lambda-startup.py [RUNS] [--moto URL]
       (default 20 runs per function; prints median and p90)
"""
import http.server
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

args = sys.argv[1:]
MOTO = None
if "--moto" in args:
    i = args.index("--moto")
    MOTO = args[i + 1]
    del args[i:i + 2]
RUNS = int(args[0]) if args else 20
RELEASE_DIR = os.environ.get("RELEASE_DIR", os.path.join("target", "release"))
ready = threading.Event()


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # /2018-06-01/runtime/invocation/next: the function is ready
        ready.set()
        time.sleep(0.2)
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


port = free_port()
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), RuntimeApi)
threading.Thread(target=server.serve_forever, daemon=True).start()

env = dict(os.environ)
env.update({
    "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
    "AWS_LAMBDA_FUNCTION_NAME": "startup",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_LOG_GROUP_NAME": "startup",
    "AWS_LAMBDA_LOG_STREAM_NAME": "startup",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "startup",
    "AWS_SECRET_ACCESS_KEY": "startup",
    "RUST_LOG": "error",
    "SCIM_RELAY_QUEUE__URL": "https://sqs.us-east-1.amazonaws.com/123456789012/relay.fifo",
    "SCIM_RELAY_QUEUE__DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/relay-dlq.fifo",
    "SCIM_RELAY_QUEUE__SIGNING_KEY": "startup-signing-key",
    "SCIM_RELAY_STORE__TABLE": "relay-state",
    "SCIM_RELAY_OKTA__ORG_URL": "https://example.okta.com",
    "SCIM_RELAY_OKTA__SHARED_SECRET": "startup-okta-secret",
    "SCIM_RELAY_OKTA__API_TOKEN": "startup-okta-token",
    "SCIM_RELAY_ENTRA__CLIENT_STATE": "startup-client-state",
    "SCIM_RELAY_TARGET__PROFILE": "datadog",
    "SCIM_RELAY_TARGET__BASE_URL": "https://api.datadoghq.com/api/v2/scim",
    "SCIM_RELAY_TARGET__TOKEN": "startup-app-key",
})

if MOTO:
    # The secrets as a deployment holds them: the queue key and the IdP secrets on their own,
    # the worker's credentials as one JSON secret read by key.
    import json
    import uuid

    import boto3

    sm = boto3.client("secretsmanager", endpoint_url=MOTO, region_name="us-east-1",
                      aws_access_key_id="startup", aws_secret_access_key="startup")

    def secret(value):
        return sm.create_secret(Name=f"startup-{uuid.uuid4()}", SecretString=value)["ARN"]

    credentials = secret(json.dumps({"okta_api_token": "startup-okta-token",
                                     "target_token": "startup-app-key"}))
    env.update({
        "AWS_ENDPOINT_URL": MOTO,
        "SCIM_RELAY_QUEUE__SIGNING_KEY": secret("startup-signing-key"),
        "SCIM_RELAY_OKTA__SHARED_SECRET": secret("startup-okta-secret"),
        "SCIM_RELAY_ENTRA__CLIENT_STATE": secret("startup-client-state"),
        "SCIM_RELAY_OKTA__API_TOKEN": f"{credentials}#okta_api_token",
        "SCIM_RELAY_TARGET__TOKEN": f"{credentials}#target_token",
    })

for name in ["inbound", "worker", "sweeper"]:
    binary = os.path.join(RELEASE_DIR, name)
    times = []
    for _ in range(RUNS):
        ready.clear()
        start = time.perf_counter()
        proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not ready.wait(10):
            proc.kill()
            sys.exit(f"{name} did not become ready: {proc.stderr.read().decode()[-2000:]}")
        times.append((time.perf_counter() - start) * 1000)
        proc.kill()
        proc.wait()
    times.sort()
    size = os.path.getsize(binary) / 1e6
    print(f"{name}: ready in {statistics.median(times):.1f} ms median, "
          f"{times[int(len(times) * 0.9) - 1]:.1f} ms p90 over {RUNS} starts ({size:.1f} MB x86_64 binary)"
          + (", secrets read from moto" if MOTO else ""))
server.shutdown()
