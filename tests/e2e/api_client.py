# SPDX-License-Identifier: Apache-2.0
# A client cordon did not write: Python's grpcio (Debian's python3-grpcio) with stubs generated
# from proto/cordon.proto at test time (python3-grpc-tools; $CORDON_PY_STUBS holds them). Driven
# by tests/e2e/test_cordond.c, one scenario per run; prints "ok ..." per step and exits 1 on the
# first failure, saying why.
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.environ["CORDON_PY_STUBS"])
import grpc  # noqa: E402
import cordon_pb2 as pb  # noqa: E402
import cordon_pb2_grpc as rpc  # noqa: E402

ALLOW_ALL = """version: 1
commands:
  default: allow
  rules:
    - match: "touch approved.txt"
      action: approve
      reason: a person looks first
    - match: "rm **"
      action: deny
      reason: nothing is removed
"""


def fail(msg):
    print("FAIL:", msg, flush=True)
    sys.exit(1)


def ok(msg):
    print("ok", msg, flush=True)


def stub(sock):
    ch = grpc.insecure_channel("unix://" + sock)
    return rpc.SandboxesStub(ch)


def wait_state(s, sid, want, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        sb = s.GetSandbox(pb.GetSandboxRequest(id=sid))
        if sb.state in want:
            return sb
        time.sleep(0.2)
    fail("sandbox %s never reached %s (is %s: %s)" % (sid, want, sb.state, sb.error))


def run(s, sid, argv, approve=None, **kw):
    """Exec: output per fd, the exit, and the approvals seen."""
    out = {1: b"", 2: b""}
    exit_ev = None
    pending = []
    for ev in s.Exec(pb.ExecRequest(sandbox_id=sid, argv=argv, **kw)):
        kind = ev.WhichOneof("event")
        if kind == "output":
            out[ev.output.fd] += ev.output.data
        elif kind == "approval_pending":
            pending.append(ev.approval_pending.approval)
            if approve is not None:
                approve(ev.approval_pending.approval)
        elif kind == "exit":
            exit_ev = ev.exit
    return out, exit_ev, pending


def expect_code(code, fn, needle=None):
    try:
        fn()
    except grpc.RpcError as e:
        if e.code() != code:
            fail("expected %s, got %s: %s" % (code, e.code(), e.details()))
        if needle and needle not in e.details():
            fail("%s: %r does not say %r" % (code, e.details(), needle))
        return e.details()
    fail("expected %s, the call succeeded" % code)


def interop(sock, repo, id_file):
    s = stub(sock)
    events = []
    first = s.CreateSandbox(
        pb.CreateSandboxRequest(repo=repo, ref="main", policy_text=ALLOW_ALL, labels={"suite": "interop"})
    )
    sid = first.id
    if first.state != pb.QUEUED or not first.tenant.startswith("uid:"):
        fail("created sandbox: %s" % first)
    ok("created %s for tenant %s" % (sid, first.tenant))
    with open(id_file, "w") as f:
        f.write(sid)

    def watch():
        try:
            for ev in s.WatchEvents(pb.WatchEventsRequest(sandbox_id=sid, after_event_id=1), timeout=60):
                events.append(ev)
                if ev.state == pb.STOPPED:
                    return
        except grpc.RpcError:
            pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    out, ex, _ = run(s, sid, ["sh", "-c", "echo hello > new.txt; echo streamed; echo warn >&2; sed -i s/one/ONE/ README"])
    if ex is None or ex.exit_code != 0 or out[1] != b"streamed\n" or out[2] != b"warn\n":
        fail("exec: %r %s" % (out, ex))
    ok("exec streamed stdout and stderr, exit 0")
    sb = s.GetSandbox(pb.GetSandboxRequest(id=sid))
    if sb.state != pb.READY or len(sb.base_commit) != 40 or sb.labels["suite"] != "interop":
        fail("sandbox: %s" % sb)
    ok("sandbox READY at base %s (%s, %s)" % (sb.base_commit[:12], sb.accel, sb.transport))

    decided = []

    def approve(a):
        listed = s.ListApprovals(pb.ListApprovalsRequest(sandbox_id=sid))
        if [x.id for x in listed.approvals] != [a.id]:
            fail("ListApprovals: %s" % listed)
        decided.append(s.Decide(pb.DecideRequest(approval_id=a.id, approve=True)))

    out, ex, pending = run(s, sid, ["touch", "approved.txt"], approve=approve)
    if len(pending) != 1 or pending[0].status != pb.PENDING or ex is None or ex.exit_code != 0:
        fail("approval: %s %s" % (pending, ex))
    if decided[0].status != pb.APPROVED or not decided[0].decided_by.startswith("uid:"):
        fail("decide: %s" % decided[0])
    ok("approval pending, approved with Decide, the command ran")
    expect_code(grpc.StatusCode.FAILED_PRECONDITION,
                lambda: s.Decide(pb.DecideRequest(approval_id=pending[0].id, approve=False)), "already")
    ok("a second decision is refused (FAILED_PRECONDITION)")

    data = bytes(range(256)) * 4096  # 1 MiB, in chunks
    chunks = [pb.WriteFileChunk(sandbox_id=sid, path="/workspace/blob.bin", mode=0o600, data=data[:300000])]
    chunks += [pb.WriteFileChunk(data=data[i:i + 300000]) for i in range(300000, len(data), 300000)]
    w = s.WriteFile(iter(chunks))
    if w.bytes != len(data):
        fail("write: %s" % w)
    back = b"".join(c.data for c in s.ReadFile(pb.ReadFileRequest(sandbox_id=sid, path="/workspace/blob.bin")))
    if back != data:
        fail("read back %d bytes, wrote %d" % (len(back), len(data)))
    ok("WriteFile and ReadFile round-trip 1 MiB")

    run(s, sid, ["sh", "-c", "mkdir -p /tmp/ls/sub && ln -s ../x /tmp/ls/link && "
                 "printf 12345 > /tmp/ls/a && cd /tmp/ls && printf 'bad\\377' | xargs touch"])
    ls = s.ListDir(pb.ListDirRequest(sandbox_id=sid, path="/tmp/ls"))
    got = [(e.name, e.type, e.raw_name) for e in ls.entries]
    want = [("a", pb.ENTRY_TYPE_FILE, b""), ("bad\ufffd", pb.ENTRY_TYPE_FILE, b"bad\xff"),
            ("link", pb.ENTRY_TYPE_SYMLINK, b""), ("sub", pb.ENTRY_TYPE_DIR, b"")]
    if got != want or ls.total != 4 or ls.truncated or ls.entries[0].size != 5 \
            or ls.entries[2].link_target != "../x":
        fail("ListDir: %s" % ls)
    two = s.ListDir(pb.ListDirRequest(sandbox_id=sid, path="/tmp/ls", max_entries=2))
    if len(two.entries) != 2 or not two.truncated or two.total != 4:
        fail("ListDir max_entries=2: %s" % two)
    expect_code(grpc.StatusCode.NOT_FOUND, lambda: s.ListDir(pb.ListDirRequest(sandbox_id=sid, path="/tmp/none")))
    expect_code(grpc.StatusCode.INVALID_ARGUMENT,
                lambda: s.ListDir(pb.ListDirRequest(sandbox_id=sid, path="/tmp/ls/a")), "not a folder")
    ok("ListDir: types, sizes, a symlink's target, a name that is not UTF-8 (raw_name), "
       "max_entries, NOT_FOUND, not a folder")

    d = s.GetDiff(pb.GetDiffRequest(sandbox_id=sid))
    patch = d.patch.decode()
    for needle in ("new.txt", "approved.txt", "+ONE", "blob.bin"):
        if needle not in patch:
            fail("diff lacks %s: %s" % (needle, patch[:2000]))
    if d.base_commit != sb.base_commit or d.files_changed != 4 or d.result_commit == d.base_commit:
        fail("diff: base %s result %s files %d" % (d.base_commit, d.result_commit, d.files_changed))
    ok("GetDiff: %d files, +%d -%d, result %s" % (d.files_changed, d.insertions, d.deletions, d.result_commit[:12]))
    d2 = s.GetDiff(pb.GetDiffRequest(sandbox_id=sid))
    if d2.patch != d.patch or d2.result_commit != d.result_commit:
        fail("a second GetDiff differs")
    ok("a second GetDiff gives the same result commit")

    ev = s.GetEvidence(pb.GetEvidenceRequest(sandbox_id=sid))
    if '"touch"' not in ev.manifest_json or '"approved"' not in ev.manifest_json:
        fail("evidence: %s" % ev.manifest_json[:2000])
    ok("GetEvidence: the manifest records the commands and the approval")

    listed = s.ListSandboxes(pb.ListSandboxesRequest(states=[pb.READY], labels={"suite": "interop"}))
    if [x.id for x in listed.sandboxes] != [sid]:
        fail("list: %s" % listed)
    ok("ListSandboxes by state and label")

    stopped = s.Cancel(pb.CancelRequest(id=sid))
    if stopped.state != pb.AWAITING_REVIEW or stopped.result_commit != d.result_commit \
            or stopped.review != "awaiting":
        fail("cancel: %s" % stopped)
    ok("Cancel: AWAITING_REVIEW (its result changed the repository), result kept")
    review = s.GetReview(pb.GetReviewRequest(sandbox_id=sid))
    summary = json.loads(review.summary_json)
    if review.patch != d.patch or summary["diff"]["files_changed"] < 1 or not summary["commands"] \
            or not summary["approvals"]:
        fail("review: %s" % review)
    ok("GetReview: the summary (%d commands, %d approvals) and the patch"
       % (len(summary["commands"]), len(summary["approvals"])))
    decided = s.DecideReview(pb.DecideReviewRequest(sandbox_id=sid, approve=False,
                                                    comment="not this way"))
    if decided.state != pb.STOPPED or decided.review != "rejected" \
            or decided.review_comment != "not this way" or not decided.reviewed_by.startswith("uid:"):
        fail("reject: %s" % decided)
    expect_code(grpc.StatusCode.FAILED_PRECONDITION,
                lambda: s.DecideReview(pb.DecideReviewRequest(sandbox_id=sid, approve=True)),
                "rejected already")
    ok("DecideReview: rejected by %s, STOPPED; a second decision is refused" % decided.reviewed_by)
    watcher.join(30)
    states = [e.state for e in events]
    for want in (pb.BOOTING, pb.READY, pb.STOPPING, pb.AWAITING_REVIEW, pb.STOPPED):
        if want not in states:
            fail("WatchEvents missed %s: %s" % (want, events))
    ok("WatchEvents streamed %d state changes" % len(events))
    d3 = s.GetDiff(pb.GetDiffRequest(sandbox_id=sid))
    if d3.patch != d.patch:
        fail("the stopped sandbox's diff differs")
    ok("GetDiff after the stop reads the evidence")


def delete(sock, sid):
    s = stub(sock)
    s.Delete(pb.DeleteRequest(id=sid))
    expect_code(grpc.StatusCode.NOT_FOUND, lambda: s.GetSandbox(pb.GetSandboxRequest(id=sid)))
    ok("Delete: the sandbox is gone (NOT_FOUND)")


def other_tenant(sock, sid):
    s = stub(sock)
    for name, fn in (
        ("GetSandbox", lambda: s.GetSandbox(pb.GetSandboxRequest(id=sid))),
        ("Exec", lambda: list(s.Exec(pb.ExecRequest(sandbox_id=sid, argv=["true"])))),
        ("GetDiff", lambda: s.GetDiff(pb.GetDiffRequest(sandbox_id=sid))),
        ("GetEvidence", lambda: s.GetEvidence(pb.GetEvidenceRequest(sandbox_id=sid))),
        ("ReadFile", lambda: list(s.ReadFile(pb.ReadFileRequest(sandbox_id=sid, path="/etc/hostname")))),
        ("ListDir", lambda: s.ListDir(pb.ListDirRequest(sandbox_id=sid, path="/"))),
        ("Cancel", lambda: s.Cancel(pb.CancelRequest(id=sid))),
        ("Delete", lambda: s.Delete(pb.DeleteRequest(id=sid))),
        ("WatchEvents", lambda: list(s.WatchEvents(pb.WatchEventsRequest(sandbox_id=sid), timeout=5))),
        ("ListApprovals", lambda: s.ListApprovals(pb.ListApprovalsRequest(sandbox_id=sid))),
    ):
        expect_code(grpc.StatusCode.NOT_FOUND, fn)
    if s.ListSandboxes(pb.ListSandboxesRequest()).sandboxes:
        fail("another tenant's sandboxes are listed")
    ok("uid %d sees none of the other tenant's sandbox (NOT_FOUND x10, empty list)" % os.getuid())


def errors(sock):
    s = stub(sock)
    bad = "version: 1\ncommands:\n  default: alow\n"
    msg = expect_code(grpc.StatusCode.INVALID_ARGUMENT,
                      lambda: s.CreateSandbox(pb.CreateSandboxRequest(policy_text=bad)), "policy:3:")
    ok("INVALID_ARGUMENT for a bad policy: %s" % msg)
    expect_code(grpc.StatusCode.NOT_FOUND, lambda: s.CreateSandbox(pb.CreateSandboxRequest(policy_name="no-such")))
    expect_code(grpc.StatusCode.NOT_FOUND, lambda: s.GetSandbox(pb.GetSandboxRequest(id="0123456789abcdef")))
    ok("NOT_FOUND for an unknown policy name and sandbox")
    msg = expect_code(grpc.StatusCode.RESOURCE_EXHAUSTED,
                      lambda: s.CreateSandbox(pb.CreateSandboxRequest(policy_name="default-deny", limits=pb.Limits(cpus=64))),
                      "limit")
    ok("RESOURCE_EXHAUSTED over the policy's limits: %s" % msg)
    sid = s.CreateSandbox(pb.CreateSandboxRequest(policy_text=ALLOW_ALL, limits=pb.Limits(memory_mib=256))).id
    msg = expect_code(grpc.StatusCode.PERMISSION_DENIED,
                      lambda: run(s, sid, ["rm", "-rf", "/workspace"]), "nothing is removed")
    ok("PERMISSION_DENIED for a denied command: %s" % msg)
    seen = []

    def deny(a):
        seen.append(a.id)
        s.Decide(pb.DecideRequest(approval_id=a.id, approve=False))

    msg = expect_code(grpc.StatusCode.PERMISSION_DENIED, lambda: run(s, sid, ["touch", "approved.txt"], approve=deny), "not approved")
    ok("PERMISSION_DENIED when the approval is denied")
    expect_code(grpc.StatusCode.DEADLINE_EXCEEDED, lambda: run(s, sid, ["sleep", "30"], timeout_seconds=1), "timeout")
    ok("DEADLINE_EXCEEDED when a command passes its timeout")
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: run(s, sid, []), "argv")
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: list(s.ReadFile(pb.ReadFileRequest(sandbox_id=sid, path="rel"))))
    ok("INVALID_ARGUMENT for an empty argv and a relative path")
    expect_code(grpc.StatusCode.FAILED_PRECONDITION, lambda: s.GetDiff(pb.GetDiffRequest(sandbox_id=sid)), "no repository")
    s.Cancel(pb.CancelRequest(id=sid))
    expect_code(grpc.StatusCode.FAILED_PRECONDITION, lambda: run(s, sid, ["true"]), "stopped")
    ok("FAILED_PRECONDITION: no repository to diff; Exec on a stopped sandbox")
    s.Delete(pb.DeleteRequest(id=sid))


