"""The kill pattern of the router's crash tests, on the broker alone: a static group member is
SIGKILLed, its replacement (same group.instance.id) starts a few seconds later, and is killed in
turn just after the group first told it to give its partitions back. Does the next replacement
get the partitions? An independent client (confluent-kafka, with the librdkafka the Python
package ships) drives the group, so the broker is checked on its own.

On tansu 0.6.0 as published it never does. The coordinator counts only heartbeats as signs of
life, not JoinGroup or SyncGroup, so the first replacement's first heartbeat finds its member
silent since its predecessor's last heartbeat, longer than the session timeout, and removes it,
while the group keeps that member id as its leader. The next replacement finds no member with its
instance id, joins under a new member id as a follower of the removed leader, and every SyncGroup
it sends is answered REBALANCE_IN_PROGRESS, forever (docs/adr/0001-tansu-group-coordinator.md).

    python3 group_stall.py BOOTSTRAP [--wait SECONDS]
exits 0 when the restarted member was assigned every partition within --wait, 1 otherwise; the
steps go to stdout.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

SESSION_TIMEOUT_MS = 10000

MEMBER = r'''
import json, sys, time
from confluent_kafka import Consumer
bootstrap, group, topic, block = sys.argv[1:5]
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.instance.id": "member-1",
                     "session.timeout.ms": %d, "auto.offset.reset": "earliest"})
def log(event, parts):
    print(json.dumps({"event": event, "partitions": sorted(p.partition for p in parts)}), flush=True)
def on_assign(_, parts):
    log("assign", parts)
def on_revoke(_, parts):
    log("revoke", parts)
    if block == "block":
        time.sleep(3600)  # killed here, before librdkafka can join again
consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
while True:
    consumer.poll(0.2)
''' % SESSION_TIMEOUT_MS


class Member:
    def __init__(self, script, args, name, block):
        self.log = open(os.path.join(args.dir, f"{name}.log"), "w+")
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, script, args.bootstrap, args.group, args.topic, "block" if block else "run"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def events(self):
        self.log.seek(0)
        return [json.loads(line) for line in self.log if line.startswith("{")]

    def wait_for(self, event, timeout, partitions=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(e["event"] == event and (partitions is None or e["partitions"] == partitions) for e in self.events()):
                return True
            time.sleep(0.1)
        return False

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("--wait", type=float, default=40.0)
    args = parser.parse_args()
    from confluent_kafka.admin import AdminClient, NewTopic
    run = f"{int(time.time() * 1000)}-{os.getpid()}"
    args.topic, args.group = f"stall-{run}", f"stall-{run}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    admin.create_topics([NewTopic(args.topic, 3, 1)])[args.topic].result(timeout=30)
    every = [0, 1, 2]
    started = time.time()
    say = lambda text: print(f"{time.time() - started:5.1f}s {text}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        args.dir = directory
        script = os.path.join(directory, "member.py")
        with open(script, "w") as f:
            f.write(MEMBER)
        members = []
        try:
            return scenario(script, args, members, every, say)
        finally:
            for member in members:
                member.kill()


def scenario(script, args, members, every, say):
    def start(name, block, wait):
        """Starts a member (kept in `members`); whether it got every partition within `wait` s."""
        member = Member(script, args, name, block=block)
        members.append(member)
        return member.wait_for("assign", wait, every)

    if not start("first", False, 30):
        say("the first member was never assigned")
        return 1
    first = members[-1]
    say("first member assigned; SIGKILL, and its replacement starts 5 s later")
    first.kill()
    time.sleep(5)
    if not start("second", True, 30):
        say("the replacement was never assigned")
        return 1
    second = members[-1]
    say("replacement assigned")
    if second.wait_for("revoke", 8):
        say("replacement told to give its partitions back; SIGKILL before it joins again")
    else:
        say("replacement kept its partitions; SIGKILL")
    second.kill()
    assigned = start("restarted", False, args.wait)
    restarted = members[-1]
    say(f"restarted member (same group.instance.id) "
        f"{'assigned every partition' if assigned else f'not assigned within {args.wait:.0f} s: the group is stuck'}")
    restarted.kill()
    return 0 if assigned else 1


if __name__ == "__main__":
    sys.exit(main())
