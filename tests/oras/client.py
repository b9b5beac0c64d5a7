"""Drives the oras Python SDK against a registry for tests/oras_sdk.rs.

    client.py HOST USER PASSWORD STEP [STEP...]

Each STEP runs on one OrasClient, so its token is reused across scopes as the SDK does:
    push:REPO:TAG:FILE[,FILE...]   push files as an artifact (relative paths, from the cwd)
    pull:REPO:TAG:DIR              pull an artifact's files into DIR
Prints one JSON line per step: {"step", "ok", "error"?}. The SDK's retries are logged by its
logger ("Retrying in …"), which the test reads from stderr.
"""

import json
import logging
import sys

import oras.client
import oras.logger


def main():
    host, user, password, *steps = sys.argv[1:]
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    oras.logger.setup_logger(quiet=False, debug=False)
    client = oras.client.OrasClient(hostname=host, insecure=True)
    client.auth.set_basic_auth(user, password)
    failed = False
    for step in steps:
        kind, repo, tag, arg = step.split(":", 3)
        target = f"{host}/{repo}:{tag}"
        result = {"step": step}
        try:
            if kind == "push":
                response = client.push(target=target, files=arg.split(","))
                response.raise_for_status()
            elif kind == "pull":
                client.pull(target=target, outdir=arg)
            else:
                raise ValueError(f"unknown step {kind}")
            result["ok"] = True
        except Exception as e:  # the test wants the message, whatever the SDK raised
            failed = True
            result["ok"] = False
            result["error"] = f"{type(e).__name__}: {e}"
            response = getattr(e, "response", None)
            if response is not None:
                result["body"] = response.text
        print(json.dumps(result), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