def concurrency(sock, n_sandboxes, n_streams):
    s = stub(sock)
    ids = [s.CreateSandbox(pb.CreateSandboxRequest(policy_text=ALLOW_ALL, limits=pb.Limits(memory_mib=256))).id
           for _ in range(n_sandboxes)]
    for sid in ids:
        wait_state(s, sid, [pb.READY], timeout=300)
    ok("%d sandboxes READY" % n_sandboxes)
    errors_seen = []

    def one(i):
        sid = ids[i % len(ids)]
        try:
            out, ex, _ = run(s, sid, ["sh", "-c", "echo start %d; sleep 1; head -c 20000 /dev/zero | tr '\\0' x; echo; echo end %d" % (i, i)])
            want = b"start %d\n" % i + b"x" * 20000 + b"\nend %d\n" % i
            if ex is None or ex.exit_code != 0 or out[1] != want:
                errors_seen.append("stream %d: exit %s, %d bytes" % (i, ex, len(out[1])))
        except grpc.RpcError as e:
            errors_seen.append("stream %d: %s %s" % (i, e.code(), e.details()))

    t0 = time.time()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n_streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors_seen:
        fail("%d of %d streams failed: %s" % (len(errors_seen), n_streams, errors_seen[:5]))
    ok("%d concurrent Exec streams across %d sandboxes, all complete and intact (%.1f s)" % (n_streams, n_sandboxes, time.time() - t0))
    for sid in ids:
        s.Delete(pb.DeleteRequest(id=sid))
    ok("deleted")


