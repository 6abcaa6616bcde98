#!/usr/bin/env python3
"""Checks the bundled extensions against the Linux kernel itself.

Compiles extensions/*.c with clang-19, loads them with the system libbpf (Debian 12: libbpf1 1.1)
through the kernel verifier, and test-runs them with BPF_PROG_TEST_RUN, asserting the results that
the header comment of each source promises. Needs root and a kernel with BPF arena support (>= 6.9).

libbpf 1.1 cannot place `__arena` globals, so syscall_events is built with `-D__arena=` here (its
heap variables become ordinary globals); everything else is the exact object kflex embeds.

Usage: sudo python3 scripts/linux-check.py
"""

import ctypes
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLANG = os.environ.get("KFLEX_CLANG", "clang-19")
CFLAGS = ["-O2", "-g", "-target", "bpf", "-mcpu=v4", "-Wall", "-Werror"]

lib = ctypes.CDLL("libbpf.so.1")
lib.bpf_object__open_file.restype = ctypes.c_void_p
lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
lib.libbpf_get_error.argtypes = [ctypes.c_void_p]
lib.libbpf_get_error.restype = ctypes.c_long
lib.bpf_object__load.argtypes = [ctypes.c_void_p]
lib.bpf_object__find_program_by_name.restype = ctypes.c_void_p
lib.bpf_object__find_program_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.bpf_program__fd.argtypes = [ctypes.c_void_p]
lib.bpf_object__find_map_by_name.restype = ctypes.c_void_p
lib.bpf_object__find_map_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.bpf_map__fd.argtypes = [ctypes.c_void_p]
lib.bpf_map_update_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]


