"""redis-py against ringkv: transactional pipelines, transaction(), and
(with "scripts") Lock and register_script. Usage: redis_py.py PORT PART...
Exits non-zero with a message on the first mismatch."""

import sys
import threading

import redis


def transactions(r):
    r.flushall()
    # pipeline() is transactional by default: MULTI ... EXEC.
    with r.pipeline() as p:
        p.set("a", 1).incr("a").incrby("b", 5).get("a").mget("a", "b")
        assert p.execute() == [True, 2, 5, b"2", [b"2", b"5"]], "pipeline"
    # A run-time error comes back in its place; the rest runs.
    r.set("s", "text")
    with r.pipeline() as p:
        p.incr("s").set("t", 1)
        res = p.execute(raise_on_error=False)
        assert isinstance(res[0], redis.ResponseError) and res[1] is True, res
    # transaction() watches, retries on a conflict, and returns the result.
    r.set("balance", 100)
    raced = {"done": False}

    def move(pipe):
        v = int(pipe.get("balance"))
        if not raced["done"]:
            raced["done"] = True
            redis.Redis(port=r.connection_pool.connection_kwargs["port"]).incr("balance")
        pipe.multi()
        pipe.set("balance", v - 10)

    r.transaction(move, "balance")
    assert int(r.get("balance")) == 91, r.get("balance")
    # A queue-time error aborts with EXECABORT.
    with r.pipeline() as p:
        p.set("x", 1)
        p.execute_command("NOSUCHCOMMAND")
        try:
            p.execute()
            raise AssertionError("EXECABORT expected")
        except redis.ResponseError as e:
            assert "EXECABORT" in str(e) or "unknown command" in str(e), e
    assert r.exists("x") == 0
    # Concurrent transactional pipelines keep a cross-key invariant.
    keys = [f"acct:{i}" for i in range(8)]
    for k in keys:
        r.set(k, 100)
    errors = []

    def worker(n):
        c = redis.Redis(port=r.connection_pool.connection_kwargs["port"])
        for i in range(100):
            with c.pipeline() as p:
                p.decrby(keys[(n + i) % 8], 3).incrby(keys[(n * 3 + i + 1) % 8], 3)
                p.execute()
            if sum(int(v) for v in c.mget(keys)) != 800:
                errors.append("sum changed")

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]


def scripts(r):
    r.flushall()
    # register_script: EVALSHA, falling back to EVAL on NOSCRIPT.
    r.script_flush()
    incr_by = r.register_script(
        "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    )
    assert incr_by(keys=["n"], args=[5]) == 5
    assert incr_by(keys=["n"], args=[2]) == 7
    # Lock: acquire, extend, release (all Lua), and a second client waits.
    lock = r.lock("resource", timeout=5)
    assert lock.acquire(blocking=False)
    other = redis.Redis(port=r.connection_pool.connection_kwargs["port"]).lock(
        "resource", timeout=5
    )
    assert not other.acquire(blocking=False)
    assert lock.extend(5)
    lock.release()
    assert other.acquire(blocking=False)
    other.release()
    assert r.exists("resource") == 0
    with r.lock("ctx", timeout=2, blocking_timeout=2):
        assert r.exists("ctx") == 1
    assert r.exists("ctx") == 0


def main():
    port = int(sys.argv[1])
    r = redis.Redis(port=port)
    for part in sys.argv[2:]:
        {"transactions": transactions, "scripts": scripts}[part](r)
    print("ok")


if __name__ == "__main__":
    main()