def restart_before(sock, ids_file):
    s = stub(sock)
    a = s.CreateSandbox(pb.CreateSandboxRequest(policy_text=ALLOW_ALL, limits=pb.Limits(memory_mib=256))).id
    wait_state(s, a, [pb.READY])
    b = s.CreateSandbox(pb.CreateSandboxRequest(policy_text=ALLOW_ALL, limits=pb.Limits(memory_mib=256))).id
    out, ex, _ = run(s, a, ["sh", "-c", "echo before > /tmp/mark; echo marked"])
    if out[1] != b"marked\n":
        fail("exec before the kill: %r" % out)
    if s.GetSandbox(pb.GetSandboxRequest(id=b)).state != pb.QUEUED:
        fail("b should wait for a's slot")
    with open(ids_file, "w") as f:
        f.write("%s %s" % (a, b))
    ok("a %s READY, b %s QUEUED behind it" % (a, b))


def restart_after(sock, a, b):
    s = stub(sock)
    sa = s.GetSandbox(pb.GetSandboxRequest(id=a))
    if sa.state != pb.FAILED or "restarted" not in sa.error:
        fail("a after the restart: %s" % sa)
    ev = s.GetEvidence(pb.GetEvidenceRequest(sandbox_id=a))
    if "marked" not in ev.manifest_json and '"sh"' not in ev.manifest_json:
        fail("a's evidence lost its command: %s" % ev.manifest_json[:1500])
    ok("a is FAILED (%s), its evidence kept" % sa.error)
    wait_state(s, b, [pb.READY])
    out, ex, _ = run(s, b, ["echo", "continued"])
    if out[1] != b"continued\n":
        fail("b after the restart: %r" % out)
    ok("b, queued before the kill, started and runs commands")
    s.Delete(pb.DeleteRequest(id=b))
    s.Delete(pb.DeleteRequest(id=a))


