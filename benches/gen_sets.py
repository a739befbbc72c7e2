#!/usr/bin/env python3
"""Writes KEYS SET commands in RESP to stdout, for `redis-cli --pipe`.

Keys are named as redis-benchmark names them (key:000000000042) and values
are SIZE bytes of 'x' (its payload). Usage: gen_sets.py KEYS SIZE
"""
import sys

keys, size = int(sys.argv[1]), int(sys.argv[2])
v = b"x" * size
out = sys.stdout.buffer
for i in range(keys):
    k = b"key:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
