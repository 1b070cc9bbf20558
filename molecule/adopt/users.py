"""The notes app's users for molecule/adopt: log in at phase 1, come back after the phases.

    users.py login URL FILE N        N users log in, each saves two notes; cookies and notes to FILE
    users.py check URL FILE PHASE    each is still logged in, with every note and each pending flash
                                     message once, served in PHASE; then saves one more note
    users.py traffic URL SECONDS     one user reading their notes (evidence for the phase-4 gate)

Exit code 1 with one line per user who lost anything.
"""

from __future__ import annotations

import json
import sys
import time

import requests


def login(url: str, path: str, count: int) -> int:
    users = []
    for index in range(count):
        client = requests.Session()
        name = f"molecule-user-{index}"
        client.post(f"{url}/login", data={"username": name}, timeout=10).raise_for_status()
        notes = [f"{name} note {n}" for n in range(2)]
        for note in notes:
            client.post(f"{url}/notes", data={"text": note}, timeout=10).raise_for_status()
        pending = [["info", f"welcome {name}"]] + [["success", "note saved"]] * len(notes)
        users.append({"name": name, "cookies": client.cookies.get_dict(), "notes": notes, "flashes": pending})
    with open(path, "w") as handle:
        json.dump(users, handle)
    return 0


def check(url: str, path: str, phase: str) -> int:
    with open(path) as handle:
        users = json.load(handle)
    lost = []
    for user in users:
        client = requests.Session()
        client.cookies.update(user["cookies"])
        answer = client.get(f"{url}/notes", timeout=10)
        seen = answer.json() if answer.status_code == 200 else {}
        expected = {"user": user["name"], "notes": user["notes"], "flashes": user["flashes"]}
        served_in = answer.headers.get("X-Session-Phase")
        if seen != expected or served_in != phase:
            lost.append(f"{user['name']}: HTTP {answer.status_code} in {served_in}, {seen} != {expected}")
            continue
        note = f"{user['name']} note after {phase}"
        client.post(f"{url}/notes", data={"text": note}, timeout=10).raise_for_status()
        user.update(notes=[*user["notes"], note], flashes=[["success", "note saved"]],
                    cookies={**user["cookies"], **client.cookies.get_dict()})
    with open(path, "w") as handle:
        json.dump(users, handle)
    for line in lost:
        print(line)
    print(f"{len(users) - len(lost)} of {len(users)} users kept their session in {phase}")
    return 1 if lost else 0


def traffic(url: str, seconds: float) -> int:
    client = requests.Session()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if client.get(f"{url}/notes", timeout=2).status_code == 401:
                client.post(f"{url}/login", data={"username": "molecule-traffic"}, timeout=2)
        except requests.RequestException:
            pass
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    command, url, *rest = sys.argv[1:]
    if command == "login":
        sys.exit(login(url, rest[0], int(rest[1])))
    if command == "check":
        sys.exit(check(url, rest[0], rest[1]))
    sys.exit(traffic(url, float(rest[0])))