def lazy(s, prio=0):
    """A sandbox that holds a slot without a VM until its first command (defer_boot)."""
    return s.CreateSandbox(pb.CreateSandboxRequest(policy_text=ALLOW_ALL, defer_boot=True, priority=prio))


def flood(sock, ids_file):
    """Tenant A (max_queued 4, two slots daemon-wide) floods: two start, four queue, one more is
    refused with RESOURCE_EXHAUSTED and a retry-after-ms hint."""
    s = stub(sock)
    ids = []
    for prio in (0, 0, 0, 0, 5, 0):
        ids.append(lazy(s, prio).id)
    for sid in ids[:2]:
        wait_state(s, sid, [pb.READY])
    for sid in ids[2:]:
        if s.GetSandbox(pb.GetSandboxRequest(id=sid)).state != pb.QUEUED:
            fail("%s should be queued" % sid)
    try:
        lazy(s)
        fail("a fifth queued sandbox was accepted")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or "retry in" not in e.details():
            fail("the refusal: %s %s" % (e.code(), e.details()))
        hint = dict(e.trailing_metadata() or ()).get("retry-after-ms")
        if not hint or not 1000 <= int(hint) <= 300000:
            fail("no retry-after-ms hint in the trailing metadata: %s" % (e.trailing_metadata(),))
        ok("the 5th queued sandbox refused: RESOURCE_EXHAUSTED (%s), retry-after-ms %s" % (e.details(), hint))
    with open(ids_file, "w") as f:
        f.write(" ".join(ids))
    ok("tenant %d: 2 running, 4 queued (one of them priority 5)" % os.getuid())