class TestRunOpts(ctypes.Structure):
    """libbpf's struct bpf_test_run_opts."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


lib.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(TestRunOpts)]

failures = 0


def load(name, outdir, extra=()):
    obj_path = os.path.join(outdir, name + ".o")
    src = os.path.join(ROOT, "extensions", name + ".c")
    subprocess.run([CLANG, *CFLAGS, *extra, "-I", os.path.join(ROOT, "sdk/include"), "-c", src, "-o", obj_path], check=True)
    obj = lib.bpf_object__open_file(obj_path.encode(), None)
    if not obj or lib.libbpf_get_error(obj):
        sys.exit(f"{name}: libbpf cannot open the object")
    err = lib.bpf_object__load(obj)
    if err:
        sys.exit(f"{name}: the kernel rejected it ({err}); the verifier log is above")
    return obj


def test_run(obj, prog, data=None, ctx=None):
    """Returns (retval, ctx after the run)."""
    fd = lib.bpf_program__fd(lib.bpf_object__find_program_by_name(obj, prog.encode()))
    opts = TestRunOpts(sz=ctypes.sizeof(TestRunOpts))
    keep = []
    if data is not None:
        din = ctypes.create_string_buffer(data, len(data))
        dout = ctypes.create_string_buffer(len(data) + 256)
        keep += [din, dout]
        opts.data_in, opts.data_size_in = ctypes.cast(din, ctypes.c_void_p), len(data)
        opts.data_out, opts.data_size_out = ctypes.cast(dout, ctypes.c_void_p), len(dout)
    ctx_after = None
    if ctx is not None:
        cin = ctypes.create_string_buffer(ctx, len(ctx))
        keep.append(cin)
        opts.ctx_in, opts.ctx_size_in = ctypes.cast(cin, ctypes.c_void_p), len(ctx)
        ctx_after = cin  # syscall programs (no data) get their context written back in place
        if data is not None:
            cout = ctypes.create_string_buffer(len(ctx))
            keep.append(cout)
            opts.ctx_out, opts.ctx_size_out = ctypes.cast(cout, ctypes.c_void_p), len(ctx)
            ctx_after = cout
    err = lib.bpf_prog_test_run_opts(fd, ctypes.byref(opts))
    if err:
        sys.exit(f"{prog}: BPF_PROG_TEST_RUN failed ({err})")
    return ctypes.c_int32(opts.retval).value, (ctx_after.raw if ctx_after is not None else None)


def check(what, got, want):
    global failures
    ok = got == want
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {what}: got {got}, want {want}")


def eth(proto, vlan=None):
    head = b"\x02" * 6 + b"\x04" * 6
    if vlan is not None:
        head += struct.pack(">HH", 0x8100, vlan)
    return head + struct.pack(">H", proto)


def ipv4(proto, payload, src=b"\x0a\x00\x00\x01", tos=0):
    return struct.pack(">BBHHHBBH", 0x45, tos, 20 + len(payload), 1, 0, 64, proto, 0) + src + b"\x0a\x00\x00\x02" + payload


def ipv6(nexthdr, payload):
    return struct.pack(">IHBB", 0x60000000, len(payload), nexthdr, 64) + b"\x20" * 16 + b"\x21" * 16 + payload


def udp(dport, n=8):
    return struct.pack(">HHHH", 4000, dport, 8 + n, 0) + b"x" * n


def tcp(dport, flags=0x02):
    return struct.pack(">HHIIBBHHH", 4000, dport, 1, 0, 0x50, flags, 1000, 0, 0)


def main():
    if os.geteuid() != 0:
        sys.exit("linux-check: needs root (BPF_PROG_LOAD and BPF_PROG_TEST_RUN)")
    with tempfile.TemporaryDirectory() as out:
        x = load("xdp_firewall", out)
        run = lambda pkt: test_run(x, "xdp_firewall", pkt)[0]
        check("xdp udp/53", run(eth(0x0800) + ipv4(17, udp(53))), 2)
        check("xdp udp/11211", run(eth(0x0800) + ipv4(17, udp(11211))), 1)
        check("xdp vlan udp/11211", run(eth(0x0800, vlan=5) + ipv4(17, udp(11211))), 1)
        check("xdp ipv6 udp/1900", run(eth(0x86DD) + ipv6(17, udp(1900))), 1)
        check("xdp tcp/80 syn", run(eth(0x0800) + ipv4(6, tcp(80))), 2)
        check("xdp tcp/80 syn+fin", run(eth(0x0800) + ipv4(6, tcp(80, 0x03))), 1)
        check("xdp arp", run(eth(0x0806) + b"\0" * 28), 2)
        check("xdp truncated ipv4", run(eth(0x0800) + b"\x45\0\0"), 1)
        blocklist = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(x, b"blocklist"))
        key, zero = ctypes.create_string_buffer(b"\x0a\x00\x00\x01", 4), ctypes.create_string_buffer(8)
        assert lib.bpf_map_update_elem(blocklist, key, zero, 0) == 0
        check("xdp blocked source", run(eth(0x0800) + ipv4(17, udp(53))), 1)
        check("xdp other source", run(eth(0x0800) + ipv4(17, udp(53), src=b"\x0a\0\0\x09")), 2)

        s = load("socket_udp_filter", out)
        pkt = ipv4(17, udp(53))
        check("socket udp/53", test_run(s, "socket_udp_filter", eth(0x0800) + pkt)[0], len(pkt))
        check("socket udp/123", test_run(s, "socket_udp_filter", eth(0x0800) + ipv4(17, udp(123)))[0], 0)
        check("socket tcp/53", test_run(s, "socket_udp_filter", eth(0x0800) + ipv4(6, tcp(53)))[0], 0)

        t = load("tc_classifier", out)
        skb = bytes(192)
        ret, ctx = test_run(t, "tc_classifier", eth(0x0800) + ipv4(6, tcp(80), tos=0xB8), skb)
        fields = lambda c: (struct.unpack_from("<I", c, 32)[0], struct.unpack_from("<I", c, 8)[0], struct.unpack_from("<I", c, 48)[0])
        check("tc tcp/80 EF", (ret, *fields(ctx)), (0, 6, 0x062E, 1))
        ret, ctx = test_run(t, "tc_classifier", eth(0x0800) + ipv4(17, udp(53)), skb)
        check("tc udp/53", (ret, *fields(ctx)), (0, 0, 0x1100, 0))
        check("tc tcp/23", test_run(t, "tc_classifier", eth(0x0800) + ipv4(6, tcp(23)), skb)[0], 2)

        e = load("syscall_events", out, ["-D__arena="])
        for n, seed, want_ret, want_result in [(1000, 27, 0, 111), (1000, 1, 0, 0), (10, 27, 1, 10), (10001, 27, -22, 0), (5, 0, -22, 0)]:
            ret, ctx = test_run(e, "syscall_events", None, struct.pack("<QQQ", n, seed, 0))
            check(f"syscall n={n} seed={seed}", (ret, struct.unpack("<QQQ", ctx)[2]), (want_ret, want_result))

        k = load("sk_skb_verdict", out)
        print("ok   sk_skb_verdict loads (sk_skb has no BPF_PROG_TEST_RUN)")
        del k

    if failures:
        sys.exit(f"linux-check: {failures} check(s) failed")
    print("linux-check: all checks passed")


if __name__ == "__main__":
    main()