def one(sock, id_file):
    s = stub(sock)
    sid = lazy(s).id
    if s.GetSandbox(pb.GetSandboxRequest(id=sid)).state != pb.QUEUED:
        fail("the other tenant's sandbox should queue: the slots are taken")
    with open(id_file, "w") as f:
        f.write(sid)
    ok("tenant %d: 1 queued behind the flood" % os.getuid())


def fair_after(sock, ids):
    """After kill -9 and a restart: the queue resumed; A's priority-5 sandbox and B's share the
    two slots, A's older ones wait; when A's ends, A's oldest queued goes next."""
    s = stub(sock)
    ids = ids.split()
    for sid in ids[:2]:
        sb = s.GetSandbox(pb.GetSandboxRequest(id=sid))
        if sb.state != pb.FAILED:
            fail("%s ran when cordond was killed: %s" % (sid, sb))
    wait_state(s, ids[4], [pb.READY])
    for sid in (ids[2], ids[3], ids[5]):
        if s.GetSandbox(pb.GetSandboxRequest(id=sid)).state != pb.QUEUED:
            fail("%s should still be queued: B's share comes first" % sid)
    ok("after the restart: A's priority-5 sandbox runs, A's older ones still queue")
    s.Cancel(pb.CancelRequest(id=ids[4]))
    wait_state(s, ids[2], [pb.READY])
    for sid in (ids[3], ids[5]):
        if s.GetSandbox(pb.GetSandboxRequest(id=sid)).state != pb.QUEUED:
            fail("%s should be queued" % sid)
    ok("A's slot freed: A's oldest queued sandbox started next")
    for sid in ids[2:]:
        s.Delete(pb.DeleteRequest(id=sid))


def fair_other(sock, sid):
    s = stub(sock)
    sb = wait_state(s, sid, [pb.READY], timeout=30)
    ok("tenant %d's sandbox got a slot ahead of A's older queue (%s)" % (os.getuid(), sb.state))
    s.Delete(pb.DeleteRequest(id=sid))


def log_count(log, needle):
    with open(log) as f:
        return f.read().count(needle)


def wait_log(log, needle, times, timeout=180):
    end = time.time() + timeout
    while time.time() < end:
        if log_count(log, needle) >= times:
            return
        time.sleep(0.1)
    fail("cordond's log never said %r %d times" % (needle, times))


def domains():
    import subprocess
    out = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--name"], capture_output=True, text=True)
    return set(x for x in out.stdout.split() if x.startswith("cordon-"))


def warm(sock, log):
    """A pool of one minimal VM, cloned from templates the pool saved: a default-shaped sandbox
    takes it (no boot of its own); its template being in use by it, the pool saves a second one
    and clones the replacement from that; the next sandbox draws entropy of its own although its
    memory came from a saved guest; once the first sandbox is gone its template serves again (no
    third is made); a sandbox of another shape boots cold; the used VMs go with their sandboxes,
    never handed out again."""
    s = stub(sock)
    ready = "warm pool minimal: 1 of 1 ready"
    wait_log(log, ready, 1)
    if log_count(log, "warm pool minimal: template 1 saved on qemu:///system") != 1:
        fail("the pool should have saved a template first")
    if log_count(log, "the last cloned in") != 1:
        fail("the pool's VM should be a clone of the template")
    ok("the pool saved a template, then cloned its warm VM from it")
    pooled = domains()
    if len(pooled) != 1:
        fail("one warm VM expected, libvirt has %s" % pooled)
    t0 = time.time()
    a = s.CreateSandbox(pb.CreateSandboxRequest(policy_text=ALLOW_ALL)).id
    out, ex, _ = run(s, a, ["echo", "warm"])
    took = time.time() - t0
    if out[1] != b"warm\n":
        fail("exec in the warm sandbox: %r" % out)
    rand_a = run(s, a, ["cat", "/proc/sys/kernel/random/uuid"])[0][1]
    wait_log(log, ready, 2)
    if log_count(log, "template 2 saved on") != 1 or log_count(log, "the last cloned in") != 2:
        fail("with template 1's clone in sandbox a, the replacement should be a clone of a second")
    ok("the replacement is a clone of a second template (the first's clone is in use)")
    s.Cancel(pb.CancelRequest(id=a))  # the manifest's facts are complete once it stops
    man = json.loads(s.GetEvidence(pb.GetEvidenceRequest(sandbox_id=a)).manifest_json)
    if man.get("started_from") != "warm pool" or man.get("vm") not in pooled:
        fail("sandbox a did not take the warm VM: %s (pool had %s)" % ({k: man.get(k) for k in ("started_from", "vm")}, pooled))
    if man.get("warm_vm") != "cloned from a saved template":
        fail("the warm VM should have been a clone: %s" % man.get("warm_vm"))
    ok("a default-shaped sandbox took the warm VM %s: create to first exec done in %.0f ms" % (man["vm"], took * 1000))
    c = s.CreateSandbox(pb.CreateSandboxRequest(policy_text=ALLOW_ALL)).id
    rand_c = run(s, c, ["cat", "/proc/sys/kernel/random/uuid"])[0][1]
    if rand_a == rand_c or len(rand_c) != 37:
        fail("two clones of saved guests drew %r and %r: no fresh entropy" % (rand_a, rand_c))
    ok("two clones drew different random numbers")
    wait_log(log, ready, 3)
    if log_count(log, "template 3 saved on") != 0 or log_count(log, "the last cloned in") != 3:
        fail("template 1 is free again (sandbox a is gone): the pool should clone it")
    ok("template 1 served again once sandbox a was gone")
    s.Delete(pb.DeleteRequest(id=c))
    b = s.CreateSandbox(pb.CreateSandboxRequest(policy_text=ALLOW_ALL, limits=pb.Limits(memory_mib=256))).id
    run(s, b, ["true"])
    s.Cancel(pb.CancelRequest(id=b))
    man_b = json.loads(s.GetEvidence(pb.GetEvidenceRequest(sandbox_id=b)).manifest_json)
    if man_b.get("started_from") or man_b.get("vm") != "cordon-" + b:
        fail("a 256 MiB sandbox must boot cold: %s" % man_b.get("vm"))
    ok("a sandbox of another shape (256 MiB) booted cold")
    s.Delete(pb.DeleteRequest(id=a))
    s.Delete(pb.DeleteRequest(id=b))
    if log_count(log, "started from the warm pool") != 2:
        fail("only sandboxes a and c should have come from the pool")
    end = time.time() + 30
    while len(domains()) != 1 and time.time() < end:
        time.sleep(0.2)
    if len(domains()) != 1:
        fail("only the pool's fresh VM should be left: %s" % domains())
    ok("the used VMs went with their sandboxes; the pool keeps only a fresh one")


def warm_tight(sock, log):
    """Room for one VM only, held by the pool's (booted: warm_clone never): a default-shaped
    sandbox still starts, on that warm VM; the pool refills once the sandbox is gone."""
    s = stub(sock)
    ready = "warm pool minimal: 1 of 1 ready"
    wait_log(log, ready, 1)
    if log_count(log, "template") or log_count(log, "the last booted in") != 1:
        fail("with warm_clone: never the pool's VM should be booted, no template saved")
    a = s.CreateSandbox(pb.CreateSandboxRequest(policy_text=ALLOW_ALL)).id
    out = run(s, a, ["echo", "fits"])[0]
    if out[1] != b"fits\n":
        fail("exec in the sandbox: %r" % out)
    s.Cancel(pb.CancelRequest(id=a))
    man = json.loads(s.GetEvidence(pb.GetEvidenceRequest(sandbox_id=a)).manifest_json)
    if man.get("started_from") != "warm pool" or man.get("warm_vm") != "booted":
        fail("the sandbox should have taken the booted warm VM: %s" % man)
    ok("with the pool's VM holding the host's only room, a sandbox started on it")
    s.Delete(pb.DeleteRequest(id=a))
    wait_log(log, ready, 2)
    ok("the pool refilled once the sandbox was gone")


if __name__ == "__main__":
    what, sock = sys.argv[1], sys.argv[2]
    {
        "interop": lambda: interop(sock, sys.argv[3], sys.argv[4]),
        "delete": lambda: delete(sock, sys.argv[3]),
        "other-tenant": lambda: other_tenant(sock, sys.argv[3]),
        "errors": lambda: errors(sock),
        "concurrency": lambda: concurrency(sock, int(sys.argv[3]), int(sys.argv[4])),
        "restart-before": lambda: restart_before(sock, sys.argv[3]),
        "restart-after": lambda: restart_after(sock, sys.argv[3], sys.argv[4]),
        "flood": lambda: flood(sock, sys.argv[3]),
        "one": lambda: one(sock, sys.argv[3]),
        "fair-after": lambda: fair_after(sock, sys.argv[3]),
        "fair-other": lambda: fair_other(sock, sys.argv[3]),
        "warm": lambda: warm(sock, sys.argv[3]),
        "warm-tight": lambda: warm_tight(sock, sys.argv[3]),
    }[what]()
